#!/usr/bin/env python3
"""Runs one command and measures it (stdlib only; used by scripts/bench-packager.sh).

usage: measure.py --json OUT.json --log OUT.log -- COMMAND [ARGS...]

Measured, for every contender alike:
  wall_s        monotonic time from just before fork to the reaping of the command.
  user_s/sys_s  CPU time of the command and of every descendant it waited for (wait4 rusage:
                the kernel adds a reaped child's times, and its reaped children's, to its parent).
  cpu_pct       (user + sys) / wall * 100; 200 % = both cores of a 2-core machine busy.
  maxrss_kb     ru_maxrss from the same wait4: the peak RSS of the LARGEST SINGLE process of the
                tree (exact, kernel-tracked; what `/usr/bin/time -f %M` prints).
  tree_rss_kb   the peak over time of the SUM of the RSS of the command and all its live
                descendants, sampled from /proc every --interval seconds (default 0.1). Sampling
                can miss a peak shorter than the interval, and shared pages (libraries) are
                counted once per process, so it is approximate; for a single-process tool it
                equals maxrss_kb within sampling error.
The command's stdout and stderr go to --log. Exit status: the command's (or 128+signal).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _ppid_map():
    """pid -> ppid for every process visible in /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: fields start after the LAST ')'.
        rest = data[data.rfind(b")") + 2 :].split()
        out[int(name)] = int(rest[1])
    return out


def _rss_kb(pid):
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def _tree(root, ppids):
    children = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    todo, seen = [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(children.get(pid, ()))
    return seen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")

    peak = {"tree_rss_kb": 0, "max_procs": 0, "samples": 0}
    done = threading.Event()

    with open(a.log, "wb") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def sample():
            while not done.is_set():
                pids = _tree(proc.pid, _ppid_map())
                total = sum(_rss_kb(p) for p in pids)
                peak["tree_rss_kb"] = max(peak["tree_rss_kb"], total)
                peak["max_procs"] = max(peak["max_procs"], len(pids))
                peak["samples"] += 1
                done.wait(a.interval)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        # wait4 (not Popen.wait) to get the rusage of the whole reaped tree.
        _, status, ru = os.wait4(proc.pid, 0)
        t1 = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        th.join()

    wall = t1 - t0
    rc = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    res = {
        "cmd": cmd,
        "rc": rc,
        "wall_s": round(wall, 3),
        "user_s": round(ru.ru_utime, 3),
        "sys_s": round(ru.ru_stime, 3),
        "cpu_pct": round(100 * (ru.ru_utime + ru.ru_stime) / wall, 1) if wall > 0 else 0,
        "maxrss_kb": ru.ru_maxrss,
        "tree_rss_kb": peak["tree_rss_kb"],
        "max_procs": peak["max_procs"],
        "samples": peak["samples"],
    }
    with open(a.json, "w") as f:
        json.dump(res, f)
    sys.exit(rc)


if __name__ == "__main__":
    main()
