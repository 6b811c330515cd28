//! Memory regression: `abr package`'s peak resident memory must not grow with the length of the
//! source, at a mezzanine bitrate (≥ 20 Mb/s), where anything that keeps a share of the bytes
//! read shows at once. FFmpeg 5.1's `ff_read_packet` leaked every packet read into a reused
//! `AVPacket` (issue 11): RSS grew by the source's size, 2.5× between 60 s and 240 s of a
//! 24 Mb/s source. The flatness target itself (≤ 1.10× at 4× the length) is measured by
//! `scripts/bench-packager.sh --flat`; this test is its cheap guard.

mod common;

use std::path::Path;

use common::shard::{abr_cmd, run_measured, Measured};
use common::*;

/// 1× length in seconds; the long source is 4× this.
const SHORT_S: u32 = 12;

/// Video bitrate in bit/s from ffprobe (bytes of the video packets over the stream duration).
fn video_bitrate(src: &Path) -> f64 {
    let j = ffprobe_json(
        src,
        &["-select_streams", "v:0", "-show_entries", "stream=bit_rate"],
    );
    j["streams"][0]["bit_rate"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

fn package_measured(src: &Path, out: &Path, ladder: &Path) -> Measured {
    // One shard: the whole source through one pipeline, where anything kept per byte read or
    // per frame adds up over the whole length.
    let m = run_measured(abr_cmd(&[
        "package",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--ladder",
        ladder.to_str().unwrap(),
        "--shard-seconds",
        "0",
        "--progress",
        "none",
    ]));
    assert!(
        m.status.success(),
        "abr package {}: {}",
        src.display(),
        m.stderr
    );
    m
}

fn segments(pkg: &Path, rung: &str) -> usize {
    std::fs::read_dir(pkg.join("hls").join(rung))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "ts")
        })
        .count()
}

#[test]
fn peak_rss_is_flat_in_source_length_at_mezzanine_bitrate() {
    let short = fixture("mezz480", SHORT_S);
    let long = fixture("mezz480", 4 * SHORT_S);
    for src in [&short, &long] {
        let rate = video_bitrate(src);
        assert!(rate >= 20e6, "{}: {rate} bit/s < 20 Mb/s", src.display());
    }
    let t = tempfile::Builder::new()
        .prefix("abr-memory-")
        .tempdir_in(fixture_dir())
        .unwrap();
    // A small, fast ladder: the decoder (the mezzanine bytes) dominates, not x264.
    let ladder = t.path().join("ladder.toml");
    std::fs::write(
        &ladder,
        "preset = \"ultrafast\"\n\
         [[video]]\nheight = 360\nbitrate_kbps = 800\n\
         [[video]]\nheight = 240\nbitrate_kbps = 400\n\
         [audio]\nbitrate_kbps = 64\n",
    )
    .unwrap();
    let (p1, p4) = (t.path().join("short"), t.path().join("long"));
    let m1 = package_measured(&short, &p1, &ladder);
    let m4 = package_measured(&long, &p4, &ladder);
    // The runs did the work asked: every segment of the long source is there.
    let want = (4 * SHORT_S).div_ceil(4) as usize;
    assert_eq!(segments(&p4, "360p"), want);
    assert_eq!(segments(&p4, "240p"), want);

    let bytes = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let extra_mib = (bytes(&long) - bytes(&short)) / 1048576.0;
    let (r1, r4) = (m1.maxrss_kb as f64 / 1024.0, m4.maxrss_kb as f64 / 1024.0);
    let growth = r4 - r1;
    eprintln!(
        "peak RSS {r1:.0} MiB at {SHORT_S} s, {r4:.0} MiB at {} s ({:.2}×); the long source \
         has {extra_mib:.0} MiB more",
        4 * SHORT_S,
        r4 / r1
    );
    // Keeping what is read would add about `extra_mib`; allocator noise is a few MiB.
    assert!(
        growth <= 0.1 * extra_mib && r4 <= 1.15 * r1,
        "peak RSS grows with the source: {r1:.0} MiB at {SHORT_S} s, {r4:.0} MiB at {} s \
         (+{growth:.0} MiB for {extra_mib:.0} MiB more source)",
        4 * SHORT_S
    );
}
