// Small HTTP servers for the player harness. Both bind to 127.0.0.1 only.
//
// startStaticServer(dir): serves a package directory the way a CDN/origin
//   would for a cross-origin player: CORS (incl. preflight), byte ranges
//   (206/416), media MIME types.
// startPageServer(files): serves a fixed map of URL path -> {file|body, type}.
// staticHandler(dir) / listen(server, {port, host}): the same pieces, for
//   servers that add their own routes.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';

export const MIME = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.mpd': 'application/dash+xml',
  '.ts': 'video/mp2t',
  '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4',
  '.m4v': 'video/mp4',
  '.m4a': 'audio/mp4',
  '.aac': 'audio/aac',
  '.vtt': 'text/vtt',
  '.webvtt': 'text/vtt',
  '.json': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
};

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, Content-Type, ETag, Last-Modified',
};

export function listen(server, { port = 0, host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const { port: bound } = server.address();
      const h = host.includes(':') ? `[${host}]` : host;
      resolve({ server, port: bound, origin: `http://${h}:${bound}`, close: () => closeServer(server) });
    });
  });
}

function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

/**
 * Parses a Range header against a file size (RFC 9110 §14.1.2).
 * Returns null (no/ignored range -> full 200), 'unsatisfiable' (-> 416) or {start, end} inclusive.
 * Multiple ranges are not supported and are answered with the full body, which the RFC allows.
 */
export function parseRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null; // unknown unit or multi-range: ignore
  const [, a, b] = m;
  if (a === '' && b === '') return null;
  let start;
  let end;
  if (a === '') {
    // suffix range: last N bytes
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== '' && Number(b) < start) return null; // invalid -> ignore
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}

/** Static file server for a package directory, cross-origin friendly. */
export async function startStaticServer(rootDir, { log = () => {} } = {}) {
  return listen(createServer(staticHandler(rootDir, { log })));
}

/** The request handler of startStaticServer: (req, res) => void, serving rootDir. */
export function staticHandler(rootDir, { log = () => {} } = {}) {
  const root = path.resolve(rootDir);
  return async (req, res) => {
    const send = (status, headers = {}, body = '') => {
      res.writeHead(status, { ...CORS, ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    try {
      if (req.method === 'OPTIONS') {
        // CORS preflight (e.g. for non-simple Range values or custom headers).
        return send(204, {
          'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
          'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] || 'Range',
          'Access-Control-Max-Age': '600',
        });
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return send(405, { Allow: 'GET, HEAD, OPTIONS' });
      }
      const urlPath = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      const file = path.resolve(root, '.' + urlPath);
      if (file !== root && !file.startsWith(root + path.sep)) return send(403);
      let st;
      try {
        st = await stat(file);
      } catch {
        log(`404 ${urlPath}`);
        return send(404, { 'Content-Type': 'text/plain' }, 'not found\n');
      }
      if (!st.isFile()) return send(404, { 'Content-Type': 'text/plain' }, 'not found\n');

      const headers = {
        'Content-Type': MIME[path.extname(file).toLowerCase()] || 'application/octet-stream',
        'Accept-Ranges': 'bytes',
        'Last-Modified': st.mtime.toUTCString(),
        'Cache-Control': 'no-cache',
      };
      const range = parseRange(req.headers.range, st.size);
      if (range === 'unsatisfiable') {
        return send(416, { ...headers, 'Content-Range': `bytes */${st.size}` });
      }
      let status = 200;
      let start = 0;
      let end = st.size - 1;
      if (range) {
        status = 206;
        ({ start, end } = range);
        headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
      }
      headers['Content-Length'] = String(st.size === 0 ? 0 : end - start + 1);
      res.writeHead(status, { ...CORS, ...headers });
      if (req.method === 'HEAD' || st.size === 0) return res.end();
      createReadStream(file, { start, end })
        .on('error', () => res.destroy())
        .pipe(res);
    } catch (e) {
      send(500, { 'Content-Type': 'text/plain' }, String(e));
    }
  };
}

/**
 * Page server: routes maps a URL path to {file, type} or {body, type}.
 * Deliberately a different origin from the static server so that the
 * player's requests are cross-origin (exercising CORS); `port` fixes that
 * origin (0: any free port).
 */
export async function startPageServer(routes, { port = 0 } = {}) {
  const server = createServer(async (req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    const route = routes[pathname];
    if (!route || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      return res.end('not found\n');
    }
    res.writeHead(200, { 'Content-Type': route.type, 'Cache-Control': 'no-store' });
    if (req.method === 'HEAD') return res.end();
    if (route.body !== undefined) return res.end(route.body);
    createReadStream(route.file).on('error', () => res.destroy()).pipe(res);
  });
  return listen(server, { port });
}
