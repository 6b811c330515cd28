#!/usr/bin/env python3
"""Writes the Markdown report of scripts/bench-packager.sh to stdout.

usage: report.py BENCH_DIR      (reads BENCH_DIR/results/*.json|*.valid, BENCH_DIR/cmds/*,
                                 BENCH_DIR/shaka/*.yaml and the BENCH_* environment variables)
"""

import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def first_line(text):
    return text.splitlines()[0] if text else "?"


def mib(kb):
    return f"{kb / 1024:.0f}"


def load(res, name, tag_glob):
    runs = []
    for path in sorted(glob.glob(os.path.join(res, f"{name}.{tag_glob}.json"))):
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def machine():
    cpu = "?"
    mem = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        cpu = m.group(1) if m else cpu
    with open("/proc/meminfo") as f:
        m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
        mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else mem
    rows = [
        ("nproc", sh(["nproc"])),
        ("CPU", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("load average (1/5/15 min) before the runs", os.environ.get("BENCH_LOAD_START", "?")),
        ("load average (1/5/15 min) after the runs", " ".join(open("/proc/loadavg").read().split()[:3])),
        ("time taken by all runs", f"{os.environ.get('BENCH_ELAPSED', '?')} s"),
        ("system ffmpeg (abr's libav*, ffmpeg recipes)", first_line(sh(["ffmpeg", "-version"]))),
        ("rustc", sh(["rustc", "--version"])),
    ]
    if os.environ.get("BENCH_SHAKA_FFMPEG"):
        rows.append(("Shaka's bundled ffmpeg", first_line(sh([os.environ["BENCH_SHAKA_FFMPEG"], "-version"]))))
        rows.append(("Shaka's bundled packager", sh([os.environ["BENCH_SHAKA_PACKAGER"], "--version"])))
    return rows


def main():
    bench = sys.argv[1]
    res = os.path.join(bench, "results")
    cmds = os.path.join(bench, "cmds")
    src, src_s = os.environ["BENCH_SRC"], int(os.environ["BENCH_SRC_S"])
    runs_n = os.environ["BENCH_RUNS"]
    contenders = os.environ.get("BENCH_CONTENDERS", "").split()
    desc, checks = {}, {}
    with open(os.path.join(cmds, "contenders.tsv")) as f:
        for line in f:
            name, d, c = line.rstrip("\n").split("\t")
            desc[name], checks[name] = d, c

    out = []
    p = out.append
    p("# abr packager benchmark\n")
    p(f"Source: `{src}` (fixtures/make.sh 1080p30: testsrc2 1920x1080 30 fps H.264 + AAC 48 kHz "
      f"stereo), {src_s} s. Rounds: {runs_n}, interleaved (each round runs every contender once, "
      "order rotated per round). Ladder (abr's default for 1080p): 1920x1080 5000k, 1280x720 3000k, "
      "854x480 1400k, 640x360 800k, 426x240 400k, maxrate 1.1x, bufsize 2x; AAC-LC 128k stereo "
      f"48 kHz; x264 preset veryfast, profile high, keyint=min-keyint={os.environ['BENCH_K']}, "
      "scenecut=0, open-gop=0, forced IDR every 4 s; 4 s segments.\n")

    p("## Machine\n")
    p("| | |\n|---|---|")
    for k, v in machine():
        p(f"| {k} | {v} |")
    p("")

    if contenders:
        stats = {}
        for name in contenders:
            runs = load(res, name, "r*")
            if not runs:
                continue
            stats[name] = {
                "wall": statistics.median(r["wall_s"] for r in runs),
                "cpu": statistics.median(r["cpu_pct"] for r in runs),
                "maxrss": statistics.median(r["maxrss_kb"] for r in runs),
                "tree": statistics.median(r["tree_rss_kb"] for r in runs),
                "procs": max(r["max_procs"] for r in runs),
                "walls": [r["wall_s"] for r in runs],
            }
        floor = stats.get("ffmpeg-floor", {}).get("wall")
        p("## Results (medians)\n")
        p("| contender | wall s | × floor | × realtime | CPU % (user+sys / wall) | peak RSS MiB, "
          "largest process | peak RSS MiB, process tree (100 ms samples) | processes | wall s, each run |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for name in contenders:
            s = stats.get(name)
            if not s:
                continue
            ratio = f"{s['wall'] / floor:.2f}" if floor else "–"
            p(f"| **{name}** — {desc[name]} | {s['wall']:.2f} | {ratio} | {src_s / s['wall']:.2f} | "
              f"{s['cpu']:.0f} | {mib(s['maxrss'])} | {mib(s['tree'])} | {s['procs']} | "
              f"{', '.join(f'{w:.2f}' for w in s['walls'])} |")
        p("")
        p("- *wall s*: from fork to exit, median over the rounds. *× floor*: over ffmpeg-floor's "
          "median (encode only, no muxing, no output). *× realtime*: source seconds / wall.")
        p("- *CPU %*: user+sys of the whole process tree over wall; 100 % = one core busy.")
        p("- *largest process*: kernel-tracked peak RSS of the biggest single process of the tree "
          "(`/usr/bin/time %M`); for abr and ffmpeg that is the whole tool. *process tree*: "
          "peak over time of the summed RSS of all live processes of the tree, sampled every "
          "100 ms from /proc (the relevant figure for Shaka Streamer: python + ffmpeg + packager; "
          "shared library pages are counted once per process). *processes*: most processes seen "
          "at once (incl. the `bash` that runs the command file, which `exec`s the tool).")
        p("")

        p("## Output checks (last round)\n")
        for name in contenders:
            valid = sorted(glob.glob(os.path.join(res, f"{name}.r*.valid")))
            if valid:
                p(f"- **{name}**:")
                for line in open(valid[-1]).read().splitlines():
                    p(f"  - {line}")
        p("")

    if contenders:
        p("## What differs between contenders\n")
        p("- abr and the ffmpeg recipes use the same libx264 build (Debian's, through the system "
          "libav* 5.1) with the same settings; compare the `x264:` lines above (x264 clamps "
          "min-keyint to keyint/2+1, hence keyint_min=61 everywhere). The ffmpeg recipes keep "
          "the display aspect in the SAR (1280:1281 at 854x480, 640:639 at 426x240) where abr "
          "writes 1:1, because ffmpeg's dash muxer refuses mixed aspect ratios in one "
          "AdaptationSet. The HLS recipes encode the AAC track once per variant (var_stream_map "
          "cannot put one stream in two variants); abr encodes it once.")
        p("- Shaka Streamer runs its own static ffmpeg 8.x (own libx264 build), decodes once and "
          "scales per output (`-vf` per output), pipes fragmented MP4 to Shaka Packager, and "
          "writes ONE set of fMP4 segments referenced by both the MPD and the HLS playlists (no "
          "MPEG-TS). Its config cannot express maxrate/bufsize, the preset (VOD: slow, "
          "`-flags +loop`), the profile (main below 720p), scenecut (x264 default 40) or "
          "keyint (it uses -g = -keyint_min = 4 s x fps = 120). `shaka-veryfast` changes only "
          "the preset. Its controller polls its children once per second, so its wall time "
          "includes up to ~1 s of polling latency.")
        p("- ffmpeg-floor muxes nothing and writes nothing: it is the decode + scale + encode "
          "cost that any contender with these settings pays.\n")

    flat = os.environ.get("BENCH_FLAT", "both")
    if flat != "no":
        one, four = load(res, "abr-flat1x", "flat"), load(res, "abr-flat4x", "flat")
        if one and four:
            one, four = one[0], four[0]
            m1, m4 = one["maxrss_kb"], four["maxrss_kb"]
            shape = os.environ.get("BENCH_FLAT_SHAPE", "?")
            p("## Memory flatness (abr)\n")
            p(f"Source: `fixtures/make.sh {shape}` (mezzanine bitrate), {src_s} s and "
              f"{4 * src_s} s; abr's default ladder, HLS + DASH, one run each.\n")
            p("| source | size MiB | video Mb/s (ffprobe) | wall s | CPU % | peak RSS MiB |")
            p("|---|---:|---:|---:|---:|---:|")
            sizes = []
            for x, r, key in ((1, one, ""), (4, four, "4")):
                path = os.environ.get(f"BENCH_FLAT_SRC{key}", "")
                size = os.path.getsize(path) / 1048576 if os.path.exists(path) else float("nan")
                sizes.append(size)
                rate = float(os.environ.get(f"BENCH_FLAT_RATE{key}") or "nan") / 1e6
                p(f"| `{path}` ({x}×) | {size:.0f} | {rate:.1f} | {r['wall_s']:.2f} | "
                  f"{r['cpu_pct']:.0f} | {mib(r['maxrss_kb'])} |")
            verdict = "met" if m4 <= 1.10 * m1 else "NOT met"
            p(f"\nPeak RSS 4× / 1× = **{m4 / m1:.3f}** (target ≤ 1.10: {verdict}); "
              f"{(m4 - m1) / 1024:+.0f} MiB for {sizes[1] - sizes[0]:.0f} MiB more source read "
              "(a leak of the bytes read would add about that much).\n")
            for name in ("abr-flat1x", "abr-flat4x"):
                v = os.path.join(res, f"{name}.flat.valid")
                if os.path.exists(v):
                    for line in open(v).read().splitlines():
                        p(f"- {name} output: {line}")
            p("")

    p("## Exact commands\n")
    p("Each contender is a command file run as `bash FILE` under `scripts/bench/measure.py` "
      "(working directory: the repository root); the tool is `exec`ed, so nothing else is "
      "measured.\n")
    names = contenders + ([] if flat == "no" else ["abr-flat1x", "abr-flat4x"])
    for name in names:
        path = os.path.join(cmds, f"{name}.sh")
        if os.path.exists(path):
            body = "".join(l for l in open(path) if not l.startswith(("#!", "set -e")))
            p(f"**{name}** (`target/bench/cmds/{name}.sh`):\n")
            p("```sh\n" + body.rstrip() + "\n```\n")
    for name in [c for c in contenders if c.startswith("shaka")]:
        logs = sorted(glob.glob(os.path.join(res, f"{name}.r*.log")))
        if logs:
            spawned = [l[2:].rstrip() for l in open(logs[-1], errors="replace") if l.startswith("+ ")]
            if spawned:
                p(f"Subprocesses **{name}** ran (from its log, last round; /tmp paths are its "
                  "named pipes):\n")
                p("```sh\n" + "\n".join(spawned) + "\n```\n")
    if any(c.startswith("shaka") for c in contenders):
        for y in ("input", "pipeline", "bitrate"):
            path = os.path.join(bench, "shaka", f"{y}.yaml")
            p(f"Shaka `{y}.yaml` (`target/bench/shaka/{y}.yaml`):\n")
            p("```yaml\n" + open(path).read().rstrip() + "\n```\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
