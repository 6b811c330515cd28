#!/usr/bin/env python3
"""Sharding figures for scripts/bench-packager.sh --sharding (stdlib + the ffmpeg CLI).

usage: shards.py psnr --plan PLAN.json --src SRC --unsharded PKG --sharded PKG --out OUT.json
                      [--window-s 1.0] [--wide-s 4.0] [--log LOG]
           Per-frame Y-PSNR of every rung of both packages against the source scaled to the
           rung's size (bicubic, as abr scales), over the frames within --window-s of every seam
           (a seam: the first frame of every shard but the first, from plan.json). One ffmpeg
           run decodes the source once for every rung and both packages; only the seam windows
           are compared. Writes, per rung: per-seam mean PSNR of both packages and the sharded
           minus unsharded difference (mean over all window frames, worst frame, worst seam),
           and, over --wide-s around each seam, the mean difference per second from the seam
           (how long the rate control's restart costs).

       shards.py project --plan PLAN.json --tasks 'RES/task-{}.json' [--sidecars 'DIR/{}.json']
                      --assemble ASM.json [--plan-run PLAN_RUN.json] --source-s S --target-s T
                      --machines 1,4,16,64 --out OUT.json
           Projected wall time of a T-second source from the measured tasks of an S-second one
           (measure.py's JSON of each `abr shard` run, or the task.json sidecars' elapsed_s and
           cpu_s when they have them; {} in a pattern is the task index): the T/S-times-longer source has
           ceil(T / shard_seconds) video shards, each costing what a measured full-length shard
           did (cycled); the audio task and assemble scale with the length. Tasks are placed
           longest first on the least-loaded machine (one task at a time per machine, as an
           array engine runs them); wall = plan + the busiest machine's chain + assemble.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys


def load_plan(path):
    with open(path) as f:
        plan = json.load(f)
    fr = plan["frame_rate"]
    plan["fps"] = fr["num"] / fr["den"]
    return plan


def seams(plan):
    return [s["start_frame"] for s in plan["shards"][1:]]


def windows(plan, window_s):
    """[(seam, first, last)] frame ranges (inclusive) around each seam, clipped to the source."""
    half = max(1, round(window_s * plan["fps"]))
    total = plan["frames"]
    return [(s, max(0, s - half), min(total - 1, s + half - 1)) for s in seams(plan)]


def psnr(a):
    plan = load_plan(a.plan)
    wins = windows(plan, a.window_s)
    if not wins:
        sys.exit("shards.py: the plan has one shard: no seam to measure")
    # Frames are measured over the wider window; the reported figures use --window-s.
    wide = windows(plan, max(a.window_s, a.wide_s))
    frames = sorted({n for _, lo, hi in wide for n in range(lo, hi + 1)})
    sel = "+".join(f"between(n\\,{lo}\\,{hi})" for _, lo, hi in wide)
    rungs = plan["rungs"]
    pkgs = {"unsharded": a.unsharded, "sharded": a.sharded}
    stats_dir = os.path.dirname(os.path.abspath(a.out))
    inputs = ["-i", a.src]
    graph = [f"[0:v]setpts=PTS-STARTPTS,select='{sel}',split={len(rungs)}"
             + "".join(f"[s{i}]" for i in range(len(rungs)))]
    outputs, stats = [], {}
    k = 1
    for i, r in enumerate(rungs):
        graph.append(f"[s{i}]scale={r['width']}:{r['height']}:flags=bicubic,format=yuv420p,"
                     f"split=2[ref{i}u][ref{i}s]")
        for tag, pkg in pkgs.items():
            playlist = os.path.join(pkg, "hls", r["name"], "index.m3u8")
            if not os.path.isfile(playlist):
                sys.exit(f"shards.py: {playlist} missing")
            inputs += ["-i", playlist]
            st = os.path.join(stats_dir, f"psnr-{tag}-{r['name']}.log")
            stats[(r["name"], tag)] = st
            t = tag[0]
            graph.append(f"[{k}:v:0]setpts=PTS-STARTPTS,select='{sel}',format=yuv420p[d{i}{t}];"
                         f"[d{i}{t}][ref{i}{t}]psnr=stats_file={st}[o{i}{t}]")
            outputs += ["-map", f"[o{i}{t}]", "-f", "null", "-"]
            k += 1
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
           "-filter_complex", ";".join(graph), *outputs]
    with open(a.log or os.devnull, "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        r = subprocess.run(cmd, stdout=log, stderr=log, check=False)
    if r.returncode:
        sys.exit(f"shards.py: ffmpeg failed (exit {r.returncode}); see {a.log}")

    narrow = sorted({n for _, lo, hi in wins for n in range(lo, hi + 1)})
    res = {"window_s": a.window_s, "wide_s": max(a.window_s, a.wide_s), "seams": seams(plan),
           "frames_compared": len(narrow), "fps": plan["fps"], "rungs": []}
    for rg in rungs:
        per = {}
        for tag in pkgs:
            ys = []
            for line in open(stats[(rg["name"], tag)]):
                m = re.search(r"psnr_y:(\S+)", line)
                ys.append(float(m.group(1)) if m and m.group(1) != "inf" else 100.0)
            if len(ys) != len(frames):
                sys.exit(f"shards.py: {rg['name']} {tag}: {len(ys)} PSNR lines for "
                         f"{len(frames)} frames")
            per[tag] = dict(zip(frames, ys))
        diffs = {n: per["sharded"][n] - per["unsharded"][n] for n in frames}
        seam_rows = []
        for s, lo, hi in wins:
            ns = range(lo, hi + 1)
            mean = lambda d: sum(d[n] for n in ns) / len(ns)  # noqa: E731
            seam_rows.append({"seam_frame": s, "unsharded_db": mean(per["unsharded"]),
                              "sharded_db": mean(per["sharded"]), "diff_db": mean(diffs)})
        worst_n = min(narrow, key=lambda n: diffs[n])
        # Mean difference per whole second relative to the seam, over every seam (wide window).
        fps = plan["fps"]
        profile = {}
        for s, lo, hi in wide:
            for n in range(lo, hi + 1):
                profile.setdefault(math.floor((n - s) / fps), []).append(diffs[n])
        wide_frames = sorted({n for _, lo, hi in wide for n in range(lo, hi + 1)})
        res["rungs"].append({
            "name": rg["name"], "width": rg["width"], "height": rg["height"],
            "unsharded_db": sum(per["unsharded"][n] for n in narrow) / len(narrow),
            "sharded_db": sum(per["sharded"][n] for n in narrow) / len(narrow),
            "mean_diff_db": sum(diffs[n] for n in narrow) / len(narrow),
            "wide_mean_diff_db": sum(diffs[n] for n in wide_frames) / len(wide_frames),
            "profile_db": {str(k): sum(v) / len(v) for k, v in sorted(profile.items())},
            "worst_frame_diff_db": diffs[worst_n], "worst_frame": worst_n,
            "worst_seam_diff_db": min(r["diff_db"] for r in seam_rows),
            "seams": seam_rows,
        })
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


def task_times(plan, measured, sidecars):
    """[(index, kind, elapsed_s, cpu_s, source)] per task: the sidecar's figures when it has them,
    else measure.py's (wall, user+sys) of the `abr shard` process."""
    out = []
    for i in range(plan["tasks"]):
        kind = "audio" if plan.get("audio_task") == i else "video"
        side = sidecars.format(i) if sidecars else ""
        if side and os.path.isfile(side):
            with open(side) as f:
                t = json.load(f)
            if t.get("elapsed_s") is not None and t.get("cpu_s") is not None:
                out.append((i, kind, float(t["elapsed_s"]), float(t["cpu_s"]), "task.json"))
                continue
        with open(measured.format(i)) as f:
            m = json.load(f)
        out.append((i, kind, m["wall_s"], m["user_s"] + m["sys_s"], "measured"))
    return out


def schedule(tasks, machines):
    """Longest first onto the least-loaded machine: [(load, [task kinds])] per machine."""
    loads = [[0.0, []] for _ in range(machines)]
    for t, kind in sorted(tasks, reverse=True):
        m = min(loads, key=lambda x: x[0])
        m[0] += t
        m[1].append(kind)
    return loads


def project(a):
    plan = load_plan(a.plan)
    tasks = task_times(plan, a.tasks, a.sidecars)
    with open(a.assemble) as f:
        asm = json.load(f)
    plan_wall = plan_cpu = 0.0
    if a.plan_run:
        with open(a.plan_run) as f:
            pr = json.load(f)
        plan_wall, plan_cpu = pr["wall_s"], pr["user_s"] + pr["sys_s"]
    scale = a.target_s / a.source_s
    shard_segs = plan["shard_segments"]
    full = [t for t, s in zip(tasks, plan["shards"]) if t[1] == "video"
            and s["segments"] == shard_segs] or [t for t in tasks if t[1] == "video"]
    audio = [t for t in tasks if t[1] == "audio"]
    shard_s = shard_segs * plan["segment_ms"] / 1000
    n_target = math.ceil(a.target_s / shard_s)
    res = {"source_s": a.source_s, "target_s": a.target_s, "shard_seconds": shard_s,
           "measured_video_shards": len(full), "target_video_shards": n_target,
           "plan_s": plan_wall * scale, "plan_cpu_s": plan_cpu * scale,
           "assemble_s": asm["wall_s"] * scale,
           "audio_s": sum(t[2] for t in audio) * scale,
           "shard_s_mean": sum(t[2] for t in full) / len(full),
           "shard_s_max": max(t[2] for t in full),
           "time_source": sorted({t[4] for t in tasks}),
           "machines": []}
    # Two bases: the elapsed times measured (on this shared machine), and CPU time as an idle
    # machine would turn it into wall time: a video shard keeps both cores busy (CPU / 2); the
    # audio task, plan and assemble run on about one core (CPU as is).
    for basis, col, cores in (("elapsed", 2, 1), ("cpu", 3, 2)):
        shard_times = [full[j % len(full)][col] / cores for j in range(n_target)]
        audio_t = sum(t[col] for t in audio) * scale
        asm_t = (asm["wall_s"] if basis == "elapsed" else asm["user_s"] + asm["sys_s"]) * scale
        plan_t = (plan_wall if basis == "elapsed" else plan_cpu) * scale
        all_t = [(t, "video") for t in shard_times] + ([(audio_t, "audio")] if audio else [])
        one = plan_t + sum(t for t, _ in all_t) + asm_t
        for m in a.machines:
            busiest, kinds = max(schedule(all_t, m), key=lambda x: x[0])
            wall = plan_t + busiest + asm_t
            # what sets the busiest chain: the audio task alone, or a pile of shards
            limit = ("the audio task" if "audio" in kinds and len(kinds) == 1 else
                     f"{kinds.count('video')} video shard(s)"
                     + (" + the audio task" if "audio" in kinds else ""))
            res["machines"].append({
                "basis": basis, "machines": m, "wall_s": wall, "speedup": one / wall,
                "efficiency": one / wall / m, "busiest_chain_s": busiest, "limit": limit,
                "serial_s": plan_t + asm_t, "audio_s": audio_t,
            })
    res["tasks"] = [{"index": i, "kind": k, "elapsed_s": e, "cpu_s": c, "from": s}
                    for i, k, e, c, s in tasks]
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("psnr")
    p.add_argument("--plan", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--unsharded", required=True)
    p.add_argument("--sharded", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--window-s", type=float, default=1.0)
    p.add_argument("--wide-s", type=float, default=4.0,
                   help="also measure this far from each seam (the recovery profile)")
    p.add_argument("--log")
    p.set_defaults(fn=psnr)
    q = sub.add_parser("project")
    q.add_argument("--plan", required=True)
    q.add_argument("--sidecars", help="task.json of task I: the pattern with {} = I")
    q.add_argument("--tasks", required=True, help="measure.py JSON of task I: {} = I")
    q.add_argument("--assemble", required=True)
    q.add_argument("--plan-run")
    q.add_argument("--source-s", type=float, required=True)
    q.add_argument("--target-s", type=float, required=True)
    q.add_argument("--machines", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 4, 16, 64])
    q.add_argument("--out", required=True)
    q.set_defaults(fn=project)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
