// Browser test of an app on another origin using urql against the API
// (web/e2e/cors-app.mjs in a page served by web/e2e/cors_test.go),
// in Debian's headless Chromium through playwright-core:
//
//   APP_URL=http://127.0.0.1:A API_URL=http://127.0.0.1:B API_NO_HEADER_URL=http://127.0.0.1:C OUT_DIR=test-output node web/e2e/cors.mjs
//
// API_URL allows the app's origin and the apollographql-client-* headers
// (--cors-origins, --cors-headers); API_NO_HEADER_URL allows the origin only.
// Every failed expectation throws; the process exits non-zero.
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { executablePath, outDir } from './common.mjs';

const { APP_URL: app, API_URL: api, API_NO_HEADER_URL: apiNoHeader } = process.env;
if (!app || !api || !apiNoHeader) throw new Error('APP_URL, API_URL and API_NO_HEADER_URL must be set');

let step = 'start';
function expect(cond, msg) {
  if (!cond) throw new Error(`${step}: ${msg}`);
}

const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox'] });
const consoleLines = [];
const sent = [];
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    if (r.method() === 'POST' && r.url().endsWith('/graphql')) sent.push({ url: r.url(), headers: r.headers() });
  });

  step = 'open the app';
  await page.goto(app);
  await page.locator('#state', { hasText: 'ready' }).waitFor();
  expect(new URL(page.url()).origin !== new URL(api).origin, 'the app and the API share an origin');

  step = 'sign up, grant, me (credentials, custom header)';
  const username = `cors${Date.now() % 1e6}`;
  const r = await page.evaluate(([a, u]) => window.corsApp.signUpAndUse(a, u), [api, username]);
  expect(!r.reg.error && r.reg.data.register.user.username === username, `register: ${JSON.stringify(r.reg)}`);
  expect(!r.grant.error && r.grant.data.grantConsent.consent.purpose.id === 'surveys' && r.grant.data.grantConsent.consent.granted, `grantConsent: ${JSON.stringify(r.grant)}`);
  expect(!r.me.error && r.me.data.me?.username === username, `me with the session cookie: ${JSON.stringify(r.me)}`);
  expect(r.me.data.me.consents.some((c) => c.purpose.id === 'surveys' && c.granted), `the grant is not read back: ${JSON.stringify(r.me)}`);
  expect(r.seen.length === 3, `responses: ${JSON.stringify(r.seen)}`);
  const ids = r.seen.map((s) => s.requestId);
  expect(ids.every((id) => typeof id === 'string' && id.length >= 8) && new Set(ids).size === ids.length,
    `X-Request-Id not readable from JavaScript, or repeated: ${JSON.stringify(ids)}`);
  const custom = sent.filter((s) => s.url.startsWith(api));
  expect(custom.length === 3 && custom.every((s) => s.headers['apollographql-client-name'] === 'cors-test-app'),
    `the requests did not carry apollographql-client-name: ${JSON.stringify(custom.map((s) => s.headers))}`);
  const cookies = await context.cookies(api);
  expect(cookies.some((c) => c.name === 'cg_session' && c.httpOnly), `no HttpOnly session cookie for the API: ${JSON.stringify(cookies)}`);
  expect(await page.evaluate(() => document.cookie) === '', 'the app can read a cookie');

  // The same app served from localhost is another site than 127.0.0.1:
  // sign-up works, but the SameSite=Lax session cookie does not come back
  // with the next request (README, "Development mode").
  step = 'from localhost: another site, no session';
  const other = await context.newPage();
  other.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  const localApp = app.replace('//127.0.0.1:', '//localhost:');
  await other.goto(localApp);
  await other.locator('#state', { hasText: 'ready' }).waitFor();
  const l = await other.evaluate(([a, u]) => window.corsApp.signUpAndUse(a, u), [api, `${username}l`]);
  expect(!l.reg.error, `register from localhost: ${JSON.stringify(l.reg)}`);
  expect(!l.me.error && l.me.data.me === null, `from localhost the API's session cookie was sent: ${JSON.stringify(l.me)}`);
  console.log(`from ${new URL(localApp).origin}: signed up, then me = null (cookie not sent cross-site)`);

  step = 'rate limited: Retry-After readable';
  const rl = await page.evaluate(([a, u]) => window.corsApp.hitRateLimit(a, u, 12), [api, username]);
  expect(rl.codes?.includes('RATE_LIMITED'), `never rate limited: ${JSON.stringify(rl)}`);
  expect(/^[1-9][0-9]*$/.test(rl.retryAfter ?? ''), `Retry-After not readable from JavaScript: ${JSON.stringify(rl)}`);
  expect(typeof rl.requestId === 'string' && rl.requestId.length >= 8, `X-Request-Id on the limited answer: ${JSON.stringify(rl)}`);
  await page.screenshot({ path: join(outDir, 'cors-urql-app.png') });
  console.log(`screenshot ${join(outDir, 'cors-urql-app.png')}`);
  console.log(`rate limited after ${rl.attempts} sign-ins: HTTP ${rl.status}, Retry-After ${rl.retryAfter}`);

  step = 'header not in --cors-headers: the preflight blocks it';
  const before = consoleLines.length;
  const b = await page.evaluate((a) => window.corsApp.withAndWithoutHeader(a), apiNoHeader);
  expect(!b.without.error && b.without.data.purposes.length > 0, `the same query without the header failed: ${JSON.stringify(b.without)}`);
  expect(b.withHeader.error && !b.withHeader.data, `the header went through: ${JSON.stringify(b.withHeader)}`);
  const why = consoleLines.slice(before).join('\n');
  // The API refuses the whole preflight (no Access-Control-Allow-Origin)
  // when a requested header is not allowed; either way chromium names it.
  expect(/Response to preflight request doesn't pass access control check|apollographql-client-name is not allowed by Access-Control-Allow-Headers in preflight response/.test(why),
    `chromium did not blame the preflight:\n${why}`);
  console.log(`blocked: ${b.withHeader.error}`);
  await page.screenshot({ path: join(outDir, 'cors-urql-blocked.png') });
  console.log(`screenshot ${join(outDir, 'cors-urql-blocked.png')}`);

} catch (e) {
  console.log(consoleLines.join('\n'));
  throw e;
} finally {
  await browser.close();
}
console.log('cors urql app: ok');
