// The Privacy Center: sign up and in, my data, consents with signed
// receipts, activity, export and erasure. Talks to /graphql with the
// HttpOnly session cookie.
import { gql as request, isSchemaMismatch, submitting, setStatus, showError, clearErrors, plain, h, when, localError as fieldError } from './gql.js';
import { init as initI18n, switcher, t, plural, day, number } from './i18n.js';
import { fillNames, countryField, languageField, showCountry, showLanguage } from './names.js';

const $ = (sel) => document.querySelector(sel);

// Every text a person reads comes from the catalogue (/locales/<tag>.json)
// through t(); the keys of this page start with center. or common.
// Every API call of the page. A session that ends while the page shows
// the user signed in (expired, revoked, signed out elsewhere) takes the
// page back to the signed-out state with a word why, instead of leaving
// every button to answer "sign in first".
async function gql(...args) {
  try {
    return await request(...args);
  } catch (err) {
    if (err.code === 'UNAUTHENTICATED' && me) sessionEnded();
    throw err;
  }
}

function sessionEnded() {
  me = null;
  polling++;
  show('#signed-out');
  banner(t('center.sessionEnded'), 'error');
  $('#li-username').focus();
}

// How long a success message stays before it clears.
const STATUS_MS = 6000;

// Data categories, mechanisms and methods are named in the catalogue; an
// unknown one (a newer server) shows its own id rather than nothing.
const named = (key, fallback) => { const v = t(key); return v === key ? fallback : v; };
const category = (c) => named(`common.category.${c}`, c.split('.').pop().replaceAll('_', ' '));
const method = (m) => named(`center.method.${m}`, m || '');
// Purpose names come from the API in the page's language (the operator's
// configuration, or the catalogue's for the built-in purposes); an id not
// (yet) read shows as words.
const purposeNames = new Map();
const purposeName = (id) => {
  const s = id.replaceAll('_', ' ');
  return purposeNames.get(id) || s.charAt(0).toUpperCase() + s.slice(1);
};
const quoted = (s) => t('common.quoted', { text: s });
const list = (xs) => new Intl.ListFormat(document.documentElement.lang, { type: 'conjunction' }).format(xs);

// Third parties and disclosures come with the processors feature; older
// servers answer GRAPHQL_VALIDATION_FAILED for them and the page goes on
// without.
let withProcessors = true;
// Processor links (pending confirmations, survey invitations …) came
// later still; a server without them loses only that list.
let withLinks = true;
const LINKS = 'processorLinks { processor { name description } state items { kind title url expiresAt } updatedAt actions { id title } }';

const PROFILE = 'profile { birthYear country gender language }';
const HISTORY = `consentHistory(first: 100) { totalCount edges { node { sequence purpose action at method policyVersion } } } ledgerIntact`;
const meQuery = () => `query Me { policy { version url publishedAt } me { id username email emailVerified notices { kind at } ${PROFILE}
  consents { granted needsRenewal updatedAt method policyVersion ${withProcessors ? 'notes' : ''}
    purpose { id name mechanism description dataCategories ${withProcessors ? 'processors { name description dataCategories }' : ''} } }
  ${HISTORY}
  ${withProcessors ? 'disclosures(first: 50) { edges { node { processor purpose fields action at } } }' : ''}
  ${withProcessors && withLinks ? LINKS : ''} } }`;

// The policy in force, read with the user.
let policy = null;

async function loadMe() {
  try {
    const data = await gql(meQuery());
    policy = data.policy || null;
    for (const c of data.me?.consents || []) purposeNames.set(c.purpose.id, c.purpose.name);
    renderPolicyLink();
    return data.me;
  } catch (err) {
    if (withLinks && isSchemaMismatch(err)) {
      withLinks = false;
      return loadMe();
    }
    if (withProcessors && isSchemaMismatch(err)) {
      withProcessors = false;
      return loadMe();
    }
    throw err;
  }
}

function show(id) {
  for (const s of ['#signed-out', '#signed-in', '#deleted', '#loading', '#reset']) $(s).hidden = s !== id;
  $('#session').hidden = id !== '#signed-in';
}

function banner(msg, kind = 'ok') {
  const b = $('#banner');
  b.className = `banner ${kind}`;
  b.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  b.textContent = msg;
  b.hidden = !msg;
}

// ---------- rendering ----------

let me = null;

function render(user) {
  me = user;
  $('#session-name').textContent = user.username;
  $('#signed-in-title').textContent = t('center.signedIn.welcome', { name: user.username });
  renderNotices(user);
  renderData(user);
  renderConsents(user);
  renderActivity(user);
  show('#signed-in');
}

// Only web links: the policy URL is the operator's configuration.
function renderPolicyLink() {
  const url = policy && safeURL(policy.url);
  $('#policy-link-wrap').hidden = !url;
  if (url) {
    $('#policy-link').href = url;
    $('#policy-version').textContent = t('center.policy.version', { version: policy.version });
  }
}

// A policy change that turned purposes off is said at the top of the page,
// with the date, the purposes and a link to the policy.
function renderPolicyNotice(user) {
  const off = user.consents.filter((c) => c.needsRenewal);
  const box = $('#policy-notice');
  box.hidden = !off.length;
  if (!off.length) return box.replaceChildren();
  const url = policy && safeURL(policy.url);
  box.replaceChildren(h('p', {},
    policy ? t('center.policy.changedOn', { date: day(policy.publishedAt), version: policy.version }) : t('center.policy.changed'), ' ',
    plural('center.policy.off', off.length, { purposes: list(off.map((c) => quoted(purposeName(c.purpose.id)))) }), ' ',
    url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, t('center.policy.read')) : null,
    url ? ' · ' : null,
    h('a', { href: '#consents' }, t('center.policy.review'))));
}

function renderNotices(user) {
  renderPolicyNotice(user);
  const notices = user.notices || [];
  $('#notice-list').replaceChildren(...notices.map((n) => h('li', { 'data-kind': n.kind },
    named(`center.notice.${n.kind}`, '') ? t(`center.notice.${n.kind}`, { date: when(n.at) })
      : t('center.notice.other', { date: when(n.at), kind: n.kind.toLowerCase().replaceAll('_', ' ') }))));
  $('#notices').hidden = notices.length === 0;
}

async function dismissNotices(e) {
  const button = e.currentTarget;
  button.disabled = true;
  try {
    await gql('mutation { dismissNotices }');
    $('#notices').hidden = true;
    $('#notice-list').replaceChildren();
    $('#main').focus();
  } catch (err) {
    banner(plain(err), 'error');
  } finally {
    button.disabled = false;
  }
}

// A success message that clears after a while, so an old "saved" is not
// mistaken for the answer to a later change.
const statusTimers = new WeakMap();
function okStatus(form, msg) {
  setStatus(form, msg);
  clearTimeout(statusTimers.get(form));
  statusTimers.set(form, setTimeout(() => {
    const st = form.querySelector('.form-status.ok');
    if (st) st.textContent = '';
  }, STATUS_MS));
}

function renderData(user) {
  const form = $('#profile-form');
  const p = user.profile || {};
  form.birthYear.value = p.birthYear ?? '';
  showCountry(form.country, p.country);
  form.gender.value = p.gender ?? '';
  showLanguage(form.language, p.language);
  $('#em-email').value = user.email ?? '';
  const state = $('#email-state');
  if (!user.email) {
    state.textContent = t('center.email.none');
    state.className = 'badge';
  } else if (user.emailVerified) {
    state.textContent = t('center.email.confirmed');
    state.className = 'badge good';
  } else {
    state.textContent = t('center.email.unconfirmed');
    state.className = 'badge warn';
  }
  $('#verify-form').hidden = !user.email || user.emailVerified;
}

function renderConsents(user) {
  const list = $('#purpose-list');
  list.replaceChildren(...user.consents.map((c) => purposeItem(c)));
}

function purposeItem(c) {
  const p = c.purpose;
  const mechShort = named(`center.mechanism.${p.mechanism}.short`, p.mechanism);
  const mechText = named(`center.mechanism.${p.mechanism}`, p.mechanism);
  const mechClass = { OPT_IN: 'opt-in', OPT_OUT: 'opt-out', NOTICE_ONLY: 'notice' }[p.mechanism] || 'other';
  const id = `purpose-${p.id}`;
  const notice = p.mechanism === 'NOTICE_ONLY';
  const sw = h('input', {
    type: 'checkbox', role: 'switch', id: `${id}-switch`, class: 'switch',
    'aria-describedby': `${id}-desc`, 'data-purpose': p.id,
  });
  sw.checked = c.granted;
  sw.disabled = notice;
  sw.addEventListener('change', () => toggle(p.id, sw));
  const uses = p.dataCategories.length ? list(p.dataCategories.map(category)) : t('center.consent.noData');
  const thirdParties = p.processors
    ? (p.processors.length
      ? p.processors.map((x) => t('center.consent.recipient', { name: x.name,
        data: x.dataCategories.length ? list(x.dataCategories.map(category)) : t('center.consent.noPersonalData') })).join(t('common.separator'))
      : t('center.consent.noRecipient'))
    : null;
  let state = c.granted ? t('center.consent.allowed') : t('center.consent.notAllowed');
  // Turned off by a policy change, not by the user: say so.
  if (c.needsRenewal) {
    state = t('center.consent.offByPolicy', { state, date: policy ? day(policy.publishedAt) : '' }) +
      (c.updatedAt ? t('center.consent.hadAllowed', { date: when(c.updatedAt) }) : '');
  } else if (c.updatedAt) state = t('center.consent.changed', { state, how: method(c.method), date: when(c.updatedAt) });
  else state = t('center.consent.default', { state });
  return h('li', { class: 'purpose', id },
    h('div', { class: 'purpose-head' },
      h('h3', { id: `${id}-name` }, purposeName(p.id), ' ', h('span', { class: `badge mech-${mechClass}` }, mechShort)),
      h('div', { class: 'switch-wrap' },
        sw,
        h('label', { for: `${id}-switch` }, notice ? t('center.consent.alwaysOn') : t('center.consent.allow', { purpose: purposeName(p.id) })),
        h('span', { class: 'saving-label', hidden: true }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), t('center.consent.saving')))),
    // the description is the server's, in the language it could answer in
    h('p', { id: `${id}-desc` }, h('span', { class: 'purpose-description' }, p.description), ' ', h('span', { class: 'muted' }, t('center.consent.mechanismSentence', { text: mechText }))),
    h('dl', { class: 'facts' },
      h('dt', {}, t('center.consent.uses')), h('dd', {}, uses),
      thirdParties !== null ? [h('dt', {}, t('center.consent.thirdParties')), h('dd', { class: 'third-parties' }, thirdParties)] : null,
      h('dt', {}, t('center.consent.choice')), h('dd', { class: 'consent-state' }, state)),
    c.needsRenewal
      ? h('p', { class: 'notice warn' }, t('center.consent.renew'))
      : null,
    (c.notes || []).includes('NEEDS_EMAIL')
      ? h('p', { class: 'notice warn' }, t('center.consent.needsEmail'))
      : null,
    h('p', { class: 'field-error-slot', id: `${id}-error`, role: 'alert' }));
}

async function toggle(purpose, sw) {
  const grant = sw.checked;
  const slot = document.getElementById(`purpose-${purpose}-error`);
  slot.textContent = '';
  // While the change is saved the switch says so, and "Your choice" does
  // not contradict it: both show the saving, then both the server's answer.
  const item = document.getElementById(`purpose-${purpose}`);
  const stateEl = item.querySelector('.consent-state');
  const before = stateEl.textContent;
  item.setAttribute('aria-busy', 'true');
  sw.disabled = true;
  sw.classList.add('saving');
  item.querySelector('.saving-label').hidden = false;
  stateEl.textContent = t(grant ? 'center.consent.savingGrant' : 'center.consent.savingWithdraw');
  try {
    const m = grant ? 'grantConsent' : 'withdrawConsent';
    const data = await gql(`mutation($p: ID!) { r: ${m}(purpose: $p) { receipt changed consent { granted updatedAt policyVersion purpose { id } } } }`, { p: purpose });
    showReceipt(data.r, grant);
    await refresh();
    pollActivity();
    document.getElementById(`purpose-${purpose}-switch`)?.focus({ preventScroll: true });
    // the receipt is the confirmation: bring it into view (its summary is
    // a polite live region, so it is also read out)
    $('#receipt').scrollIntoView({ block: 'nearest' });
  } catch (err) {
    sw.checked = !grant;
    sw.disabled = false;
    sw.classList.remove('saving');
    item.removeAttribute('aria-busy');
    item.querySelector('.saving-label').hidden = true;
    stateEl.textContent = before;
    slot.textContent = plain(err);
  }
}

let receiptURL = '';

function showReceipt(r, grant) {
  const c = r.consent;
  $('#receipt').hidden = false;
  $('#receipt-summary').textContent = t(grant ? 'center.receipt.allowed' : 'center.receipt.withdrew',
    { purpose: quoted(purposeName(c.purpose.id)), date: when(c.updatedAt), version: c.policyVersion }) +
    (r.changed ? '' : t('center.receipt.unchanged'));
  $('#receipt-text').textContent = r.receipt;
  if (receiptURL) URL.revokeObjectURL(receiptURL);
  receiptURL = URL.createObjectURL(new Blob([r.receipt], { type: 'application/jose' }));
  const a = $('#receipt-download');
  a.href = receiptURL;
  a.download = `consent-receipt-${c.purpose.id}.jwt`;
  $('#receipt-check').textContent = '';
  $('#receipt-check').className = 'check';
}

// The user's proof bundle: the signed checkpoint their proofs lead to, the
// public keys that sign it (pinned, so a later check need not trust the
// server's key set), and an RFC 9162 inclusion proof per logged event. It
// is what `consentgraph verify-log --checkpoint FILE` reads.
async function downloadLogProofs() {
  const status = $('#log-proofs-status');
  status.textContent = t('common.preparing');
  try {
    const { me: user } = await gql(`query { me { consentHistory(first: 100) { edges { node {
      sequence purpose action at hash receipt logProof { leafIndex treeSize leafHash leafData hashes checkpoint } } } } } }`);
    const events = user.consentHistory.edges.map(({ node: n }) => n);
    const proven = events.filter((n) => n.logProof);
    const [jwks, current] = await Promise.all([
      fetch('/.well-known/jwks.json').then((r) => r.json()),
      fetch('/.well-known/consent-log/checkpoint').then((r) => r.text()),
    ]);
    const bundle = {
      log: `${location.origin}/.well-known/consent-log`,
      // The proofs of one request are all against one checkpoint.
      checkpoint: proven.length ? proven[0].logProof.checkpoint : current.trim(),
      jwks,
      proofs: proven.map((n) => ({ sequence: n.sequence, purpose: n.purpose, action: n.action, at: n.at,
        hash: n.hash, receipt: n.receipt, ...n.logProof })),
    };
    const url = URL.createObjectURL(new Blob([JSON.stringify(bundle, null, 2)], { type: 'application/json' }));
    const a = h('a', { href: url, download: 'consent-log-proofs.json' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    const waiting = events.length - proven.length;
    status.textContent = plural('center.proofs.saved', proven.length) +
      (waiting ? plural('center.proofs.waiting', waiting) : t('center.proofs.end'));
  } catch (err) {
    status.textContent = plain(err);
  }
}

async function verifyReceipt() {
  const out = $('#receipt-check');
  out.className = 'check';
  out.textContent = t('center.receipt.checking');
  try {
    const { verifyReceipt: v } = await gql(`query($r: String!) { verifyReceipt(receipt: $r) {
      valid reason purpose action issuedAt receiptId policyVersion kid } }`, { r: $('#receipt-text').textContent });
    if (v.valid) {
      out.className = 'check good';
      out.textContent = t(v.action === 'GRANT' ? 'center.receipt.validGrant' : 'center.receipt.validWithdraw', {
        kid: v.kid, purpose: quoted(purposeName(v.purpose)), date: when(v.issuedAt), version: v.policyVersion, id: v.receiptId });
    } else {
      out.className = 'check bad';
      out.textContent = t('center.receipt.invalid', { reason: String(v.reason || '').replace(/[.。]\s*$/, '') });
    }
  } catch (err) {
    out.className = 'check bad';
    out.textContent = plain(err);
  }
}

// A table in a scroll box the keyboard can reach (tabindex 0), named by
// its caption; on a phone its rows become cards (app.css).
function table(caption, head, rows, cls) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption }, h('table', { class: `${cls} stack` },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, head.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((x, i) => h('td', { 'data-label': head[i] }, x)))))));
}

const LINK_CLASS = { PENDING_CONFIRMATION: 'warn', ACTIVE: 'good', UNSUBSCRIBED: '', FAILED: 'bad' };

// Only web links open: an item's URL comes from a third party.
const safeURL = (u) => {
  try {
    const p = new URL(u, location.href);
    return p.protocol === 'https:' || p.protocol === 'http:' ? p.href : null;
  } catch { return null; }
};

async function requestAction(processor, action, title, button) {
  button.disabled = true;
  try {
    await gql('mutation Act($p: String!, $a: ID!) { requestProcessorAction(processor: $p, action: $a) }', { p: processor, a: action });
    banner(t('center.links.requested', { title }));
    pollActivity();
  } catch (err) {
    banner(plain(err), 'error');
    button.disabled = false;
  }
}

function renderLinks(user) {
  const d = $('#processor-links');
  const links = (user.processorLinks || []).filter((l) => l.state !== 'NONE');
  if (!user.processorLinks) {
    d.replaceChildren();
  } else if (!links.length) {
    d.replaceChildren(h('p', { class: 'muted', id: 'no-processor-links' }, t('center.links.none')));
  } else {
    d.replaceChildren(h('ul', { class: 'link-list' }, links.map((l) => {
      const label = named(`center.links.state.${l.state}`, l.state.toLowerCase());
      const cls = LINK_CLASS[l.state] || '';
      return h('li', { 'data-processor': l.processor.name, 'data-state': l.state },
        h('strong', {}, l.processor.name), ' ',
        h('span', { class: `badge link-state ${cls}` }, label),
        l.updatedAt ? h('span', { class: 'muted' }, ' ', t('center.links.since', { date: when(l.updatedAt) })) : null,
        l.items.length ? h('ul', { class: 'link-items' }, l.items.map((it) => {
          const url = it.url && safeURL(it.url);
          return h('li', { 'data-kind': it.kind },
            url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, it.title) : it.title,
            it.expiresAt ? h('span', { class: 'muted' }, ' ', t('center.links.until', { date: when(it.expiresAt) })) : null);
        })) : null,
        l.actions.length ? h('div', { class: 'actions' }, l.actions.map((a) => h('button', {
          type: 'button', class: 'btn secondary', 'data-action': a.id,
          onclick: (e) => requestAction(l.processor.name, a.id, a.title, e.currentTarget),
        }, a.title))) : null);
    })));
  }
}

function renderActivity(user) {
  renderLinks(user);
  const d = $('#disclosures');
  if (!user.disclosures) {
    d.replaceChildren(h('p', { class: 'muted' }, t('center.disclosures.unsupported')));
  } else if (!user.disclosures.edges.length) {
    d.replaceChildren(h('p', { class: 'muted', id: 'no-disclosures' }, t('center.disclosures.none')));
  } else {
    // newest first, as the API answers
    const rows = user.disclosures.edges.map(({ node: n }) => [
      when(n.at), n.processor, purposeName(n.purpose), n.fields.length ? list(n.fields.map(category)) : '—',
      named(`center.disclosures.action.${n.action}`, n.action.toLowerCase()),
    ]);
    d.replaceChildren(table(t('center.disclosures.caption'), ['when', 'recipient', 'purpose', 'data', 'what'].map((k) => t(`center.disclosures.head.${k}`)), rows, 'disclosure-table'));
  }
  const ledger = $('#ledger-state');
  ledger.textContent = t(user.ledgerIntact ? 'center.history.intact' : 'center.history.altered');
  ledger.className = `badge ${user.ledgerIntact ? 'good' : 'bad'}`;
  const hist = user.consentHistory.edges;
  if (!hist.length) {
    $('#history').replaceChildren(h('p', { class: 'muted' }, t('center.history.none')));
    return;
  }
  const rows = [...hist].reverse().map(({ node: n }) => [
    when(n.at), purposeName(n.purpose), named(`center.history.action.${n.action}`, n.action.toLowerCase()),
    named(`center.history.method.${n.method}`, n.method), n.policyVersion,
  ]);
  const total = user.consentHistory.totalCount;
  const parts = [table(t('center.history.caption'), ['when', 'purpose', 'choice', 'made', 'policy'].map((k) => t(`center.history.head.${k}`)), rows, 'history-table')];
  if (total > hist.length) {
    parts.push(h('p', { class: 'muted' }, t('center.history.partial', { shown: number(hist.length), total: number(total) })));
  }
  $('#history').replaceChildren(...parts);
}

let polling = 0;

// Deliveries and forget requests happen in the background shortly after a
// change: look again a few times so they show up without a reload.
function pollActivity() {
  const run = ++polling;
  let n = 0;
  const tick = async () => {
    if (run !== polling || n++ >= 15 || !me) return;
    try {
      const user = await loadMe();
      if (!user) return;
      me = user;
      renderActivity(user);
    } catch { /* next tick */ }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 1000);
}

async function refresh() {
  const user = await loadMe();
  if (!user) {
    if (me) return sessionEnded();
    show('#signed-out');
    return;
  }
  render(user);
}

// ---------- forms ----------

function optional(v) {
  const s = v.trim();
  return s === '' ? null : s;
}

function profileInput(form, { dropEmpty }) {
  const by = optional(form.birthYear.value.normalize('NFKC'));
  const country = countryField(form.country);
  const language = languageField(form.language);
  const input = {
    birthYear: by === null ? null : (/^\d+$/.test(by) ? Number(by) : by),
    country: country || null,
    gender: optional(form.gender.value),
    language: language || null,
  };
  if (typeof input.birthYear === 'string') return { error: ['birthYear', t('center.profile.badBirthYear')] };
  if (country === null) return { error: ['country', t('center.profile.unknownCountry', { name: form.country.value.trim() })] };
  if (language === null) return { error: ['language', t('center.profile.unknownLanguage', { name: form.language.value.trim() })] };
  if (dropEmpty) for (const k of Object.keys(input)) if (input[k] === null) delete input[k];
  return { input };
}

function localError(form, [field, message]) {
  showError(form, fieldError(field, message));
}

// After signing up or in, the long signed-out forms are gone: start at the
// top, with the welcome heading and "My data" in view and focused.
function toTop() {
  window.scrollTo(0, 0);
  $('#signed-in-title').focus({ preventScroll: true });
}

function bind() {
  $('#signup-jump').addEventListener('click', (e) => {
    e.preventDefault();
    $('#signup-form').scrollIntoView({ block: 'start' });
    $('#su-username').focus({ preventScroll: true });
  });

  $('#signup-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      const { input: profile, error } = profileInput(form, { dropEmpty: true });
      if (error) return localError(form, error);
      const input = { username: form.username.value.trim(), password: form.password.value, email: optional(form.email.value) };
      if (Object.keys(profile).length) input.profile = profile;
      await gql(`mutation($i: RegisterInput!) { register(input: $i) { user { id } } }`, { i: input });
      form.reset();
      banner(t('center.signup.done', { name: input.username }));
      await refresh();
      toTop();
    });
  });

  $('#login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      try {
        await gql(`mutation($u: String!, $p: String!) { login(username: $u, password: $p) { user { id } } }`,
          { u: form.username.value.trim(), p: form.password.value });
      } catch (err) {
        // here UNAUTHENTICATED means the name or password is wrong, not an ended session
        if (err.code === 'UNAUTHENTICATED') err.text = t('center.login.failed');
        throw err;
      }
      form.reset();
      banner('');
      await refresh();
      toTop();
    });
  });

  $('#logout').addEventListener('click', async () => {
    try {
      await gql('mutation { logout }');
    } catch (err) {
      banner(plain(err), 'error');
      return;
    }
    me = null;
    banner(t('center.signedOut'));
    show('#signed-out');
  });

  $('#profile-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      const { input, error } = profileInput(form, { dropEmpty: false });
      if (error) return localError(form, error);
      await gql(`mutation($i: ProfileInput!) { updateProfile(input: $i) { id } }`, { i: input });
      await refresh();
      okStatus(form, t('center.profile.saved'));
    });
  });

  $('#email-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      const email = optional(form.email.value);
      await gql(`mutation($e: String) { setEmail(email: $e) { id } }`, { e: email });
      await refresh();
      setStatus(form, t(email ? 'center.email.saved' : 'center.email.removed'));
    });
  });

  $('#verify-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      await gql(`mutation($t: String!) { verifyEmail(token: $t) }`, { t: form.token.value.trim() });
      form.reset();
      await refresh();
      setStatus($('#email-form'), t('center.email.verified'));
    });
  });

  bindPasswords();
  $('#notices-dismiss').addEventListener('click', dismissNotices);
  $('#receipt-verify').addEventListener('click', verifyReceipt);
  $('#log-proofs').addEventListener('click', downloadLogProofs);
  $('#export-link').addEventListener('click', downloadExport);

  $('#delete-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      if (!form.password.value) return localError(form, ['password', t('center.delete.empty')]);
      await gql(`mutation($p: String!) { deleteMyAccount(password: $p) }`, { p: form.password.value });
      form.reset();
      me = null;
      banner('');
      show('#deleted');
      $('#deleted').focus();
    });
  });
}

// ---------- passwords ----------

let resetToken = '';

function openForgot() {
  const form = $('#forgot-form');
  form.hidden = false;
  $('#forgot-open').setAttribute('aria-expanded', 'true');
  form.email.focus();
}

function bindPasswords() {
  $('#forgot-open').addEventListener('click', openForgot);

  $('#forgot-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      const email = form.email.value.trim();
      if (!email) return localError(form, ['email', t('center.forgot.empty')]);
      await gql('mutation($e: String!) { requestPasswordReset(email: $e) }', { e: email });
      // The answer is the same whether or not the address has an account,
      // and so is this message.
      setStatus(form, t('center.forgot.sent'));
    });
  });

  $('#reset-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      if (!form.newPassword.value) return localError(form, ['newPassword', t('center.reset.empty')]);
      try {
        await gql('mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }',
          { t: resetToken, p: form.newPassword.value });
      } catch (err) {
        if (err.field === 'token') {
          // No field holds the token: say it plainly and offer a new link.
          $('#reset-again').hidden = false;
          err.field = '';
          err.text = t('center.reset.badLink');
        }
        throw err;
      }
      resetToken = '';
      form.reset();
      me = null;
      banner(t('center.reset.done'));
      show('#signed-out');
      $('#li-username').focus();
    });
  });

  $('#reset-again').addEventListener('click', () => {
    resetToken = '';
    $('#reset-again').hidden = true;
    show('#signed-out');
    openForgot();
  });

  $('#password-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    submitting(form, async () => {
      if (!form.currentPassword.value) return localError(form, ['currentPassword', t('center.password.emptyCurrent')]);
      if (!form.newPassword.value) return localError(form, ['newPassword', t('center.password.emptyNew')]);
      await gql('mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }',
        { c: form.currentPassword.value, n: form.newPassword.value });
      form.reset();
      okStatus(form, t('center.password.done'));
    });
  });
}

// A reset link from the mail: /?reset=<token>. The token leaves the
// address bar (and so the history) at once; the page keeps it in memory.
function resetFromLink() {
  const params = new URLSearchParams(location.search);
  const token = params.get('reset');
  if (!token) return false;
  params.delete('reset');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  resetToken = token;
  show('#reset');
  $('#rs-password').focus();
  return true;
}

// A confirmation link from the mail: /?verify=<token>.
async function verifyFromLink() {
  const params = new URLSearchParams(location.search);
  const token = params.get('verify');
  if (!token) return;
  history.replaceState(null, '', location.pathname + location.hash);
  try {
    await gql(`mutation($t: String!) { verifyEmail(token: $t) }`, { t: token });
    banner(t('center.email.verifiedLink'));
  } catch (err) {
    banner(t('center.email.verifyFailed', { reason: plain(err) }), 'error');
  }
}

// The export is fetched here rather than followed as a link, so the page
// can say what was saved (or why nothing was).
async function downloadExport(e) {
  e.preventDefault();
  const link = e.currentTarget;
  const status = $('#export-status');
  status.className = 'muted';
  status.textContent = t('common.preparing');
  link.setAttribute('aria-disabled', 'true');
  try {
    const res = await fetch('/export', { credentials: 'same-origin', headers: { 'Accept-Language': document.documentElement.lang } });
    if (res.status === 401) {
      if (me) sessionEnded();
      throw Object.assign(new Error(t('error.UNAUTHENTICATED')), { local: true });
    }
    if (!res.ok) throw Object.assign(new Error(t('center.export.failed', { status: res.status })), { local: true });
    const blob = await res.blob();
    const name = (res.headers.get('Content-Disposition') || '').match(/filename="([^"]+)"/)?.[1] || 'consentgraph-export.json';
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    status.className = 'muted export-done';
    status.textContent = t('center.export.saved', { file: name, size: number(Math.max(1, Math.round(blob.size / 1024))) });
  } catch (err) {
    status.className = 'form-status error';
    status.textContent = plain(err);
  } finally {
    link.removeAttribute('aria-disabled');
  }
}

// After a language change, everything scripts wrote is written again.
async function relabel() {
  // what the reader typed (saved or not) is kept by its code, read before
  // the lists change language, and shown again in the new one
  const fields = [...document.querySelectorAll('input[list="country-names"], input[list="language-names"]')].map((input) => {
    const isCountry = input.getAttribute('list') === 'country-names';
    return { input, isCountry, code: isCountry ? countryField(input) : languageField(input) };
  });
  const retype = () => {
    for (const { input, isCountry, code } of fields) {
      if (code === null) continue; // not a name on the list: left as typed
      (isCountry ? showCountry : showLanguage)(input, code);
    }
  };
  fillNames();
  renderPolicyLink();
  if (me) render(me);
  retype();
  // messages already shown stay in the language they were written in: clear them
  for (const form of document.querySelectorAll('form')) clearErrors(form);
  for (const el of document.querySelectorAll('#export-status, #log-proofs-status, #receipt-check, .field-error-slot')) el.textContent = '';
  banner('');
  if (!$('#receipt').hidden) $('#receipt').hidden = true;
  if (me) {
    // purpose names and descriptions are the server's: read them again in
    // the new language (they stay in the old one if that fails)
    try {
      const fresh = await loadMe();
      if (fresh) {
        render((me = fresh));
        retype();
      }
    } catch { /* until the next refresh */ }
  }
}

async function start() {
  // Handlers first: a form sent before them would go out as a GET with its
  // fields (a password) in the address.
  bind();
  await initI18n();
  fillNames();
  switcher($('#lang-select'), relabel);
  if (resetFromLink()) return;
  await verifyFromLink();
  try {
    await refresh();
  } catch (err) {
    show('#signed-out');
    banner(plain(err), 'error');
  }
}

start();
