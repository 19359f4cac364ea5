// axe-core in the browser tests: every page state the tests screenshot is
// checked at both sizes (1280×800 and 390×844), and any violation with
// impact serious or critical fails the test with its rule, target and help.
//
// The pages' CSP (script-src 'self') blocks inline scripts, so axe is not
// added with a <script> tag: page.evaluate runs its source through the
// DevTools protocol, which the page's CSP does not govern.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const SIZES = [{ width: 1280, height: 800 }, { width: 390, height: 844 }];

// The serious and critical violations on the page as it is now, one line each.
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').flatMap((v) =>
      v.nodes.map((n) => `${v.impact} ${v.id} at ${n.target.join(' ')}: ${v.help}${n.failureSummary ? ` (${n.failureSummary.replace(/\s+/g, ' ').slice(0, 160)})` : ''}`));
  });
  return result;
}

// Checks the page at both sizes and puts the viewport back as it was.
// Returns the violations found, each line prefixed with the state and size.
export async function axeBothSizes(page, name) {
  const old = page.viewportSize();
  const out = [];
  for (const size of SIZES) {
    await page.setViewportSize(size);
    for (const v of await axeViolations(page)) out.push(`${name} ${size.width}×${size.height}: ${v}`);
  }
  if (old) await page.setViewportSize(old);
  return out;
}
