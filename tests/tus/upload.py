"""Uploads one file with tuspy, resuming across server restarts.

Every failure (the server is SIGKILLed and restarted under the client) makes a new Uploader on
the same upload URL, which asks the server for its offset (HEAD) and goes on from there.
Chunks carry Upload-Checksum (sha1).

Usage: python upload.py --endpoint URL --file PATH --token T --name NAME [--chunk-size BYTES]
Prints one JSON line: {"ok": true, "url": ..., "retries": N} or {"ok": false, "error": ...}.
"""

import argparse
import json
import os
import sys
import time

from tusclient import client as tus

p = argparse.ArgumentParser()
p.add_argument("--endpoint", required=True)
p.add_argument("--file", required=True)
p.add_argument("--token", required=True)
p.add_argument("--name", required=True)
p.add_argument("--chunk-size", type=int, default=8 * 1024 * 1024)
a = p.parse_args()

c = tus.TusClient(a.endpoint, headers={"Authorization": "Bearer " + a.token})
meta = {"name": a.name, "filename": os.path.basename(a.file)}
url = None
retries = 0
deadline = time.monotonic() + 600
while True:
    try:
        up = c.uploader(
            a.file, url=url, chunk_size=a.chunk_size, metadata=meta, upload_checksum=True
        )
        if url is None:
            url = up.create_url()
            up.set_url(url)
            up.offset = 0
            print(json.dumps({"url": url}), flush=True)
        up.upload()
        break
    except Exception as e:  # connection refused or reset while the server restarts
        retries += 1
        if time.monotonic() > deadline:
            print(json.dumps({"ok": False, "error": repr(e), "retries": retries}), flush=True)
            sys.exit(1)
        time.sleep(0.2)
print(json.dumps({"ok": True, "url": url, "retries": retries}), flush=True)
