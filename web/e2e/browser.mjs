// Browser tests of the Privacy Center and the partner console, driving
// Debian's headless Chromium through playwright-core. Run by
// web/e2e/privacycenter_test.go against a real server:
//
//   BASE_URL=http://127.0.0.1:PORT PARTNER_KEY=cgp_... OUT_DIR=test-output \
//   [EXPECT_PROCESSOR=name] [EXPECT_NEWSLETTER=name] [MAIL_LINKS=url] node web/e2e/browser.mjs
//
// Every failed expectation throws; the process exits non-zero with the
// reason and the page's console errors.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { executablePath, outDir } from './common.mjs';
import { axeBothSizes, axeViolations } from './axe.mjs';

// The catalogues, read as the pages read them, for the language checks.
const CATALOGUE = Object.fromEntries(['en', 'ja'].map((l) => [l,
  JSON.parse(readFileSync(new URL(`../static/locales/${l}.json`, import.meta.url), 'utf8'))]));

const base = process.env.BASE_URL;
const partnerKey = process.env.PARTNER_KEY;
// A second partner with a small budget: it must inherit nothing from the
// first, and its budget is small enough to trip the cost guard.
const partnerKey2 = process.env.PARTNER_KEY_2 || '';
const expectProcessor = process.env.EXPECT_PROCESSOR || '';
const mailLinks = process.env.MAIL_LINKS || '';
const adminToken = process.env.ADMIN_TOKEN || '';
const expectNewsletter = process.env.EXPECT_NEWSLETTER || '';
if (!base || !partnerKey) throw new Error('BASE_URL and PARTNER_KEY must be set');

const STEP_TIMEOUT = 15000;
const problems = [];
let step = 'start';

// The walks of both languages run side by side, so a failure names its
// walk's own step (see walker), not the global one.
function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

// One language's walk: its catalogue T, its step (for failure messages),
// its screenshots and its checks.
function walker(lang) {
  const L = { lang, T: CATALOGUE[lang], step: 'start', shots: [] };
  L.check = (cond, msg) => expect(cond, msg);
  // fn(L) with a failure prefixed by the language and the walk's step
  L.run = async (fn, ...args) => {
    try {
      return await fn(...args, L);
    } catch (e) {
      e.message = `${lang}: ${L.step}: ${e.message}`;
      throw e;
    }
  };
  return L;
}

const reEsc = (x) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// The catalogue text of key with params filled in, as the pages' t() does.
function fill(T, key, params = {}) {
  expect(key in T, `no catalogue key ${key}`);
  return T[key].replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
}

// A pattern of the catalogue text of key: a param given as a string is
// matched as it is, one given as a RegExp as that pattern, the others as
// any text. Anchored at both ends unless whole is false.
function pattern(T, key, params = {}, whole = true) {
  expect(key in T, `no catalogue key ${key}`);
  const src = T[key].split(/(\{\w+\})/).map((part) => {
    const m = /^\{(\w+)\}$/.exec(part);
    if (!m) return reEsc(part);
    const v = params[m[1]];
    return v === undefined ? '.+?' : v instanceof RegExp ? `(?:${v.source})` : reEsc(String(v));
  }).join('');
  return new RegExp(whole ? `^${src}$` : src);
}

// Presses Space on a purpose's switch and makes sure the switch on the page
// took it: a list drawn anew (after a language switch or a refresh) between
// the focus and the key leaves the key on a detached switch, so then it is
// pressed again on the new one; never twice on a switch that took it.
async function pressSwitch(page, purpose, want) {
  const sel = `#purpose-${purpose}-switch`;
  for (let i = 0; i < 3; i++) {
    await page.focus(sel);
    await page.keyboard.press('Space');
    const took = await page.waitForFunction(([s, w]) => document.querySelector(s)?.checked === w, [sel, want], { timeout: 3000 })
      .then(() => true, () => false);
    if (took) return;
  }
  throw new Error(`the ${purpose} switch did not take the key three times`);
}

async function text(page, sel) {
  return (await page.locator(sel).first().textContent({ timeout: STEP_TIMEOUT })) || '';
}

// A screenshot of a page state, and axe-core on that state at both sizes.
// Violations are collected so one run lists them all; the run fails at the end.
const axeFound = [];
let axeStates = 0;
// In a language's walk, the state is captured at both sizes in that
// language (see capture): <name>-<lang>-<width>x<height>.png.
async function shot(page, name, L) {
  if (L) return capture(page, `${name}-${L.lang}`, L.lang, L.check, L.shots);
  await page.screenshot({ path: join(outDir, `${name}.png`), fullPage: true });
  console.log(`screenshot ${join(outDir, name)}.png`);
  await checkA11y(page, name);
}

async function checkA11y(page, name) {
  const found = await axeBothSizes(page, name);
  axeStates++;
  for (const v of found) console.log(`axe: ${v}`);
  axeFound.push(...found);
}

// No horizontal scrolling: the page fits a phone's width.
async function fitsWidth(page) {
  const { scroll, inner } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  expect(scroll <= inner + 1, `page is ${scroll}px wide in a ${inner}px viewport`);
}

// Every visible control has a label (or a name of its own, for buttons).
async function labelled(page) {
  const bare = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 80)));
  expect(bare.length === 0, `controls without a label: ${bare.join(', ')}`);
}

// The focus ring of the focused element: a solid outline of at least 2 px
// whose colour has a contrast of at least 3:1 against the background it
// is drawn on (the nearest opaque background up the tree).
async function focusRing(page, what) {
  const r = await page.evaluate(() => {
    const el = document.activeElement;
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const cs = getComputedStyle(el);
    let bg = [255, 255, 255];
    for (let p = el.parentElement; p; p = p.parentElement) {
      const c = rgb(getComputedStyle(p).backgroundColor);
      if (c.length >= 3 && (c.length === 3 || c[3] === 1)) { bg = c.slice(0, 3); break; }
    }
    const ring = rgb(cs.outlineColor).slice(0, 3);
    const [a, b] = [lum(ring), lum(bg)].sort((x, y) => y - x);
    return { id: el.id || el.className || el.tagName, style: cs.outlineStyle, width: parseFloat(cs.outlineWidth), ratio: (a + 0.05) / (b + 0.05) };
  });
  expect(r.style === 'solid' && r.width >= 2 && r.ratio >= 3,
    `the focus ring of ${what} (${r.id}) is ${r.style} ${r.width}px at ${r.ratio.toFixed(2)}:1 against its background`);
}

function watch(page) {
  // API answers with an error status (a wrong key, a wrong password) are
  // expected; anything else logged as an error (a CSP violation, an
  // exception) fails the test.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
}

// The welcome heading and "My data" are in view at the top of the page.
async function atTop(page) {
  await page.waitForFunction(() => window.scrollY < 10);
  const boxes = await page.evaluate(() => ['#signed-in-title', '#data-title'].map((s) => {
    const r = document.querySelector(s).getBoundingClientRect();
    return r.top >= 0 && r.bottom <= window.innerHeight ? '' : `${s} at ${Math.round(r.top)}–${Math.round(r.bottom)} of ${window.innerHeight}`;
  }).filter(Boolean));
  expect(boxes.length === 0, `not in view: ${boxes.join(', ')}`);
  expect(await page.evaluate(() => document.activeElement.id) === 'signed-in-title', 'focus is not on the welcome heading');
}

// The words of a language's walk: the catalogue text of a key, its
// pattern, a quoted purpose name.
function words(L) {
  const T = L.T;
  return {
    T,
    f: (key, params) => fill(T, key, params),
    re: (key, params, whole) => pattern(T, key, params, whole),
    q: (id) => fill(T, 'common.quoted', { text: T[`server.purpose.${id}.name`] }),
    germany: { en: 'Germany', ja: 'ドイツ' }[L.lang],
  };
}

// The Privacy Center up to the phone-sized screen, in L's language. The
// policy change and the deletion (privacyCenterEnd) follow once every
// language has come this far, as the change withdraws the newsletter of all.
async function privacyCenter(context, L) {
  const { T, f, re, q, germany } = words(L);
  const page = await context.newPage();
  watch(page);
  page.setDefaultTimeout(STEP_TIMEOUT);

  L.step = 'phone: sign in is reachable without scrolling';
  {
    const phone = await context.newPage();
    watch(phone);
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(`${base}/`);
    await phone.locator('#login-form').waitFor();
    const b = await phone.locator('#login-form button[type=submit]').boundingBox();
    expect(b && b.y + b.height <= 844, `the sign-in button is at ${b && Math.round(b.y)}px on an 844px screen`);
    expect(await phone.isVisible('#signup-jump'), 'no way to jump to sign-up');
    await phone.click('#signup-jump');
    expect(await phone.evaluate(() => document.activeElement.id) === 'su-username', '"Create an account" does not lead to the sign-up form');
    await phone.close();
  }

  L.step = 'verification link with a bad token';
  await page.goto(`${base}/?verify=not-a-real-token`);
  await page.locator('#banner.error').waitFor();
  expect(re('center.email.verifyFailed').test(await text(page, '#banner')), `the bad link's error reads "${await text(page, '#banner')}"`);
  expect(!page.url().includes('verify='), 'the token stays in the address bar');

  L.step = 'sign-in with a wrong password';
  await page.goto(`${base}/`);
  await page.fill('#li-username', 'nobody_here');
  await page.fill('#li-password', 'not the password');
  await page.press('#li-password', 'Enter');
  await page.locator('#login-form .form-status.error').waitFor();
  const lerr = await text(page, '#login-form .form-status');
  expect(lerr.length > 10 && !/GRAPHQL|null|undefined/.test(lerr), `sign-in error reads "${lerr}"`);
  console.log(`sign-in error: ${lerr}`);

  L.step = 'sign-up error next to the field';
  await page.goto(`${base}/`);
  await page.locator('#signup-form').waitFor();
  await labelled(page);
  await shot(page, 'center-signed-out', L);
  await page.fill('#su-username', 'ab');
  await page.fill('#su-password', 'correct horse battery');
  await page.press('#su-password', 'Enter');
  const err = page.locator('#su-username').locator('xpath=ancestor::div[contains(@class,"field")]').locator('.field-error');
  await err.waitFor();
  expect((await err.textContent()) === T['error.BAD_USER_INPUT.username'], `username error reads "${await err.textContent()}"`);
  expect(await page.getAttribute('#su-username', 'aria-invalid') === 'true', 'username not marked aria-invalid');
  expect(await page.evaluate(() => document.activeElement.id) === 'su-username', 'focus did not move to the field in error');
  await shot(page, 'center-signup-error', L);

  L.step = 'sign up without an email';
  const username = `ada_${L.lang}_${Date.now().toString(36)}`;
  await page.fill('#su-username', username);
  await page.fill('#su-birthYear', '1990');
  // a name, not a code: "Germany" must save DE (the webhook test below
  // checks DE reached the processor)
  await page.fill('#su-country', germany);
  // sent from below, where the end of the sign-up form is on a phone
  const sentFrom = await page.evaluate(() => { window.scrollTo(0, document.body.scrollHeight); document.querySelector('#signup-form').requestSubmit(); return window.scrollY; });
  expect(sentFrom > 100, `the page could not be scrolled (${sentFrom}): the next check proves nothing`);
  await page.locator('#signed-in').waitFor();
  await atTop(page);
  expect((await text(page, '#session-name')) === username, 'signed-in name is wrong');
  expect((await text(page, '#email-state')) === T['center.email.none'], `email state reads "${await text(page, '#email-state')}"`);
  expect((await page.inputValue('#pf-country')) === germany, `country shows as "${await page.inputValue('#pf-country')}"`);
  expect(!(await page.isChecked('#purpose-surveys-switch')), 'surveys is opt-in and must start off');
  expect(await page.isDisabled('#purpose-essential-switch'), 'a notice-only purpose cannot be switched off');
  await labelled(page);
  L.step = 'signed in: one h1, tables reachable, focus rings 3:1';
  const h1s = await page.evaluate(() => [...document.querySelectorAll('h1')].filter((x) => x.offsetParent !== null).map((x) => x.textContent));
  expect(h1s.length === 1 && h1s[0] === f('center.signedIn.welcome', { name: username }), `the signed-in page's h1s: ${JSON.stringify(h1s)}`);
  await page.focus('#em-email');
  await focusRing(page, 'an input');
  await page.keyboard.press('Tab');
  await focusRing(page, 'a secondary button');
  await page.focus('.brand');
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement.id) === 'lang-select', 'Tab from the brand does not reach the language switcher');
  await focusRing(page, 'the language switcher');
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => document.activeElement.id) === 'logout', 'Tab from the switcher does not reach Sign out');
  await focusRing(page, 'the top bar\'s button');
  await page.evaluate(() => document.activeElement.blur());
  await shot(page, 'center-signed-in', L);

  L.step = 'profile error next to the field';
  // a name that is no country is refused in the page and nothing is saved
  const saves = [];
  const onRequest = (r) => { if ((r.postData() || '').includes('updateProfile')) saves.push(r); };
  page.on('request', onRequest);
  await page.fill('#pf-country', 'Germny');
  await page.click('#profile-form button[type=submit]');
  const perr = page.locator('#profile-form .field-error');
  await perr.waitFor();
  expect((await perr.textContent()) === f('center.profile.unknownCountry', { name: 'Germny' }), `country error reads "${await perr.textContent()}"`);
  expect(await page.getAttribute('#pf-country', 'aria-invalid') === 'true', 'country not marked aria-invalid');
  page.off('request', onRequest);
  expect(saves.length === 0, 'an unknown country name was sent to the server');
  await page.fill('#pf-country', germany);
  await page.click('#profile-form button[type=submit]');
  await page.locator('#profile-form .form-status.ok', { hasText: T['center.profile.saved'] }).waitFor();
  // an old "saved" must not stand next to a later change
  await page.waitForFunction(() => document.querySelector('#profile-form .form-status').textContent === '', null, { timeout: 12000 });

  L.step = 'grant surveys with the keyboard';
  // The grant is held back a moment so the saving state can be seen.
  let release;
  const held = new Promise((r) => { release = r; });
  await page.route('**/graphql', async (route) => {
    if ((route.request().postData() || '').includes('grantConsent')) await held;
    await route.continue();
  });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.focus('#purpose-surveys-switch');
  await page.keyboard.press('Space');
  await page.locator('#purpose-surveys[aria-busy="true"] .saving-label', { hasText: T['center.consent.saving'] }).waitFor();
  const look = await page.evaluate(() => {
    const st = (s) => { const c = getComputedStyle(document.querySelector(s)); return `${c.opacity}/${c.borderStyle}/${c.cursor}`; };
    return { saving: st('#purpose-surveys-switch'), locked: st('#purpose-essential-switch'),
      choice: document.querySelector('#purpose-surveys .consent-state').textContent,
      checked: document.querySelector('#purpose-surveys-switch').checked };
  });
  expect(look.saving !== look.locked, `a saving switch looks like the locked one (${look.saving})`);
  expect(look.checked && look.choice === T['center.consent.savingGrant'], `while saving the switch is ${look.checked ? 'on' : 'off'} and "Your choice" reads "${look.choice}"`);
  await shot(page, 'center-consent-saving', L);
  release();
  await page.locator('#receipt').waitFor();
  await page.unroute('**/graphql');
  await page.waitForFunction(() => document.querySelector('#purpose-surveys-switch')?.checked === true);
  await page.locator('#purpose-surveys .consent-state', { hasText: new RegExp(`^${reEsc(T['center.consent.allowed'])}`) }).waitFor();
  expect(await page.isHidden('#purpose-surveys .saving-label') && !(await page.getAttribute('#purpose-surveys', 'aria-busy')), 'the saving state stays');
  expect(await page.getAttribute('#receipt-summary', 'aria-live') === 'polite', 'the receipt is not announced');
  const rbox = await page.evaluate(() => { const r = document.querySelector('#receipt-summary').getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight]; });
  expect(rbox[0] >= 0 && rbox[1] <= rbox[2], `the receipt is out of view at ${rbox.map(Math.round).join('/')}`);
  expect(re('center.receipt.allowed', { purpose: q('surveys') }, false).test(await text(page, '#receipt-summary')), `the receipt summary reads "${await text(page, '#receipt-summary')}"`);
  // the switch moves at once; the state line follows the server's answer
  await page.locator('#purpose-surveys .consent-state', { hasText: re('center.consent.changed', { state: T['center.consent.allowed'], how: T['center.method.EXPLICIT'] }) }).waitFor();
  await page.locator('.history-table tbody tr').first().waitFor();
  const hist = await text(page, '.history-table tbody tr');
  expect(hist.includes(T['server.purpose.surveys.name']) && hist.includes(T['center.history.action.GRANT']), `history row reads "${hist}"`);
  expect((await text(page, '#ledger-state')) === T['center.history.intact'], 'ledger is not reported intact');

  if (expectProcessor) {
    L.step = 'the disclosure appears';
    expect((await text(page, '#purpose-surveys .third-parties')).includes(expectProcessor), 'surveys does not list its processor');
    await page.locator('.disclosure-table tbody tr', { hasText: expectProcessor }).first().waitFor({ timeout: 40000 });
    const row = await text(page, '.disclosure-table tbody tr');
    expect(row.includes(T['server.purpose.surveys.name']) && row.includes(T['common.category.user.demographic.country']) &&
      row.includes(T['center.disclosures.action.DELIVERED']), `disclosure row reads "${row}"`);
    console.log(`disclosure shown: ${row.replace(/\s+/g, ' ')}`);
  }

  L.step = 'verify the receipt';
  await page.click('#receipt-verify');
  await page.locator('#receipt-check.good').waitFor();
  expect(re('center.receipt.validGrant', { purpose: q('surveys') }).test(await text(page, '#receipt-check')), `the receipt check reads "${await text(page, '#receipt-check')}"`);

  L.step = 'download the receipt';
  const [rdl] = await Promise.all([page.waitForEvent('download'), page.click('#receipt-download')]);
  const jws = readFileSync(await rdl.path(), 'utf8');
  expect(jws.split('.').length === 3 && jws === (await text(page, '#receipt-text')), 'downloaded receipt is not the shown JWS');
  await shot(page, 'center-consents', L);
  const visible = await page.evaluate(() => document.body.innerText);
  expect(!/\b(null|undefined|NaN|\[object Object\])\b/.test(visible), 'the page shows a raw null/undefined/NaN value');

  if (mailLinks) {
    L.step = 'add an email and follow the mailed link';
    const address = `${username}@example.org`;
    await page.fill('#em-email', address);
    await page.press('#em-email', 'Enter');
    await page.locator('#email-form .form-status.ok').waitFor();
    // the page cannot know whether mail goes out: it never claims it was sent
    expect((await text(page, '#email-form .form-status')) === T['center.email.saved'], `the saved address reads "${await text(page, '#email-form .form-status')}"`);
    expect(!/we sent/i.test(CATALOGUE.en['center.email.saved']), 'the page claims a mail was sent');
    expect((await text(page, '#email-state')) === T['center.email.unconfirmed'], 'a new address is not shown as unconfirmed');
    expect(await page.isVisible('#verify-form'), 'no way to enter the code from the mail');
    const res = await fetch(`${mailLinks}/?to=${encodeURIComponent(address)}`);
    const link = await res.text();
    expect(res.ok && link.startsWith('/?verify='), `no verification link arrived: ${link}`);
    await page.goto(`${base}${link}`);
    await page.locator('#banner.ok', { hasText: T['center.email.verifiedLink'] }).waitFor();
    expect(!page.url().includes('verify='), 'the token stays in the address bar');
    await page.locator('#email-state', { hasText: new RegExp(`^${reEsc(T['center.email.confirmed'])}$`) }).waitFor();
    expect(await page.isHidden('#verify-form'), 'the code form is still shown for a confirmed address');
    await shot(page, 'center-email-confirmed', L);

    if (expectNewsletter) {
      L.step = 'newsletter: the confirmation is pending';
      const link = `#processor-links li[data-processor="${expectNewsletter}"]`;
      await pressSwitch(page, 'newsletter', true);
      await page.locator('#receipt-summary', { hasText: re('center.receipt.allowed', { purpose: q('newsletter') }, false) }).waitFor();
      await page.locator(`${link}[data-state="PENDING_CONFIRMATION"]`).waitFor({ timeout: 40000 });
      expect((await text(page, `${link} .link-state`)).includes(T['center.links.state.PENDING_CONFIRMATION']), 'the pending state is not said in words');

      L.step = 'newsletter: ask for the mail again';
      // The action's title is the processor's, in the page's language
      // (smtp_newsletter's manifest gives English and Japanese).
      const resendTitle = { en: 'Resend the confirmation mail', ja: '確認メールを再送する' }[L.lang];
      const resend = page.locator(`${link} button[data-action="resendConfirmation"]`);
      expect((await resend.textContent()).trim() === resendTitle, `the resend action reads "${await resend.textContent()}", want "${resendTitle}"`);
      await resend.click();
      await page.locator('#banner.ok', { hasText: re('center.links.requested') }).waitFor();
      await shot(page, 'center-links', L);

      L.step = 'newsletter: follow the confirmation link';
      // The newest mail's link is the one that works (a resend retires
      // the earlier link): retry until the newest link confirms.
      let ok = false;
      for (let i = 0; i < 40 && !ok; i++) {
        const res = await fetch(`${mailLinks}/?kind=confirm&to=${encodeURIComponent(address)}`);
        const l = await res.text();
        ok = res.ok && l.startsWith('/plugins/') && (await fetch(`${base}${l}`)).ok;
        if (!ok) await page.waitForTimeout(500);
      }
      expect(ok, 'the newest confirmation link did not confirm');
      await page.reload();
      await page.locator(`${link}[data-state="ACTIVE"]`).waitFor();
      expect((await text(page, `${link} .link-state`)).includes(T['center.links.state.ACTIVE']), 'the active state is not said in words');
      expect(await page.locator(`${link} button[data-action]`).count() === 0, 'an active subscription still offers the resend');
      console.log('newsletter link: pending, resent, active');
    }
  }

  L.step = 'download the export';
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-link')]);
  await exportFile(page, username, L.lang);

  L.step = 'download the consent log proofs';
  let bundle;
  for (let i = 0; i < 20; i++) { // the log takes the event within about a second
    const [ldl] = await Promise.all([page.waitForEvent('download'), page.click('#log-proofs')]);
    expect(ldl.suggestedFilename() === 'consent-log-proofs.json', `proofs file is named ${ldl.suggestedFilename()}`);
    bundle = JSON.parse(readFileSync(await ldl.path(), 'utf8'));
    if (bundle.proofs.length) break;
    await page.waitForTimeout(300);
  }
  expect(bundle.checkpoint.split('.').length === 3 && bundle.jwks.keys.length > 0, 'the bundle lacks the checkpoint or the keys');
  const proof = bundle.proofs[0];
  expect(proof && proof.purpose === 'surveys' && Array.isArray(proof.hashes) && proof.checkpoint === bundle.checkpoint &&
    proof.treeSize > proof.leafIndex && typeof proof.leafHash === 'string', `the bundle holds no proof: ${JSON.stringify(bundle.proofs)}`);
  const proofsSaid = await text(page, '#log-proofs-status');
  expect(re('center.proofs.saved.one', {}, false).test(proofsSaid) || re('center.proofs.saved.other', {}, false).test(proofsSaid), `the proofs status reads "${proofsSaid}"`);
  console.log(`log proofs downloaded: ${bundle.proofs.length}, leaf ${proof.leafIndex} of ${proof.treeSize}`);

  if (expectProcessor) {
    L.step = 'withdraw surveys: the processor is told to forget';
    await pressSwitch(page, 'surveys', false);
    await page.locator('#receipt-summary', { hasText: re('center.receipt.withdrew', { purpose: q('surveys') }, false) }).waitFor();
    await page.locator('#purpose-surveys .consent-state', { hasText: re('center.consent.changed', { state: T['center.consent.notAllowed'], how: T['center.method.EXPLICIT'] }) }).waitFor();
    await page.locator('.disclosure-table tbody tr', { hasText: T['center.disclosures.action.FORGOTTEN'] }).first().waitFor({ timeout: 40000 });
    await page.locator('.history-table tbody tr', { hasText: T['center.history.action.WITHDRAW'] }).first().waitFor();
  }

  L.step = 'sign out and in again';
  await page.click('#logout');
  await page.locator('#signed-out').waitFor();
  expect((await text(page, '#banner')) === T['center.signedOut'], `the banner reads "${await text(page, '#banner')}"`);
  await page.fill('#li-username', username);
  await page.fill('#li-password', 'correct horse battery');
  await page.evaluate(() => { window.scrollTo(0, document.body.scrollHeight); document.querySelector('#login-form').requestSubmit(); });
  await page.locator('#signed-in').waitFor();
  await atTop(page);
  expect((await text(page, '#session-name')) === username, 'signed in as someone else');

  L.step = 'phone-sized screen';
  const phone = await context.newPage();
  watch(phone);
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(`${base}/`);
  await phone.locator('#signed-in').waitFor();
  await fitsWidth(phone);
  L.step = 'phone-sized screen: activity tables';
  await phone.locator('.history-table tbody tr').first().waitFor();
  const cut = await phone.evaluate(() => [...document.querySelectorAll('.history-table td, .disclosure-table td')].map((td) => {
    const r = td.getBoundingClientRect();
    return r.right <= window.innerWidth + 0.5 && r.left >= -0.5 && td.scrollWidth <= td.clientWidth + 1 ? '' : `${td.dataset.label} "${td.textContent}" at ${Math.round(r.left)}–${Math.round(r.right)}`;
  }).filter(Boolean));
  expect(cut.length === 0, `table cells cut off at 390px: ${cut.slice(0, 4).join('; ')}`);
  for (const label of [T['center.disclosures.head.what'], T['center.history.head.policy']]) {
    const n = await phone.evaluate((l) => [...document.querySelectorAll(`td[data-label="${l}"]`)].filter((td) => td.offsetParent !== null).length, label);
    expect(n > 0 || (label === T['center.disclosures.head.what'] && !expectProcessor), `no visible "${label}" cell at 390px`);
  }
  const wraps = await phone.evaluate(() => [...document.querySelectorAll('#activity .table-wrap')].map((w) => `${w.tabIndex}|${w.getAttribute('aria-label') || ''}`));
  expect(wraps.length > 0 && wraps.every((w) => /^0\|./.test(w)), `activity scroll areas not reachable by keyboard: ${wraps.join(', ')}`);
  await shot(phone, 'center-phone', L);
  L.step = 'phone-sized screen: consents as cards';
  await phone.evaluate(() => document.querySelector('#purpose-surveys').scrollIntoView());
  await phone.screenshot({ path: join(outDir, `center-phone-consents-${L.lang}-390x844.png`) });
  await phone.close();
  return { page, username };
}

async function privacyCenterEnd({ page, username }, L) {
  const { T, re, q } = words(L);

  if (adminToken && expectNewsletter) {
    L.step = 'a policy change is said at the top of the page';
    const pub = await api('mutation($v: String!) { publishPolicy(version: $v, url: "https://example.org/privacy-v2", reconsent: ["newsletter"]) { version } }',
      { v: `v2-${L.lang}-${Date.now().toString(36)}` }, adminToken);
    expect(!pub.errors, `publishPolicy: ${JSON.stringify(pub.errors)}`);
    await page.reload();
    const notice = page.locator('#policy-notice');
    await notice.waitFor();
    const nt = await notice.textContent();
    const offNews = re('center.policy.off.one', { purposes: q('newsletter') }).source.slice(1, -1);
    const noticeRe = new RegExp(`^${re('center.policy.changedOn').source.slice(1, -1)} ${offNews}`);
    expect(noticeRe.test(nt), `the policy notice reads "${nt}", want ${noticeRe}`);
    const nb = await notice.boundingBox();
    expect(nb && nb.y < 400, `the policy notice is ${nb && Math.round(nb.y)}px down`);
    expect(await page.getAttribute('#policy-notice a[href^="https://example.org/privacy-v2"]', 'href'), 'the notice does not link the policy');
    expect(await page.getAttribute('#policy-link', 'href') === 'https://example.org/privacy-v2', 'the footer does not link the policy');
    const st = await text(page, '#purpose-newsletter .consent-state');
    expect(re('center.consent.offByPolicy', { state: T['center.consent.notAllowed'], date: /[^;（(]+/ }, false).test(st) && st.startsWith(T['center.consent.notAllowed']), `the newsletter's state reads "${st}"`);
    await shot(page, 'center-policy-changed', L);
  }

  L.step = 'delete the account: wrong password';
  await page.fill('#del-password', 'not my password at all');
  await page.click('#delete-form button[type=submit]');
  const derr = page.locator('#delete-form .field-error');
  await derr.waitFor();
  expect((await derr.textContent()) === T['error.BAD_USER_INPUT.password'], `delete error reads "${await derr.textContent()}"`);
  await shot(page, 'center-delete-error', L);

  L.step = 'delete the account';
  await page.fill('#del-password', 'correct horse battery');
  await page.press('#del-password', 'Enter');
  await page.locator('#deleted').waitFor();
  await shot(page, 'center-deleted', L);
  await page.reload();
  await page.locator('#signed-out').waitFor();
  await page.close();
  return username;
}

// The export downloads as a dated JSON file whose document is an object
// (not a string of escaped JSON), and the page says what was saved.
async function exportFile(page, username, lang, check = expect) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export-link')]);
  const name = dl.suggestedFilename();
  check(/^consentgraph-export-\d{4}-\d{2}-\d{2}\.json$/.test(name), `export file is named ${name}`);
  const exp = JSON.parse(readFileSync(await dl.path(), 'utf8'));
  check(typeof exp.signature === 'string' && exp.signature.split('.').length === 3, 'the export file lacks the signature');
  check(exp.document && typeof exp.document === 'object' && exp.document.account.username === username,
    `the export's document is ${typeof exp.document}, not the account's object`);
  const status = page.locator('#export-status');
  await status.filter({ hasText: name }).waitFor();
  const said = await status.textContent();
  const esc = (x) => x.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
  const want = new RegExp(`^${esc(CATALOGUE[lang]['center.export.saved']).replace('{file}', esc(name)).replace('{size}', '[\\d,]+')}$`);
  check(want.test(said), `the export message reads "${said}", want ${want}`);
  return name;
}

// A GraphQL call made by the test itself, as another person or device
// would make it (no cookie: a bearer token when given).
async function api(query, variables = {}, token = '') {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
  return res.json();
}

// The path of the newest link of kind mailed to address, waiting until it
// differs from not (a mail sent earlier to the same address).
async function mailLink(address, kind = '', not = '') {
  let last = '';
  for (let i = 0; i < 60; i++) {
    const res = await fetch(`${mailLinks}/?to=${encodeURIComponent(address)}${kind ? `&kind=${kind}` : ''}`);
    last = await res.text();
    if (res.ok && last !== not) return last;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`no new ${kind || 'verification'} link mailed to ${address}: ${last}`);
}

// Notices, change password, forgot password and the reset link, with a
// user of their own so the main walk-through keeps its password.
async function passwordPages(context, L) {
  const { T, re } = words(L);
  const page = await context.newPage();
  watch(page);
  page.setDefaultTimeout(STEP_TIMEOUT);
  await page.setViewportSize({ width: 1280, height: 800 });
  const user = `pw_${L.lang}_${Date.now().toString(36)}`;
  const taken = `${user}.taken@example.org`;

  L.step = 'password pages: sign up with an address another account will confirm';
  await page.goto(`${base}/`);
  await page.fill('#su-username', user);
  await page.fill('#su-password', 'correct horse battery');
  await page.fill('#su-email', taken);
  await page.press('#su-password', 'Enter');
  await page.locator('#signed-in').waitFor();
  expect(await page.isHidden('#notices'), 'a new account shows notices');
  const mine = await mailLink(taken);
  const reg = await api('mutation($i: RegisterInput!) { register(input: $i) { token } }',
    { i: { username: `${user}_b`, password: 'another horse battery', email: taken } });
  expect(!reg.errors, `the second account was refused: ${JSON.stringify(reg.errors)}`);
  const theirs = await mailLink(taken, '', mine);
  const v = await api('mutation($t: String!) { verifyEmail(token: $t) }', { t: new URL(theirs, base).searchParams.get('verify') });
  expect(v.data && v.data.verifyEmail === true, `the second account could not confirm: ${JSON.stringify(v)}`);

  L.step = 'password pages: the notice is shown and dismissed';
  await page.reload();
  await page.locator('#notices li[data-kind="EMAIL_CLAIMED_BY_ANOTHER_ACCOUNT"]').waitFor();
  expect(re('center.notice.EMAIL_CLAIMED_BY_ANOTHER_ACCOUNT', {}, false).test(await text(page, '#notice-list')), `the notice reads "${await text(page, '#notice-list')}"`);
  expect((await text(page, '#email-state')) === T['center.email.none'], 'the taken address is still shown');
  expect((await text(page, '#notices-dismiss')) === T['center.notices.dismiss'], 'no Dismiss button in the language');
  await labelled(page);
  await shot(page, 'center-notice', L);
  await page.click('#notices-dismiss');
  await page.locator('#notices').waitFor({ state: 'hidden' });
  await page.reload();
  await page.locator('#signed-in').waitFor();
  expect(await page.isHidden('#notices'), 'a dismissed notice came back');

  L.step = 'password pages: change password with a wrong current one';
  const other = await api('mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }',
    { u: user, p: 'correct horse battery' });
  const otherToken = other.data.login.token;
  await page.fill('#cp-current', 'not my password at all');
  await page.fill('#cp-new', 'purple tractor wandering');
  await page.click('#password-form button[type=submit]');
  const cerr = page.locator('#cp-current').locator('xpath=ancestor::div[contains(@class,"field")]').locator('.field-error');
  await cerr.waitFor();
  expect((await cerr.textContent()) === T['error.BAD_USER_INPUT.currentPassword'], `the wrong current password reads "${await cerr.textContent()}"`);
  expect(await page.getAttribute('#cp-current', 'aria-invalid') === 'true', 'current password not marked aria-invalid');
  await shot(page, 'center-password-error', L);

  L.step = 'password pages: a too short new password';
  await page.fill('#cp-current', 'correct horse battery');
  await page.fill('#cp-new', 'short');
  await page.click('#password-form button[type=submit]');
  const nerr = page.locator('#cp-new').locator('xpath=ancestor::div[contains(@class,"field")]').locator('.field-error');
  await nerr.waitFor();
  expect((await nerr.textContent()) === T['error.BAD_USER_INPUT.newPassword'], `the short new password reads "${await nerr.textContent()}"`);
  await shot(page, 'center-password-short', L);
  expect(await page.getAttribute('#cp-new', 'aria-invalid') === 'true', 'new password not marked aria-invalid');

  L.step = 'password pages: change password';
  await page.fill('#cp-current', 'correct horse battery');
  await page.fill('#cp-new', 'purple tractor wandering');
  await page.press('#cp-new', 'Enter');
  await page.locator('#password-form .form-status.ok', { hasText: T['center.password.done'] }).waitFor();
  expect((await page.inputValue('#cp-current')) === '' && (await page.inputValue('#cp-new')) === '', 'the passwords stay in the form');
  await shot(page, 'center-password-changed', L);
  const ended = await api('{ me { id } }', {}, otherToken);
  // me answers null without a live session
  expect(ended.data && ended.data.me === null, `the other session still works: ${JSON.stringify(ended)}`);
  await page.waitForFunction(() => document.querySelector('#password-form .form-status').textContent === '', null, { timeout: 12000 });

  L.step = 'password pages: confirm an address';
  const address = `${user}@example.org`;
  await page.fill('#em-email', address);
  await page.press('#em-email', 'Enter');
  await page.locator('#email-form .form-status.ok').waitFor();
  await page.goto(`${base}${await mailLink(address)}`);
  await page.locator('#email-state', { hasText: new RegExp(`^${reEsc(T['center.email.confirmed'])}$`) }).waitFor();

  L.step = 'password pages: forgot password';
  await page.click('#logout');
  await page.locator('#signed-out').waitFor();
  await page.click('#forgot-open');
  expect(await page.evaluate(() => document.activeElement.id) === 'fg-email', 'focus did not move to the email field');
  await page.fill('#fg-email', `nobody.${user}@example.org`);
  await page.press('#fg-email', 'Enter');
  const sent = page.locator('#forgot-form .form-status.ok');
  await sent.waitFor();
  const unknownAnswer = await sent.textContent();
  expect(unknownAnswer === T['center.forgot.sent'], `the confirmation reads "${unknownAnswer}"`);
  await page.fill('#fg-email', address);
  await page.press('#fg-email', 'Enter');
  await sent.waitFor();
  expect((await sent.textContent()) === unknownAnswer, 'the answer tells a known address from an unknown one');
  await labelled(page);
  await shot(page, 'center-forgot', L);

  L.step = 'password pages: follow the reset link';
  const link = await mailLink(address, 'reset');
  expect(link.startsWith('/?reset='), `no reset link arrived: ${link}`);
  await page.goto(`${base}${link}`);
  await page.locator('#reset').waitFor();
  expect(!page.url().includes('reset='), 'the reset token stays in the address bar');
  expect(await page.isHidden('#signed-out') && await page.isHidden('#signed-in'), 'the reset page shows other sections');
  await labelled(page);
  expect((await text(page, '#reset-title')) === T['center.reset.title'], `the reset page's heading reads "${await text(page, '#reset-title')}"`);
  await shot(page, 'center-reset', L);
  await page.fill('#rs-password', 'short');
  await page.press('#rs-password', 'Enter');
  await page.locator('#reset-form .field-error').waitFor();
  expect((await text(page, '#reset-form .field-error')) === T['error.BAD_USER_INPUT.newPassword'], `the short password reads "${await text(page, '#reset-form .field-error')}"`);
  await shot(page, 'center-reset-short', L);
  expect(await page.getAttribute('#rs-password', 'aria-invalid') === 'true', 'new password not marked aria-invalid');
  await page.fill('#rs-password', 'seven blue lanterns glow');
  await page.press('#rs-password', 'Enter');
  await page.locator('#signed-out').waitFor();
  expect((await text(page, '#banner')) === T['center.reset.done'], `the banner reads "${await text(page, '#banner')}"`);
  expect(await page.evaluate(() => document.activeElement.id) === 'li-username', 'focus is not on sign-in');

  L.step = 'password pages: sign in with the new password';
  await page.fill('#li-username', user);
  await page.fill('#li-password', 'seven blue lanterns glow');
  await page.press('#li-password', 'Enter');
  await page.locator('#signed-in').waitFor();

  L.step = 'password pages: an ended session signs the page out';
  // Without its cookie the page's session is gone, as after an expiry.
  await context.clearCookies();
  await page.click('#profile-form button[type=submit]');
  await page.locator('#signed-out').waitFor();
  expect(await page.isHidden('#signed-in') && await page.isHidden('#session'), 'the page still looks signed in');
  expect((await text(page, '#banner')) === T['center.sessionEnded'], `the banner reads "${await text(page, '#banner')}"`);
  expect(await page.evaluate(() => document.activeElement.id) === 'li-username', 'focus is not on sign-in');
  await shot(page, 'center-session-ended', L);

  L.step = 'password pages: a used link';
  await page.goto(`${base}${link}`);
  await page.locator('#reset').waitFor();
  await page.fill('#rs-password', 'another fresh passphrase');
  await page.press('#rs-password', 'Enter');
  await page.locator('#reset-form .form-status.error', { hasText: T['center.reset.badLink'] }).waitFor();
  expect(await page.isVisible('#reset-again'), 'no way to ask for a new link');
  await shot(page, 'center-reset-used', L);
  await page.click('#reset-again');
  await page.locator('#forgot-form').waitFor();
  expect(await page.evaluate(() => document.activeElement.id) === 'fg-email', 'asking again does not lead to the email field');
  await page.close();
  return user;
}

async function partnerConsole(context, L) {
  const { T, f, re } = words(L);
  const page = await context.newPage();
  watch(page);
  page.setDefaultTimeout(STEP_TIMEOUT);

  L.step = 'partner: a wrong key';
  await page.goto(`${base}/partners`);
  await page.fill('#api-key', 'cgp_not_a_key');
  await page.press('#api-key', 'Enter');
  const kerr = page.locator('#key-form .field-error');
  await kerr.waitFor();
  expect((await kerr.textContent()) === T['partners.signin.badKey'], `key error reads "${await kerr.textContent()}"`);
  await shot(page, 'partners-signin-error', L);

  L.step = 'partner: sign in';
  await page.fill('#api-key', L.partnerKey);
  await page.press('#api-key', 'Enter');
  await page.locator('#console').waitFor();
  expect((await page.inputValue('#api-key')) === '', 'the key stays in the form');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
  expect(!stored.includes('cgp_'), 'the key was stored outside memory');
  const before = Number(await page.getAttribute('#budget-meter', 'value'));

  L.step = 'partner: epsilon error next to the field';
  await page.fill('#epsilon', '50');
  await page.click('#ask-form button[type=submit]');
  const eerr = page.locator('#ask-form .field-error');
  await eerr.waitFor();
  expect((await eerr.textContent()) === T['error.BAD_USER_INPUT.epsilon'], `epsilon error reads "${await eerr.textContent()}"`);

  L.step = 'partner: AGE_BAND';
  await page.fill('#epsilon', '1');
  await page.focus('input[value=AGE_BAND]');
  await page.keyboard.press('Space');
  await page.click('#ask-form button[type=submit]');
  await page.locator('#result').waitFor();
  const bars = await page.locator('svg.chart rect.bar').count();
  expect(bars > 0, 'the chart has no bars');
  const rows = await page.locator('.result-table tbody tr').count();
  expect(rows === Number(await text(page, '#stat-cells')) && rows >= bars, `table has ${rows} rows, chart ${bars} bars`);
  const threshold = await text(page, '#stat-threshold');
  expect(/^\d+$/.test(threshold) && Number(threshold) >= 5, `threshold reads "${threshold}"`);
  expect((await text(page, '#stat-epsilon')) === '1', 'epsilon spent is not 1');
  const after = Number(await page.getAttribute('#budget-meter', 'value'));
  expect(Math.abs(before - after - 1) < 1e-6, `budget meter went from ${before} to ${after}`);
  expect((await text(page, '.result-table thead')).includes(T['partners.dim.AGE_BAND']), 'table has no age band column');
  await labelled(page);
  await shot(page, 'partners-result', L);
  await page.setViewportSize({ width: 1280, height: 800 });

  L.step = 'partner: the cost is shown before the run';
  const resetsAt = await text(page, '#budget-reset');
  await page.fill('#epsilon', '2.5');
  const cost = await text(page, '#cost');
  const budgetText = await text(page, '#budget-text');
  const left = re('partners.budget.left', { left: /(?<left>[\d.,]+)/ }).exec(budgetText)?.groups.left;
  expect(left, `the budget reads "${budgetText}"`);
  expect(cost === f('partners.cost.ok', { eps: '2.5', left, date: resetsAt }), `the cost line reads "${cost}"`);
  expect(await page.isEnabled('#ask-form button[type=submit]'), 'an affordable query cannot be run');

  L.step = 'partner: more than 50 groups are paged';
  await page.uncheck('input[value=AGE_BAND]');
  await page.check('input[value=SIGNUP_MONTH]');
  await page.check('input[value=GENDER]');
  await page.fill('#epsilon', '10');
  await page.click('#ask-form button[type=submit]');
  await page.locator('#result-desc', { hasText: `${T['partners.dim.GENDER']} × ${T['partners.dim.SIGNUP_MONTH']}` }).waitFor();
  const groups = Number((await text(page, '#stat-cells')).replace(/\D/g, ''));
  expect(groups > 50, `only ${groups} groups: the paging is not exercised`);
  expect(await page.locator('.result-table tbody tr').count() === 50, 'the first page does not hold 50 rows');
  expect((await text(page, '#table-rows')) === f('partners.table.rows', { from: 1, to: 50, total: groups.toLocaleString('en') }), `the pager reads "${await text(page, '#table-rows')}"`);
  expect(await page.isDisabled('#page-prev'), 'the first page offers a previous page');
  await page.click('#page-next');
  await page.locator('#table-rows', { hasText: re('partners.table.rows', { from: 51 }) }).waitFor();
  expect(await page.locator('.result-table tbody tr').count() === Math.min(50, groups - 50), 'the second page holds the wrong rows');
  const t10 = await text(page, '#stat-threshold');
  const note = await text(page, '#noise-note');
  expect(re('partners.result.noise', { sd: /\d+(\.\d)?/, eps: '10', threshold: t10 }).test(note),
    `the noise note reads "${note}"`);
  await shot(page, 'partners-paged', L);

  L.step = 'partner: three dimensions, labels inside the chart';
  await page.uncheck('input[value=SIGNUP_MONTH]');
  await page.check('input[value=AGE_BAND]');
  await page.check('input[value=COUNTRY]');
  await page.click('#ask-form button[type=submit]');
  await page.locator('#result-desc', { hasText: ['AGE_BAND', 'COUNTRY', 'GENDER'].map((d) => T[`partners.dim.${d}`]).join(' × ') }).waitFor();
  expect(await page.locator('svg.chart rect.bar').count() > 5, 'too few groups to check the labels');
  await labelsInside(page);
  await shot(page, 'partners-3d', L);

  L.step = 'partner: phone-sized screen';
  await page.setViewportSize({ width: 390, height: 844 });
  // the chart is redrawn for the narrow box, so its labels stay readable
  await page.waitForFunction(() => document.querySelector('svg.chart').viewBox.baseVal.width <= 390);
  await fitsWidth(page);
  await labelsInside(page);
  await shot(page, 'partners-phone', L);
  await page.evaluate(() => document.querySelector('#result').scrollIntoView());
  await page.screenshot({ path: join(outDir, `partners-phone-result-${L.lang}-390x844.png`) });
  await page.setViewportSize({ width: 1280, height: 800 });

  if (partnerKey2) {
    L.step = 'partner: sign out, sign in as another partner';
    const firstName = await text(page, '#partner-name');
    await page.click('#forget');
    await page.locator('#signin').waitFor();
    expect((await page.inputValue('#api-key')) === '', 'the key field is not empty');
    await page.fill('#api-key', partnerKey2);
    await page.press('#api-key', 'Enter');
    await page.locator('#console').waitFor();
    const name = await text(page, '#partner-name');
    expect(name !== firstName, `still signed in as ${name}`);
    expect(await page.locator('input[name=groupBy]:checked').count() === 0, 'the first partner\'s dimensions are still chosen');
    expect((await page.inputValue('#epsilon')) === '1', 'the first partner\'s epsilon is still there');
    expect(await page.isHidden('#result'), 'the first partner\'s answer is still shown');
    const leftovers = await page.evaluate(() => ['#chart', '#table', '#noise-note', '#result-desc', '#stat-cells']
      .filter((s) => document.querySelector(s).textContent.trim() !== ''));
    expect(leftovers.length === 0, `the first partner's answer remains in ${leftovers.join(', ')}`);
    expect((await text(page, '#budget-text')) === f('partners.budget.left', { left: 5, total: 5 }), `the budget reads "${await text(page, '#budget-text')}"`);

    L.step = 'partner: a query above the budget cannot run';
    await page.fill('#epsilon', '8');
    await page.locator('#cost.error', { hasText: re('partners.cost.tooHigh', { eps: 8, left: 5 }) }).waitFor();
    expect(await page.isDisabled('#ask-form button[type=submit]'), 'a query above the budget can be run');
    await labelled(page);
    await shot(page, 'partners-over-budget', L);
    await page.fill('#epsilon', '1');
    expect(await page.isEnabled('#ask-form button[type=submit]'), 'an affordable query stays disabled');
  }
  await page.close();
  return { bars, threshold };
}

// Every chart label lies wholly inside the chart and the viewport.
async function labelsInside(page) {
  const out = await page.evaluate(() => {
    const box = document.querySelector('svg.chart').getBoundingClientRect();
    return [...document.querySelectorAll('svg.chart text')].map((t) => {
      const r = t.getBoundingClientRect();
      const inside = r.left >= box.left - 0.5 && r.right <= box.right + 0.5 && r.left >= 0 && r.right <= window.innerWidth;
      return inside ? '' : `"${t.textContent}" at ${Math.round(r.left)}–${Math.round(r.right)} in ${Math.round(box.left)}–${Math.round(box.right)}`;
    }).filter(Boolean);
  });
  expect(out.length === 0, `chart labels cut off: ${out.slice(0, 5).join('; ')}`);
}

// A browser set to German still gets one date format, the page's (English).
async function partnerDates() {
  step = 'partner: dates in the page\'s language';
  const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const ctx = await browser.newContext({ locale: 'de-DE', viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    watch(page);
    page.setDefaultTimeout(STEP_TIMEOUT);
    await page.goto(`${base}/partners`);
    await page.fill('#api-key', partnerKey2 || partnerKey);
    await page.press('#api-key', 'Enter');
    await page.locator('#console').waitFor();
    const d = await text(page, '#budget-reset');
    expect(/^[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d{2}\s[AP]M$/.test(d), `a German browser shows the date as "${d}"`);
    expect((await text(page, '#cost')).endsWith(`until ${d}.`), 'the cost line has another date format');
  } finally {
    await browser.close();
  }
}

// ---------- languages ----------

const SIZES_BOTH = [{ width: 1280, height: 800 }, { width: 390, height: 844 }];

// The page keys' English texts long enough to be recognised: a Japanese
// page that shows one of them (whole, or a fixed part of a template
// around its {placeholders}) leaks an untranslated string.
const englishPieces = (() => {
  const pieces = new Set();
  for (const [key, value] of Object.entries(CATALOGUE.en)) {
    if (!/^(common|center|partners|error)\./.test(key) || value === CATALOGUE.ja[key]) continue;
    for (const part of value.split(/\{\w+\}/)) {
      const p = part.trim();
      if (p.length >= 12 || (p.length >= 4 && /^[A-Z][a-z]+( [a-z]+)*$/.test(p))) pieces.add(p);
    }
  }
  return [...pieces];
})();

// The text a person sees or hears on the page: visible text nodes (not the
// server's purpose descriptions, which another change translates, nor
// code samples) and the accessible names in attributes.
async function visibleTexts(page) {
  return page.evaluate(() => {
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || el.closest('.purpose-description, code, pre, script, datalist, option:not(:checked)')) continue;
      if (!el.checkVisibility({ visibilityProperty: true }) && !el.closest('.sr-only, caption, title')) continue;
      out.push(n.textContent.trim());
    }
    for (const el of document.querySelectorAll('[aria-label], [placeholder], [title]')) {
      for (const a of ['aria-label', 'placeholder', 'title']) if (el.getAttribute(a)) out.push(el.getAttribute(a));
    }
    out.push(document.title);
    return out;
  });
}

// A page state at both sizes: a screenshot each (named with the language
// and size), axe-core each, the width fits a phone, and on the Japanese
// pages no English string of the catalogue shows.
async function capture(p, base, lang, check, shots) {
  const old = p.viewportSize();
  for (const size of SIZES_BOTH) {
    await p.setViewportSize(size);
    if (size.width < 500) await fitsWidth(p);
    const file = `${base}-${size.width}x${size.height}`;
    await p.screenshot({ path: join(outDir, `${file}.png`), fullPage: true });
    shots.push(file);
    for (const v of await axeViolations(p)) axeFound.push(`${file}: ${v}`);
    axeStates++;
    const texts = await visibleTexts(p);
    // a key shown as itself has no text in the catalogue
    const keys = texts.filter((x) => /^(common|center|partners|error)\.[\w.]+$/.test(x));
    check(keys.length === 0, `catalogue keys shown as text on ${base}: ${keys.join(', ')}`);
    if (lang === 'ja') {
      const leaks = englishPieces.filter((x) => texts.some((t) => t.includes(x)));
      check(leaks.length === 0, `English on the Japanese page ${base}: ${leaks.slice(0, 6).map((x) => `"${x}"`).join(', ')}`);
    }
  }
  await p.setViewportSize(old || SIZES_BOTH[0]);
}

// One language, both pages, both sizes, in a browser context whose
// locale (navigator.languages and Accept-Language) is the language's.
async function languageWalk(browser, lang) {
  const T = CATALOGUE[lang];
  let where = 'start';
  try {
    const check = (cond, msg) => { if (!cond) throw new Error(`${lang}: ${where}: ${msg}`); };
    const ctx = await browser.newContext({ locale: lang === 'ja' ? 'ja-JP' : 'en-US', acceptDownloads: true, viewport: SIZES_BOTH[0] });
    const page = await ctx.newPage();
    watch(page);
    page.setDefaultTimeout(STEP_TIMEOUT);
    const sent = [];
    // the page's own requests (the test's reads carry X-Test)
    page.on('request', (r) => { if (r.url().endsWith('/graphql') && !r.headers()['x-test']) sent.push(r.headers()['accept-language'] || ''); });
    const shots = [];
    const state = (p, name) => capture(p, `lang-${name}-${lang}`, lang, check, shots);

    where = 'the page comes in the browser\'s language untouched';
    await page.goto(`${base}/`);
    await page.locator('#signed-out').waitFor();
    await page.waitForFunction((l) => document.documentElement.lang === l, lang);
    check((await text(page, '#welcome-title')) === T['center.welcome.title'], `the heading reads "${await text(page, '#welcome-title')}"`);
    check((await page.inputValue('#lang-select')) === lang, 'the switcher does not show the language');
    check((await page.getAttribute('label[for="lang-select"]', 'for')) === 'lang-select' && (await text(page, 'label[for="lang-select"]')) === T['common.language'], 'the switcher has no label');
    await state(page, 'center-signed-out');
    if (lang === 'en') {
      // the leak check has teeth: on the English page it finds the English
      const texts = await visibleTexts(page);
      const found = englishPieces.filter((x) => texts.some((t) => t.includes(x))).length;
      check(found >= 10, `the leak check finds only ${found} English strings on the English page`);
    }

    where = 'a typed country follows a language switch';
    const other = lang === 'ja' ? 'en' : 'ja';
    const O = CATALOGUE[other];
    const germany = { en: 'Germany', ja: 'ドイツ' };
    await page.fill('#su-country', germany[lang]);
    await page.selectOption('#lang-select', other);
    await page.waitForFunction((l) => document.documentElement.lang === l, other);
    check((await page.inputValue('#su-country')) === germany[other], `after the switch the typed country reads "${await page.inputValue('#su-country')}"`);
    check((await text(page, '#welcome-title')) === O['center.welcome.title'], 'the switch did not translate the page');
    await page.selectOption('#lang-select', lang);
    await page.waitForFunction((l) => document.documentElement.lang === l, lang);
    check((await page.inputValue('#su-country')) === germany[lang], 'switching back lost the typed country');
    await page.fill('#su-country', '');

    where = 'forgot password';
    await page.click('#forgot-open');
    await page.fill('#fg-email', `nobody.${lang}@example.org`);
    await page.press('#fg-email', 'Enter');
    const fsent = page.locator('#forgot-form .form-status.ok');
    await fsent.waitFor();
    check((await fsent.textContent()) === T['center.forgot.sent'], `the forgot answer reads "${await fsent.textContent()}"`);
    await state(page, 'center-forgot');

    where = 'an API error in the page\'s language';
    await page.fill('#su-username', 'ab');
    await page.fill('#su-password', 'correct horse battery');
    await page.press('#su-password', 'Enter');
    const uerr = page.locator('#signup-form .field-error');
    await uerr.waitFor();
    check((await uerr.textContent()) === T['error.BAD_USER_INPUT.username'], `the username error reads "${await uerr.textContent()}"`);

    where = 'sign up with a country and a language typed as names';
    const user = `lang_${lang}_${Date.now().toString(36)}`;
    const names = { en: ['Germany', 'English'], ja: ['ドイツ', '英語'] }[lang];
    await page.fill('#su-username', user);
    await page.fill('#su-country', names[0]);
    await page.fill('#su-language', names[1]);
    check(await page.getAttribute('#su-country', 'list') === 'country-names' &&
      await page.locator(`#country-names option[value="${names[0]}"]`).count() === 1, `"${names[0]}" is not offered in the country list`);
    await page.evaluate(() => document.querySelector('#signup-form').requestSubmit());
    await page.locator('#signed-in').waitFor();
    const profile = async () => (await page.evaluate(async () => (await (await fetch('/graphql', { method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Test': '1' }, body: JSON.stringify({ query: '{ me { profile { country language } } }' }) })).json()).data.me.profile));
    let saved = await profile();
    check(saved.country === 'DE' && saved.language === 'en', `saved ${JSON.stringify(saved)}, want DE and en`);
    check((await page.inputValue('#pf-country')) === names[0] && (await page.inputValue('#pf-language')) === names[1],
      `the profile shows "${await page.inputValue('#pf-country')}" and "${await page.inputValue('#pf-language')}"`);
    check((await text(page, '#signed-in-title')) === T['center.signedIn.welcome'].replace('{name}', user), 'the welcome is not translated');

    where = 'an unknown country name is refused and nothing is saved';
    await page.fill('#pf-country', 'Atlantis');
    await page.click('#profile-form button[type=submit]');
    const cerr = page.locator('#pf-country').locator('xpath=ancestor::div[contains(@class,"field")]').locator('.field-error');
    await cerr.waitFor();
    check((await cerr.textContent()) === T['center.profile.unknownCountry'].replace('{name}', 'Atlantis'), `the country error reads "${await cerr.textContent()}"`);
    check(await page.getAttribute('#pf-country', 'aria-invalid') === 'true', 'the country field is not marked invalid');
    saved = await profile();
    check(saved.country === 'DE', `an unknown name changed the country to ${saved.country}`);
    await page.fill('#pf-country', names[0]);

    where = 'grant a purpose: receipt, history and dates in the language';
    await pressSwitch(page, 'surveys', true);
    await page.locator('#receipt-summary').filter({ hasText: T['server.purpose.surveys.name'] }).waitFor({ timeout: 40000 });
    await page.locator('.history-table tbody tr').first().waitFor();
    const first = await page.evaluate(async () => (await (await fetch('/graphql', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Test': '1' },
      body: JSON.stringify({ query: '{ me { consentHistory(first: 1) { edges { node { at } } } } }' }) })).json()).data.me.consentHistory.edges[0].node.at);
    const wantDate = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short', timeZone: await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone) }).format(new Date(first));
    const cell = await text(page, '.history-table tbody tr td');
    check(cell === wantDate, `the history date reads "${cell}", want "${wantDate}" (${lang})`);
    if (lang === 'ja') check(/^\d{4}\/\d{1,2}\/\d{1,2} \d{1,2}:\d{2}$/.test(cell), `a Japanese date reads "${cell}"`);
    await labelled(page);
    await state(page, 'center-signed-in');

    where = 'the export file and its message';
    await exportFile(page, user, lang, check);
    await state(page, 'center-exported');

    where = 'every GraphQL request carries the page\'s language';
    check(sent.length >= 4 && sent.every((h) => h === lang), `Accept-Language of the page's requests: ${[...new Set(sent)].join(', ')}`);

    where = 'the switcher changes the language and is remembered';
    await page.selectOption('#lang-select', other);
    await page.waitForFunction((l) => document.documentElement.lang === l, other);
    check((await text(page, '#signed-in-title')) === O['center.signedIn.welcome'].replace('{name}', user), 'the switcher did not translate the welcome');
    check((await text(page, '#data-title')) === O['center.data.title'], 'the switcher did not translate the headings');
    check(await page.inputValue('#pf-country') === germany[other], `after the switch the country reads "${await page.inputValue('#pf-country')}"`);
    // Purpose names and descriptions are the server's: read again in the new language.
    const purposeText = O['server.purpose.newsletter.description'];
    const described = await page.waitForFunction((want) => [...document.querySelectorAll('.purpose-description')].some((e) => e.textContent === want),
      purposeText, { timeout: 10000 }).then(() => true, () => false);
    check(described, `after the switch no purpose reads "${purposeText}"`);
    check((await page.locator('h3', { hasText: O['server.purpose.newsletter.name'] }).count()) > 0, 'after the switch the newsletter purpose is not named in the new language');
    sent.length = 0;
    await page.reload();
    await page.locator('#signed-in').waitFor();
    await page.waitForFunction((l) => document.documentElement.lang === l, other);
    check((await page.inputValue('#lang-select')) === other, 'the choice was not remembered across a reload');
    check(await page.evaluate(() => localStorage.getItem('consentgraph.lang')) === other, 'the choice is not stored under consentgraph.lang');
    check(sent.length > 0 && sent.every((h) => h === other), `after the switch the requests say ${[...new Set(sent)].join(', ')}`);
    await page.selectOption('#lang-select', lang);
    await page.waitForFunction((l) => document.documentElement.lang === l, lang);

    where = 'verify the receipt';
    // The switch back reads the purposes again and draws the list anew: a
    // key pressed on the old switch before that would be lost.
    const ownText = T['server.purpose.newsletter.description'];
    await page.waitForFunction((want) => [...document.querySelectorAll('.purpose-description')].some((e) => e.textContent === want), ownText);
    await pressSwitch(page, 'surveys', false);
    await page.locator('#receipt-summary').filter({ hasText: T['server.purpose.surveys.name'] }).waitFor({ timeout: 40000 });
    await page.click('#receipt-verify');
    await page.locator('#receipt-check.good').waitFor();
    const valid = await text(page, '#receipt-check');
    check(valid.startsWith(T['center.receipt.validWithdraw'].split('{kid}')[0]), `the receipt check reads "${valid}"`);
    await state(page, 'center-receipt');

    where = 'delete the account';
    await page.fill('#del-password', 'not my password at all');
    await page.click('#delete-form button[type=submit]');
    const derr = page.locator('#delete-form .field-error');
    await derr.waitFor();
    check((await derr.textContent()) === T['error.BAD_USER_INPUT.password'], `the wrong password reads "${await derr.textContent()}"`);
    await page.fill('#del-password', 'correct horse battery');
    await page.press('#del-password', 'Enter');
    await page.locator('#deleted').waitFor();
    await state(page, 'center-deleted');

    where = 'partner console in the language';
    const pp = await ctx.newPage();
    watch(pp);
    pp.setDefaultTimeout(STEP_TIMEOUT);
    const sentP = [];
    pp.on('request', (r) => { if (r.url().endsWith('/graphql')) sentP.push(r.headers()['accept-language'] || ''); });
    await pp.goto(`${base}/partners`);
    // the choice made on the Privacy Center holds here too
    await pp.waitForFunction((l) => document.documentElement.lang === l, lang);
    check((await text(pp, '#signin-title')) === T['partners.intro.title'], 'the partner console is not in the language');
    await pp.fill('#api-key', 'cgp_not_a_key');
    await pp.press('#api-key', 'Enter');
    const kerr = pp.locator('#key-form .field-error');
    await kerr.waitFor();
    check((await kerr.textContent()) === T['partners.signin.badKey'], `the key error reads "${await kerr.textContent()}"`);
    await state(pp, 'partners-signin-error');
    await pp.fill('#api-key', partnerKey);
    await pp.press('#api-key', 'Enter');
    await pp.locator('#console').waitFor();
    const me = (await api('{ partnerMe { budgetResetsAt } }', {}, partnerKey)).data.partnerMe;
    const tz = await pp.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
    const reset = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short', timeZone: tz }).format(new Date(me.budgetResetsAt));
    check((await text(pp, '#budget-reset')) === reset, `the budget resets "${await text(pp, '#budget-reset')}", want "${reset}"`);
    await pp.check('input[value=SIGNUP_MONTH]');
    await pp.fill('#epsilon', '1');
    await pp.click('#ask-form button[type=submit]');
    await pp.locator('.result-table tbody tr').first().waitFor();
    const month = await text(pp, '.result-table tbody td');
    const monthRe = lang === 'ja' ? /^\d{4}年\d{1,2}月$/ : /^[A-Z][a-z]{2} \d{4}$/;
    check(monthRe.test(month), `a sign-up month reads "${month}"`);
    const count = await text(pp, '.result-table tbody td.num');
    check(/^\d{1,3}(,\d{3})*$/.test(count), `a count reads "${count}"`);
    await labelled(pp);
    await labelsInside(pp);
    check(sentP.length >= 3 && sentP.every((x) => x === lang), `Accept-Language of the console's requests: ${[...new Set(sentP)].join(', ')}`);

    where = 'the console redraws its answer in the other language';
    await pp.selectOption('#lang-select', other);
    await pp.waitForFunction((l) => document.documentElement.lang === l, other);
    const head = await text(pp, '.result-table thead');
    check(head.includes(O['partners.dim.SIGNUP_MONTH']) && head.includes(O['partners.table.count']), `after the switch the table head reads "${head}"`);
    const resetOther = new Intl.DateTimeFormat(other, { dateStyle: 'medium', timeStyle: 'short', timeZone: tz }).format(new Date(me.budgetResetsAt));
    check((await text(pp, '#budget-reset')) === resetOther, `after the switch the budget resets "${await text(pp, '#budget-reset')}", want "${resetOther}"`);
    check((await text(pp, '#cost')).includes(resetOther), 'the cost line keeps the old language');
    await pp.selectOption('#lang-select', lang);
    await pp.waitForFunction((l) => document.documentElement.lang === l, lang);
    await state(pp, 'partners-result');
    await pp.fill('#epsilon', '1000');
    await pp.locator('#cost.error').waitFor();
    check(await pp.isDisabled('#ask-form button[type=submit]'), 'a query above the budget can be run');
    await state(pp, 'partners-over-budget');
    await ctx.close();
    return shots;
  } catch (e) {
    // a timeout of playwright's says what it waited for, not where
    if (!e.message.startsWith(`${lang}: `)) e.message = `${lang}: ${where}: ${e.message}`;
    throw e;
  }
}

// Each language walks the old flows in a browser context of its own
// locale, side by side; the Japanese one spends the budget of a partner of
// its own, so each sees only its own spending.
async function partnerFor(L) {
  if (L.lang === 'en' || !adminToken) return partnerKey;
  const r = await api('mutation($n: String!) { createPartner(name: $n, epsilonBudget: 100, budgetPeriodDays: 30) { apiKey } }',
    { n: `Gamma Research ${L.lang}` }, adminToken);
  expect(!r.errors, `createPartner: ${JSON.stringify(r.errors)}`);
  return r.data.createPartner.apiKey;
}

let browser;
try {
  browser = await chromium.launch({ executablePath, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const walks = await Promise.all(['en', 'ja'].map(async (lang) => {
    const L = walker(lang);
    L.partnerKey = await partnerFor(L);
    L.context = await browser.newContext({ locale: lang === 'ja' ? 'ja-JP' : 'en-US', acceptDownloads: true, viewport: { width: 1280, height: 900 } });
    return L;
  }));
  step = 'privacy center';
  // the policy change of privacyCenterEnd waits for every walk's newsletter steps
  const begun = await Promise.all(walks.map((L) => L.run(privacyCenter, L.context)));
  const users = await Promise.all(walks.map(async (L, i) => {
    const user = await L.run(privacyCenterEnd, begun[i]);
    const pw = mailLinks ? await L.run(passwordPages, L.context) : '';
    const p = await L.run(partnerConsole, L.context);
    return `${L.lang} ${user} ${pw} ${p.bars} bars, threshold ${p.threshold}`;
  }));
  console.log(`privacy center: ok (${users.join('; ')})`);
  if (mailLinks) console.log('password pages: ok');
  step = 'partner dates';
  await partnerDates();
  console.log('partner console: ok');
  console.log(`old flows in both languages: ${walks.map((L) => `${L.lang} ${L.shots.length} screenshots`).join(', ')}`);
  await Promise.all(walks.map((L) => L.context.close()));
  step = 'languages';
  {
    // English and Japanese side by side, each in a context of its own locale.
    const shots = (await Promise.all(['en', 'ja'].map((l) => languageWalk(browser, l)))).flat();
    console.log(`languages: ok (${shots.length} screenshots: ${shots.join(' ')})`);
  }
  step = 'axe-core';
  console.log(`axe: ${axeStates} page states checked at 1280×800 and 390×844`);
  expect(axeFound.length === 0, `axe found ${axeFound.length} serious or critical violations:\n${axeFound.join('\n')}`);
  expect(problems.length === 0, `the pages reported errors:\n${problems.join('\n')}`);
} catch (e) {
  console.error(`FAILED at step "${step}": ${e.message}`);
  if (problems.length) console.error(problems.join('\n'));
  if (axeFound.length) console.error(`axe so far:\n${axeFound.join('\n')}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
}
