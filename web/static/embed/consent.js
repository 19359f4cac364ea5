// Consentgraph consent widget for the operator's own site.
//
//   <script src="https://consent.example.org/embed/consent.js" defer></script>
//
// One classic script, no dependencies, no build step. It is written for host
// pages with a strict Content Security Policy:
//   - no eval, no inline event handlers, no HTML parsed from strings: every element is made
//     with DOM APIs and text goes in through textContent;
//   - no style attributes or <style> elements (both are governed by the host's
//     style-src): the widget lives in a Shadow DOM styled by a constructed
//     stylesheet (adoptedStyleSheets), which CSP does not govern, so the host
//     needs no 'unsafe-inline' and the host's CSS cannot leak in or out;
//   - it talks only to the origin it was loaded from (connect-src).
// Language: the script tag's data-lang, else the host page's <html lang>,
// else the browser's languages; the strings are the `widget.*` keys of the
// service's /locales/<lang>.json (English when none of them is there), and
// purpose descriptions come from the API in that language (Accept-Language).
// Branding: the operator's name and accent colour come from the API
// (`operator`), and colour the widget inside its Shadow DOM only.
//
// It never sets a cookie. The session is the Consentgraph origin's own
// HttpOnly cookie, sent with credentials: 'include'; that cookie is
// SameSite=Lax, so it only travels when the host page and the consent service
// are the same site (e.g. www.example.org and consent.example.org). The one
// thing it stores on the host origin is the policy version the visitor was
// last shown (localStorage, no identifier), so it opens by itself once per
// policy version and otherwise stays a small "Privacy choices" button.
//
// The site learns the visitor's choices from a DOM event on document:
//   document.addEventListener('consentgraph:change', (e) => {
//     e.detail // {purposes: {newsletter: false, ...}, policyVersion: '2', signedIn: true, gpc: false}
//   });
// sent once the state is known and after every change; window.consentgraph.state
// holds the latest detail for scripts that start later.
(() => {
  'use strict';
  const script = document.currentScript;
  if (!script || !script.src) return;
  if (window.consentgraph && window.consentgraph.loaded) return; // included twice
  const origin = new URL(script.src).origin;
  const data = script.dataset;
  // The Privacy Center of the consent service, where visitors sign in.
  const center = data.privacyCenter || `${origin}/`;
  const SEEN_KEY = 'consentgraph:seen-policy';
  const gpc = navigator.globalPrivacyControl === true;

  const api = window.consentgraph = { loaded: true, state: null, open: () => open(true), close: () => close(true) };

  // --- language ---------------------------------------------------------

  // What the widget can say before (or without) its catalogue: a site whose
  // origin the service refuses cannot read /locales/ either.
  const FALLBACK = {
    'widget.toggle': 'Privacy choices',
    'widget.title': 'Your privacy choices',
    'widget.close': 'Close privacy choices',
    'widget.error.network': 'The privacy service cannot be reached from this page right now.',
    'widget.error.status': 'The privacy service answered with status {status}.',
    'widget.error.refused': 'The privacy service refused the request.',
    'widget.error.retry': '{message} Try again later.',
  };
  let strings = {};
  let lang = 'en';

  // The candidates in order of preference, reduced to the catalogues'
  // language tags (ja-JP -> ja), English last.
  function wantedLanguages() {
    const out = [];
    const add = (tag) => {
      const base = String(tag || '').trim().toLowerCase().split(/[-_]/)[0];
      if (/^[a-z]{2,3}$/.test(base) && !out.includes(base)) out.push(base);
    };
    add(data.lang);
    add(document.documentElement.lang);
    for (const l of navigator.languages || [navigator.language]) add(l);
    add('en');
    return out;
  }

  async function loadStrings() {
    // At most three wanted languages, then English if it was not among
    // them: a page and a browser asking only for languages without a
    // catalogue still get words, not keys.
    const tries = wantedLanguages().slice(0, 3);
    if (!tries.includes('en')) tries.push('en');
    for (const tag of tries) {
      try {
        const res = await fetch(`${origin}/locales/${tag}.json`, { mode: 'cors', credentials: 'omit' });
        if (!res.ok) continue;
        strings = await res.json();
        lang = tag;
        return;
      } catch {
        return; // not reachable at all: the fallback strings, in English
      }
    }
  }

  function t(key, vars) {
    const text = strings[key] || FALLBACK[key] || key;
    return text.replace(/\{(\w+)\}/g, (m, k) => (vars && k in vars ? String(vars[k]) : m));
  }

  // --- talking to the consent service -----------------------------------

  const STATE_QUERY = `query ConsentWidget {
    operator { name accentColor }
    policy { version url }
    purposes { id name mechanism description }
    me { consents { purpose { id } granted method needsRenewal } }
  }`;
  const CHANGE = (verb) => `mutation ConsentWidgetChange($p: ID!) {
    ${verb}(purpose: $p) { receipt changed consent { purpose { id } granted method needsRenewal } }
  }`;

  class WidgetError extends Error {
    constructor(message, code) { super(message); this.code = code || ''; }
  }

  async function gql(query, variables) {
    let res;
    try {
      res = await fetch(`${origin}/graphql`, {
        method: 'POST',
        mode: 'cors',
        // The consent service's own session cookie; see the comment on top.
        credentials: 'include',
        // Purpose descriptions (and any error) in the widget's language.
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Accept-Language': lang },
        body: JSON.stringify({ query, variables: variables || {} }),
      });
    } catch {
      // A network failure, or this origin is not in the service's --cors-origins.
      throw new WidgetError(t('widget.error.network'), 'NETWORK');
    }
    let body;
    try { body = await res.json(); } catch { throw new WidgetError(t('widget.error.status', { status: res.status })); }
    if (body.errors && body.errors.length) {
      const e = body.errors[0];
      throw new WidgetError(e.message || t('widget.error.refused'), (e.extensions && e.extensions.code) || '');
    }
    return body.data;
  }

  // --- state ------------------------------------------------------------

  let operator = null; // {name, accentColor}
  let policy = null; // {version, url}
  let purposes = []; // [{id, name, mechanism, description}]
  let consents = null; // Map id -> {granted, method, needsRenewal}; null when signed out
  let failed = '';
  let lastDetail = '';

  // What the site may rely on. Signed out, the widget cannot know the
  // visitor's choices, so it reports each purpose's default, and with GPC it
  // reports every opt-out purpose as off: it cannot tell from here which of
  // them share data, and being wrong the other way would ignore the signal.
  function detail() {
    const out = {};
    for (const p of purposes) {
      if (consents && consents.has(p.id)) out[p.id] = consents.get(p.id).granted;
      else out[p.id] = p.mechanism === 'NOTICE_ONLY' || (p.mechanism === 'OPT_OUT' && !gpc);
    }
    return { purposes: out, policyVersion: policy ? policy.version : null, signedIn: consents !== null, gpc, error: failed || null };
  }

  function emit() {
    const d = detail();
    const key = JSON.stringify(d);
    if (key === lastDetail) return;
    lastDetail = key;
    api.state = d;
    document.dispatchEvent(new CustomEvent('consentgraph:change', { detail: d }));
  }

  async function load() {
    try {
      const d = await gql(STATE_QUERY);
      operator = d.operator;
      policy = d.policy;
      purposes = d.purposes || [];
      consents = d.me ? new Map(d.me.consents.map((c) => [c.purpose.id, c])) : null;
      failed = '';
    } catch (e) {
      failed = e.message;
    }
  }

  // --- the shadow DOM -----------------------------------------------------

  const CSS = `
:host { all: initial; position: fixed; right: 16px; bottom: 16px; z-index: 2147483000;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
button, a { font: inherit; }
.toggle { background: var(--cg-accent, #1f4fd1); color: #fff; border: 0; border-radius: 999px; padding: 10px 16px;
  cursor: pointer; box-shadow: 0 2px 8px rgba(0,0,0,.25); }
.toggle:hover { background: color-mix(in srgb, var(--cg-accent, #1f4fd1) 80%, #000); }
.org { font-size: 13px; font-weight: 600; color: var(--cg-accent, #1f4fd1); margin: 0 32px 2px 0; }
:focus-visible { outline: 3px solid #0b57d0; outline-offset: 2px; }
.toggle:focus-visible { outline-color: #111; }
.panel { position: absolute; right: 0; bottom: 0; width: min(400px, calc(100vw - 32px));
  max-height: min(640px, calc(100vh - 32px)); overflow: auto; background: #fff; border: 1px solid #c9ced6;
  border-radius: 12px; box-shadow: 0 8px 28px rgba(0,0,0,.28); padding: 16px 18px; }
h2 { font-size: 18px; margin: 0 32px 8px 0; line-height: 1.3; }
h2:focus { outline: none; }
h2:focus-visible { outline: 3px solid #0b57d0; }
p { margin: 0 0 10px; }
.close { position: absolute; top: 8px; right: 8px; width: 36px; height: 36px; border: 0; border-radius: 8px;
  background: transparent; color: #1b1f24; font-size: 22px; line-height: 1; cursor: pointer; }
.close:hover { background: #eef0f3; }
ul { list-style: none; margin: 0 0 12px; padding: 0; }
li { border-top: 1px solid #e3e6ea; padding: 10px 0; }
.row { display: flex; gap: 12px; align-items: flex-start; justify-content: space-between; }
.name { font-weight: 600; }
.desc, .small { font-size: 13px; color: #4a5360; margin: 2px 0 0; }
.note { font-size: 13px; margin: 4px 0 0; color: #8a3b00; }
input[type=checkbox] { appearance: none; flex: none; width: 44px; height: 26px; margin: 2px 0 0; border-radius: 13px;
  background: #7a828e; position: relative; cursor: pointer; }
input[type=checkbox]::after { content: ""; position: absolute; top: 3px; left: 3px; width: 20px; height: 20px;
  border-radius: 50%; background: #fff; }
input[type=checkbox]:checked { background: #1f7a3d; }
input[type=checkbox]:checked::after { left: 21px; }
input[type=checkbox]:disabled { cursor: not-allowed; opacity: .6; }
input[type=checkbox][aria-busy=true] { opacity: .6; }
.state { font-size: 12px; color: #4a5360; display: block; text-align: right; margin-top: 2px; white-space: nowrap; }
.gpc { background: #eef4ff; border: 1px solid #b9ccf5; border-radius: 8px; padding: 8px 10px; font-size: 13px; }
.status { font-size: 13px; margin: 0; overflow-wrap: anywhere; }
.status:not(:empty) { margin: 0 0 10px; padding: 6px 10px; border-radius: 8px; background: #f3f5f7; }
.status.ok { color: #1f6b36; }
.status.err { color: #a1260d; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
.actions a { display: inline-block; padding: 8px 14px; border-radius: 8px; text-decoration: none;
  border: 1px solid var(--cg-accent, #1f4fd1); color: var(--cg-accent, #1f4fd1); }
.actions a.primary { background: var(--cg-accent, #1f4fd1); color: #fff; }
a { color: var(--cg-accent, #1f4fd1); }
`;

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k in e && k !== 'role' && !k.startsWith('aria')) e[k] = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  const host = el('div', { 'data-consentgraph-widget': '' });
  const root = host.attachShadow({ mode: 'open' });
  let sheet = null;
  if ('adoptedStyleSheets' in root && typeof CSSStyleSheet === 'function') {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  }

  // The operator's accent, as a custom property of the shadow root only.
  // The server checked its contrast on white; the pattern keeps anything
  // else out of the stylesheet.
  function applyAccent() {
    const c = operator && operator.accentColor;
    if (!sheet || !c || !/^#[0-9a-fA-F]{6}$/.test(c)) return;
    sheet.insertRule(`:host { --cg-accent: ${c}; }`, sheet.cssRules.length);
  }
  // Without constructed stylesheets (very old browsers) the widget still
  // works, unstyled; a <style> element would need 'unsafe-inline' on the host.

  const toggle = el('button', { type: 'button', class: 'toggle', 'aria-expanded': 'false', 'aria-controls': 'cg-panel' });
  const org = el('p', { class: 'org', 'data-cg': 'operator', hidden: true });
  const heading = el('h2', { id: 'cg-title', tabIndex: -1 });
  const closeBtn = el('button', { type: 'button', class: 'close', text: '×' });
  const body = el('div');
  const status = el('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const panel = el('section', { id: 'cg-panel', class: 'panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'cg-title', hidden: true },
    closeBtn, org, heading, status, body);
  root.append(toggle, panel);

  function open(focus) {
    panel.hidden = false;
    toggle.hidden = true;
    toggle.setAttribute('aria-expanded', 'true');
    if (focus) heading.focus();
  }

  function close(focus) {
    panel.hidden = true;
    toggle.hidden = false;
    toggle.setAttribute('aria-expanded', 'false');
    if (focus) toggle.focus();
  }

  toggle.addEventListener('click', () => open(true));
  closeBtn.addEventListener('click', () => close(true));
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.stopPropagation(); close(true); }
  });

  // The texts that exist before any answer, in the widget's language.
  function applyStrings() {
    host.lang = lang;
    toggle.textContent = t('widget.toggle');
    heading.textContent = t('widget.title');
    closeBtn.setAttribute('aria-label', t('widget.close'));
    org.textContent = operator ? operator.name : '';
    org.hidden = !operator;
  }

  // A purpose's name: the catalogue's for the shipped purposes, else made
  // from its id (an operator's own purpose has no translation here).
  const title = (id) => (purposes.find((p) => p.id === id)?.name || id.replace(/[_-]+/g, ' ').replace(/^./, (c) => c.toUpperCase()));
  const operatorName = () => (operator ? operator.name : new URL(origin).hostname);

  function gpcNotice() {
    if (!gpc) return null;
    return el('p', { class: 'gpc', 'data-cg': 'gpc' }, t('widget.gpc'));
  }

  function policyLine() {
    if (!policy) return null;
    const p = el('p', { class: 'small' }, `${t('widget.policyVersion', { version: policy.version })} `);
    if (policy.url) p.append(el('a', { href: new URL(policy.url, origin).href, text: t('widget.readPolicy'), target: '_blank', rel: 'noopener' }));
    return p;
  }

  function renderSignedOut() {
    const list = el('ul');
    for (const p of purposes) {
      list.append(el('li', { 'data-purpose': p.id },
        el('span', { class: 'name', text: title(p.id) }),
        el('p', { class: 'desc', text: p.description }),
        el('p', { class: 'desc', text: t(`widget.mechanism.${p.mechanism}`) })));
    }
    fill(
      el('p', { text: t('widget.intro.signedOut', { name: operatorName() }) }),
      gpcNotice(), list, policyLine(),
      el('div', { class: 'actions' },
        el('a', { class: 'primary', href: `${center}#login-form`, text: t('widget.signIn'), 'data-cg': 'sign-in' }),
        el('a', { href: `${center}#signup-form`, text: t('widget.signUp'), 'data-cg': 'sign-up' })));
  }

  function stateText(c) {
    if (c.needsRenewal) return t('widget.state.renewal');
    if (c.granted) return t('widget.state.on');
    return c.method === 'GPC' ? t('widget.state.gpc') : t('widget.state.off');
  }

  function renderSignedIn() {
    const list = el('ul');
    for (const p of purposes) {
      const c = consents.get(p.id) || { granted: p.mechanism !== 'OPT_IN', method: null, needsRenewal: false };
      const nameId = `cg-name-${p.id}`;
      const descId = `cg-desc-${p.id}`;
      const input = el('input', {
        type: 'checkbox', role: 'switch', id: `cg-switch-${p.id}`, checked: c.granted,
        disabled: p.mechanism === 'NOTICE_ONLY', 'aria-labelledby': nameId, 'aria-describedby': descId,
      });
      input.dataset.purpose = p.id;
      input.addEventListener('change', () => change(p.id, input));
      const notes = [];
      if (c.needsRenewal) notes.push(el('p', { class: 'note', text: t('widget.note.renewal', { purpose: title(p.id) }) }));
      if (!c.granted && c.method === 'GPC') notes.push(el('p', { class: 'note', text: t('widget.note.gpc') }));
      list.append(el('li', { 'data-purpose': p.id },
        el('div', { class: 'row' },
          el('div', null,
            el('label', { class: 'name', id: nameId, htmlFor: input.id, text: title(p.id) }),
            el('p', { class: 'desc', id: descId, text: p.description })),
          el('div', null, input, el('span', { class: 'state', 'data-cg': 'state', text: p.mechanism === 'NOTICE_ONLY' ? t('widget.state.always') : stateText(c) }))),
        ...notes));
    }
    // The link sits where the language puts {link} in the sentence.
    const [before, after] = t('widget.manage').split('{link}');
    const manage = el('p', { class: 'small' }, before,
      el('a', { href: center, target: '_blank', rel: 'noopener', text: t('widget.manage.link') }), after || '');
    fill(el('p', { text: t('widget.intro.signedIn', { name: operatorName() }) }),
      gpcNotice(), list, policyLine(), manage);
  }

  // Like replaceChildren, leaving out the parts that do not apply (null).
  function fill(...parts) {
    body.replaceChildren(...parts.filter(Boolean));
  }

  function render() {
    if (failed && !purposes.length) {
      fill(el('p', { class: 'status err', 'data-cg': 'error', text: t('widget.error.retry', { message: failed }) }));
      return;
    }
    if (consents) renderSignedIn(); else renderSignedOut();
  }

  function receiptID(jws) {
    try {
      const part = jws.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
      return claims.consentReceiptID || claims.jti || '';
    } catch {
      return '';
    }
  }

  async function change(id, input) {
    const grant = input.checked;
    input.setAttribute('aria-busy', 'true');
    input.disabled = true;
    status.className = 'status';
    status.textContent = t('widget.saving');
    try {
      const d = await gql(CHANGE(grant ? 'grantConsent' : 'withdrawConsent'), { p: id });
      const r = d[grant ? 'grantConsent' : 'withdrawConsent'];
      consents.set(id, r.consent);
      render();
      const rid = receiptID(r.receipt);
      status.className = 'status ok';
      const onOff = r.consent.granted ? 'on' : 'off';
      status.textContent = r.changed
        ? t(`widget.saved.${onOff}`, { purpose: title(id), receipt: rid }).replace(/ {2,}/g, ' ')
        : t(`widget.unchanged.${onOff}`, { purpose: title(id) });
      status.dataset.receipt = rid;
      emit();
      // Keep the keyboard where it was: render() replaced the switch.
      const again = root.getElementById(`cg-switch-${id}`);
      if (again) again.focus();
    } catch (e) {
      input.checked = !grant;
      input.disabled = false;
      input.removeAttribute('aria-busy');
      status.className = 'status err';
      if (e.code === 'UNAUTHENTICATED') {
        // The session ended: show what a signed-out visitor sees.
        consents = null;
        render();
        emit();
        status.textContent = t('widget.sessionEnded');
      } else {
        status.textContent = t('widget.notSaved', { message: e.message });
      }
    }
  }

  // Opens by itself once per policy version: the version shown last is kept
  // in the host origin's localStorage (a version string, nothing that
  // identifies anyone). A consent that needs renewal opens it as well, since
  // that is the server's own record and holds in every browser.
  function shouldOpen() {
    if (!policy) return false;
    const renew = consents !== null && [...consents.values()].some((c) => c.needsRenewal);
    let unseen = false;
    try {
      unseen = localStorage.getItem(SEEN_KEY) !== policy.version;
      if (unseen) localStorage.setItem(SEEN_KEY, policy.version);
    } catch {
      // Storage blocked: better a closed button than a notice on every page.
    }
    return renew || unseen;
  }

  async function refresh() {
    await load();
    applyStrings();
    render();
    emit();
  }

  async function start() {
    // Added once its strings are known, so the button does not change
    // language under the visitor's eyes.
    await loadStrings();
    applyStrings();
    document.body.append(host);
    await load();
    applyStrings();
    applyAccent();
    render();
    emit();
    if (shouldOpen()) open(false);
    // The visitor may sign in in another tab (the Privacy Center) and come
    // back: pick the new state up then.
    let last = Date.now();
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible' || Date.now() - last < 2000) return;
      last = Date.now();
      refresh();
    });
  }

  if (document.body) start();
  else document.addEventListener('DOMContentLoaded', start, { once: true });
})();
