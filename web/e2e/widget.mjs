// Browser test of the consent widget (/embed/consent.js) on a page of
// another origin with a strict CSP, driving Debian's headless Chromium through
// playwright-core. Run by web/e2e/widget_test.go:
//
//   BASE_URL=http://127.0.0.1:A HOST_URL=http://127.0.0.1:B ADMIN_TOKEN=... OUT_DIR=test-output \
//   OPERATOR_NAME='Example Shop' ACCENT='#0b6e4f' node web/e2e/widget.mjs
//
// BASE_URL is the consent service, HOST_URL the operator's site (its ?lang=
// sets <html lang>, ?wlang= the widget tag's data-lang), OPERATOR_NAME and
// ACCENT the branding the service was started with. Every state runs in
// English and in Japanese. Every failed expectation throws; the process
// exits non-zero with the reason.
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { executablePath, outDir, recordCSPViolations, rgb } from './common.mjs';
import { axeBothSizes } from './axe.mjs';

const base = process.env.BASE_URL;
const hostURL = process.env.HOST_URL;
const adminToken = process.env.ADMIN_TOKEN;
const operatorName = process.env.OPERATOR_NAME;
const accent = process.env.ACCENT;
if (!base || !hostURL || !adminToken || !operatorName || !accent) {
  throw new Error('BASE_URL, HOST_URL, ADMIN_TOKEN, OPERATOR_NAME and ACCENT must be set');
}

// What each language must show: texts from /locales/<lang>.json (widget.*),
// each distinct enough that the other language cannot pass for it.
const L = {
  en: {
    toggle: 'Privacy choices', title: 'Your privacy choices', signIn: /Sign in/, newsletter: 'Newsletter', newsletterText: 'Sending you our newsletter by email',
    receipt: /Signed receipt/, renewal: /policy changed/i, version: (v) => new RegExp(`version ${v}\\b`),
    gpc: /Global Privacy Control/, rowGpc: /Global Privacy Control/, on: 'On',
  },
  ja: {
    toggle: 'プライバシー設定', title: 'プライバシー設定', signIn: /ログイン/, newsletter: 'ニュースレター', newsletterText: 'ニュースレターをメールでお送りします',
    receipt: /署名付きレシート/, renewal: /ポリシーの変更により/, version: (v) => new RegExp(`バージョン${v}）`),
    gpc: /グローバル・プライバシー・コントロール（GPC）/, rowGpc: /GPC/, on: 'オン',
  },
};


const STEP_TIMEOUT = 15000;
const problems = [];
let step = 'start';

function expect(cond, msg) {
  if (!cond) throw new Error(`${step}: ${msg}`);
}

// A screenshot of a widget state, and axe-core on that state at both sizes
// (collected, so one run lists them all; the run fails at the end).
const axeFound = [];
let axeStates = 0;
async function shot(page, name) {
  await page.screenshot({ path: join(outDir, `${name}.png`) });
  console.log(`screenshot ${join(outDir, name)}.png`);
  const found = await axeBothSizes(page, name);
  axeStates++;
  for (const v of found) console.log(`axe: ${v}`);
  axeFound.push(...found);
}

// Before any script of the page: collect the widget's events (and, with
// recordCSPViolations, CSP violations), so that the first event (sent on
// load) is not missed.
function recordEvents() {
  window.__events = [];
  document.addEventListener('consentgraph:change', (e) => window.__events.push(e.detail));
}

async function newContext(browser, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...opts });
  await context.addInitScript(recordCSPViolations);
  await context.addInitScript(recordEvents);
  return context;
}

function watch(page) {
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.__languages = [];
  page.on('request', (r) => {
    if (r.url() === `${base}/graphql` && r.method() === 'POST') page.__languages.push(r.headers()['accept-language'] || '');
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console error (${step}): ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error (${step}): ${e.message}`));
}

// The widget's parts; playwright's CSS locators pierce the open shadow root.
const w = (page) => ({
  toggle: page.locator('[data-consentgraph-widget] button.toggle'),
  panel: page.locator('[data-consentgraph-widget] .panel'),
  heading: page.locator('[data-consentgraph-widget] h2'),
  status: page.locator('[data-consentgraph-widget] .status'),
  org: page.locator('[data-consentgraph-widget] [data-cg=operator]'),
  gpc: page.locator('[data-consentgraph-widget] [data-cg=gpc]'),
  sw: (id) => page.locator(`[data-consentgraph-widget] input[data-purpose="${id}"]`),
  row: (id) => page.locator(`[data-consentgraph-widget] li[data-purpose="${id}"]`),
});

async function events(page) {
  return page.evaluate(() => window.__events);
}

async function lastEvent(page, n) {
  await page.waitForFunction((k) => window.__events.length >= k, n);
  const all = await events(page);
  return all[all.length - 1];
}

// The CSP of the host held and nothing broke; the widget set no cookie.
async function clean(page, context) {
  const shown = await page.evaluate(() => document.querySelector('[data-consentgraph-widget]').shadowRoot.textContent);
  expect(!/\b(null|undefined|NaN)\b/.test(shown), `the widget shows a programming value: ${shown}`);
  // A key shown instead of its text means the catalogue lacks it.
  expect(!/widget\.[a-zA-Z]/.test(shown), `the widget shows a catalogue key: ${shown}`);
  const v = await page.evaluate(() => window.__violations);
  expect(v.length === 0, `CSP violations: ${v.join('; ')}`);
  expect(problems.length === 0, problems.join('; '));
  expect(await page.evaluate(() => document.cookie) === '', 'the host page has a cookie readable by scripts');
  // Cookies ignore ports, so the consent service's own session cookie is
  // listed for the host too; it must be the only one, and HttpOnly.
  const cookies = await context.cookies([hostURL, base]);
  const foreign = cookies.filter((c) => c.name !== 'cg_session' || !c.httpOnly);
  expect(foreign.length === 0, `cookies besides the service's HttpOnly session: ${JSON.stringify(foreign)}`);
  const stored = await page.evaluate(() => Object.keys(localStorage));
  expect(stored.every((k) => k === 'consentgraph:seen-policy'), `unexpected localStorage keys: ${stored}`);
}

// Signs up on the consent origin, the way the Privacy Center does: the
// response sets the service's session cookie in this browser.
async function signUpOnConsentOrigin(context, username) {
  const page = await context.newPage();
  watch(page);
  await page.goto(`${base}/`);
  const res = await page.evaluate(async (u) => {
    const r = await fetch('/graphql', {
      method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ query: 'mutation($in: RegisterInput!) { register(input: $in) { user { id } } }',
        variables: { in: { username: u, password: 'correct horse battery' } } }),
    });
    return r.json();
  }, username);
  expect(!res.errors, `sign-up failed: ${JSON.stringify(res.errors)}`);
  await page.close();
}

// The signed-in visitor's ledger, read with the session cookie.
async function ledger(context) {
  const res = await context.request.post(`${base}/graphql`, {
    headers: { 'Content-Type': 'application/json', Origin: base },
    data: { query: '{ me { consentHistory(first: 50) { edges { node { purpose action method policyVersion receipt } } } } }' },
  });
  const body = await res.json();
  expect(!body.errors, `ledger: ${JSON.stringify(body.errors)}`);
  return body.data.me.consentHistory.edges.map((e) => e.node);
}

async function admin(query, variables) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors) throw new Error(`${step}: admin request failed: ${JSON.stringify(body.errors)}`);
  return body.data;
}

function claims(jws) {
  return JSON.parse(Buffer.from(jws.split('.')[1], 'base64url').toString());
}

// The widget speaks lang and wears the operator's branding: its name above
// the heading, its accent on the button and links (computed styles).
async function speaksAndIsBranded(page, lang) {
  const ui = w(page);
  const hostLang = await page.locator('[data-consentgraph-widget]').getAttribute('lang');
  expect(hostLang === lang, `widget lang attribute ${hostLang}, want ${lang}`);
  expect(await ui.heading.textContent() === L[lang].title, `heading ${await ui.heading.textContent()}`);
  expect(await ui.org.textContent() === operatorName, `operator name ${await ui.org.textContent()}`);
  const color = await ui.org.evaluate((e) => getComputedStyle(e).color);
  expect(color === rgb(accent), `operator name colour ${color}, want the accent ${rgb(accent)}`);
  const sent = page.__languages;
  expect(sent.length > 0 && sent.every((l) => l === lang), `Accept-Language of the widget's API requests: ${JSON.stringify(sent)}, want ${lang}`);
}

async function desktop(browser, lang) {
  const context = await newContext(browser);
  const page = await context.newPage();
  watch(page);
  const ui = w(page);
  const T = L[lang];
  const name = (state) => `widget-${lang}-1280x800-${state}`;
  const current = (await admin('{ policy { version } }')).policy.version;
  const next = String(Number(current) + 1);

  step = `${lang}: anonymous visitor, first visit`;
  await page.goto(`${hostURL}/?lang=${lang}`);
  await ui.panel.waitFor({ state: 'visible' });
  const ev0 = await lastEvent(page, 1);
  expect(ev0.signedIn === false && ev0.policyVersion === current, `first event: ${JSON.stringify(ev0)}`);
  await speaksAndIsBranded(page, lang);
  expect(ev0.purposes.newsletter === false && ev0.purposes.aggregate_statistics === true && ev0.purposes.essential === true,
    `anonymous defaults: ${JSON.stringify(ev0.purposes)}`);
  expect(T.signIn.test(await ui.panel.textContent()), 'no sign-in explanation');
  expect((await ui.panel.textContent()).includes(operatorName), 'the explanation does not name the operator');
  // The description is the API's, in the widget's language.
  expect((await ui.row('newsletter').textContent()).includes(T.newsletterText), 'the newsletter purpose is not explained in the widget language');
  const signIn = await page.locator('[data-consentgraph-widget] a[data-cg=sign-in]').getAttribute('href');
  const signUp = await page.locator('[data-consentgraph-widget] a[data-cg=sign-up]').getAttribute('href');
  expect(signIn.startsWith(`${base}/`) && signUp.startsWith(`${base}/`), `links do not go to the Privacy Center: ${signIn} ${signUp}`);
  expect(await ui.sw('newsletter').count() === 0, 'switches shown to a visitor who is not signed in');
  expect(/stats.*running|running/.test(await page.locator('#site-stats').textContent()), 'the site did not follow the event');
  // The constructed stylesheet applied under style-src 'self' (a blocked
  // one would leave the panel in the page flow, unstyled).
  const css = await ui.panel.evaluate((el) => ({ pos: getComputedStyle(el.getRootNode().host).position, radius: getComputedStyle(el).borderRadius }));
  expect(css.pos === 'fixed' && css.radius === '12px', `widget styles not applied: ${JSON.stringify(css)}`);
  const primary = await page.locator('[data-consentgraph-widget] a[data-cg=sign-in]').evaluate((a) => getComputedStyle(a).backgroundColor);
  expect(primary === rgb(accent), `sign-in button ${primary}, want the accent ${rgb(accent)}`);
  await shot(page, name('anonymous'));
  await clean(page, context);

  step = `${lang}: anonymous visitor, second visit: collapsed, keyboard`;
  await page.reload();
  await ui.toggle.waitFor({ state: 'visible' });
  expect(await ui.panel.isHidden(), 'the widget opened again for a policy version already shown');
  expect(await ui.toggle.textContent() === T.toggle, `the collapsed button is not "${T.toggle}"`);
  const toggleBg = await ui.toggle.evaluate((b) => getComputedStyle(b).backgroundColor);
  expect(toggleBg === rgb(accent), `button background ${toggleBg}, want the accent ${rgb(accent)}`);
  await shot(page, name('collapsed'));
  await ui.toggle.focus();
  await page.keyboard.press('Enter');
  await ui.panel.waitFor({ state: 'visible' });
  expect(await ui.heading.evaluate((h) => h.getRootNode().activeElement === h), 'focus did not move into the panel');
  expect(await ui.toggle.isHidden() && await page.locator('[data-consentgraph-widget] .panel').getAttribute('role') === 'dialog', 'panel role');
  await page.keyboard.press('Escape');
  await ui.panel.waitFor({ state: 'hidden' });
  expect(await ui.toggle.evaluate((b) => b.getRootNode().activeElement === b), 'focus did not return to the button');
  expect(await ui.toggle.getAttribute('aria-expanded') === 'false', 'aria-expanded not reset');

  step = `${lang}: sign in on the consent origin`;
  await signUpOnConsentOrigin(context, `widget_${lang}_${Date.now() % 1e8}`);
  await page.reload();
  const ev1 = await lastEvent(page, 1);
  expect(ev1.signedIn === true, `the widget does not see the session (same-site cookie): ${JSON.stringify(ev1)}`);
  expect(ev1.purposes.newsletter === false && ev1.purposes.aggregate_statistics === true, `signed-in state: ${JSON.stringify(ev1.purposes)}`);
  expect(await ui.panel.isHidden(), 'opened although this policy version was shown');
  await ui.toggle.click();
  await ui.sw('newsletter').waitFor();
  expect(await ui.sw('newsletter').getAttribute('role') === 'switch', 'switches are not role=switch');
  expect(!(await ui.sw('newsletter').isChecked()) && await ui.sw('aggregate_statistics').isChecked(), 'switch states differ from the server');
  expect(await ui.sw('essential').isDisabled(), 'the notice-only purpose can be switched');
  const label = await ui.sw('newsletter').evaluate((i) => i.labels[0] && i.labels[0].textContent);
  expect(label === T.newsletter, `switch label: ${label}`);
  const aggState = await ui.row('aggregate_statistics').locator('[data-cg=state]').textContent();
  expect(aggState === T.on, `state text of an on switch: ${aggState}`);
  await speaksAndIsBranded(page, lang);
  await shot(page, name('signed-in'));

  step = `${lang}: grant the newsletter by keyboard`;
  const before = (await events(page)).length;
  await ui.sw('newsletter').focus();
  await page.keyboard.press('Space');
  await page.waitForFunction((re) => new RegExp(re).test(document.querySelector('[data-consentgraph-widget]').shadowRoot.querySelector('.status').textContent), T.receipt.source);
  const ev2 = await lastEvent(page, before + 1);
  expect(ev2.purposes.newsletter === true && ev2.signedIn, `event after the grant: ${JSON.stringify(ev2)}`);
  expect(await ui.sw('newsletter').isChecked(), 'switch off after the grant');
  expect(await ui.sw('newsletter').evaluate((i) => i.getRootNode().activeElement === i), 'focus lost after the change');
  expect(/newsletter=on/.test(await page.locator('#site-state').textContent()), 'the site did not see the grant');
  // The confirmation is where the visitor looks, not below the fold of the panel.
  const [sb, pb] = [await ui.status.boundingBox(), await ui.panel.boundingBox()];
  expect(sb && sb.y >= pb.y && sb.y + sb.height <= Math.min(pb.y + pb.height, 800), `receipt confirmation out of view: ${JSON.stringify({ sb, pb })}`);
  const shownReceipt = await ui.status.getAttribute('data-receipt');
  const events1 = await ledger(context);
  const grant = events1.find((e) => e.purpose === 'newsletter' && e.action === 'GRANT');
  expect(grant && grant.method === 'EXPLICIT' && grant.receipt, `no GRANT in the ledger: ${JSON.stringify(events1)}`);
  const c = claims(grant.receipt);
  expect(shownReceipt && shownReceipt === (c.consentReceiptID || c.jti), `shown receipt ${shownReceipt} is not the ledger's ${JSON.stringify(c)}`);
  await shot(page, name('receipt'));

  step = `${lang}: withdraw by click`;
  const before2 = (await events(page)).length;
  await ui.sw('newsletter').click();
  const ev3 = await lastEvent(page, before2 + 1);
  expect(ev3.purposes.newsletter === false, `event after the withdrawal: ${JSON.stringify(ev3)}`);
  expect((await ledger(context)).some((e) => e.purpose === 'newsletter' && e.action === 'WITHDRAW' && e.receipt), 'no WITHDRAW in the ledger');
  await ui.sw('newsletter').click(); // on again, so that the new policy must ask
  await page.waitForFunction((n) => window.__events.length >= n, before2 + 2);
  await clean(page, context);

  step = `${lang}: a new policy version opens the widget once`;
  await admin('mutation($v: String!) { publishPolicy(version: $v, url: "/privacy", reconsent: ["newsletter"]) { version } }', { v: next });
  await page.reload();
  await ui.panel.waitFor({ state: 'visible' });
  const ev4 = await lastEvent(page, 1);
  expect(ev4.policyVersion === next && ev4.purposes.newsletter === false, `after the new policy: ${JSON.stringify(ev4)}`);
  expect(T.renewal.test(await ui.row('newsletter').textContent()), 'no renewal note on the newsletter');
  expect(T.version(next).test(await ui.panel.textContent()), 'the policy version is not shown');
  await shot(page, name('new-policy'));
  // Granting again renews it; then the widget no longer opens by itself.
  await ui.sw('newsletter').click();
  await page.waitForFunction(() => window.__events.some((e) => e.purposes.newsletter === true));
  await page.reload();
  await ui.toggle.waitFor({ state: 'visible' });
  expect(await ui.panel.isHidden(), 'opened again for a policy version already shown');
  await clean(page, context);
  await context.close();
}

async function phoneWithGPC(browser, lang) {
  const T = L[lang];
  const name = (state) => `widget-${lang}-390x844-${state}`;
  // Chromium has no GPC setting: the page sees the property and every
  // request carries the header, as in a browser with GPC on.
  const context = await newContext(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
    extraHTTPHeaders: { 'Sec-GPC': '1' } });
  await context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true, configurable: true }));
  const page = await context.newPage();
  watch(page);
  const ui = w(page);

  step = `${lang}: phone, GPC, anonymous`;
  await page.goto(`${hostURL}/?lang=${lang}`);
  await ui.panel.waitFor({ state: 'visible' });
  expect(T.gpc.test(await ui.gpc.textContent()), `no GPC notice: ${await ui.gpc.textContent()}`);
  const ev0 = await lastEvent(page, 1);
  expect(ev0.gpc === true && ev0.purposes.aggregate_statistics === false, `GPC not reflected for a visitor who is not signed in: ${JSON.stringify(ev0)}`);
  const box = await ui.panel.boundingBox();
  expect(box.x >= 0 && box.x + box.width <= 390 && box.height <= 844, `panel outside the phone screen: ${JSON.stringify(box)}`);
  await speaksAndIsBranded(page, lang);
  await shot(page, name('anonymous-gpc'));

  step = `${lang}: phone, GPC, signed in`;
  await signUpOnConsentOrigin(context, `widget_gpc_${lang}_${Date.now() % 1e8}`);
  await page.reload();
  const ev1 = await lastEvent(page, 1);
  expect(ev1.signedIn && ev1.purposes.aggregate_statistics === false, `GPC did not turn the sharing purpose off: ${JSON.stringify(ev1)}`);
  await ui.toggle.click();
  await ui.sw('aggregate_statistics').waitFor();
  expect(!(await ui.sw('aggregate_statistics').isChecked()), 'aggregate_statistics shown on under GPC');
  expect(T.rowGpc.test(await ui.row('aggregate_statistics').textContent()), 'the row does not say GPC turned it off');
  expect(/stopped/.test(await page.locator('#site-stats').textContent()), 'the site kept its statistics script running');
  await shot(page, name('signed-in-gpc'));
  await clean(page, context);
  await context.close();
}

// The same page on an origin that is not in --cors-origins (localhost
// instead of 127.0.0.1): the script loads, the API refuses to share.
async function notAllowed(browser) {
  step = 'an origin outside --cors-origins';
  const context = await newContext(browser);
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('pageerror', (e) => problems.push(`page error (${step}): ${e.message}`));
  await page.goto(hostURL.replace('127.0.0.1', 'localhost') + '/');
  const ev = await lastEvent(page, 1);
  expect(ev.signedIn === false && ev.error && Object.keys(ev.purposes).length === 0, `event on a refused origin: ${JSON.stringify(ev)}`);
  await page.locator('[data-consentgraph-widget] button.toggle').click();
  const msg = await page.locator('[data-consentgraph-widget] [data-cg=error]').textContent();
  expect(/cannot be reached/.test(msg), `no explanation on a refused origin: ${msg}`);
  expect(problems.length === 0, problems.join('; '));
  await context.close();
}

// Where the language comes from: the tag's data-lang wins over the page's
// <html lang>, which wins over the browser's languages.
async function languageChoice(browser) {
  for (const [query, locale, want] of [
    ['?lang=en&wlang=ja', 'en-US', 'ja'],
    ['?lang=ja-JP', 'en-US', 'ja'],
    ['?lang=none', 'ja-JP', 'ja'],
    ['?lang=none', 'en-US', 'en'],
    // A language without a catalogue falls through to the next candidate.
    ['?lang=xx', 'ja-JP', 'ja'],
  ]) {
    step = `language from ${query} with a ${locale} browser`;
    const context = await newContext(browser, { locale });
    const page = await context.newPage();
    watch(page);
    await page.goto(`${hostURL}/${query}`);
    await lastEvent(page, 1);
    const got = await page.locator('[data-consentgraph-widget]').getAttribute('lang');
    expect(got === want, `widget language ${got}, want ${want}`);
    expect(await w(page).toggle.textContent() === L[want].toggle || await w(page).heading.textContent() === L[want].title,
      'the widget\'s texts are not in its language');
    await context.close();
  }
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  for (const lang of ['en', 'ja']) {
    await desktop(browser, lang);
    await phoneWithGPC(browser, lang);
  }
  await languageChoice(browser);
  await notAllowed(browser);
  console.log(`axe: ${axeStates} widget states checked at 1280×800 and 390×844`);
  expect(axeFound.length === 0, `axe found ${axeFound.length} serious or critical violations:\n${axeFound.join('\n')}`);
  console.log('consent widget: ok');
} catch (e) {
  console.error(e.stack || String(e));
  if (problems.length) console.error(`problems seen:\n${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
