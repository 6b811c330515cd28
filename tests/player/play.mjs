#!/usr/bin/env node
// Plays an abr package in headless Debian Chromium with hls.js or dash.js,
// forces every video rendition in turn and checks that playback is clean.
//
//   node play.mjs --dir DIR --player hls|dash [--seconds 6] [--timeout 90] [--verbose]
//   node play.mjs --manifest-url URL --player hls|dash [...]
//   [--max-stall S]         fail if media time stops advancing for > S seconds
//                           (stderr prints 'play.mjs: playing' once playback starts)
//   [--chromium-arg ARG]... extra Chromium flags (e.g. to trust a test certificate:
//                           --chromium-arg=--ignore-certificate-errors-spki-list=BASE64)
//   [--page-port N]         serve the page on 127.0.0.1:N (a known page origin, e.g. for
//                           an origin's CORS list); default: any free port
//   [--allow-cut N]         tolerate up to N responses cut off mid-body or reset (a server
//                           killed while sending: no proxy can retry a body it has begun);
//                           they are listed in `cutResponses`, not `httpErrors`, and the
//                           player must still recover (renditions, played time, max stall)
//
// --dir DIR serves DIR (abr layout: DIR/hls/master.m3u8, DIR/dash/manifest.mpd)
// from a CORS-enabled static server; the page comes from another port, so all
// media requests are cross-origin. --manifest-url plays from any server instead
// (e.g. the abr origin), and overrides the manifest path derived from --dir.
//
// stdout: one JSON line
//   {ok, player, renditionsVisited, renditionsTotal, played, errors, httpErrors, cutResponses,
//    consoleErrors (the page's console errors, e.g. a CORS refusal), pageOrigin, ...}
// exit 0 only if ok: every video rendition was loaded and rendered, >= --seconds
// of media time played (see playedEnough), no fatal player error, no HTTP >= 400.
// exit 1 on failure or overall timeout, 2 on bad usage.

import { parseArgs } from 'node:util';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startStaticServer, startPageServer } from './server.mjs';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// Player builds served to the page (paths inside the pinned npm packages).
const PLAYER_SCRIPTS = {
  hls: { url: '/hls.min.js', file: path.join(HERE, 'node_modules/hls.js/dist/hls.min.js') },
  dash: { url: '/dash.all.min.js', file: path.join(HERE, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js') },
};
const MANIFEST_IN_DIR = { hls: 'hls/master.m3u8', dash: 'dash/manifest.mpd' };
// "Played enough": video.played covers >= --seconds minus PLAYED_TOLERANCE_S,
// or playback reached the end of the presentation and covered all of it but
// END_SLACK_S (start offsets such as a skipped 0.17 s hole at the start of TS
// segments, a last frame ending short of the duration). So a 6 s asset with the
// default --seconds 6 passes when played through; `reachedEnd` tells which.
const PLAYED_TOLERANCE_S = 0.1;
const END_SLACK_S = 0.5;
const POLL_MS = 100;

const USAGE = 'usage: node play.mjs (--dir DIR | --manifest-url URL) --player hls|dash [--seconds N] [--timeout S] [--max-stall S] [--page-port N] [--allow-cut N] [--chromium-arg ARG]... [--verbose]';

function usage(msg) {
  if (msg) console.error(`play.mjs: ${msg}`);
  console.error(USAGE);
  process.exit(2);
}

let opts;
try {
  opts = parseArgs({
    options: {
      dir: { type: 'string' },
      player: { type: 'string' },
      seconds: { type: 'string', default: '6' },
      'manifest-url': { type: 'string' },
      timeout: { type: 'string', default: '90' },
      'max-stall': { type: 'string' },
      'chromium-arg': { type: 'string', multiple: true, default: [] },
      'page-port': { type: 'string', default: '0' },
      'allow-cut': { type: 'string', default: '0' },
      verbose: { type: 'boolean', short: 'v', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  }).values;
} catch (e) {
  usage(e.message);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const player = opts.player;
if (player !== 'hls' && player !== 'dash') usage('--player must be hls or dash');
if (!opts.dir && !opts['manifest-url']) usage('need --dir or --manifest-url');
const seconds = Number(opts.seconds);
const timeoutS = Number(opts.timeout);
const maxStallS = opts['max-stall'] === undefined ? null : Number(opts['max-stall']);
const pagePort = Number(opts['page-port']);
if (!(Number.isInteger(pagePort) && pagePort >= 0 && pagePort <= 65535)) usage('bad --page-port');
const allowCut = Number(opts['allow-cut']);
if (!(Number.isInteger(allowCut) && allowCut >= 0)) usage('bad --allow-cut');
if (!(seconds >= 0)) usage('bad --seconds');
if (!(timeoutS > 0)) usage('bad --timeout');
const verbose = opts.verbose;
const vlog = (...a) => { if (verbose) console.error('[play]', ...a); };

class Failure extends Error {}

const t0 = Date.now();
const deadline = t0 + timeoutS * 1000;
let phase = 'starting';
let lastState = null; // latest page snapshot, reported even on timeout
const httpErrors = [];
// Chromium's names for a response that ended early or a connection reset before it.
const CUT_ERRORS = new Set([
  'net::ERR_CONTENT_LENGTH_MISMATCH',
  'net::ERR_INCOMPLETE_CHUNKED_ENCODING',
  'net::ERR_CONNECTION_RESET',
  'net::ERR_EMPTY_RESPONSE',
]);
const cutResponses = []; // up to --allow-cut of them; more go to httpErrors
const pageErrors = []; // uncaught exceptions in the page
const consoleErrors = []; // console.error lines of the page (CORS refusals are logged there)
let pageOrigin = null;
const visits = []; // [{index, height, bitrate, ms}] time to confirm each rendition
const cleanups = []; // run in reverse order at the end
// Longest time (ms) media time did not advance after playback started, while
// neither paused nor ended (rebuffering, failed-over requests, switches).
let maxStallMs = 0;
let stallT = null;
let stallSince = 0;
function trackStall(s) {
  const now = Date.now();
  if (!s.playing) return;
  if (stallT === null || s.currentTime !== stallT || s.paused || s.ended) {
    if (stallT === null) console.error('play.mjs: playing');
    stallT = s.currentTime;
    stallSince = now;
    return;
  }
  maxStallMs = Math.max(maxStallMs, now - stallSince);
}

async function main() {
  // --- servers -------------------------------------------------------------
  let manifestUrl = opts['manifest-url'];
  if (opts.dir) {
    const dir = path.resolve(opts.dir);
    if (!manifestUrl) {
      try {
        await stat(path.join(dir, MANIFEST_IN_DIR[player]));
      } catch {
        throw new Failure(`no ${MANIFEST_IN_DIR[player]} in ${dir}`);
      }
    }
    const media = await startStaticServer(dir, { log: vlog });
    cleanups.push(media.close);
    manifestUrl ??= `${media.origin}/${MANIFEST_IN_DIR[player]}`;
  }
  const script = PLAYER_SCRIPTS[player];
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>abr ${player} check</title>
<link rel="icon" href="data:,"></head>
<body>
<video id="video" muted autoplay playsinline width="640" height="360"></video>
<script src="${script.url}"></script>
<script src="/page.js"></script>
</body></html>`;
  const pages = await startPageServer({
    '/': { body: html, type: 'text/html; charset=utf-8' },
    '/page.js': { file: path.join(HERE, 'page.js'), type: 'text/javascript; charset=utf-8' },
    [script.url]: { file: script.file, type: 'text/javascript; charset=utf-8' },
  }, { port: pagePort });
  pageOrigin = pages.origin;
  cleanups.push(pages.close);
  vlog(`page ${pages.origin}/ manifest ${manifestUrl}`);

  // --- browser ------------------------------------------------------------
  phase = 'launching chromium';
  // A fresh profile every run; Playwright passes it as --user-data-dir.
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'abr-player-'));
  // Retries: after a launch timeout Chromium may still be writing while it exits.
  cleanups.push(() => rm(userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...opts['chromium-arg']],
    timeout: remainingMs(),
  });
  cleanups.push(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());

  page.on('response', (r) => {
    if (r.status() >= 400) httpErrors.push({ url: r.url(), status: r.status() });
  });
  page.on('requestfailed', (r) => {
    // Aborted requests are normal: players cancel in-flight loads on a switch.
    const error = r.failure()?.errorText;
    if (error === 'net::ERR_ABORTED') return;
    if (CUT_ERRORS.has(error) && cutResponses.length < allowCut) cutResponses.push({ url: r.url(), error });
    else httpErrors.push({ url: r.url(), status: 0, error });
  });
  page.on('pageerror', (e) => pageErrors.push({ fatal: true, source: 'pageerror', message: e.message }));
  page.on('console', (m) => {
    vlog(`console.${m.type()}: ${m.text()}`);
    if (m.type() === 'error') consoleErrors.push(m.text());
  });

  phase = 'loading the page';
  await page.goto(`${pages.origin}/`, { waitUntil: 'load', timeout: remainingMs() });
  await page.evaluate(([p, u]) => window.harness.start(p, u), [player, manifestUrl]);

  // --- polling helper: every wait is a condition with the global deadline --
  const snapshot = async () => {
    lastState = await page.evaluate(() => window.harness.state());
    trackStall(lastState);
    return lastState;
  };
  async function waitFor(what, cond) {
    phase = what;
    for (;;) {
      const s = await snapshot();
      const fatal = s.fatal || pageErrors[0];
      if (fatal) throw new Failure(`fatal player error while ${what}: ${JSON.stringify(fatal)}`);
      if (httpErrors.length) throw new Failure(`HTTP error while ${what}: ${JSON.stringify(httpErrors[0])}`);
      if (cond(s)) return s;
      if (s.ended) throw new Failure(`media ended while ${what}`);
      if (Date.now() > deadline) throw new Failure(`timeout after ${timeoutS}s while ${what}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
  const confirmed = (s, i) => !!(s.loaded[i] && s.rendered[i]);
  const label = (r) => `rendition ${r.index} (${r.width}x${r.height} ${Math.round(r.bitrate / 1000)}k)`;

  // --- play, then visit every rendition ------------------------------------
  let s = await waitFor('waiting for playback to start', (x) => x.renditions.length > 0 && x.playing);
  vlog(`playing; ${s.renditions.length} video renditions`);

  // The rendition playback started with counts once confirmed; every other
  // one is forced with switchTo and confirmed before moving on.
  s = await waitFor('confirming the start rendition', (x) => x.current >= 0 && confirmed(x, x.current));
  const start = s.current;
  const order = [start, ...s.renditions.map((r) => r.index).filter((i) => i !== start)];
  for (const i of order) {
    const r = s.renditions[i];
    const t = Date.now();
    if (!confirmed(s, i)) {
      await page.evaluate((j) => window.harness.switchTo(j), i);
      s = await waitFor(`switching to ${label(r)}`, (x) => confirmed(x, i));
    }
    visits.push({ index: i, width: r.width, height: r.height, bitrate: r.bitrate, ms: Date.now() - t });
    vlog(`confirmed ${label(r)} in ${Date.now() - t} ms at t=${s.currentTime.toFixed(2)}`);
  }

  // --- play long enough ------------------------------------------------------
  s = await waitFor(`playing ${seconds}s of media`, playedEnough);
  vlog(`played ${s.played.toFixed(2)} s${s.ended ? ' (reached the end)' : ''}`);
}

function playedEnough(s) {
  if (s.played >= seconds - PLAYED_TOLERANCE_S) return true;
  return !!s.ended && Number.isFinite(s.duration)
    && s.played >= Math.min(seconds, s.duration) - END_SLACK_S;
}

function remainingMs() {
  return Math.max(1, deadline - Date.now());
}

function buildResult(failure) {
  const s = lastState ?? { renditions: [], loaded: {}, rendered: {}, played: 0, errors: [] };
  const renditions = s.renditions.map((r) => ({
    ...r,
    loaded: !!s.loaded[r.index],
    rendered: !!s.rendered[r.index],
  }));
  const visited = renditions.filter((r) => r.loaded && r.rendered).length;
  const errors = [...(s.errors ?? []), ...pageErrors];
  const played = Math.round((s.played ?? 0) * 1000) / 1000;
  const ok = !failure
    && renditions.length > 0
    && visited === renditions.length
    && playedEnough(s)
    && !errors.some((e) => e.fatal)
    && httpErrors.length === 0
    && (maxStallS === null || maxStallMs <= maxStallS * 1000);
  return {
    maxStallS: maxStallMs / 1000,
    ok,
    player,
    renditionsVisited: visited,
    renditionsTotal: renditions.length,
    played,
    reachedEnd: !!s.ended,
    duration: Number.isFinite(s.duration) ? s.duration : null,
    errors,
    httpErrors,
    cutResponses,
    consoleErrors,
    pageOrigin,
    ...(failure ? { failure } : {}),
    renditions,
    visits,
    videoSizes: s.videoSizes ?? [],
    elapsedS: Math.round((Date.now() - t0) / 100) / 10,
  };
}

async function cleanup() {
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (e) {
      vlog(`cleanup: ${e.message}`);
    }
  }
}

// Overall timeout: races main() so that even a hung launch or navigation
// ends with a result line and exit 1.
let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new Failure(`timeout after ${timeoutS}s while ${phase}`)), timeoutS * 1000 + 500);
});

let failure = null;
// If the timeout wins, main() is still pending and will reject once the
// browser is closed; that late rejection must not crash the process.
const run = main();
run.catch(() => {});
try {
  await Promise.race([run, timeout]);
} catch (e) {
  if (e instanceof Failure) failure = e.message;
  else if (Date.now() >= deadline) failure = `timeout after ${timeoutS}s while ${phase}`; // e.g. Playwright TimeoutError
  else failure = `harness error: ${e?.stack || e}`;
}
clearTimeout(timer);
const result = buildResult(failure);
// Cleanup gets its own short budget; a stuck browser must not hang the run.
await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 10_000).unref())]);
console.log(JSON.stringify(result));
if (!result.ok) {
  console.error(`play.mjs: FAIL (${player}): ${failure ?? 'conditions not met'}`);
}
process.exit(result.ok ? 0 : 1);
