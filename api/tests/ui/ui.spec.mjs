// The site owners' page in a real headless Chromium, driven by playwright-core (no browser
// download: Debian's chromium). Started by api/tests/ui.rs, which has started ClickHouse and the
// API, inserted the groups named below and created the project token. Exits non-zero (with the
// reason) on the first failed expectation.
//
// Environment: UI_BASE (http://127.0.0.1:PORT), UI_TOKEN, UI_PROJECT, UI_CHROMIUM (executable),
// UI_PROFILE (a fresh user-data-dir), UI_ARTEFACTS (screenshot dir), UI_REPORT_PORT (where the
// API's --ui-csp-report-uri points: this script receives the page's CSP reports there),
// UI_GROUPS (JSON: {cdn, xss, mute, remove} fingerprints), NODE_PATH (holds playwright-core).

import { createRequire } from 'node:module';
import http from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('UI_BASE');
const token = env('UI_TOKEN');
const project = env('UI_PROJECT');
const groups = JSON.parse(env('UI_GROUPS'));
const artefacts = env('UI_ARTEFACTS');
const step = (text) => console.log(`step: ${text}`);

// --- the CSP report receiver (stands in for Palisade's ingest) ----------------------------------
const reports = [];
const seen = [];
const receiver = http.createServer((request, response) => {
  let body = '';
  request.on('data', (chunk) => { body += chunk; });
  request.on('end', () => {
    seen.push(`${request.method} ${request.url} ${JSON.stringify(request.headers)}`);
    if (request.method === 'POST') {
      reports.push({ type: request.headers['content-type'] || '', url: request.url, body });
    }
    // The Reporting API preflights cross-origin uploads.
    response.writeHead(request.method === 'OPTIONS' ? 204 : 204, {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Methods': 'POST, OPTIONS',
      'Access-Control-Allow-Headers': 'content-type',
    });
    response.end();
  });
});
await new Promise((resolve) => receiver.listen(Number(env('UI_REPORT_PORT')), '127.0.0.1', resolve));

// --- the browser -------------------------------------------------------------------------------
const context = await chromium.launchPersistentContext(env('UI_PROFILE'), {
  executablePath: env('UI_CHROMIUM'),
  headless: true,
  chromiumSandbox: false,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--short-reporting-delay', // Reporting API uploads within about a second, not a minute
  ],
  viewport: { width: 1280, height: 900 },
});
const failures = [];
try {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  // Recorded by the browser, not by the page: CDP-injected, so the page's CSP does not apply.
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (event) => {
      window.__csp.push({ directive: event.violatedDirective, blocked: event.blockedURI });
    });
  });
  context.setDefaultTimeout(10_000); // a failing expectation fails in seconds, not 30 s each
  const page = context.pages()[0] ?? (await context.newPage());
  const console_ = [];
  page.on('console', (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => failures.push(`page error: ${error.message}`));
  const alerts = [];
  let confirmAnswer = false;
  page.on('dialog', async (dialog) => {
    if (dialog.type() === 'confirm') {
      await (confirmAnswer ? dialog.accept() : dialog.dismiss());
    } else {
      alerts.push(`${dialog.type()}: ${dialog.message()}`);
      await dialog.dismiss();
    }
  });
  const deletes = [];
  page.on('request', (request) => {
    if (request.method() === 'DELETE') deletes.push(request.url());
    assert.ok(!request.url().includes(token), `the token appeared in a URL: ${request.url()}`);
  });
  const row = (fingerprint) => page.locator(`#groups tr[data-fingerprint="${fingerprint}"]`);
  const open = async (fingerprint) => {
    await row(fingerprint).getByRole('button', { name: 'Open' }).click();
    await page.locator('#group').waitFor({ state: 'visible' });
  };
  const cspConsole = () => console_.filter((line) => /Content Security Policy/i.test(line));

  step('GET / redirects to the page, which asks for a token');
  const first = await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/');
  assert.match(first.headers()['content-security-policy'], /script-src 'self'/);
  await page.locator('#login').waitFor({ state: 'visible' });

  step('a wrong token shows the API error');
  await page.fill('#login-project', project);
  await page.fill('#login-token', 'pal_not_a_real_token');
  await page.click('#login-form button[type=submit]');
  await page.locator('#error').waitFor({ state: 'visible' });
  assert.match(await page.textContent('#error'), /bad_token: unknown or revoked token/);
  assert.ok(await page.isVisible('#login'));
  assert.equal(await page.evaluate(() => sessionStorage.getItem('palisade.token')), null, 'a refused token is kept');

  step("the right token on another project's id: 403 wrong_project");
  await page.fill('#login-project', String(Number(project) + 1));
  await page.fill('#login-token', token);
  await page.click('#login-form button[type=submit]');
  await page.locator('#error', { hasText: 'wrong_project' }).waitFor();
  assert.ok(await page.isVisible('#login'));

  step('log in with the project token: pages of 3 groups, "Load more" follows the cursor');
  await page.fill('#login-project', project);
  await page.fill('#login-token', token);
  await page.click('#login-form button[type=submit]');
  await row(groups.xss).waitFor();
  assert.equal(await page.locator('#groups tbody tr').count(), 3);
  await page.click('#more');
  for (const fingerprint of Object.values(groups)) await row(fingerprint).waitFor();
  assert.equal(await page.locator('#groups tbody tr').count(), 4);
  assert.equal(await page.isVisible('#more'), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('palisade.token')), token);
  assert.ok(!page.url().includes(token));
  assert.equal(await page.isVisible('#error'), false);
  await page.screenshot({ path: path.join(artefacts, 'ui-groups.png'), fullPage: true });

  step('a report field holding markup renders as text and runs nothing');
  await open(groups.xss);
  const samples = page.locator('#samples tbody');
  await samples.getByText('<script>window.__pwned=1</script>', { exact: false }).first().waitFor();
  await samples.getByText('<img src=x onerror="window.__pwned=2">').first().waitFor();
  assert.equal(await page.locator('#samples tbody script, #samples tbody img').count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(alerts, []);
  assert.deepEqual(await page.evaluate(() => window.__csp), [], 'our own code broke the CSP');
  assert.deepEqual(cspConsole(), [], 'our own code broke the CSP');
  await page.screenshot({ path: path.join(artefacts, 'ui-markup.png'), fullPage: true });
  await page.click('#back');

  step('filters: text and directive');
  await page.fill('#filters input[name=q]', 'cdn.example');
  await page.click('#filters button[type=submit]');
  await row(groups.mute).waitFor({ state: 'detached' });
  assert.equal(await page.locator('#groups tbody tr').count(), 1);
  await row(groups.cdn).waitFor();
  await page.fill('#filters input[name=q]', '');
  await page.fill('#filters input[name=directive]', 'img-src');
  await page.click('#filters button[type=submit]');
  await row(groups.cdn).waitFor({ state: 'detached' });
  await row(groups.mute).waitFor();
  assert.equal(await page.locator('#groups tbody tr').count(), 1);
  await page.fill('#filters input[name=directive]', '');
  await page.click('#filters button[type=submit]');
  await row(groups.cdn).waitFor();

  step('mute a group: it disappears, and shows as muted with "show muted"');
  await open(groups.mute);
  await page.click('#mute');
  await page.locator('#violations').waitFor({ state: 'visible' });
  await row(groups.mute).waitFor({ state: 'detached' });
  await row(groups.cdn).waitFor();
  await page.check('#filters input[name=include_muted]');
  await page.click('#filters button[type=submit]');
  await row(groups.mute).locator('.badge', { hasText: 'muted' }).waitFor();
  await page.uncheck('#filters input[name=include_muted]');
  await page.click('#filters button[type=submit]');
  await row(groups.mute).waitFor({ state: 'detached' });

  step('open a group: facts, hourly bars, samples, its resolution; apply it');
  await open(groups.cdn);
  assert.match(await page.textContent('#group-title'), /script-src-elem blocked https:\/\/cdn\.example\.com/);
  assert.equal(await page.locator('#series svg rect.bar').count(), 48);
  assert.equal(await page.locator('#samples tbody tr').count(), 3);
  const change = page.locator('#resolution-change');
  await change.waitFor();
  assert.equal(await change.textContent(), 'script-src-elem += https://cdn.example.com');
  assert.match(await page.textContent('#resolution'), /Qualifies for the proposed policy/);
  await page.screenshot({ path: path.join(artefacts, 'ui-group.png'), fullPage: true });
  await page.click('#apply');
  await page.locator('#applied-note').waitFor();
  assert.equal(await page.textContent('#applied-note'), 'Applied: script-src-elem += https://cdn.example.com');
  await page.click('#back');

  step('delete asks first: cancel keeps the group, confirm removes it');
  await open(groups.remove);
  confirmAnswer = false;
  await page.click('#delete');
  assert.equal(await page.isVisible('#group'), true);
  assert.deepEqual(deletes, [], 'a cancelled delete sent a request');
  confirmAnswer = true;
  await page.click('#delete');
  await page.locator('#violations').waitFor({ state: 'visible' });
  assert.equal(deletes.length, 1);
  // The ClickHouse mutation is asynchronous: filter again until the rows are gone.
  for (let i = 0; ; i += 1) {
    if ((await row(groups.remove).count()) === 0) break;
    assert.ok(i < 60, 'the deleted group is still listed after 30 s');
    await page.waitForTimeout(500);
    await page.click('#filters button[type=submit]');
  }

  step('the proposed policy includes the applied resolution, and copies');
  await page.click('.tabs button[data-tab=policy]');
  const value = page.locator('#policy-value');
  await value.waitFor();
  const proposed = await value.inputValue();
  assert.match(proposed, /script-src-elem [^;]*https:\/\/cdn\.example\.com/);
  assert.match(await page.textContent('#policy-diff'), /script-src-elem \+= https:\/\/cdn\.example\.com/);
  await page.locator('#applied tbody tr', { hasText: groups.cdn }).waitFor();
  await page.click('#copy');
  await page.locator('#copied', { hasText: 'copied' }).waitFor();
  const clipboard = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(clipboard, `Content-Security-Policy: ${proposed}`);
  await page.screenshot({ path: path.join(artefacts, 'ui-policy.png'), fullPage: true });

  step('withdrawing the applied resolution takes it out of the proposed policy');
  await page.locator('#applied tbody tr', { hasText: groups.cdn }).locator('button.withdraw').click();
  await page.locator('#applied tbody tr', { hasText: groups.cdn }).waitFor({ state: 'detached' });
  await page.locator('#applied-empty').waitFor();
  assert.doesNotMatch(await page.locator('#policy-value').inputValue(), /cdn\.example\.com/);
  assert.equal(await page.isVisible('#error'), false);

  step('alerts: "No alerts." on a server without alerting (404) or with none; else the table');
  await page.click('.tabs button[data-tab=alerts]');
  await page.locator('#alerts-empty:visible, #alerts-table:visible').first().waitFor();
  if (await page.isVisible('#alerts-table')) {
    // A server with alert evaluation may already have fired "new" alerts for these groups.
    assert.ok((await page.locator('#alerts-table tbody tr').count()) > 0);
    assert.equal(await page.isVisible('#alerts-empty'), false);
  } else {
    assert.equal(await page.textContent('#alerts-empty'), 'No alerts.');
  }
  assert.equal(await page.isVisible('#error'), false);

  step('alerts render as text (this answer is stubbed in the browser: the format of GET .../alerts)');
  const fired = {
    id: 'a1', kind: 'new', fingerprint: groups.cdn, origin: 'https://x.example/<script>window.__pwned=5</script>',
    directive: 'script-src-elem', count: 7, fired_at: '2026-01-02T03:04:05Z', delivered: true,
  };
  await page.route(`${base}/v1/projects/${project}/alerts`, (route) =>
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ alerts: [fired] }) }));
  await page.click('.tabs button[data-tab=alerts]');
  const alertRow = page.locator('#alerts-table tbody tr', { hasText: groups.cdn });
  await alertRow.waitFor();
  assert.equal(
    (await alertRow.locator('td').allTextContents()).join(' | '),
    '2026-01-02 03:04:05 UTC | new | script-src-elem | https://x.example/<script>window.__pwned=5</script> | 7 | ' +
      `${groups.cdn} | delivered`,
  );
  assert.equal(await page.isVisible('#alerts-empty'), false);
  await page.unroute(`${base}/v1/projects/${project}/alerts`);

  step("the page's CSP blocks injected script, and reports it");
  assert.deepEqual(cspConsole(), [], 'our own code broke the CSP');
  await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.__pwned = 3';
    document.body.append(script);
    const holder = document.createElement('div');
    holder.innerHTML = '<img src="data:," onload="window.__pwned = 4">';
    document.body.append(holder);
  });
  await page.waitForFunction(() => window.__csp.length >= 2);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  const violations = await page.evaluate(() => window.__csp);
  assert.ok(violations.some((v) => v.directive === 'script-src-elem' && v.blocked === 'inline'), JSON.stringify(violations));
  assert.ok(violations.some((v) => v.directive === 'script-src-attr'), JSON.stringify(violations));
  assert.ok(cspConsole().length >= 1, 'the console shows the blocked script (and so would show ours)');
  for (let i = 0; reports.length === 0; i += 1) {
    assert.ok(i < 100, `no CSP report reached --ui-csp-report-uri within 20 s; requests: ${seen}`);
    await page.waitForTimeout(200);
  }
  const report = reports.map((r) => r.body).join('\n');
  assert.match(report, /script-src/);
  assert.match(report, /\/ui\//);
  console.log(`csp report: ${reports[0].type} ${reports[0].url} ${reports[0].body.slice(0, 300)}`);

  step('log out forgets the token');
  await page.click('#logout');
  await page.locator('#login').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('palisade.token')), null);
  assert.deepEqual(failures, []);
  const shots = ['ui-groups.png', 'ui-markup.png', 'ui-group.png', 'ui-policy.png'];
  console.log(`screenshots: ${shots.map((name) => path.join(artefacts, name)).join(' ')}`);
  console.log('ui: all steps passed');
} finally {
  await context.close();
  receiver.close();
}
