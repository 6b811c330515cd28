//! Real players: a packaged fixture is served over HTTP (a static server with CORS, on another
//! port than the page) and played by hls.js and dash.js in headless Chromium, switching to every
//! video rendition; ffmpeg reads both manifests end to end over HTTP.

mod common;

use common::player::play;
use common::*;

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
