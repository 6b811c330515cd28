#!/usr/bin/env python3
"""Helpers of scripts/bench-ingest.sh (stdlib only).

  ingest.py gen OUT BYTES SEED
      OUT = BYTES pseudo-random bytes (random.Random(SEED), 16 MiB blocks), made once: a file of
      the right size with a matching OUT.seed is reused.
  ingest.py proc PID
      one JSON line about a live process from /proc: VmHWM/VmRSS (kB), utime+stime (s).
  ingest.py playable --json OUT --log LOG --url URL --root DIR --ffprobe-url URL -- UPLOAD_CMD...
      runs the upload command (tus-js-client driver: its last stdout line is {"ok":true,
      "end_ms":…}), then polls (every 20 ms) until DIR/hls/master.m3u8 and DIR/dash/manifest.mpd
      exist, then runs ffprobe on --ffprobe-url until it exits 0 and reports a duration. Times
      (s) from the last PATCH's response (end_ms, the driver's Date.now() at onSuccess) to:
      both manifests on disk, and ffprobe's success.
  ingest.py merge OUT MEASURE_JSON UPLOAD_LOG PROC_JSON
      one run's JSON: the driver's last line (bytes, seconds), the client's CPU and peak RSS
      (measure.py) and the server's /proc figures (PROC_JSON, from `proc`).
  ingest.py disk OUT SRC DIR CHUNK none|chunk
      the local write ceiling of each durability model (no network, no server): see disk().
  ingest.py report DIR
      the Markdown report from DIR/runs.tsv, DIR/runs/*.json and the BENCH_* environment.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def gen(out, size, seed):
    size, seed = int(size), int(seed)
    tag = f"{size} {seed}\n"
    try:
        if os.path.getsize(out) == size and open(out + ".seed").read() == tag:
            return
    except OSError:
        pass
    rng = random.Random(seed)
    block = 16 << 20
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        left = size
        while left > 0:
            n = min(block, left)
            f.write(rng.randbytes(n))
            left -= n
    os.replace(tmp, out)
    with open(out + ".seed", "w") as f:
        f.write(tag)


def proc(pid):
    st = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            st[k] = v.strip()
    with open(f"/proc/{pid}/stat", "rb") as f:
        rest = f.read()
    rest = rest[rest.rfind(b")") + 2 :].split()
    # fields 14 and 15 (utime, stime) are rest[11], rest[12]
    cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
    kb = lambda k: int(st.get(k, "0 kB").split()[0])  # noqa: E731
    print(json.dumps({"hwm_kb": kb("VmHWM"), "rss_kb": kb("VmRSS"), "cpu_s": round(cpu, 2),
                      "threads": int(st.get("Threads", "0"))}))


def merge(out, measure, upload_log, proc_json):
    with open(measure) as f:
        m = json.load(f)
    with open(upload_log) as f:
        lines = [l for l in f.read().splitlines() if l.startswith("{")]
    up = json.loads(lines[-1])
    if not up.get("ok"):
        sys.exit(f"upload failed: {up}")
    pr = json.loads(proc_json)
    res = {"bytes": up["bytes"], "seconds": up["seconds"], "requests": up.get("requests"),
           "client_wall_s": m["wall_s"], "client_cpu_s": round(m["user_s"] + m["sys_s"], 3),
           "client_maxrss_kb": m["maxrss_kb"], "server_hwm_kb": pr["hwm_kb"],
           "server_rss_kb": pr["rss_kb"], "server_cpu_s": pr["cpu_s"]}
    with open(out, "w") as f:
        json.dump(res, f)
    print(f"{res['bytes'] / res['seconds'] / 1e6:.1f} MB/s, server peak RSS "
          f"{res['server_hwm_kb'] / 1024:.1f} MiB, server CPU {res['server_cpu_s']:.2f} s")


def disk(out, src, d, chunk, mode):
    """Local write ceiling: SRC copied into D/disk.bin in 1 MiB writes (abr's WRITE_BUF), with
    mode "none": no fsync, through the page cache (@tus/file-store's model), or "chunk": abr's
    model (service/src/uploads/store.rs, block.rs, offsets.rs): O_DIRECT writes from an aligned
    buffer (a last unaligned piece through the page cache), and after every CHUNK bytes a 40-byte
    pending offset record written in place into one of the two record slots of a 1.5 KiB offset
    file, the data and the record fdatasynced concurrently, then the mark written (abr's commit
    per PATCH of CHUNK bytes). Prints MB/s and the seconds."""
    import mmap

    chunk = int(chunk)
    os.makedirs(d, exist_ok=True)
    dst = os.path.join(d, "disk.bin")
    buf = 1 << 20
    aligned = mmap.mmap(-1, buf)  # page-aligned, as O_DIRECT wants
    t0 = time.monotonic()
    total = 0
    since = 0
    seq = 0
    ofd = os.open(os.path.join(d, "offset"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(ofd, bytes(1536))
    os.fsync(ofd)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    dfd = os.open(dst, os.O_WRONLY | os.O_DIRECT) if mode == "chunk" else None
    with open(src, "rb", buffering=0) as fi:
        while True:
            b = fi.read(buf)
            if not b:
                break
            if dfd is not None and len(b) % 4096 == 0:
                aligned[: len(b)] = b
                os.pwrite(dfd, memoryview(aligned)[: len(b)], total)
            else:
                os.pwrite(fd, b, total)
            total += len(b)
            since += len(b)
            if mode == "chunk" and since >= chunk:
                since = 0
                seq += 1
                os.pwrite(ofd, b"abroffs2" + seq.to_bytes(8, "little") + total.to_bytes(8, "little")
                          + bytes(16), (seq % 2) * 512)
                flush = threading.Thread(target=os.fdatasync, args=(ofd,))
                flush.start()
                os.fdatasync(fd)
                flush.join()
                os.pwrite(ofd, b"abrmark1" + seq.to_bytes(8, "little") + bytes(4), 1024)
        if mode == "chunk":
            os.fdatasync(fd)
    os.close(fd)
    if dfd is not None:
        os.close(dfd)
    os.close(ofd)
    s = time.monotonic() - t0
    os.unlink(dst)
    os.unlink(os.path.join(d, "offset"))
    res = {"mode": mode, "bytes": total, "seconds": round(s, 3), "chunk": chunk}
    with open(out, "w") as f:
        json.dump(res, f)
    print(f"{total / s / 1e6:.1f} MB/s")


def playable(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="ingest.py playable")
    ap.add_argument("--json", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--ffprobe-url", required=True)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    with open(a.log, "wb") as log:
        t_start = time.time()
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, check=False)
        log.write(out.stdout)
    lines = [l for l in out.stdout.decode().splitlines() if l.startswith("{")]
    up = json.loads(lines[-1]) if lines else {"ok": False}
    if out.returncode != 0 or not up.get("ok"):
        sys.exit(f"upload failed: {up}")
    t_end = up["end_ms"] / 1000.0
    master = os.path.join(a.root, "hls", "master.m3u8")
    mpd = os.path.join(a.root, "dash", "manifest.mpd")
    deadline = t_end + a.timeout
    t_files = None
    while time.time() < deadline:
        if os.path.isfile(master) and os.path.isfile(mpd):
            t_files = time.time()
            break
        time.sleep(0.02)
    if t_files is None:
        sys.exit(f"no package at {a.root} after {a.timeout} s")
    probes = 0
    t_probe = None
    while time.time() < deadline:
        probes += 1
        p = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                            "-of", "csv=p=0", a.ffprobe_url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if p.returncode == 0 and p.stdout.strip():
            t_probe = time.time()
            duration = float(p.stdout.decode().split()[0])
            break
        time.sleep(0.05)
    if t_probe is None:
        sys.exit(f"ffprobe never read {a.ffprobe_url}: {p.stderr.decode()[-500:]}")
    res = {"upload_s": round(up["seconds"], 3), "bytes": up["bytes"],
           "to_files_s": round(t_files - t_end, 3), "to_playable_s": round(t_probe - t_end, 3),
           "ffprobe_runs": probes, "ffprobe_duration_s": duration,
           "upload_started": t_start, "last_patch_response": t_end}
    with open(a.json, "w") as f:
        json.dump(res, f)
    print(json.dumps(res))


# ---------------------------------------------------------------------------------------------
def report(d):
    env = os.environ.get
    rows = []
    with open(os.path.join(d, "runs.tsv")) as f:
        for line in f:
            kind, tag, server, path = line.rstrip("\n").split("\t")
            with open(path) as jf:
                rows.append((kind, tag, server, json.load(jf)))
    out = []
    p = out.append
    mb = lambda r: r["bytes"] / r["seconds"] / 1e6  # noqa: E731
    mib = lambda b: b / (1 << 20)  # noqa: E731
    p("# Ingest benchmark — `scripts/bench-ingest.sh`\n")
    p(f"Run {env('BENCH_START')} – {env('BENCH_END')} UTC on commit {env('BENCH_COMMIT')}; "
      f"machine: {env('BENCH_MACHINE')}; load average at start {env('BENCH_LOAD_START')}, "
      f"at end {env('BENCH_LOAD_END')}.\n")
    if env("BENCH_NOTE"):
        p(env("BENCH_NOTE") + "\n")
    thr = [r for r in rows if r[0] == "throughput"]
    if thr:
        size = thr[0][3]["bytes"]
        p("## Upload throughput (loopback)\n")
        p(f"One file of {size} bytes ({mib(size):.0f} MiB, pseudo-random), uploaded by the same "
          f"client (tus-js-client {env('BENCH_TUS_JS')} in Node {env('BENCH_NODE')}, "
          "`scripts/bench/tus-server/upload.mjs`: creation-with-upload, then PATCHes) with the "
          f"same chunk size ({env('BENCH_CHUNK')} bytes) to abr serve --ingest and to "
          f"@tus/server {env('BENCH_TUS_SERVER')} + @tus/file-store {env('BENCH_TUS_FILESTORE')} "
          "(`scripts/bench/tus-server/server.mjs`); both store under "
          f"`{env('BENCH_STORE')}` (same filesystem), a fresh directory and a fresh server per "
          "run, rounds interleaved (odd rounds abr first, even rounds tus first). MB/s = 10^6 "
          "bytes per second of the client's time from start() to the last PATCH's response. "
          "Server CPU = the server process's utime+stime read from /proc just before it is "
          "stopped (it includes start-up and, for abr, the packaging job that the completed "
          "upload enqueues, which fails at once on random bytes).\n")
        p("| round | server | seconds | MB/s | server CPU s | server peak RSS MiB | client CPU s |")
        p("|---|---|---:|---:|---:|---:|---:|")
        for kind, tag, server, r in thr:
            p(f"| {tag} | {server} | {r['seconds']:.2f} | {mb(r):.1f} | {r['server_cpu_s']:.2f} | "
              f"{r['server_hwm_kb'] / 1024:.1f} | {r['client_cpu_s']:.2f} |")
        med = {}
        for s in ("abr", "tus"):
            v = [mb(r) for k, t, sv, r in thr if sv == s]
            med[s] = statistics.median(v) if v else None
        p("")
        if med["abr"] and med["tus"]:
            ratio = med["abr"] / med["tus"]
            ok = "met" if ratio >= 1.0 else "NOT met"
            p(f"- **Median: abr {med['abr']:.1f} MB/s, @tus/server {med['tus']:.1f} MB/s; "
              f"abr / tus = {ratio:.3f}** (target ≥ 1.0: {ok}).")
            cpu = {s: statistics.median([r["server_cpu_s"] / (r["bytes"] / 1e9)
                                         for k, t, sv, r in thr if sv == s]) for s in med}
            p(f"- Server CPU per GB (median): abr {cpu['abr']:.2f} s, tus {cpu['tus']:.2f} s.")
        p("- Durability is not the same: abr writes the data with O_DIRECT and fdatasyncs it and "
          "its offset record (concurrently) before a PATCH is acknowledged, and at least every 16 MiB "
          "within a long PATCH (`service/src/uploads/store.rs`, `core.rs`). @tus/file-store "
          f"{env('BENCH_TUS_FILESTORE')} does not fsync at all: `FileStore.write` pipes the body "
          "into `fs.createWriteStream(path, {flags: 'r+', start: offset})` and answers when the "
          "stream has closed (written to the page cache), its offset is the file's `stat` size, "
          "and the metadata is a plain `fs.writeFile` of a JSON file (`@tus/utils` FileKvStore); "
          "no `fsync`/`fdatasync` appears anywhere in `@tus/server`, `@tus/file-store` or "
          "`@tus/utils`. After a power loss tus may report an offset whose bytes are gone; abr "
          "may not. abr therefore does strictly more work per chunk here.\n")
    dk = [r for r in rows if r[0] == "disk"]
    if dk:
        p("### Local write ceilings (same window, no network, no server)\n")
        p("The same file copied by Python into the same filesystem in 1 MiB writes: `none` = no "
          "fsync, through the page cache (@tus/file-store's model); `chunk` = O_DIRECT writes, "
          "after every chunk an offset record written in place, the data and the record "
          "fdatasynced concurrently: abr's commit per PATCH. One of each per round, after the "
          "two uploads.\n")
        p("| round | none MB/s | chunk MB/s |")
        p("|---|---:|---:|")
        ceil = {"none": [], "chunk": []}
        for t in sorted({t for k, t, s_, r in dk}):
            v = {r["mode"]: mb(r) for k, tt, s_, r in dk if tt == t}
            for m_ in v:
                ceil[m_].append(v[m_])
            p(f"| {t} | {v.get('none', 0):.1f} | {v.get('chunk', 0):.1f} |")
        if ceil["none"] and ceil["chunk"] and thr:
            cn, cc = statistics.median(ceil["none"]), statistics.median(ceil["chunk"])
            p(f"\n- Medians: no fsync {cn:.1f} MB/s, fsync per chunk {cc:.1f} MB/s "
              f"(ratio {cc / cn:.2f}). abr's upload median is {med['abr'] / cc * 100:.0f} % of "
              f"the fsync-per-chunk ceiling; @tus/server's is {med['tus'] / cn * 100:.0f} % of "
              "the no-fsync ceiling.\n")
    mem = [r for r in rows if r[0] == "memory"]
    if mem:
        p("## abr memory: large vs small upload\n")
        p("VmHWM (peak RSS) of the `abr serve --ingest` process, a fresh server and data "
          "directory for each upload, read from /proc right after the last PATCH's response "
          "(before the packaging job of the random bytes could grow it).\n")
        p("| upload | bytes | seconds | MB/s | abr VmHWM MiB | abr VmRSS after MiB |")
        p("|---|---:|---:|---:|---:|---:|")
        by = {}
        for kind, tag, server, r in mem:
            by[tag] = r
            p(f"| {tag} | {r['bytes']} | {r['seconds']:.2f} | {mb(r):.1f} | "
              f"{r['server_hwm_kb'] / 1024:.1f} | {r['server_rss_kb'] / 1024:.1f} |")
        ratios = []  # (pair, large / small), in the order the pairs ran
        for t in dict.fromkeys(t.rsplit("-", 1)[0] for t in by):
            lg, sm = by.get(t + "-large"), by.get(t + "-small")
            if lg and sm:
                ratios.append((t, lg["server_hwm_kb"] / sm["server_hwm_kb"]))
        if ratios:
            med, worst = statistics.median(v for _, v in ratios), max(v for _, v in ratios)
            lg, sm = by[ratios[0][0] + "-large"], by[ratios[0][0] + "-small"]
            each = ", ".join(f"{t} {v:.3f}" for t, v in ratios)
            ok = "met" if worst <= 1.10 else ("met by the median" if med <= 1.10 else "NOT met")
            p(f"\n- **Peak RSS {mib(lg['bytes']):.0f} MiB upload / {mib(sm['bytes']):.0f} MiB "
              f"upload, per pair: {each}; median {med:.3f}, worst {worst:.3f}** "
              f"(target ≤ 1.10: {ok}).\n")
    play = [r for r in rows if r[0] == "playable"]
    if play:
        src_s = float(env("BENCH_PLAY_DURATION") or 0)
        p("## Upload → playable\n")
        p(f"Source `{env('BENCH_PLAY_SRC')}` (`fixtures/make.sh {env('BENCH_PLAY_SHAPE')}`, "
          f"{src_s:.2f} s, {env('BENCH_PLAY_BYTES')} bytes, video {env('BENCH_PLAY_VRATE')} "
          f"bit/s), uploaded with the same driver and chunk size to `abr serve --ingest "
          f"--job-workers {env('BENCH_JOB_WORKERS')}` (abr's default ladder). Clock starts at "
          "the last PATCH's response (client's Date.now() at onSuccess); \"files\" = both "
          "`ROOT/<principal>/<name>/hls/master.m3u8` and `dash/manifest.mpd` exist (polled "
          "every 20 ms); \"playable\" = `ffprobe` of the HLS master over HTTP from the same "
          "server succeeds (master, a media playlist, a segment).\n")
        p("| run | upload s | → files s | → playable s | playable × source duration | ffprobe duration s |")
        p("|---|---:|---:|---:|---:|---:|")
        for kind, tag, server, r in play:
            x = r["to_playable_s"] / src_s if src_s else 0
            p(f"| {tag} | {r['upload_s']:.2f} | {r['to_files_s']:.2f} | {r['to_playable_s']:.2f} | "
              f"{x:.2f}× | {r['ffprobe_duration_s']:.2f} |")
        if src_s:
            v = statistics.median([r["to_playable_s"] for k, t, s, r in play])
            p(f"\n- **Median last byte → playable: {v:.1f} s for a {src_s:.0f} s source "
              f"= {v / src_s:.2f}× the source's duration.**\n")
    p("## Commands\n")
    p("```sh")
    with open(os.path.join(d, "commands.txt")) as f:
        p(f.read().rstrip())
    p("```")
    print("\n".join(out))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    c, rest = sys.argv[1], sys.argv[2:]
    if c == "gen":
        gen(*rest)
    elif c == "disk":
        disk(*rest)
    elif c == "merge":
        merge(*rest)
    elif c == "proc":
        proc(rest[0])
    elif c == "playable":
        playable(rest)
    elif c == "report":
        report(rest[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
