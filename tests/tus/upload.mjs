// Uploads one file with tus-js-client (Node), resuming across server restarts: every failure is
// retried (tus-js-client asks the server for its offset with HEAD and goes on from there).
// Usage: node upload.mjs --endpoint URL --file PATH --token T --name NAME [--chunk-size BYTES]
// Prints one JSON line: {"ok":true,"url":...,"retries":N} or {"ok":false,"error":...}.
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
const size = fs.statSync(args.file).size;
let retries = 0;
const upload = new tus.Upload(fs.createReadStream(args.file), {
  endpoint: args.endpoint,
  headers: { Authorization: `Bearer ${args.token}` },
  metadata: { name: args.name, filename: path.basename(args.file) },
  uploadSize: size,
  chunkSize: Number(args['chunk-size'] || 8 * 1024 * 1024),
  uploadDataDuringCreation: true,
  storeFingerprintForResuming: false,
  // The server is SIGKILLed and restarted under the client: keep retrying (every 200 ms for
  // up to a minute per stall; the counter restarts after each chunk that gets through).
  retryDelays: Array(300).fill(200),
  onShouldRetry: (err) => {
    retries += 1;
    const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
    return status === 0 || status >= 500 || status === 409 || status === 423;
  },
  onUploadUrlAvailable: () => console.log(JSON.stringify({ url: upload.url })),
  onError: (err) => {
    console.log(JSON.stringify({ ok: false, error: String(err), retries }));
    process.exit(1);
  },
  onSuccess: () => {
    console.log(JSON.stringify({ ok: true, url: upload.url, retries }));
    process.exit(0);
  },
});
upload.start();
