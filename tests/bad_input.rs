//! Bad input and interrupted jobs: one clear line on stderr, non-zero exit, nothing published,
//! and a job killed mid-way leaves nothing at DIR and succeeds when rerun.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::shard::staging_beside;
use common::*;

fn workdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("abr-bad-{name}-"))
        .tempdir_in(fixture_dir())
        .unwrap()
}

/// Runs `abr package input --out out` and asserts: exit ≠ 0, exactly one stderr line that
/// starts with "abr: error:" and contains `needle`, no panic, nothing at `out`, no staging left.
fn assert_rejected(input: &Path, out: &Path, needle: &str) {
    let o = abr(&[
        "package",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--progress",
        "none",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{}: expected failure", input.display());
    assert_eq!(
        o.status.code(),
        Some(1),
        "exit code for {}: {err}",
        input.display()
    );
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    assert!(lines[0].starts_with("abr: error:"), "{err}");
    assert!(lines[0].contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "{} was published", out.display());
    assert!(
        staging_beside(out).is_empty(),
        "staging left: {:?}",
        staging_beside(out)
    );
}

#[test]
fn missing_file() {
    let w = workdir("missing");
    assert_rejected(
        &w.path().join("nope.mp4"),
        &w.path().join("out"),
        "cannot read input",
    );
}

#[test]
fn unreadable_input_directory() {
    let w = workdir("dir");
    // Running as root, permissions cannot make a file unreadable; a directory cannot be read as media.
    let d = w.path().join("a-dir.mp4");
    std::fs::create_dir(&d).unwrap();
    assert_rejected(&d, &w.path().join("out"), "cannot read input");
}

#[test]
fn zero_length_file() {
    let w = workdir("empty");
    let f = w.path().join("empty.mp4");
    std::fs::write(&f, b"").unwrap();
    assert_rejected(&f, &w.path().join("out"), "is empty");
}

#[test]
fn not_media() {
    let w = workdir("notmedia");
    let f = w.path().join("notes.mp4");
    std::fs::write(&f, "this is a text file, not a video\n".repeat(200)).unwrap();
    assert_rejected(&f, &w.path().join("out"), "not a media file");
}

#[test]
fn truncated_file() {
    let w = workdir("truncated");
    let src = fixture("truncated", 6);
    assert_rejected(&src, &w.path().join("out"), "");
    let o = abr(&[
        "package",
        src.to_str().unwrap(),
        "--out",
        w.path().join("o2").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("truncated") || err.contains("not a media file"),
        "{err}"
    );
}

#[test]
fn truncated_faststart_file_decodes_short() {
    // The header promises 6 s but the data stops after ~2 s: refused rather than packaged short.
    let w = workdir("truncated-fs");
    assert_rejected(
        &fixture("truncated-faststart", 6),
        &w.path().join("out"),
        "truncated or corrupt",
    );
}

#[test]
fn audio_only_has_no_video_stream() {
    let w = workdir("audioonly");
    assert_rejected(
        &fixture("audioonly", 3),
        &w.path().join("out"),
        "no video stream",
    );
}

#[test]
fn unknown_codec() {
    let w = workdir("unknown");
    let src = fixture("unknowncodec", 3);
    let o = abr(&[
        "package",
        src.to_str().unwrap(),
        "--out",
        w.path().join("x").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no decoder") || err.contains("no video stream"),
        "{err}"
    );
    assert_rejected(&src, &w.path().join("out"), "abr: error:");
}

#[test]
fn unwritable_output() {
    let w = workdir("unwritable");
    let src = fixture("720p-noaudio", 2);
    let blocker = w.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    // The output's parent is a regular file: nothing can be created there.
    assert_rejected(&src, &blocker.join("out"), "is not a directory");
}

#[test]
fn existing_output_is_refused_without_force() {
    let w = workdir("exists");
    let src = fixture("720p-noaudio", 2);
    let out = w.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"precious").unwrap();
    let o = abr(&[
        "package",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(std::fs::read(out.join("keep")).unwrap(), b"precious");
    // With --force it is replaced by a complete package.
    let ladder = test_ladder(w.path());
    let o = abr(&[
        "package",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--force",
        "--ladder",
        ladder.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("keep").exists() && out.join("hls/master.m3u8").is_file());
}

#[test]
fn bad_options() {
    let w = workdir("opts");
    let src = fixture("720p-noaudio", 2);
    let out = w.path().join("out");
    for (args, needle) in [
        (vec!["--segment-duration", "0"], "segment-duration"),
        (vec!["--formats", "flv"], "unknown format"),
        (
            vec!["--ladder", "/nonexistent/ladder.toml"],
            "cannot read ladder file",
        ),
    ] {
        let mut a = vec![
            "package",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend(args);
        let o = abr(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{a:?}: {err}");
        assert!(!out.exists());
    }
    let bad = w.path().join("bad.toml");
    std::fs::write(&bad, "preset = \"warp\"\n").unwrap();
    let o = abr(&[
        "package",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--ladder",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unknown x264 preset") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn killed_job_publishes_nothing_and_rerun_succeeds() {
    let w = workdir("kill");
    let src = fixture("1080p30", 20);
    let out = w.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_abr"))
        .args([
            "package",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--progress",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the job reports real progress (segments are being written), then SIGKILL it.
    let stdout = child.stdout.take().unwrap();
    let mut saw_progress = false;
    for line in BufReader::new(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "progress" && v["percent"].as_f64().unwrap_or(0.0) >= 10.0 {
            saw_progress = true;
            break;
        }
        assert_ne!(v["event"], "done", "job finished before it could be killed");
    }
    assert!(saw_progress, "no progress line before the job ended");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!out.exists(), "a killed job published {}", out.display());
    let work = out.parent().unwrap().join(".out.abr-work");
    assert!(
        work.join("plan.json").is_file(),
        "the killed job's work area (plan and finished tasks) is expected to remain"
    );
    // Rerun: it resumes from the work area, completes and removes it.
    let o = abr(&[
        "package",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--progress",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["event"], "done");
    assert!(out.join("hls/master.m3u8").is_file() && out.join("dash/manifest.mpd").is_file());
    assert!(staging_beside(&out).is_empty());
    assert!(!work.exists(), "work area left after publishing");
}
