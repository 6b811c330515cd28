// Benchmark driver (scripts/bench-ingest.sh): uploads one file with tus-js-client (Node), the
// same client and options for every server; no retries (a failure fails the run).
// Usage: node upload.mjs --endpoint URL --file PATH --chunk-size BYTES [--token T] [--name NAME]
// Prints one JSON line: {"ok":true,"bytes":N,"seconds":S,"end_ms":EPOCH_MS,"url":...}; seconds
// runs from start() to onSuccess (the last PATCH's response), end_ms is Date.now() at onSuccess.
import fs from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
const size = fs.statSync(args.file).size;
const headers = args.token ? { Authorization: `Bearer ${args.token}` } : {};
let patches = 0;
const t0 = process.hrtime.bigint();
const upload = new tus.Upload(fs.createReadStream(args.file), {
  endpoint: args.endpoint,
  headers,
  metadata: { name: args.name || 'bench', filename: path.basename(args.file) },
  uploadSize: size,
  chunkSize: Number(args['chunk-size']),
  uploadDataDuringCreation: true,
  storeFingerprintForResuming: false,
  retryDelays: [],
  onAfterResponse: (req) => {
    if (req.getMethod() === 'PATCH' || req.getMethod() === 'POST') patches += 1;
  },
  onError: (err) => {
    console.log(JSON.stringify({ ok: false, error: String(err) }));
    process.exit(1);
  },
  onSuccess: () => {
    const endMs = Date.now();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ ok: true, bytes: size, seconds, end_ms: endMs, requests: patches, url: upload.url }));
    process.exit(0);
  },
});
upload.start();
