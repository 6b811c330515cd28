//! Real players: plays a package directory with hls.js or dash.js in headless Chromium
//! (`tests/player/play.mjs`, served by its own static server) and checks that every video
//! rendition was loaded and rendered and that enough media played cleanly.

use std::process::Command;

use super::*;

/// Plays `dir` (an abr package) with `player` (`hls` or `dash`) for 6.5 s of media, visiting every
/// video rendition; panics with the player's report on failure.
pub fn play(dir: &std::path::Path, player: &str) {
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
