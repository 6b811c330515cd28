#!/usr/bin/env node
// Opens a player page served by the abr origin itself (`/play/<name>?player=hls|dash`) in
// headless Debian Chromium and checks that it plays from the origin alone.
//
//   node playpage.mjs --url http://127.0.0.1:PORT/play/NAME --player hls|dash
//                     [--seconds 3] [--timeout 60] [--verbose]
//
// Passes (exit 0) when the page's <video> currentTime advanced by >= --seconds, with no page
// exception, no console error, nothing in the page's #errors box, no HTTP response >= 400 or
// failed request, every request went to the page's own origin (no CDN / external request), and
// the player script was loaded from the origin's /_player/ (hls.min.js or dash.all.min.js).
// stdout: one JSON line {ok, player, url, start, currentTime, advanced, videoWidth,
// renditionOptions (entries of the page's rendition selector besides Auto), scripts, requests,
// externalRequests, httpErrors, pageErrors, consoleErrors, pageErrorText, failure?, elapsedS}.
// exit 1 on failure or timeout, 2 on bad usage.

import { launch, parseOrExit, runCleanups } from './chromium.mjs';

// Browser and flags: chromium.mjs (the same as play.mjs).
const SCRIPT = { hls: '/_player/hls.min.js', dash: '/_player/dash.all.min.js' };
const POLL_MS = 100;
const USAGE = 'usage: node playpage.mjs --url URL --player hls|dash [--seconds 3] [--timeout 60] [--verbose]';

const { opts, usage } = parseOrExit('playpage.mjs', USAGE, {
  url: { type: 'string' },
  player: { type: 'string' },
  seconds: { type: 'string', default: '3' },
  timeout: { type: 'string', default: '60' },
  verbose: { type: 'boolean', short: 'v', default: false },
});
const player = opts.player;
if (player !== 'hls' && player !== 'dash') usage('--player must be hls or dash');
if (!opts.url) usage('need --url');
let pageUrl;
try {
  pageUrl = new URL(opts.url);
} catch {
  usage('bad --url');
}
pageUrl.searchParams.set('player', player);
const seconds = Number(opts.seconds);
const timeoutS = Number(opts.timeout);
if (!(seconds >= 0)) usage('bad --seconds');
if (!(timeoutS > 0)) usage('bad --timeout');
const vlog = (...a) => { if (opts.verbose) console.error('[playpage]', ...a); };

class Failure extends Error {}

const t0 = Date.now();
const deadline = t0 + timeoutS * 1000;
let phase = 'starting';
const requests = []; // every URL the page asked for
const scripts = []; // {url, status} of script responses
const httpErrors = [];
const pageErrors = [];
const consoleErrors = [];
let state = { start: null, currentTime: 0, errorText: '' };
let startAt = null; // first position seen once the page is loaded (0, or the page's ?t=)
const cleanups = [];

// Requests leaving the origin (data: and blob: URLs are local to the page).
const external = () => requests.filter((u) => !/^(data|blob):/.test(u) && URL.parse(u)?.origin !== pageUrl.origin);

async function main() {
  phase = 'launching chromium';
  const { page, close } = await launch('abr-playpage-', remainingMs());
  cleanups.push(close);
  page.on('request', (r) => requests.push(r.url()));
  page.on('response', (r) => {
    if (r.request().resourceType() === 'script') scripts.push({ url: r.url(), status: r.status() });
    if (r.status() >= 400) httpErrors.push({ url: r.url(), status: r.status() });
  });
  page.on('requestfailed', (r) => {
    const error = r.failure()?.errorText;
    if (error !== 'net::ERR_ABORTED') httpErrors.push({ url: r.url(), status: 0, error });
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    vlog(`console.${m.type()}: ${m.text()}`);
    if (m.type() === 'error') consoleErrors.push(m.text());
  });

  phase = 'loading the page';
  await page.goto(pageUrl.href, { waitUntil: 'load', timeout: remainingMs() });

  phase = `playing ${seconds}s`;
  for (;;) {
    state = await page.evaluate(() => {
      const v = document.getElementById('video');
      return {
        currentTime: v ? v.currentTime : 0,
        paused: v ? v.paused : true,
        ended: v ? v.ended : false,
        readyState: v ? v.readyState : 0,
        videoWidth: v ? v.videoWidth : 0,
        // Renditions listed in the page's selector (besides "Auto").
        renditionOptions: Math.max(0, (document.getElementById('rendition')?.options.length ?? 1) - 1),
        errorText: (document.getElementById('errors')?.textContent ?? '').trim(),
        mediaError: v && v.error ? `${v.error.code} ${v.error.message}` : null,
      };
    });
    state.start = startAt ??= state.currentTime;
    if (pageErrors.length) throw new Failure(`page exception: ${pageErrors[0]}`);
    if (state.errorText) throw new Failure(`page reported: ${state.errorText}`);
    if (state.mediaError) throw new Failure(`media error: ${state.mediaError}`);
    if (httpErrors.length) throw new Failure(`HTTP error: ${JSON.stringify(httpErrors[0])}`);
    if (state.currentTime - startAt >= seconds) break;
    if (state.ended) throw new Failure('media ended before advancing enough');
    if (Date.now() > deadline) throw new Failure(`timeout after ${timeoutS}s while ${phase}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  vlog(`advanced ${(state.currentTime - startAt).toFixed(2)} s`);
}

function remainingMs() {
  return Math.max(1, deadline - Date.now());
}

function buildResult(failure) {
  const ext = external();
  const want = new URL(SCRIPT[player], pageUrl.origin).href;
  const playerScript = scripts.find((s) => s.url === want);
  let why = failure;
  if (!why && ext.length) why = `external requests: ${ext.join(', ')}`;
  if (!why && !(playerScript && playerScript.status === 200)) why = `player script ${want} not loaded: ${JSON.stringify(scripts)}`;
  if (!why && consoleErrors.length) why = `console error: ${consoleErrors[0]}`;
  const advanced = Math.round(((state.currentTime ?? 0) - (state.start ?? 0)) * 1000) / 1000;
  return {
    ok: !why,
    player,
    url: pageUrl.href,
    start: state.start,
    currentTime: state.currentTime,
    advanced,
    videoWidth: state.videoWidth ?? 0,
    renditionOptions: state.renditionOptions ?? 0,
    scripts,
    requests: requests.length,
    externalRequests: ext,
    httpErrors,
    pageErrors,
    consoleErrors,
    pageErrorText: state.errorText ?? '',
    ...(why ? { failure: why } : {}),
    elapsedS: Math.round((Date.now() - t0) / 100) / 10,
  };
}

const cleanup = () => runCleanups(cleanups, vlog);

let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Failure(`timeout after ${timeoutS}s while ${phase}`)), timeoutS * 1000 + 500);
});
let failure = null;
const run = main();
run.catch(() => {});
try {
  await Promise.race([run, timeout]);
} catch (e) {
  if (e instanceof Failure) failure = e.message;
  else if (Date.now() >= deadline) failure = `timeout after ${timeoutS}s while ${phase}`;
  else failure = `harness error: ${e?.stack || e}`;
}
clearTimeout(timer);
const result = buildResult(failure);
await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 10_000).unref())]);
console.log(JSON.stringify(result));
if (!result.ok) console.error(`playpage.mjs: FAIL (${player}): ${result.failure}`);
process.exit(result.ok ? 0 : 1);
