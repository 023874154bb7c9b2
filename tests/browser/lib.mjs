// Shared by the browser tests and the dashboard benchmark: playwright-core from the test tools
// (tests/tools/install.sh), driving Debian's chromium headless.
import { createRequire } from 'node:module';

export function loadPlaywright() {
  const tools = process.env.NS_TOOLS || '/var/lib/nightshift/test-tools';
  const require = createRequire(`${tools}/`);
  return require('playwright-core');
}

export async function launch() {
  const { chromium } = loadPlaywright();
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Root in a container: chromium's own sandbox needs user namespaces it may not get here.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}

/** TAP-ish lines the bash wrapper turns into its own numbered TAP. */
export function tap() {
  let failed = 0;
  return {
    ok(cond, name, detail) {
      if (cond) console.log(`ok - ${name}`);
      else { failed++; console.log(`not ok - ${name}${detail ? ` (${String(detail).slice(0, 300)})` : ''}`); }
      return cond;
    },
    note(s) { console.log(`# ${s}`); },
    get failed() { return failed; },
  };
}
