// Browser test of the operator's branding on the Privacy Center (/) and the
// partner console (/partners), driving Debian's headless Chromium through
// playwright-core. Run by web/e2e/branding_test.go:
//
//   BASE_URL=http://127.0.0.1:A OUT_DIR=test-output OPERATOR_NAME='Example Shop' CONTROLLER_NAME='Example KK' \
//   CONTROLLER_EMAIL=privacy@example.jp LOGO_URL=https://127.0.0.1:B/logo.svg ACCENT='#0b6e4f' \
//   POLICY_URL=https://example.org/privacy node web/e2e/branding.mjs
//
// The server was started with those values in its `branding:` and
// `controller:` config. For each page, size and language it checks the logo
// (loaded from its own origin under the page CSP), the name, the policy link,
// the sentence naming the controller and the accent colour, runs axe, and
// saves a screenshot. Every failed expectation throws.
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { executablePath, outDir, recordCSPViolations, rgb } from './common.mjs';
import { SIZES, axeViolations } from './axe.mjs';

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} must be set`);
  return process.env[k];
};
const base = env('BASE_URL');
const operatorName = env('OPERATOR_NAME');
const controllerName = env('CONTROLLER_NAME');
const controllerEmail = env('CONTROLLER_EMAIL');
const logoURL = env('LOGO_URL');
const accent = env('ACCENT');
const policyURL = env('POLICY_URL');

// The sentences of web/static/locales/{en,ja}.json (brand.*), filled in.
const L = {
  en: { controller: `${controllerName} is responsible for your personal data.`, contact: 'Contact:', policy: 'Privacy policy' },
  ja: { controller: `お客様の個人データの取り扱いについては、${controllerName}が責任を負います。`, contact: 'お問い合わせ先：', policy: 'プライバシーポリシー' },
};
const PAGES = [{ name: 'center', path: '/' }, { name: 'partners', path: '/partners' }];

let step = 'start';
const problems = [];
const axeFound = [];
let states = 0;

function expect(cond, msg) {
  if (!cond) throw new Error(`${step}: ${msg}`);
}

// Switches the page's language with its own switcher, as a reader would.
async function setLanguage(page, lang) {
  await page.selectOption('#lang-select', lang);
}

async function check(page, lang) {
  const T = L[lang];
  await page.waitForSelector(`html[data-brand-lang="${lang}"]`);

  // Header: the logo, loaded (the CSP let its origin through), and the name.
  const logo = page.locator('header img[data-brand-logo]');
  // An image has no width until it has loaded.
  await logo.waitFor({ state: 'visible' });
  expect(await logo.getAttribute('src') === logoURL, `logo src ${await logo.getAttribute('src')}`);
  expect(await logo.evaluate((img) => img.complete && img.naturalWidth > 0), 'the logo did not load');
  expect(await logo.getAttribute('alt') === '', 'the logo next to the name is not marked decorative');
  expect(await page.locator('header .brand .logo').isHidden(), 'the stock logo is shown next to the operator\'s');
  const name = page.locator('header [data-brand-name]');
  expect(await name.isVisible() && (await name.textContent()) === operatorName, `header name ${await name.textContent()}`);
  const [lb, nb] = [await logo.boundingBox(), await name.boundingBox()];
  expect(lb.height >= 20 && lb.height <= 40 && lb.x < nb.x, `logo box ${JSON.stringify(lb)} against the name ${JSON.stringify(nb)}`);

  // Footer: who is responsible, how to reach them, and the policy.
  const controller = page.locator('footer [data-brand-controller]');
  const said = (await controller.textContent()).replace(/\s+/g, ' ').trim();
  expect(said === `${T.controller} ${T.contact} ${controllerEmail}`, `controller sentence "${said}"`);
  expect(await controller.isVisible(), 'the controller sentence is hidden');
  const mail = controller.locator('a[data-brand-contact]');
  expect(await mail.getAttribute('href') === `mailto:${controllerEmail}`, 'no mailto link to the controller');
  const policy = page.locator('footer a[data-brand-policy]');
  expect(await policy.isVisible() && await policy.getAttribute('href') === policyURL, `policy link ${await policy.getAttribute('href')}`);
  expect((await policy.textContent()) === T.policy, `policy link text ${await policy.textContent()}`);

  // The accent, through /brand.css: links and the primary buttons.
  const want = rgb(accent);
  const linkColor = await policy.evaluate((a) => getComputedStyle(a).color);
  expect(linkColor === want, `policy link colour ${linkColor}, want ${want}`);
  const button = page.locator('main .btn:not(.secondary):visible').first();
  const bg = await button.evaluate((b) => getComputedStyle(b).backgroundColor);
  expect(bg === want, `primary button ${bg}, want ${want}`);

  const v = await page.evaluate(() => window.__violations);
  expect(v.length === 0, `CSP violations: ${v.join('; ')}`);
  expect(problems.length === 0, problems.join('; '));
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  for (const p of PAGES) {
    for (const size of SIZES) {
      // The logo's test origin has a self-signed certificate.
      const context = await browser.newContext({ viewport: size, ignoreHTTPSErrors: true });
      await context.addInitScript(recordCSPViolations);
      const page = await context.newPage();
      page.setDefaultTimeout(15000);
      page.on('console', (m) => {
        if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console error (${step}): ${m.text()}`);
      });
      // Failed loads by URL (the browser's own favicon request aside).
      page.on('response', (r) => {
        if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) problems.push(`${r.status()} for ${r.url()} (${step})`);
      });
      page.on('pageerror', (e) => problems.push(`page error (${step}): ${e.message}`));
      await page.goto(`${base}${p.path}`);
      for (const lang of ['en', 'ja']) {
        step = `${p.name} ${lang} ${size.width}×${size.height}`;
        if (lang !== 'en') await setLanguage(page, lang);
        await check(page, lang);
        const shot = join(outDir, `branding-${p.name}-${lang}-${size.width}x${size.height}.png`);
        await page.screenshot({ path: shot, fullPage: true });
        console.log(`screenshot ${shot}`);
        for (const f of await axeViolations(page)) axeFound.push(`${step}: ${f}`);
        states++;
      }
      await context.close();
    }
  }
  console.log(`axe: ${states} branding states checked`);
  expect(axeFound.length === 0, `axe found ${axeFound.length} serious or critical violations:\n${axeFound.join('\n')}`);
  console.log('branding: ok');
} catch (e) {
  console.error(e.stack || String(e));
  if (problems.length) console.error(`problems seen:\n${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
