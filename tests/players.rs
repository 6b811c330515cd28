//! Real players: a packaged fixture is served over HTTP (a static server with CORS, on another
//! port than the page) and played by hls.js and dash.js in headless Chromium, switching to every
//! video rendition; ffmpeg reads both manifests end to end over HTTP.

mod common;

use std::process::Command;

use common::*;

fn play(dir: &std::path::Path, player: &str) {
    let o = Command::new("node")
        .arg(root().join("tests/player/play.mjs"))
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "--player",
            player,
            "--seconds",
            "6.5",
        ])
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "{player}: no result line; stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(
        o.status.success() && v["ok"] == true,
        "{player} failed: {line}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        v["renditionsVisited"], v["renditionsTotal"],
        "{player}: {line}"
    );
    assert!(
        v["renditionsTotal"].as_u64().unwrap() >= 3,
        "{player}: {line}"
    );
    assert!(v["played"].as_f64().unwrap() >= 6.0, "{player}: {line}");
}

#[test]
fn hls_js_and_dash_js_play_every_rendition() {
    let src = fixture("1080p30", 12);
    let t = tempfile::Builder::new()
        .prefix("abr-players-")
        .tempdir_in(fixture_dir())
        .unwrap();
    let out = t.path().join("pkg");
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
    play(&out, "hls");
    play(&out, "dash");
}
