#!/usr/bin/env node
// tus-js-client in headless Debian Chromium uploading to abr from a page of ANOTHER origin, so
// the browser's own CORS checks apply (preflights for POST/PATCH with the tus and
// Authorization headers, reading Location and Upload-Offset from the responses).
//
//   node browser-cors.mjs --endpoint http://127.0.0.1:P/api/v1/uploads --token T --name N
//                         --page-port P2 [--size BYTES] [--chunk-size BYTES]
//
// The page (http://127.0.0.1:P2, served by this script) loads
// tus-js-client's browser bundle from tests/tus/node_modules and uploads --size pseudo-random
// bytes made in the page (Node hashes the same bytes). stdout: one JSON line {ok, url, bytes, sha256, error?}; exit 0 on
// success, 1 when the upload failed (e.g. CORS refused), 2 on bad usage.

import { parseArgs } from 'node:util';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

// xorshift bytes: the same for a given size in Node and in the page, different in every chunk.
function makeBytes(size) {
  const data = new Uint8Array(size);
  let x = 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    data[i] = x & 0xff;
  }
  return data;
}

const require = createRequire(new URL('../player/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const { values: a } = parseArgs({
  options: {
    endpoint: { type: 'string' },
    token: { type: 'string' },
    name: { type: 'string' },
    'page-port': { type: 'string' },
    size: { type: 'string', default: String(3 * 1024 * 1024 + 12345) },
    'chunk-size': { type: 'string', default: String(1024 * 1024) },
  },
});
if (!a.endpoint || !a.token || !a.name || !a['page-port']) {
  console.error('usage: node browser-cors.mjs --endpoint URL --token T --name N --page-port P [--size B] [--chunk-size B]');
  process.exit(2);
}
const bundle = await readFile(new URL('./node_modules/tus-js-client/dist/tus.min.js', import.meta.url));
// The page's own server on loopback (another port: another origin, the same address space, so
// only CORS decides, not the browser's local-network rules).
const server = http.createServer((req, res) => {
  if (req.url === '/tus.min.js') {
    res.writeHead(200, { 'content-type': 'application/javascript' });
    return res.end(bundle);
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><meta charset="utf-8"><script src="/tus.min.js"></script><p>app</p>');
});
await new Promise((ok, fail) => server.once('error', fail).listen(Number(a['page-port']), '127.0.0.1', ok));
const origin = `http://127.0.0.1:${a['page-port']}`;
const profile = await mkdtemp(path.join(os.tmpdir(), 'abr-cors-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
let out;
try {
  const page = await ctx.newPage();
  // The browser's reasons (a CORS refusal is only in the console) go to stderr.
  page.on('console', (m) => console.error(`console ${m.type()}: ${m.text()}`));
  await page.goto(`${origin}/`);
  const size = Number(a.size);
  // The page is not a secure context (no crypto.subtle): Node hashes the same bytes.
  const sha256 = createHash('sha256').update(makeBytes(size)).digest('hex');
  out = await page.evaluate(async ({ endpoint, token, name, size, chunkSize, sha256, gen }) => {
    const data = new Function(`return ${gen}`)()(size);
    return await new Promise((resolve) => {
      const up = new tus.Upload(new Blob([data]), {
        endpoint,
        headers: { Authorization: `Bearer ${token}` },
        metadata: { name, filename: 'browser.bin' },
        chunkSize,
        retryDelays: [],
        storeFingerprintForResuming: false,
        onError: (e) => resolve({ ok: false, error: String(e), bytes: size, sha256 }),
        onSuccess: () => resolve({ ok: true, url: up.url, bytes: size, sha256 }),
      });
      up.start();
    });
  }, {
    endpoint: a.endpoint, token: a.token, name: a.name, size, chunkSize: Number(a['chunk-size']),
    sha256, gen: makeBytes.toString(),
  });
} finally {
  await ctx.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
process.exit(out.ok ? 0 : 1);
