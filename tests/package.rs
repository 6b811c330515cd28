//! End-to-end packaging tests: every fixture shape is packaged by the real binary and the output is
//! checked with independent tools — ffprobe/ffmpeg decode every segment, m3u8-rs and dash-mpd-core
//! parse the manifests back, mp4-atom parses every fMP4 box, xmllint validates the MPD against the
//! MPEG-DASH schema.

mod common;

use std::path::PathBuf;

use common::verify::verify;
use common::*;

fn out_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix(&format!("abr-{name}-"))
        .tempdir_in(fixture_dir())
        .unwrap();
    let out = t.path().join("pkg");
    (t, out)
}

#[test]
fn full_hd_with_audio_default_ladder() {
    let src = fixture("1080p30", 9);
    let (_t, out) = out_dir("1080p");
    package(&src, &out, &[]);
    let r = verify(&out, &src);
    let names: Vec<_> = r.sizes.keys().cloned().collect();
    assert_eq!(names, ["1080p", "240p", "360p", "480p", "720p"]);
    assert_eq!(r.sizes["1080p"], (1920, 1080));
    assert_eq!(r.sizes["480p"], (854, 480));
    assert!(r.has_audio);
    assert_eq!(r.segments, 3, "9 s at 4 s segments");
    assert!(
        (r.duration - 9.0).abs() < 1.0 / 30.0,
        "duration {}",
        r.duration
    );
    assert!(out.join("dash/audio_128k/init.mp4").is_file());
}

#[test]
fn video_only_source_packages_without_audio() {
    let src = fixture("720p-noaudio", 6);
    let (t, out) = out_dir("noaudio");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    assert!(!r.has_audio);
    assert!(r.codecs.values().all(|c| !c.contains("mp4a")));
    assert_eq!(r.segments, 3);
}

#[test]
fn anamorphic_odd_width_becomes_square_pixels() {
    let src = fixture("sar480", 6);
    let (t, out) = out_dir("sar");
    let ladder = test_ladder(t.path());
    package(&src, &out, &["--ladder", ladder.to_str().unwrap()]);
    let r = verify(&out, &src);
    // 853x480 at SAR 3:2 displays as 1279.5x480: never upscaled past 480 lines, aspect kept.
    assert_eq!(
        r.sizes.keys().cloned().collect::<Vec<_>>(),
        ["240p", "360p"]
    );
    assert_eq!(r.sizes["360p"], (960, 360));
    let seg = out.join("hls/360p/seg_00001.ts");
    let j = ffprobe_json(
        &seg,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=sample_aspect_ratio",
        ],
    );
    let sar = j["streams"][0]["sample_aspect_ratio"]
        .as_str()
        .unwrap_or("1:1");
    assert_eq!(sar, "1:1");
}

#[test]
fn ten_bit_source_becomes_8bit_420() {
    let src = fixture("10bit", 5);
    let (t, out) = out_dir("10bit");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    assert!(
        r.codecs.values().all(|c| c.starts_with("avc1.64")),
        "High profile, not High10: {:?}",
        r.codecs
    );
}

#[test]
fn variable_frame_rate_source_is_cut_aligned() {
    let src = fixture("vfr", 6);
    let (t, out) = out_dir("vfr");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    assert!(r.segments >= 3);
}

#[test]
fn rotated_source_is_packaged_upright() {
    let src = fixture("rotated", 5);
    let (t, out) = out_dir("rotated");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    // 1280x720 rotated 90° displays as 720x1280: portrait rungs named by their short side.
    assert_eq!(r.sizes["720p"], (720, 1280));
    assert_eq!(r.sizes["360p"], (360, 640));
}

#[test]
fn formats_option_writes_only_what_was_asked() {
    let src = fixture("720p-noaudio", 2);
    let t = tempfile::Builder::new()
        .prefix("abr-formats-")
        .tempdir_in(fixture_dir())
        .unwrap();
    let ladder = test_ladder(t.path());
    let hls = package(
        &src,
        &t.path().join("hls-only"),
        &["--ladder", ladder.to_str().unwrap(), "--formats", "hls"],
    );
    assert!(hls.join("hls/master.m3u8").is_file() && !hls.join("dash").exists());
    let dash = package(
        &src,
        &t.path().join("dash-only"),
        &["--ladder", ladder.to_str().unwrap(), "--formats", "dash"],
    );
    assert!(dash.join("dash/manifest.mpd").is_file() && !dash.join("hls").exists());
}
