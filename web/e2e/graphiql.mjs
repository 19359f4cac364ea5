// Browser test of GraphiQL in --dev (GET /graphql for a browser), driving
// Debian's headless Chromium through playwright-core. Run by
// web/e2e/graphiql_test.go:
//
//   BASE_URL=http://127.0.0.1:A OFF_URL=http://127.0.0.1:B OUT_DIR=test-output node web/e2e/graphiql.mjs
//
// BASE_URL runs with --dev, OFF_URL without. Every failed expectation
// throws; the process exits non-zero with the reason.
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { executablePath, outDir, recordCSPViolations } from './common.mjs';

const base = process.env.BASE_URL;
const offURL = process.env.OFF_URL;
if (!base || !offURL) throw new Error('BASE_URL and OFF_URL must be set');

let step = 'start';
const problems = [];
function expect(cond, msg) {
  if (!cond) throw new Error(`${step}: ${msg}`);
}

// The purposes the server has, asked without a browser: what the page must show.
const direct = await fetch(`${base}/graphql`, {
  method: 'POST', headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ query: '{ purposes { id } }' }),
}).then((r) => r.json());
const ids = direct.data.purposes.map((p) => p.id);
expect(ids.length > 0, `the server has no purposes: ${JSON.stringify(direct)}`);

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Before any script of the page: collect CSP violations, workers included.
  await context.addInitScript(recordCSPViolations);
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error (${step}): ${m.text()}`);
    if (/Content Security Policy/i.test(m.text())) problems.push(`CSP message (${step}): ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error (${step}): ${e.message}`));
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  const workers = [];
  page.on('worker', (w) => workers.push(w.url()));

  step = 'open GraphiQL';
  const res = await page.goto(`${base}/graphql`);
  expect(res.status() === 200, `status ${res.status()}`);
  await page.locator('.graphiql-container').waitFor();
  await page.locator('.graphiql-query-editor .monaco-editor').waitFor();

  step = 'run a query';
  const query = '{ policy { version } purposes { id } }';
  await page.locator('.graphiql-query-editor .monaco-editor').click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete'); // no selection left for Monaco to surround with braces
  await page.keyboard.insertText(query);
  await page.locator('.graphiql-execute-button').click();
  const response = page.locator('.graphiql-response .monaco-editor .view-lines');
  await page.waitForFunction(() => /"purposes"/.test(document.querySelector('.graphiql-response .view-lines')?.textContent || ''));
  const shown = (await response.textContent()).replace(/\u00a0/g, ' ');
  for (const id of ids) expect(shown.includes(`"${id}"`), `the result lacks purpose ${id}: ${shown}`);
  expect(/"version"/.test(shown) && !/"errors"/.test(shown), `unexpected result: ${shown}`);
  await page.screenshot({ path: join(outDir, 'graphiql-result.png') });
  console.log(`screenshot ${join(outDir, 'graphiql-result.png')}`);

  step = 'documentation explorer (from introspection)';
  await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
  await page.locator('.graphiql-doc-explorer').getByText('Query', { exact: true }).first().waitFor();
  await page.locator('.graphiql-doc-explorer').getByText('Query', { exact: true }).first().click();
  await page.locator('.graphiql-doc-explorer-field-name', { hasText: 'purposes' }).first().waitFor();
  await page.screenshot({ path: join(outDir, 'graphiql-docs.png') });
  console.log(`screenshot ${join(outDir, 'graphiql-docs.png')}`);

  step = 'clean';
  expect(workers.length > 0 && workers.every((u) => u.startsWith(`${base}/_dev/graphiql/`)), `Monaco workers: ${workers}`);
  const v = await page.evaluate(() => window.__violations);
  expect(v.length === 0, `CSP violations: ${v.join('; ')}`);
  expect(foreign.length === 0, `requests to another origin: ${foreign.join(', ')}`);
  expect(problems.length === 0, problems.join('; '));

  step = 'without --dev';
  const off = await context.newPage();
  const offRes = await off.goto(`${offURL}/graphql`);
  const text = await off.locator('body').textContent();
  expect(offRes.status() !== 200, `outside --dev GET /graphql answered 200`);
  expect(await off.locator('.graphiql-container, #graphiql').count() === 0, `outside --dev the page is GraphiQL: ${text}`);
  console.log(`without --dev: ${offRes.status()} ${text.slice(0, 120)}`);
} catch (e) {
  // Say what the page showed and logged when a step failed.
  for (const p of problems) console.log(p);
  const page = browser.contexts()[0]?.pages()[0];
  if (page) {
    await page.screenshot({ path: join(outDir, 'graphiql-failed.png') }).catch(() => {});
    console.log(`screenshot ${join(outDir, 'graphiql-failed.png')}`);
  }
  throw e;
} finally {
  await browser.close();
}
console.log(`graphiql: ok (${ids.length} purposes shown)`);
