//! Shared helpers for the end-to-end tests: fixture generation, running the binary, and
//! independent checks with real tools (ffprobe/ffmpeg, m3u8-rs, dash-mpd-core, mp4-atom, xmllint).
#![allow(dead_code)]

pub mod cdn;
pub mod library;
pub mod origin;
pub mod packages;
pub mod player;
pub mod redis;
pub mod shard;
pub mod slurm;
pub mod uploads;
pub mod verify;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cache directory for generated fixtures (kept across runs, regenerated when the script changes).
pub fn fixture_dir() -> PathBuf {
    let d = root().join("target/fixtures");
    std::fs::create_dir_all(&d).unwrap();
    d
}

static FIXTURE_LOCK: Mutex<()> = Mutex::new(());

/// Generates (or reuses) fixture `shape` of `secs` seconds with `fixtures/make.sh`.
pub fn fixture(shape: &str, secs: u32) -> PathBuf {
    let ext = match shape {
        "sar480" | "10bit" | "unknowncodec" => "mkv",
        "audioonly" => "m4a",
        "truncated-faststart" => "mp4",
        _ => "mp4",
    };
    let out = fixture_dir().join(format!("{shape}-{secs}s.{ext}"));
    let _g = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let st = Command::new("bash")
        .arg(root().join("fixtures/make.sh"))
        .arg(shape)
        .arg(&out)
        .arg(secs.to_string())
        .output()
        .expect("run fixtures/make.sh");
    assert!(
        st.status.success(),
        "fixture {shape}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

/// Runs the `abr` binary.
pub fn abr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_abr"))
        .args(args)
        .output()
        .expect("run abr")
}

/// Runs `abr package` and asserts success; returns the package directory.
pub fn package(input: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "package",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    let o = abr(&args);
    assert!(
        o.status.success(),
        "abr package {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out.to_path_buf()
}

/// A small ladder for fast tests (three rungs, fast preset).
pub fn test_ladder(dir: &Path) -> PathBuf {
    let p = dir.join("ladder.toml");
    std::fs::write(
        &p,
        "preset = \"superfast\"\n\
         [[video]]\nheight = 720\nbitrate_kbps = 1500\n\
         [[video]]\nheight = 360\nbitrate_kbps = 500\n\
         [[video]]\nheight = 240\nbitrate_kbps = 300\n\
         [audio]\nbitrate_kbps = 96\n",
    )
    .unwrap();
    p
}

/// Runs ffprobe with `args` on `file` and returns parsed JSON.
pub fn ffprobe_json(file: &Path, args: &[&str]) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("ffprobe");
    assert!(
        o.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("ffprobe json")
}

/// Decodes `file` fully with ffmpeg; panics on any error output.
pub fn assert_decodes(file: &Path) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "decoding {} failed: {err}",
        file.display()
    );
}

/// Source video duration in seconds (end of the last frame minus start of the first, from the
/// packet timestamps ffprobe reads) and average frame rate — independent of abr.
pub fn source_video(file: &Path) -> (f64, f64) {
    let j = ffprobe_json(
        file,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=avg_frame_rate:packet=pts_time,duration_time",
        ],
    );
    let rate = j["streams"][0]["avg_frame_rate"]
        .as_str()
        .map(parse_ratio)
        .unwrap_or(0.0);
    let num = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let (mut first, mut end) = (f64::MAX, f64::MIN);
    for p in j["packets"].as_array().expect("packets") {
        if let Some(pts) = num(&p["pts_time"]) {
            first = first.min(pts);
            end = end.max(pts + num(&p["duration_time"]).unwrap_or(0.0));
        }
    }
    (end - first, rate)
}

/// Parses "a/b" or "a".
pub fn parse_ratio(s: &str) -> f64 {
    match s.split_once('/') {
        Some((a, b)) => a.parse::<f64>().unwrap_or(0.0) / b.parse::<f64>().unwrap_or(1.0).max(1e-9),
        None => s.parse().unwrap_or(0.0),
    }
}
