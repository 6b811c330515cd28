#!/usr/bin/env python3
"""Checks that a benchmark contender produced real output (used by scripts/bench-packager.sh).

usage: validate.py hls  MASTER.m3u8  NSEG     every variant (and EXT-X-MEDIA rendition) playlist
                                              exists, is VOD with ENDLIST, lists NSEG segments
                                              (video) whose files exist and are non-empty
       validate.py dash MANIFEST.mpd NSEG     static MPD; every Representation's segments
                                              (SegmentTemplate + SegmentTimeline, expanded) exist
                                              and are non-empty, NSEG per video representation
       validate.py progress PROGRESS.txt FRAMES   ffmpeg -progress file ended with progress=end
                                              after exactly FRAMES frames
Prints one summary line; exits 1 (with the reason) when something is missing or wrong.
"""

import os
import re
import sys
import xml.etree.ElementTree as ET


def fail(msg):
    print(f"INVALID: {msg}")
    sys.exit(1)


def nonempty(path):
    return os.path.isfile(path) and os.path.getsize(path) > 0


def media_playlist(path):
    if not nonempty(path):
        fail(f"missing playlist {path}")
    lines = open(path, encoding="utf-8").read().splitlines()
    if "#EXT-X-ENDLIST" not in lines:
        fail(f"{path}: no EXT-X-ENDLIST")
    base = os.path.dirname(path)
    segs, total, init = [], 0.0, None
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            total += float(line[8:].split(",")[0])
            segs.append(lines[i + 1].strip())
        m = re.match(r'#EXT-X-MAP:URI="([^"]+)"', line)
        if m:
            init = m.group(1)
    for s in segs + ([init] if init else []):
        if not nonempty(os.path.join(base, s)):
            fail(f"{path}: segment {s} missing or empty")
    kind = os.path.splitext(segs[0])[1] if segs else "?"
    return len(segs), total, kind


def hls(master, nseg):
    if not nonempty(master):
        fail(f"missing master playlist {master}")
    text = open(master, encoding="utf-8").read()
    lines = text.splitlines()
    base = os.path.dirname(master)
    variants = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            res = re.search(r"RESOLUTION=(\d+x\d+)", line)
            variants.append((lines[i + 1].strip(), res.group(1) if res else "?"))
    renditions = re.findall(r'#EXT-X-MEDIA:[^\n]*URI="([^"]+)"', text)
    if len(variants) != 5:
        fail(f"{master}: {len(variants)} variants, expected 5")
    summary = []
    for uri, res in variants:
        n, dur, kind = media_playlist(os.path.join(base, uri))
        if n != nseg:
            fail(f"{uri}: {n} segments, expected {nseg}")
        summary.append(f"{res}:{n}x{kind}/{dur:.2f}s")
    for uri in renditions:
        n, dur, kind = media_playlist(os.path.join(base, uri))
        summary.append(f"audio:{n}x{kind}/{dur:.2f}s")
    print(f"HLS ok: {len(variants)} variants [{' '.join(summary)}]")


def expand(template, rep_id, bandwidth, number, time):
    def num(m):
        return (m.group(1) or "%d") % number

    s = template.replace("$RepresentationID$", rep_id).replace("$Bandwidth$", bandwidth)
    s = re.sub(r"\$Number(%0\d+d)?\$", num, s)
    s = re.sub(r"\$Time(%0\d+d)?\$", lambda m: (m.group(1) or "%d") % time, s)
    return s.replace("$$", "$")


def dash(mpd, nseg):
    if not nonempty(mpd):
        fail(f"missing MPD {mpd}")
    root = ET.parse(mpd).getroot()
    ns = {"d": root.tag[1 : root.tag.index("}")]} if root.tag.startswith("{") else {}
    q = (lambda t: "d:" + t) if ns else (lambda t: t)
    if root.get("type") != "static":
        fail(f"{mpd}: type={root.get('type')}, expected static")
    base = os.path.dirname(mpd)
    summary, nvideo, naudio = [], 0, 0
    for aset in root.iter(root.tag.replace("MPD", "AdaptationSet")):
        aset_tpl = aset.find(q("SegmentTemplate"), ns)
        for rep in aset.findall(q("Representation"), ns):
            ctype = (aset.get("contentType") or rep.get("mimeType") or aset.get("mimeType") or "")
            is_video = "video" in ctype
            tpl = rep.find(q("SegmentTemplate"), ns)
            tpl = tpl if tpl is not None else aset_tpl
            if tpl is None:
                fail(f"{mpd}: representation {rep.get('id')} has no SegmentTemplate")
            rid, bw = rep.get("id"), rep.get("bandwidth") or ""
            number = int(tpl.get("startNumber", "1"))
            files = []
            if tpl.get("initialization"):
                files.append(expand(tpl.get("initialization"), rid, bw, 0, 0))
            tl = tpl.find(q("SegmentTimeline"), ns)
            if tl is None:
                fail(f"{mpd}: representation {rid} has no SegmentTimeline")
            t, count = 0, 0
            for s in tl.findall(q("S"), ns):
                t = int(s.get("t", t))
                for _ in range(int(s.get("r", "0")) + 1):
                    files.append(expand(tpl.get("media"), rid, bw, number, t))
                    number += 1
                    count += 1
                    t += int(s.get("d"))
            for f in files:
                if not nonempty(os.path.join(base, f)):
                    fail(f"{mpd}: representation {rid}: {f} missing or empty")
            if is_video:
                nvideo += 1
                if count != nseg:
                    fail(f"{mpd}: video representation {rid}: {count} segments, expected {nseg}")
                summary.append(f"{rep.get('width') or aset.get('width')}x"
                               f"{rep.get('height') or aset.get('height')}:{count}")
            else:
                naudio += 1
                summary.append(f"audio:{count}")
    if nvideo != 5 or naudio != 1:
        fail(f"{mpd}: {nvideo} video + {naudio} audio representations, expected 5 + 1")
    print(f"DASH ok: {nvideo}+{naudio} representations [{' '.join(summary)}]")


def progress(path, frames):
    if not nonempty(path):
        fail(f"missing progress file {path}")
    text = open(path, encoding="utf-8").read()
    got = re.findall(r"^frame=(\d+)$", text, re.M)
    if not text.rstrip().endswith("progress=end"):
        fail(f"{path}: no progress=end")
    if not got or int(got[-1]) != frames:
        fail(f"{path}: {got[-1] if got else 0} frames, expected {frames}")
    print(f"null output ok: {got[-1]} frames")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    kind, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"hls": hls, "dash": dash, "progress": progress}[kind](path, n)


if __name__ == "__main__":
    main()
