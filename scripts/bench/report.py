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


def cpu(r):
    return r["user_s"] + r["sys_s"]


def avg_bandwidth(pkg):
    """rung name -> AVERAGE-BANDWIDTH of the HLS master playlist."""
    out, bw = {}, None
    try:
        lines = open(os.path.join(pkg, "hls", "master.m3u8")).read().splitlines()
    except OSError:
        return out
    for line in lines:
        if line.startswith("#EXT-X-STREAM-INF:"):
            m = re.search(r"AVERAGE-BANDWIDTH=(\d+)", line)
            bw = int(m.group(1)) if m else None
        elif line and not line.startswith("#") and bw is not None:
            out[line.split("/")[0]] = bw
            bw = None
    return out


def sharding(p, res, src, src_s):
    """The --sharding section: CPU, assemble share, seam PSNR, projection."""
    whole = load(res, "abr-unsharded", "sh")
    plan_run = load(res, "abr-plan", "sh")
    asm = load(res, "abr-assemble", "sh")
    plan_path = os.path.join(res, "plan.json")
    if not (whole and plan_run and asm and os.path.exists(plan_path)):
        p("## Sharding\n\n(no complete sharding run in the results)\n")
        return
    whole, plan_run, asm = whole[0], plan_run[0], asm[0]
    plan = json.load(open(plan_path))
    tasks = [load(res, f"abr-shard-{i}", "sh")[0] for i in range(plan["tasks"])]
    shard_s = plan["shard_segments"] * plan["segment_ms"] / 1000
    audio = plan.get("audio_task")
    p("## Sharding\n")
    p(f"Source `{src}` (`fixtures/make.sh {os.environ.get('BENCH_SHAPE', '?')}`), {src_s} s; "
      f"abr's default ladder; `--shard-seconds {os.environ.get('BENCH_SHARD_S', '?')}` → "
      f"{len(plan['shards'])} video shards of {plan['shard_segments']} segments "
      f"({shard_s:g} s){', plus the audio task' if audio is not None else ''}: "
      f"{plan['tasks']} tasks. The sharded run is `abr plan`, then every `abr shard --index I` "
      "as its own process one after the other, then `abr assemble`; the unsharded run is one "
      "`abr package --shard-seconds 0`.\n")
    p("| run | wall s | user+sys s | CPU % | peak RSS MiB |")
    p("|---|---:|---:|---:|---:|")
    p(f"| unsharded (`abr package --shard-seconds 0`) | {whole['wall_s']:.1f} | {cpu(whole):.1f} | "
      f"{whole['cpu_pct']:.0f} | {mib(whole['maxrss_kb'])} |")
    p(f"| `abr plan` | {plan_run['wall_s']:.2f} | {cpu(plan_run):.2f} | {plan_run['cpu_pct']:.0f} "
      f"| {mib(plan_run['maxrss_kb'])} |")
    vids = [t for i, t in enumerate(tasks) if i != audio]
    if vids:
        walls = [t["wall_s"] for t in vids]
        p(f"| `abr shard` × {len(vids)} video (each: min / median / max wall) | "
          f"{sum(walls):.1f} ({min(walls):.1f} / {statistics.median(walls):.1f} / {max(walls):.1f}) | "
          f"{sum(cpu(t) for t in vids):.1f} | "
          f"{100 * sum(cpu(t) for t in vids) / sum(walls):.0f} | "
          f"{mib(max(t['maxrss_kb'] for t in vids))} (largest) |")
    if audio is not None:
        t = tasks[audio]
        p(f"| `abr shard` audio (task {audio}) | {t['wall_s']:.1f} | {cpu(t):.1f} | "
          f"{t['cpu_pct']:.0f} | {mib(t['maxrss_kb'])} |")
    p(f"| `abr assemble` | {asm['wall_s']:.2f} | {cpu(asm):.2f} | {asm['cpu_pct']:.0f} | "
      f"{mib(asm['maxrss_kb'])} |")
    runs = [plan_run, *tasks, asm]
    s_wall, s_cpu = sum(r["wall_s"] for r in runs), sum(cpu(r) for r in runs)
    p(f"| **sharded, all tasks** | {s_wall:.1f} | {s_cpu:.1f} | {100 * s_cpu / s_wall:.0f} | "
      f"{mib(max(r['maxrss_kb'] for r in runs))} (largest) |")
    ratio = s_cpu / cpu(whole)
    share_w, share_c = asm["wall_s"] / s_wall, cpu(asm) / s_cpu
    p("")
    p(f"- **Total CPU sharded / unsharded: {ratio:.3f}** (target ≤ 1.03: "
      f"{'met' if ratio <= 1.03 else 'NOT met'}); wall {s_wall / whole['wall_s']:.3f}×.")
    p(f"- **Assemble: {100 * share_w:.2f} % of the sharded run's wall time** "
      f"({100 * share_c:.2f} % of its CPU; target ≤ 2 %: "
      f"{'met' if share_w <= 0.02 else 'NOT met'}); `abr plan`: "
      f"{100 * plan_run['wall_s'] / s_wall:.2f} %.")
    bu, bs = avg_bandwidth(os.path.join(os.path.dirname(res), "out", "abr-unsharded")), \
        avg_bandwidth(os.path.join(os.path.dirname(res), "out", "abr-sharded"))
    seams_path = os.path.join(res, "seams.json")
    if os.path.exists(seams_path):
        sj = json.load(open(seams_path))
        p(f"\n**Seam quality** — Y-PSNR (dB) of each rung against the source scaled to its size "
          f"(bicubic), over the {2 * sj['window_s']:g} s around each of the {len(sj['seams'])} "
          f"seams ({sj['frames_compared']} frames per rung), sharded minus unsharded; "
          "HLS AVERAGE-BANDWIDTH of the whole rung for context:\n")
        p("| rung | unsharded dB | sharded dB | mean Δ dB | worst seam Δ dB | worst frame Δ dB "
          "| avg kb/s unsharded → sharded |")
        p("|---|---:|---:|---:|---:|---:|---|")
        for r in sj["rungs"]:
            n = r["name"]
            bw = (f"{bu[n] / 1000:.0f} → {bs[n] / 1000:.0f}" if n in bu and n in bs else "–")
            p(f"| {n} ({r['width']}x{r['height']}) | {r['unsharded_db']:.2f} | "
              f"{r['sharded_db']:.2f} | {r['mean_diff_db']:+.3f} | {r['worst_seam_diff_db']:+.3f} "
              f"| {r['worst_frame_diff_db']:+.3f} (frame {r['worst_frame']}) | {bw} |")
        secs = sorted({int(k) for r in sj["rungs"] for k in r.get("profile_db", {})})
        if secs:
            p(f"\nRecovery: mean Δ dB (sharded − unsharded) by whole second from the seam, over "
              f"the ±{sj['wide_s']:g} s around every seam (second 0 starts at the seam's first "
              "frame):\n")
            p("| rung | " + " | ".join(f"{k:+d} s" for k in secs) + " | ±" + f"{sj['wide_s']:g}"
              + " s mean |")
            p("|---|" + "---:|" * (len(secs) + 1))
            for r in sj["rungs"]:
                prof = r.get("profile_db", {})
                p(f"| {r['name']} | " + " | ".join(
                    f"{prof[str(k)]:+.2f}" if str(k) in prof else "–" for k in secs)
                  + f" | {r.get('wide_mean_diff_db', float('nan')):+.3f} |")
        p("")
    proj_path = os.path.join(res, "projection.json")
    if os.path.exists(proj_path):
        pj = json.load(open(proj_path))
        p(f"**Projection** for a {pj['target_s'] / 3600:g} h source of the same kind: "
          f"{pj['target_video_shards']} video shards of {pj['shard_seconds']:g} s, each costing "
          f"what one measured here did (mean {pj['shard_s_mean']:.1f} s, max "
          f"{pj['shard_s_max']:.1f} s of wall, cycled over the {pj['measured_video_shards']} "
          f"measured full-length shards); the audio task, `abr plan` and `abr assemble` scaled by "
          f"{pj['target_s'] / pj['source_s']:g}× (audio {pj['audio_s']:.0f} s, plan "
          f"{pj['plan_s']:.0f} s, assemble {pj['assemble_s']:.0f} s of wall). Tasks placed "
          "longest first on the least-loaded machine, one at a time per machine (an array "
          "engine); wall = plan + the busiest machine's chain + assemble. Per-task times from "
          f"{', '.join(pj['time_source'])}.\n")
        p("| machines | wall (measured elapsed) | speed-up | efficiency | busiest chain | "
          "busiest machine runs | wall (CPU basis) |")
        p("|---:|---:|---:|---:|---:|---|---:|")
        rows = {}
        for m in pj["machines"]:
            rows.setdefault(m["machines"], {})[m["basis"]] = m
        for n, b in sorted(rows.items()):
            e, c = b["elapsed"], b.get("cpu")
            hm = lambda x: f"{x / 3600:.2f} h" if x >= 3600 else f"{x / 60:.1f} min"  # noqa: E731
            p(f"| {n} | {hm(e['wall_s'])} | {e['speedup']:.1f}× | {100 * e['efficiency']:.0f} % "
              f"| {hm(e['busiest_chain_s'])} | {e['limit']} | "
              f"{hm(c['wall_s']) if c else '–'} |")
        p("")


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
    if not contenders:
        p("Run on a machine that may be shared: compare ratios measured in the same run; CPU "
          "time and peak RSS are steadier than wall time.\n")
    else:
        p(f"Source: `{src}` (fixtures/make.sh 1080p30: testsrc2 1920x1080 30 fps H.264 + AAC "
          f"48 kHz stereo), {src_s} s. Rounds: {runs_n}, interleaved (each round runs every "
          "contender once, order rotated per round). Ladder (abr's default for 1080p): 1920x1080 5000k, 1280x720 3000k, "
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
          "libav* 5.1) with the same settings but threading (abr: one thread per rung, "
          "fixed by its plan for deterministic bytes; ffmpeg: libx264's automatic frame "
          "threads); compare the `x264:` lines above (x264 clamps "
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

    if os.environ.get("BENCH_SHARDING") == "1":
        sharding(p, res, src, src_s)

    p("## Exact commands\n")
    p("Each contender is a command file run as `bash FILE` under `scripts/bench/measure.py` "
      "(working directory: the repository root); the tool is `exec`ed, so nothing else is "
      "measured.\n")
    names = contenders + ([] if flat == "no" else ["abr-flat1x", "abr-flat4x"])
    if os.environ.get("BENCH_SHARDING") == "1":
        names += ["abr-unsharded", "abr-plan", "abr-shard-0", "abr-assemble"]
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
