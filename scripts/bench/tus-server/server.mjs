// The tus reference server for scripts/bench-ingest.sh: @tus/server with @tus/file-store, as
// documented (no options beyond the required ones), on loopback.
// Usage: node server.mjs --port PORT --dir DIR [--path /api/v1/uploads]
// Prints "listening PORT" once the socket is bound.
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
const server = new Server({
  path: args.path || '/api/v1/uploads',
  datastore: new FileStore({ directory: args.dir }),
});
const http = server.listen({ host: '127.0.0.1', port: Number(args.port) }, () => {
  console.log(`listening ${args.port}`);
});
const stop = () => http.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
