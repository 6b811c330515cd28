#!/usr/bin/env node
// Serves a directory of abr packages with a small player page, until Ctrl-C.
// Stand-in for the abr origin (`abr serve`, not built yet); used by scripts/demo.sh.
//
//   node serve.mjs --root DIR [--port N] [--host 127.0.0.1] [--once-check]
//
// ROOT/<name>/hls/master.m3u8 and ROOT/<name>/dash/manifest.mpd are packages.
//   /                 page listing the packages (plays the first one)
//   /play/<name>      page playing package <name> (?player=hls|dash, default hls)
//   /_player/*.js     hls.js and dash.js from tests/player/node_modules (no CDN)
//   /<name>/...       the package files (static server of server.mjs: CORS, Range, MIME)
//
// --port defaults to $PORT, else 8080 (0 = any free port). A busy port exits 1 with a message.
// --once-check starts the server (on a free port unless --port/$PORT is given), requests the
// page, the player scripts and, for every package, the manifests and a media segment, prints
// one line per request and exits 0 if all answered as expected, 1 otherwise.

import { createServer, get as httpGet } from 'node:http';
import { createReadStream, existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { listen, staticHandler } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const VENDOR = {
  '/_player/hls.min.js': path.join(HERE, 'node_modules/hls.js/dist/hls.min.js'),
  '/_player/dash.all.min.js': path.join(HERE, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js'),
};

const die = (msg, code = 1) => {
  console.error(`serve.mjs: ${msg}`);
  process.exit(code);
};

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      root: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'once-check': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  die(`${e.message}\nusage: node serve.mjs --root DIR [--port N] [--host 127.0.0.1] [--once-check]`, 2);
}
if (opts.help || !opts.root) {
  die('usage: node serve.mjs --root DIR [--port N] [--host 127.0.0.1] [--once-check]', opts.help ? 0 : 2);
}
const portArg = opts.port ?? process.env.PORT ?? (opts['once-check'] ? '0' : '8080');
if (!/^\d+$/.test(portArg) || Number(portArg) > 65535) die(`bad port: ${portArg}`, 2);
const ROOT = path.resolve(opts.root);
if (!existsSync(ROOT)) die(`--root ${opts.root}: no such directory`);
for (const f of Object.values(VENDOR)) {
  if (!existsSync(f)) die(`${f} is missing: run \`npm ci\` in ${HERE} (or bash scripts/setup.sh)`);
}

/** Package directories under ROOT: [{name, hls, dash}] (hls/dash: manifest URL or null). */
async function listPackages() {
  let entries = [];
  try {
    entries = await readdir(ROOT, { withFileTypes: true });
  } catch {
    return [];
  }
  const pkgs = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue; // also skips *.abr-staging
    const base = `/${encodeURIComponent(e.name)}`;
    const hls = existsSync(path.join(ROOT, e.name, 'hls/master.m3u8')) ? `${base}/hls/master.m3u8` : null;
    const dash = existsSync(path.join(ROOT, e.name, 'dash/manifest.mpd')) ? `${base}/dash/manifest.mpd` : null;
    if (hls || dash) pkgs.push({ name: e.name, hls, dash });
  }
  return pkgs;
}

// ---------------------------------------------------------------------------
// The page. clientMain runs in the browser (serialised with Function#toString).

function clientMain(PACKAGES, CURRENT) {
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const select = $('rendition');
  const params = new URLSearchParams(location.search);
  const pkg = PACKAGES.find((p) => p.name === CURRENT);
  let kind = params.get('player') === 'dash' ? 'dash' : 'hls';
  if (pkg && !pkg[kind]) kind = pkg.hls ? 'hls' : 'dash';
  let hls = null;
  let dash = null;
  let renditions = []; // [{id, width, height, bitrate}] (id: hls level index / dash representation id)
  let current = null; // id of the rendition being shown, from player events
  const errors = [];

  const nav = $('packages');
  if (!PACKAGES.length) nav.textContent = 'No packages found (expected <name>/hls/master.m3u8 or <name>/dash/manifest.mpd under the root).';
  for (const p of PACKAGES) {
    const a = document.createElement('a');
    a.href = `/play/${encodeURIComponent(p.name)}?player=${kind}`;
    a.textContent = p.name;
    if (p.name === CURRENT) a.className = 'current';
    nav.append(a, ' ');
  }
  for (const input of document.querySelectorAll('input[name=player]')) {
    input.checked = input.value === kind;
    input.disabled = !pkg || !pkg[input.value];
    input.addEventListener('change', () => start(input.value));
  }

  const label = (r) => `${Math.min(r.width, r.height)}p · ${r.width}×${r.height} · ${(r.bitrate / 1e6).toFixed(2)} Mb/s`;
  const log = (fatal, msg) => {
    errors.push({ fatal, msg });
    const line = document.createElement('div');
    line.className = fatal ? 'fatal' : '';
    line.textContent = `${new Date().toLocaleTimeString()} ${fatal ? 'FATAL ' : ''}${msg}`;
    $('log').prepend(line);
  };
  // The rendition on screen: the one the player last reported, unless the decoded picture says
  // otherwise (dash.js reports no change for the first one); then the one of that size.
  const shown = () => {
    const bySize = (x) => x.width === video.videoWidth && x.height === video.videoHeight;
    const r = renditions.find((x) => String(x.id) === String(current));
    return r && (bySize(r) || !video.videoWidth) ? r : renditions.find(bySize) || r;
  };
  const status = () => {
    const r = shown();
    const auto = select.value === 'auto' ? ' (auto)' : '';
    $('status').textContent = `${kind === 'hls' ? 'hls.js' : 'dash.js'} · rendition ${r ? label(r) : '?'}${auto}`
      + ` · video ${video.videoWidth}×${video.videoHeight} · ${video.currentTime.toFixed(1)} s`;
  };
  for (const ev of ['timeupdate', 'resize', 'playing', 'pause']) video.addEventListener(ev, status);
  video.addEventListener('error', () => log(true, `<video> error ${video.error && video.error.code}: ${video.error && video.error.message}`));

  const fillSelect = () => {
    select.replaceChildren(new Option('Auto (ABR)', 'auto'));
    for (const r of renditions) select.append(new Option(label(r), String(r.id)));
    status();
  };
  const play = () => video.play().catch(() => { video.muted = true; video.play().catch(() => {}); });

  select.addEventListener('change', () => {
    const v = select.value;
    if (hls) hls.currentLevel = v === 'auto' ? -1 : Number(v); // immediate switch
    if (dash) {
      dash.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: v === 'auto' } } } });
      if (v !== 'auto') dash.setRepresentationForTypeById('video', v, true);
    }
    status();
  });

  function stop() {
    if (hls) hls.destroy();
    if (dash) dash.reset();
    hls = dash = null;
    renditions = [];
    current = null;
    video.removeAttribute('src');
    video.load();
  }

  function start(which) {
    const startAt = video.currentTime || 0;
    stop();
    kind = which;
    const u = new URL(location.href);
    u.searchParams.set('player', kind);
    history.replaceState(null, '', u);
    for (const a of nav.querySelectorAll('a')) a.search = `?player=${kind}`;
    if (!pkg) return;
    const url = pkg[kind];
    $('manifest').textContent = url;
    $('manifest').href = url;
    if (kind === 'hls') {
      if (typeof Hls === 'undefined' || !Hls.isSupported()) return log(true, 'hls.js unavailable or MSE unsupported');
      hls = new Hls({ startPosition: startAt || -1 });
      hls.on(Hls.Events.MANIFEST_PARSED, (_e, d) => {
        renditions = d.levels.map((l, i) => ({ id: i, width: l.width, height: l.height, bitrate: l.bitrate }));
        fillSelect();
        play();
      });
      hls.on(Hls.Events.LEVEL_SWITCHED, (_e, d) => { current = d.level; status(); });
      hls.on(Hls.Events.ERROR, (_e, d) => log(d.fatal, `hls.js ${d.type}/${d.details}${d.reason ? `: ${d.reason}` : ''}${d.frag ? ` ${d.frag.url}` : ''}`));
      hls.attachMedia(video);
      hls.loadSource(url);
    } else {
      if (typeof dashjs === 'undefined') return log(true, 'dash.js unavailable');
      dash = dashjs.MediaPlayer().create();
      dash.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
      const E = dashjs.MediaPlayer.events;
      dash.on(E.STREAM_INITIALIZED, () => {
        renditions = (dash.getRepresentationsByType('video') || []).map((r) => ({ id: r.id, width: r.width, height: r.height, bitrate: r.bandwidth }));
        fillSelect();
      });
      dash.on(E.QUALITY_CHANGE_RENDERED, (e) => {
        if (e.mediaType === 'video' && e.newRepresentation) { current = e.newRepresentation.id; status(); }
      });
      dash.on(E.ERROR, (e) => log(true, `dash.js error ${e.error && e.error.code}: ${e.error && e.error.message}`));
      dash.on(E.PLAYBACK_ERROR, (e) => log(true, `dash.js playback error: ${e.error && e.error.message}`));
      // Autoplay; if the browser refuses sound without a user gesture, play muted.
      if (E.PLAYBACK_NOT_ALLOWED) dash.on(E.PLAYBACK_NOT_ALLOWED, () => { video.muted = true; video.play().catch(() => {}); });
      dash.initialize(video, url, true, startAt);
    }
  }

  // For scripted checks (e.g. playwright): window.abrDemo.state().
  window.abrDemo = {
    state: () => ({
      player: kind, package: CURRENT, renditions, current: shown() ? shown().id : null, errors,
      currentTime: video.currentTime, paused: video.paused,
      videoWidth: video.videoWidth, videoHeight: video.videoHeight,
    }),
  };
  start(kind);
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const jsonScript = (v) => JSON.stringify(v).replace(/</g, '\\u003c');

function page(pkgs, current) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>abr player${current ? ` · ${esc(current)}` : ''}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body{font:14px/1.4 system-ui,sans-serif;max-width:1000px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:18px;margin:.2em 0}a{color:#0645ad}a.current{font-weight:bold;color:#000}
#controls{display:flex;flex-wrap:wrap;gap:1em;align-items:center;margin:.6em 0}
video{width:100%;aspect-ratio:16/9;background:#000}#status{font-family:monospace}
#log{font:12px monospace;max-height:12em;overflow:auto;color:#555}#log .fatal{color:#b00}
</style>
<script src="/_player/hls.min.js"></script>
<script src="/_player/dash.all.min.js"></script>
</head><body>
<h1>abr player</h1>
<div>Packages: <span id="packages"></span></div>
<div id="controls">
<span>Player: <label><input type="radio" name="player" value="hls"> hls.js</label>
<label><input type="radio" name="player" value="dash"> dash.js</label></span>
<label>Rendition: <select id="rendition"><option value="auto">Auto (ABR)</option></select></label>
</div>
<div id="status"></div>
<video id="video" controls playsinline></video>
<div>Manifest: <a id="manifest"></a></div>
<div id="log"></div>
<script>(${clientMain})(${jsonScript(pkgs)}, ${jsonScript(current)});</script>
</body></html>
`;
}

// ---------------------------------------------------------------------------

const files = staticHandler(ROOT, { log: (m) => console.error(`serve.mjs: ${m}`) });
const server = createServer(async (req, res) => {
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  } catch {
    res.writeHead(400, { 'Content-Type': 'text/plain' });
    return res.end('bad request\n');
  }
  const play = /^\/play\/([^/]+)\/?$/.exec(pathname);
  if ((pathname === '/' || play) && (req.method === 'GET' || req.method === 'HEAD')) {
    const pkgs = await listPackages();
    const name = play ? play[1] : pkgs[0]?.name ?? null;
    const known = !play || pkgs.some((p) => p.name === name);
    res.writeHead(known ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    return res.end(req.method === 'HEAD' ? undefined : page(pkgs, known ? name : null));
  }
  if (VENDOR[pathname] && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'max-age=3600' });
    if (req.method === 'HEAD') return res.end();
    return createReadStream(VENDOR[pathname]).on('error', () => res.destroy()).pipe(res);
  }
  return files(req, res);
});

let srv;
try {
  srv = await listen(server, { port: Number(portArg), host: opts.host });
} catch (e) {
  if (e.code === 'EADDRINUSE') die(`port ${portArg} on ${opts.host} is already in use; stop what uses it or choose another port (PORT=N / --port N)`);
  if (e.code === 'EACCES') die(`not allowed to bind ${opts.host}:${portArg} (ports < 1024 need privileges); choose another port (PORT=N / --port N)`);
  die(`cannot listen on ${opts.host}:${portArg}: ${e.message}`);
}

if (opts['once-check']) {
  process.exit(await onceCheck(srv.origin));
}

const pkgs = await listPackages();
console.log(`Serving ${ROOT} at ${srv.origin}/`);
for (const p of pkgs) console.log(`  ${p.name}: ${srv.origin}/play/${encodeURIComponent(p.name)}`);
if (!pkgs.length) console.log('  (no packages yet)');
console.log(`Player: ${srv.origin}/${pkgs.length ? `play/${encodeURIComponent(pkgs[0].name)}` : ''}`);
console.log('Press Ctrl-C to stop.');
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    console.log('\nStopped.');
    srv.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
}

// ---------------------------------------------------------------------------
// --once-check

function request(url, headers = {}) {
  return new Promise((resolve, reject) => {
    httpGet(url, { headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

async function onceCheck(origin) {
  let failures = 0;
  const check = async (urlPath, { status = 200, type, range, contains, cors = true } = {}) => {
    const url = new URL(urlPath, origin).href;
    let r;
    try {
      r = await request(url, range ? { Range: range } : {});
    } catch (e) {
      failures++;
      console.log(`FAIL ${urlPath}: ${e.message}`);
      return null;
    }
    const ct = r.headers['content-type'] || '';
    const problems = [];
    if (r.status !== status) problems.push(`status ${r.status}, expected ${status}`);
    if (type && !ct.startsWith(type)) problems.push(`content-type ${ct}, expected ${type}`);
    if (contains && !r.body.toString().includes(contains)) problems.push(`body lacks ${JSON.stringify(contains)}`);
    if (cors && r.headers['access-control-allow-origin'] !== '*') problems.push('no CORS header');
    if (problems.length) failures++;
    console.log(`${problems.length ? 'FAIL' : 'ok  '} ${r.status} ${ct || '-'} ${r.body.length}B ${urlPath}${range ? ` (Range ${range})` : ''}${problems.length ? ` — ${problems.join('; ')}` : ''}`);
    return r;
  };

  const pkgs = await listPackages();
  const page = { type: 'text/html', cors: false };
  await check('/', { ...page, contains: 'abr player' });
  await check('/_player/hls.min.js', { type: 'text/javascript', contains: 'Hls', cors: false });
  await check('/_player/dash.all.min.js', { type: 'text/javascript', contains: 'dashjs', cors: false });
  await check('/play/no-such-package', { ...page, status: 404 });
  if (!pkgs.length) {
    failures++;
    console.log(`FAIL no packages under ${ROOT}`);
  }
  for (const p of pkgs) {
    await check(`/play/${encodeURIComponent(p.name)}`, { ...page, contains: jsonScript(p.name) });
    if (p.hls) {
      const master = await check(p.hls, { type: 'application/vnd.apple.mpegurl', contains: '#EXTM3U' });
      const variant = master && master.body.toString().split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
      if (variant) {
        const vUrl = new URL(variant, new URL(p.hls, origin));
        const media = await check(vUrl.pathname, { type: 'application/vnd.apple.mpegurl', contains: '#EXTINF' });
        const seg = media && media.body.toString().split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
        if (seg) {
          const sUrl = new URL(seg, vUrl).pathname;
          await check(sUrl, { type: 'video/mp2t' });
          await check(sUrl, { status: 206, type: 'video/mp2t', range: 'bytes=0-187' });
        }
      }
    }
    if (p.dash) {
      const mpd = await check(p.dash, { type: 'application/dash+xml', contains: '<MPD' });
      const xml = mpd ? mpd.body.toString() : '';
      // First Representation id and the first SegmentTemplate's initialization/media templates.
      const id = /<Representation[^>]*\sid="([^"]+)"/.exec(xml)?.[1];
      const init = /<SegmentTemplate[^>]*\sinitialization="([^"]+)"/.exec(xml)?.[1];
      const media = /<SegmentTemplate[^>]*\smedia="([^"]+)"/.exec(xml)?.[1];
      const startNumber = /<SegmentTemplate[^>]*\sstartNumber="(\d+)"/.exec(xml)?.[1] ?? '1';
      const fill = (t) => t.replace(/\$RepresentationID\$/g, id).replace(/\$Number(?:%0(\d+)d)?\$/g, (_m, w) => startNumber.padStart(Number(w || 0), '0'));
      const mpdUrl = new URL(p.dash, origin);
      if (id && init) await check(new URL(fill(init), mpdUrl).pathname, { type: 'video/mp4' });
      if (id && media && !media.includes('$Time$')) await check(new URL(fill(media), mpdUrl).pathname, { type: 'video/iso.segment' });
    }
  }
  console.log(failures ? `once-check: ${failures} problem(s)` : 'once-check: all ok');
  await srv.close();
  return failures ? 1 : 0;
}
