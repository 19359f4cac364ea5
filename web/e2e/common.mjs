// What the browser scripts share: where their screenshots go, which
// Chromium they drive, and small page-side helpers.
import { mkdirSync } from 'node:fs';

// Screenshots land here (the Go tests pass OUT_DIR=<repo>/test-output).
export const outDir = process.env.OUT_DIR || 'test-output';
mkdirSync(outDir, { recursive: true });

// Debian's headless shell unless the Go test names another Chromium.
export const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium-headless-shell';

// rgb('#0b6e4f') is 'rgb(11, 110, 79)', as getComputedStyle writes colours.
export function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return `rgb(${n >> 16}, ${(n >> 8) & 255}, ${n & 255})`;
}

// An init script (context.addInitScript) that collects the page's CSP
// violations in window.__violations before any of its own scripts run.
export function recordCSPViolations() {
  window.__violations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`);
  });
}
