#!/usr/bin/env node
// Drives the library page of `abr serve --ingest` (`/`) in headless Debian Chromium, as a user:
// enters the token, picks a file in the upload form (setInputFiles), starts the upload and
// follows the page (tests/library.rs).
//
//   node library.mjs --url http://127.0.0.1:PORT --token TOKEN --file PATH --mode MODE
//                    [--name NAME] [--filename SHOWN_NAME] [--delay-ms 0] [--timeout 600]
//
// Modes:
//   upload  the upload completes (the form's progress bar read every 25 ms), then the video's row
//           reaches `ready`; reports the play link's href.
//   reload  every PATCH is held --delay-ms before it leaves the browser; once the server reports
//           bytes received (GET /api/v1/videos), the page is reloaded (the PATCH held then is
//           aborted), the same file is picked again and the upload finishes; waits until the
//           video is past `uploading`. receivedAtReload: the server's bytes after the reload.
//   pause   like reload, but the form's Pause button interrupts the upload (no reload); once it
//           is complete, the row's Cancel button cancels the queued job (`cancelled`, Retry
//           shown) and Retry queues it again. receivedAtReload: the server's bytes after the
//           pause; states: the row's states seen.
//   failed  the row reaches `failed` (its reason is reported), then Delete removes it.
//   pages   (no upload, no --file) the list's pages: the newest 20 rows, Older, Newest again.
// --filename uploads the file's bytes under that file name (to check it is shown as text).
// --bad-token signs in with it first: the page must refuse it (the list's 401) and ask again.
// stdout: one JSON line {ok, mode, failure?, loginShown, csp, progress (distinct readings),
// creates (POSTs to /api/v1/uploads), patches sent [{offset, afterReload}], receivedAtReload,
// loginAfterReload, states (row states seen), id, playHref, reason, filenameText, injected,
// refused (401s while --bad-token was tried), refusalShown (the page's message),
// deleted, pages {first, older, back, all: row ids}, httpErrors, pageErrors, consoleErrors,
// elapsedS}. exit 1 on failure, 2 on bad usage.

import { readFile } from 'node:fs/promises';
import { launch, parseOrExit, runCleanups } from './chromium.mjs';

const { opts, usage } = parseOrExit(
  'library.mjs',
  'usage: node library.mjs --url URL --token TOKEN [--file PATH] --mode upload|reload|pause|failed|pages [--name NAME] [--filename NAME] [--delay-ms 0] [--bad-token T] [--timeout 600]',
  {
    url: { type: 'string' },
    token: { type: 'string' },
    file: { type: 'string' },
    mode: { type: 'string' },
    name: { type: 'string', default: '' },
    filename: { type: 'string' },
    'delay-ms': { type: 'string', default: '0' },
    'bad-token': { type: 'string' },
    timeout: { type: 'string', default: '600' },
    verbose: { type: 'boolean', short: 'v', default: false },
  },
);
if (!['upload', 'reload', 'pause', 'failed', 'pages'].includes(opts.mode)) usage('bad --mode');
if (!opts.url || !opts.token || (!opts.file && opts.mode !== 'pages')) usage('need --url, --token and --file');
const base = new URL(opts.url);
const delayMs = Number(opts['delay-ms']);
const timeoutS = Number(opts.timeout);
const vlog = (...a) => { if (opts.verbose) console.error('[library]', ...a); };

class Failure extends Error {}

const t0 = Date.now();
const deadline = t0 + timeoutS * 1000;
let phase = 'starting';
const result = {
  mode: opts.mode,
  loginShown: false,
  csp: null,
  progress: [],
  creates: 0,
  patches: [],
  receivedAtReload: null,
  loginAfterReload: null,
  states: [],
  id: null,
  playHref: null,
  reason: null,
  filenameText: null,
  injected: null,
  deleted: null,
  httpErrors: [],
  pageErrors: [],
  consoleErrors: [],
  consoleErrorsExpected: [],
  refused: 0,
  refusalShown: null,
  pages: null,
};
// The reload (or the pause): PATCHes held when it starts are aborted, so none is half sent
// (`reloading`); `afterReload` once the new document has loaded (or the page says Paused).
let reloading = false;
// While a bad token is tried (its 401 is expected).
let refusing = false;
let afterReload = false;
const cleanups = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const remainingMs = () => Math.max(1, deadline - Date.now());
function checkDeadline() {
  if (Date.now() > deadline) throw new Failure(`timeout after ${timeoutS}s while ${phase}`);
}

/// The principal's videos as the API lists them (newest first).
async function videos() {
  const r = await fetch(new URL('/api/v1/videos?limit=100', base), {
    headers: { Authorization: `Bearer ${opts.token}` },
  });
  if (!r.ok) throw new Failure(`GET /api/v1/videos: ${r.status}`);
  return (await r.json()).videos;
}

/// Polls `cond` (async, truthy to stop) every `everyMs` until the deadline.
async function until(what, cond, everyMs = 100) {
  phase = what;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (result.pageErrors.length) throw new Failure(`page exception: ${result.pageErrors[0]}`);
    checkDeadline();
    await sleep(everyMs);
  }
}

/// The upload once the server reports bytes received.
function receivedSome() {
  return until('waiting for received bytes', async () => {
    const vs = await videos();
    return vs.find((x) => x.state === 'uploading' && x.received > 0);
  });
}

async function pickAndStart(page, files) {
  await page.setInputFiles('#file', files);
  if (opts.name) await page.fill('#name', opts.name);
  await page.click('#start');
}

/// Reads the form's progress bar every 25 ms until the page says the upload is done.
async function followUpload(page) {
  await until(
    'uploading',
    async () => {
      const s = await page.evaluate(() => ({
        value: document.getElementById('upload-progress').value,
        status: document.getElementById('upload-status').textContent,
        error: document.getElementById('upload-status').className === 'error',
      }));
      const last = result.progress[result.progress.length - 1];
      if (s.value !== last) result.progress.push(s.value);
      if (s.error) throw new Failure(`the page reports: ${s.status}`);
      return s.status.includes('uploaded as');
    },
    25,
  );
}

/// The one row's state (recorded when it changes).
async function rowState(page) {
  const st = await page.evaluate(() => {
    const tr = document.querySelector('#videos tbody tr');
    return tr ? { id: tr.dataset.id, state: tr.dataset.state } : null;
  });
  if (st && result.states[result.states.length - 1] !== st.state) result.states.push(st.state);
  if (st) result.id = st.id;
  return st;
}

/// Rows shown, once the list has been drawn with `n` of them (within the deadline).
async function rowsShown(page, what, n) {
  await until(what, async () => (await page.$$('#videos tbody tr')).length === n);
  return page.evaluate(() => [...document.querySelectorAll('#videos tbody tr')].map((tr) => tr.dataset.id));
}

/// The list's pages: the newest, Older, Newest again.
async function pages(page) {
  const all = await videos();
  const size = 20;
  const first = await rowsShown(page, 'the newest page', Math.min(size, all.length));
  if (!(await page.isVisible('#older'))) throw new Failure('no Older button');
  await page.click('#older');
  const older = await rowsShown(page, 'the older page', all.length - first.length);
  if (!(await page.isVisible('#first'))) throw new Failure('no Newest button');
  await page.click('#first');
  const back = await rowsShown(page, 'the newest page again', first.length);
  result.pages = { first, older, back, all: all.map((v) => v.id) };
}

async function main() {
  phase = 'launching chromium';
  const { page, close } = await launch('abr-library-', remainingMs());
  cleanups.push(close);
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/api/v1/uploads' && r.method() === 'POST') result.creates += 1;
  });
  page.on('response', (r) => {
    if (r.status() === 401 && refusing) result.refused += 1;
    else if (r.status() >= 400) {
      result.httpErrors.push({ url: r.url(), status: r.status() });
    }
  });
  page.on('pageerror', (e) => result.pageErrors.push(e.message));
  page.on('console', (m) => {
    vlog(`console.${m.type()}: ${m.text()}`);
    if (m.type() !== 'error') return;
    // The requests the reload aborts are the test's doing, not the page's.
    if ((reloading && !afterReload) || refusing) result.consoleErrorsExpected.push(m.text());
    else result.consoleErrors.push(m.text());
  });
  page.on('dialog', (d) => d.accept());
  // Every PATCH goes through here: recorded when it leaves the browser; before the reload it is
  // held --delay-ms first, and aborted if the reload starts meanwhile.
  await page.route(
    (u) => u.pathname.startsWith('/api/v1/uploads/'),
    async (route) => {
      const req = route.request();
      try {
        if (req.method() === 'PATCH') {
          const held = Date.now();
          while (!afterReload && !reloading && Date.now() - held < delayMs) await sleep(20);
          if (reloading && !afterReload) {
            await route.abort();
            return;
          }
          result.patches.push({ offset: Number(req.headers()['upload-offset']), afterReload });
        }
        await route.continue();
      } catch (e) {
        vlog(`request dropped: ${e.message}`);
      }
    },
  );

  phase = 'loading the page';
  const res = await page.goto(new URL('/', base).href, { waitUntil: 'load', timeout: remainingMs() });
  result.csp = res.headers()['content-security-policy'] ?? null;
  await page.waitForSelector('#login:not([hidden])', { timeout: remainingMs() });
  result.loginShown = true;
  if (opts['bad-token']) {
    refusing = true;
    await page.fill('#token', opts['bad-token']);
    await page.click('#login button[type=submit]');
    await until('waiting for the refusal', async () =>
      page.evaluate(() => !document.getElementById('login').hidden && document.getElementById('login-error').textContent),
    );
    result.refusalShown = await page.textContent('#login-error');
    refusing = false;
  }
  await page.fill('#token', opts.token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#main:not([hidden])', { timeout: remainingMs() });

  if (opts.mode === 'pages') {
    await pages(page);
    return;
  }
  const bytes = await readFile(opts.file);
  const files = opts.filename
    ? { name: opts.filename, mimeType: 'application/octet-stream', buffer: bytes }
    : opts.file;
  phase = 'starting the upload';
  await pickAndStart(page, files);

  if (opts.mode === 'reload') {
    const v = await receivedSome();
    result.id = v.id;
    reloading = true;
    phase = 'reloading';
    await page.reload({ waitUntil: 'load', timeout: remainingMs() });
    await page.waitForSelector('#main:not([hidden]), #login:not([hidden])', { timeout: remainingMs() });
    afterReload = true;
    // What the server has when the upload resumes.
    result.receivedAtReload = (await videos()).find((x) => x.id === v.id)?.received ?? null;
    result.loginAfterReload = await page.isVisible('#login');
    if (result.loginAfterReload) throw new Failure('the token was asked again after a reload');
    await pickAndStart(page, files);
  } else if (opts.mode === 'pause') {
    const v = await receivedSome();
    result.id = v.id;
    reloading = true;
    phase = 'pausing';
    await page.click('#pause');
    await until('waiting for Paused', async () =>
      page.evaluate(() => document.getElementById('upload-status').textContent.startsWith('Paused')),
    );
    afterReload = true;
    result.receivedAtReload = (await videos()).find((x) => x.id === v.id)?.received ?? null;
    await pickAndStart(page, files);
  }
  await followUpload(page);

  if (opts.mode === 'upload') {
    await until('waiting for ready', async () => (await rowState(page))?.state === 'ready', 250);
    result.playHref = await page.getAttribute('#videos tbody tr a.play', 'href');
    phase = 'opening the play link';
    await page.click('#videos tbody tr a.play');
    await page.waitForURL((u) => u.pathname === result.playHref, { timeout: remainingMs() });
    await page.waitForSelector('video#video', { timeout: remainingMs() });
  } else if (opts.mode === 'reload') {
    await until('waiting until the upload is complete', async () => {
      const st = await rowState(page);
      return st && st.state !== 'uploading';
    }, 100);
  } else if (opts.mode === 'pause') {
    await until('waiting for queued', async () => (await rowState(page))?.state === 'queued', 100);
    phase = 'cancelling';
    await page.click('#videos tbody tr .cancel');
    await until('waiting for cancelled', async () => (await rowState(page))?.state === 'cancelled', 100);
    if (!(await page.isVisible('#videos tbody tr .retry'))) throw new Failure('no Retry button on a cancelled video');
    phase = 'retrying';
    await page.click('#videos tbody tr .retry');
    await until('waiting for queued again', async () => (await rowState(page))?.state === 'queued', 100);
  } else {
    await until('waiting for failed', async () => {
      const st = await rowState(page);
      if (st && ['ready', 'cancelled'].includes(st.state)) throw new Failure(`row is ${st.state}`);
      return st?.state === 'failed';
    }, 250);
    const row = await page.evaluate(() => {
      const tr = document.querySelector('#videos tbody tr');
      return {
        reason: tr.querySelector('.reason').textContent,
        filename: tr.querySelector('.filename').textContent,
        injected: document.querySelectorAll('#videos img, #videos i, #videos b, #videos script').length,
        retryShown: !tr.querySelector('.retry').hidden,
      };
    });
    result.reason = row.reason;
    result.filenameText = row.filename;
    result.injected = row.injected;
    if (!row.retryShown) throw new Failure('no Retry button on a failed video');
    phase = 'deleting';
    await page.click('#videos tbody tr .delete');
    await until('waiting for the row to go', async () => (await page.$('#videos tbody tr')) === null);
    result.deleted = (await videos()).length === 0;
  }
}

const cleanup = () => runCleanups(cleanups, vlog);

let failure = null;
try {
  await main();
} catch (e) {
  failure = e instanceof Failure ? e.message : `${phase}: ${e.stack || e}`;
}
await cleanup();
if (!failure && result.pageErrors.length) failure = `page exception: ${result.pageErrors[0]}`;
if (!failure && result.httpErrors.length) failure = `HTTP error: ${JSON.stringify(result.httpErrors[0])}`;
if (!failure && result.consoleErrors.length) failure = `console error: ${result.consoleErrors[0]}`;
console.log(
  JSON.stringify({
    ok: !failure,
    ...(failure ? { failure } : {}),
    ...result,
    elapsedS: Math.round((Date.now() - t0) / 100) / 10,
  }),
);
process.exit(failure ? 1 : 0);
