#!/usr/bin/env python3
"""Report of scripts/bench-origin.sh: medians over rounds, abr/nginx ratios, checks, RSS.

usage: report.py OUT_DIR  (reads OUT_DIR/runs.txt, mixes.txt, rss.txt, and the Markdown
fragments settings.md, behaviour.md, machine.md, commands.md; writes OUT_DIR/results.md and
prints it)

runs.txt: one measured run per line, space-separated key=value (round, order, mix, conns,
server, the BENCH fields printed by common.lua's done(), warm_* from the checked warm-up run,
rss_max_kb/rss_end_kb of the server sampled while the run was under load).
mixes.txt: "MIX MIN_BODY MAX_BODY" per line (for the bytes-per-response sanity check).
"""

import os
import statistics
import sys


def parse_kv(line):
    d = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            d[k] = v
    return d


def num(d, k, default=0.0):
    try:
        return float(d.get(k, default))
    except ValueError:
        return default


def read(path, default=""):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return default


def fmt_ms(us):
    ms = us / 1000.0
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def problems(run, mixinfo, warm=True):
    """Why a measured run (with its warm-up, if `warm`) is suspect; empty when it looks right."""
    out = []
    errs = {k: int(num(run, "err_" + k)) for k in ("connect", "read", "write", "timeout", "status")}
    sock = {k: v for k, v in errs.items() if k != "status" and v}
    if sock:
        out.append("socket errors " + ",".join(f"{k}={v}" for k, v in sock.items()))
    if errs["status"]:
        out.append(f"{errs['status']} responses ≥400")
    if warm and int(num(run, "warm_bad")):
        out.append(f"warm-up: {int(num(run, 'warm_bad'))}/{int(num(run, 'warm_checked'))} "
                   f"bad responses (first: {run.get('warm_first_bad', '?')})")
    if int(num(run, "bad")):
        out.append(f"measured run (CHECK_MEASURED=1): {int(num(run, 'bad'))}/{int(num(run, 'checked'))} "
                   f"bad responses (first: {run.get('first_bad', '?')})")
    if warm and int(num(run, "warm_checked")) == 0:
        out.append("warm-up checked no response")
    req = num(run, "requests")
    if req <= 0:
        out.append("no completed request")
    elif run["mix"] in mixinfo:
        lo, hi = mixinfo[run["mix"]]
        per = num(run, "bytes") / req
        conns = num(run, "conns")
        # wrk counts every byte read, including responses still in flight at the end.
        upper = hi + 2048 + conns * (hi + 2048) / req
        if per < lo or per > upper:
            out.append(f"{per:.0f} bytes/response outside [{lo}, {upper:.0f}]")
    return out


def main():
    out_dir = sys.argv[1]
    runs = [parse_kv(l) for l in read(os.path.join(out_dir, "runs.txt")).splitlines() if l.strip()]
    mixinfo = {}
    mix_order = []
    for line in read(os.path.join(out_dir, "mixes.txt")).splitlines():
        p = line.split()
        if len(p) == 3:
            mixinfo[p[0]] = (int(p[1]), int(p[2]))
            mix_order.append(p[0])
    # Paced runs (no warm-up, no CPU sampling): latency at the same request rate.
    paced = [parse_kv(l) for l in read(os.path.join(out_dir, "paced.txt")).splitlines() if l.strip()]
    for warm, rs in ((True, runs), (False, paced)):
        for r in rs:
            dur = num(r, "duration_us") / 1e6 or 1.0
            r["rps"] = num(r, "requests") / dur
            r["mibs"] = num(r, "bytes") / dur / 1048576.0
            r["problems"] = problems(r, mixinfo, warm=warm)
            r["cpu_pct"] = num(r, "cpu_ms") / 10.0 / dur
            r["cpu_us_req"] = num(r, "cpu_ms") * 1000.0 / num(r, "requests") if num(r, "requests") else 0.0

    conns_order = sorted({int(r["conns"]) for r in runs})
    servers = ["nginx", "abr"]
    rounds = sorted({int(r["round"]) for r in runs})

    def group(mix, conns, server, rs=runs):
        return [r for r in rs if r["mix"] == mix and int(r["conns"]) == conns and r["server"] == server]

    def paired(mix, conns, rs=runs):
        """Per round, abr's p99 against nginx's in the same round: (rounds where abr ≤ nginx,
        rounds, median of the per-round ratios)."""
        ratios = []
        for rd in sorted({int(r["round"]) for r in rs}):
            a = [r for r in group(mix, conns, "abr", rs) if int(r["round"]) == rd]
            n = [r for r in group(mix, conns, "nginx", rs) if int(r["round"]) == rd]
            if a and n and num(n[0], "p99_us"):
                ratios.append(num(a[0], "p99_us") / num(n[0], "p99_us"))
        if not ratios:
            return (0, 0, float("nan"))
        return (sum(1 for x in ratios if x <= 1.0), len(ratios), statistics.median(ratios))

    med = {}
    for mix in mix_order:
        for c in conns_order:
            for s in servers:
                g = group(mix, c, s)
                if not g:
                    continue
                med[(mix, c, s)] = {
                    "rps": statistics.median(r["rps"] for r in g),
                    "mibs": statistics.median(r["mibs"] for r in g),
                    "p50": statistics.median(num(r, "p50_us") for r in g),
                    "p99": statistics.median(num(r, "p99_us") for r in g),
                    "cpu_pct": statistics.median(r["cpu_pct"] for r in g),
                    "cpu_us_req": statistics.median(r["cpu_us_req"] for r in g),
                    "n": len(g),
                    "winprobe_k": statistics.median(
                        num(r, "tcp_winprobe") * 1000.0 / num(r, "requests") if num(r, "requests") else 0.0
                        for r in g),
                    "problems": [f"r{r['round']}: " + "; ".join(r["problems"]) for r in g if r["problems"]],
                }

    L = []
    L.append("# Origin benchmark: `abr serve` vs nginx")
    L.append("")
    L.append(read(os.path.join(out_dir, "settings.md")).rstrip())
    L.append("")
    L.append(f"## Results (medians of {len(rounds)} round{'s' if len(rounds) != 1 else ''})")
    L.append("")
    L.append("req/s and MiB/s over the measured window (MiB/s counts every byte wrk read, headers "
             "included); p50/p99: wrk's latency percentiles (request written → response complete). "
             "Ratios are abr/nginx of the medians: targets are req/s ratio ≥ 1.00 and p99 ratio ≤ 1.00. "
             "`check` is `ok` or says what was wrong in which round. Server CPU: user+system time of "
             "the server's processes during the run (100 % = one core), and per completed request — "
             "less sensitive than req/s to the client and to other load sharing the CPUs.")
    L.append("")
    L.append("| mix | conns | server | req/s | MiB/s | p50 ms | p99 ms | req/s abr/nginx | p99 abr/nginx | server CPU % | CPU µs/req | check |")
    L.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    verdicts = []
    for mix in mix_order:
        for c in conns_order:
            n = med.get((mix, c, "nginx"))
            a = med.get((mix, c, "abr"))
            for s in servers:
                m = med.get((mix, c, s))
                if not m:
                    continue
                ratio_r = ratio_p = ""
                if s == "abr" and n and a:
                    rr = a["rps"] / n["rps"] if n["rps"] else float("nan")
                    rp = a["p99"] / n["p99"] if n["p99"] else float("nan")
                    ratio_r = f"**{rr:.2f}×**"
                    ratio_p = f"**{rp:.2f}×**"
                    flagged = bool(n["problems"] or a["problems"])
                    verdicts.append((mix, c, rr, rp, flagged, paired(mix, c)))
                check = "ok" if not m["problems"] else "⚠ " + " / ".join(m["problems"])
                L.append(f"| {mix} | {c} | {s} | {m['rps']:.0f} | {m['mibs']:.1f} | {fmt_ms(m['p50'])} | "
                         f"{fmt_ms(m['p99'])} | {ratio_r} | {ratio_p} | {m['cpu_pct']:.0f} | "
                         f"{m['cpu_us_req']:.0f} | {check} |")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("Verdicts on the ratios of the medians. p99 by round pairs each round's abr run with "
             "the nginx run next to it: in how many rounds abr's p99 was ≤ nginx's, and the median "
             "of those per-round ratios (a check on the verdict when the medians are close).")
    L.append("")
    L.append("| mix | conns | throughput ≥ 1.0× nginx | p99 ≤ nginx | p99 by round: abr ≤ nginx, median ratio |")
    L.append("| --- | ---: | --- | --- | --- |")
    for mix, c, rr, rp, flagged, (wins, pairs, pmed) in verdicts:
        t1 = ("met" if rr >= 1.0 else "missed") + f" ({rr:.2f}×)"
        t2 = ("met" if rp <= 1.0 else "missed") + f" ({rp:.2f}×)"
        suffix = " ⚠ flagged runs" if flagged else ""
        L.append(f"| {mix} | {c} | {t1} | {t2}{suffix} | {wins} of {pairs}, {pmed:.2f}× |")
    L.append("")
    L.append("Kernel TCP counters during the measured runs (system-wide, medians per 1000 requests): "
             "zero-window probes are connections whose sender waited ≥ 200 ms (the persist timer) "
             "for a shut client receive window to reopen — with whole segments at 512 connections, "
             "where wrk is the bottleneck, they set most of p99. Per run in \"Every run\".")
    L.append("")
    L.append("| mix | conns | nginx zero-window probes / 1k req | abr zero-window probes / 1k req |")
    L.append("| --- | ---: | ---: | ---: |")
    for mix in mix_order:
        for c in conns_order:
            n, a = med.get((mix, c, "nginx")), med.get((mix, c, "abr"))
            if n and a:
                L.append(f"| {mix} | {c} | {n['winprobe_k']:.1f} | {a['winprobe_k']:.1f} |")
    L.append("")

    # Paced runs: latency at the same request rate.
    if paced:
        prounds = sorted({int(r["round"]) for r in paced})
        L.append(f"## Latency at the same request rate (paced, medians of {len(prounds)} "
                 f"round{'s' if len(prounds) != 1 else ''})")
        L.append("")
        L.append("In the closed loop above, wrk shares the CPUs with the server and saturates: a "
                 "faster server loads the client harder, and the p99 then includes the client's own "
                 "queueing. Here every connection waits a fixed delay before each request, so both "
                 "servers get the same request rate, about half the lower closed-loop throughput of "
                 "the two (the delay is whole milliseconds, so the rate is approximate); p50/p99 are "
                 "then the servers' latency at equal load.")
        L.append("")
        L.append("| mix | conns | delay ms | nginx req/s | abr req/s | nginx p50 / p99 ms | abr p50 / p99 ms | p99 abr/nginx | rounds abr p99 ≤ nginx | check |")
        L.append("| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | --- |")
        for mix in mix_order:
            for c in conns_order:
                g = {s: group(mix, c, s, paced) for s in servers}
                if not g["nginx"] or not g["abr"]:
                    continue
                m = {s: {"rps": statistics.median(r["rps"] for r in g[s]),
                         "p50": statistics.median(num(r, "p50_us") for r in g[s]),
                         "p99": statistics.median(num(r, "p99_us") for r in g[s])} for s in servers}
                wins, pairs, _ = paired(mix, c, paced)
                rp = m["abr"]["p99"] / m["nginx"]["p99"] if m["nginx"]["p99"] else float("nan")
                probs = [f"{r['server']} r{r['round']}: " + "; ".join(r["problems"])
                         for s in servers for r in g[s] if r["problems"]]
                check = "ok" if not probs else "⚠ " + " / ".join(probs)
                L.append(f"| {mix} | {c} | {g['abr'][0].get('delay_ms', '?')} | {m['nginx']['rps']:.0f} | "
                         f"{m['abr']['rps']:.0f} | {fmt_ms(m['nginx']['p50'])} / {fmt_ms(m['nginx']['p99'])} | "
                         f"{fmt_ms(m['abr']['p50'])} / {fmt_ms(m['abr']['p99'])} | **{rp:.2f}×** | "
                         f"{wins} of {pairs} | {check} |")
        L.append("")

    # RSS.
    L.append("## Memory (RSS)")
    L.append("")
    L.append("VmRSS from /proc: abr is one process; nginx is master + workers, summed. "
             "\"under load\" = largest sample (every 0.5 s) during each 512-connection measured run "
             "and the last sample before wrk ended.")
    L.append("")
    L.append(read(os.path.join(out_dir, "rss.md")).rstrip())
    L.append("")
    L.append("| round | mix | server | RSS max under load (MiB) | RSS at end of run (MiB) |")
    L.append("| ---: | --- | --- | ---: | ---: |")
    big = max(conns_order) if conns_order else 0
    for r in sorted((r for r in runs if int(r["conns"]) == big),
                    key=lambda r: (int(r["round"]), mix_order.index(r["mix"]) if r["mix"] in mix_order else 99, r["server"])):
        L.append(f"| {r['round']} | {r['mix']} | {r['server']} | {num(r, 'rss_max_kb') / 1024:.1f} | "
                 f"{num(r, 'rss_end_kb') / 1024:.1f} |")
    L.append("")

    L.append("## Behaviour check (curl, before the runs)")
    L.append("")
    L.append(read(os.path.join(out_dir, "behaviour.md")).rstrip())
    L.append("")

    L.append("## Every run")
    L.append("")
    L.append("| round | order | mix | conns | server | req/s | MiB/s | p50 ms | p99 ms | requests | errors (c/r/w/t/≥400) | warm-up checked/bad | server CPU % (ticks per process) | TCP zero-window / loss probes / retransmits |")
    L.append("| ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |")
    for r in runs:
        errs = "/".join(str(int(num(r, "err_" + k))) for k in ("connect", "read", "write", "timeout", "status"))
        L.append(f"| {r['round']} | {r['order']} | {r['mix']} | {r['conns']} | {r['server']} | {r['rps']:.0f} | "
                 f"{r['mibs']:.1f} | {fmt_ms(num(r, 'p50_us'))} | {fmt_ms(num(r, 'p99_us'))} | "
                 f"{int(num(r, 'requests'))} | {errs} | {int(num(r, 'warm_checked'))}/{int(num(r, 'warm_bad'))} | "
                 f"{r['cpu_pct']:.0f} ({r.get('cpu_split_ticks', '')}) | "
                 f"{int(num(r, 'tcp_winprobe'))} / {int(num(r, 'tcp_lossprobe'))} / {int(num(r, 'tcp_retrans'))} |")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(read(os.path.join(out_dir, "machine.md")).rstrip())
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append(read(os.path.join(out_dir, "commands.md")).rstrip())
    L.append("")
    text = "\n".join(L) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
