//! Real clients through `abr serve` (issue 4, point 2): hls.js and dash.js in headless Chromium
//! with the page on another port (cross-origin, so CORS is exercised), the origin's own
//! `/play/<name>` page, ffmpeg reading both manifests end to end over HTTP, and `curl -C -`
//! resuming an interrupted download of a large file byte for byte.

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::origin::*;
use common::*;

/// One headless Chromium at a time in this binary: playback must keep up with real time.
static BROWSER: Mutex<()> = Mutex::new(());

fn browser_lock() -> std::sync::MutexGuard<'static, ()> {
    BROWSER.lock().unwrap_or_else(|e| e.into_inner())
}

/// hls.js and dash.js, page served by play.mjs on its own port, media from `abr serve`: ≥ 6 s
/// played, every video rendition loaded and rendered, no HTTP error.
#[test]
fn hls_js_and_dash_js_play_every_rendition_cross_origin() {
    let s = Server::start(&sample_root(), &[]);
    let _b = browser_lock();
    for (player, manifest) in [
        ("hls", "/sample/hls/master.m3u8"),
        ("dash", "/sample/dash/manifest.mpd"),
    ] {
        let v = assert_plays(&s.url(manifest), player, &[]);
        eprintln!(
            "{player}: played {} s, {}/{} renditions, {} s wall",
            v["played"], v["renditionsVisited"], v["renditionsTotal"], v["elapsedS"]
        );
    }
    // Every media request of the players was answered without error by abr.
    let log = s.access_log();
    assert!(
        log.iter()
            .any(|l| l["path"].as_str().unwrap_or("").ends_with(".m4s")),
        "no DASH segment requested"
    );
    let bad: Vec<_> = log
        .iter()
        .filter(|l| l["status"].as_u64().unwrap_or(0) >= 400)
        .collect();
    assert!(bad.is_empty(), "HTTP errors in the access log: {bad:?}");
}

/// The origin's own player page plays with both players, loading the scripts from /_player/ on
/// the origin and nothing from anywhere else.
#[test]
fn origin_player_page_plays_with_hls_js_and_dash_js() {
    let s = Server::start(&sample_root(), &[]);
    let _b = browser_lock();
    for (player, script) in [("hls", "hls.min.js"), ("dash", "dash.all.min.js")] {
        let v = assert_page_plays(&s.url("/play/sample"), player);
        assert!(v["videoWidth"].as_u64().unwrap_or(0) > 0, "{player}: {v}");
        assert_eq!(
            v["renditionOptions"], 3,
            "{player}: rendition selector: {v}"
        );
        assert_eq!(
            v["externalRequests"],
            serde_json::json!([]),
            "{player}: {v}"
        );
        let want = s.url(&format!("/_player/{script}"));
        assert!(
            v["scripts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["url"] == want.as_str() && x["status"] == 200),
            "{player}: {want} not loaded: {v}"
        );
        eprintln!(
            "{player} page: advanced {} s, {} s wall",
            v["advanced"], v["elapsedS"]
        );
    }
    let log = s.access_log();
    for script in ["hls.min.js", "dash.all.min.js"] {
        let path = format!("/_player/{script}");
        assert!(
            log.iter()
                .any(|l| l["path"] == path.as_str() && l["status"] == 200),
            "{path} not served by abr"
        );
    }
}

/// The media files of one format of the sample package, as URL paths.
fn media_paths(format: &str) -> Vec<String> {
    let dir = sample_root().join("sample").join(format);
    let mut out = Vec::new();
    for rung in std::fs::read_dir(&dir).unwrap() {
        let rung = rung.unwrap();
        if !rung.file_type().unwrap().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(rung.path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if [".ts", ".m4s", ".mp4"].iter().any(|e| name.ends_with(e)) {
                out.push(format!(
                    "/sample/{format}/{}/{name}",
                    rung.file_name().to_str().unwrap()
                ));
            }
        }
    }
    out.sort();
    out
}

/// ffmpeg reads both manifests and every stream in them over HTTP through abr, without error.
#[test]
fn ffmpeg_reads_both_manifests_over_http() {
    let s = Server::start(&sample_root(), &[]);
    for (format, manifest) in [("hls", "master.m3u8"), ("dash", "manifest.mpd")] {
        let url = s.url(&format!("/sample/{format}/{manifest}"));
        let o = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i", &url])
            .args(["-map", "0", "-f", "null", "-"])
            .output()
            .expect("ffmpeg");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && err.trim().is_empty(),
            "ffmpeg {url}: {:?} {err}",
            o.status
        );
        // End to end: every segment (and init segment) of every rendition was fetched.
        let log = s.access_log();
        let files = media_paths(format);
        assert!(files.len() >= 3 * 4, "{format}: {files:?}");
        for f in &files {
            assert!(
                log.iter()
                    .any(|l| l["path"] == f.as_str()
                        && matches!(l["status"].as_u64(), Some(200 | 206))),
                "ffmpeg did not read {f} through abr"
            );
        }
    }
}

const MIB: u64 = 1 << 20;

/// `curl --limit-rate` of a 64 MiB file interrupted after ≥ 10 MiB, then `curl -C -` resumes it:
/// the result is byte-identical; a Range of the last MiB returns exactly those bytes.
#[test]
fn curl_resume_of_a_large_file_is_byte_identical() {
    let t = tempfile::Builder::new()
        .prefix("abr-resume-")
        .tempdir_in(fixture_dir())
        .unwrap();
    let root2 = t.path().join("root");
    copy_tree(&sample_root(), &root2);
    let big = root2.join("big/dash/720p/seg_00001.m4s");
    let len = 64 * MIB;
    write_pseudo_random(&big, len, 0x5eed_abcd);
    let want = sha256sum(&big);
    let s = Server::start(&root2, &["--rate-limit", "0"]);
    let path = "/big/dash/720p/seg_00001.m4s";
    let url = s.url(path);
    let part = t.path().join("part");

    // Interrupted download: killed once ≥ 10 MiB arrived.
    let mut curl = Command::new("curl")
        .args(["-sS", "--limit-rate", "20M", "-o"])
        .arg(&part)
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl");
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    wait_until(Duration::from_secs(30), "10 MiB downloaded", || {
        assert!(
            curl.try_wait().unwrap().is_none(),
            "curl ended before it was interrupted ({} bytes)",
            size(&part)
        );
        size(&part) >= 10 * MIB
    });
    curl.kill().unwrap();
    curl.wait().unwrap();
    let cut = size(&part);
    assert!((10 * MIB..len).contains(&cut), "interrupted at {cut}");

    // Resume from where it stopped.
    let o = Command::new("curl")
        .args(["-sS", "-C", "-", "-w", "%{http_code}", "-o"])
        .arg(&part)
        .arg(&url)
        .output()
        .expect("curl -C -");
    assert!(
        o.status.success(),
        "curl -C -: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "206");
    assert_eq!(size(&part), len);
    assert_eq!(sha256sum(&part), want, "resumed file differs");
    let resumed = format!("bytes={cut}-");
    assert!(
        s.access_log()
            .iter()
            .any(|l| l["path"] == path && l["range"] == resumed.as_str() && l["status"] == 206),
        "no 206 for {resumed} in the access log"
    );

    // The last MiB, as an explicit range and as a suffix range.
    let data = std::fs::read(&big).unwrap();
    let tail = &data[(len - MIB) as usize..];
    for range in [
        format!("bytes={}-{}", len - MIB, len - 1),
        format!("bytes=-{MIB}"),
    ] {
        let r = get(s.addr, path, &[("Range", &range)]).unwrap();
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {}-{}/{len}", len - MIB, len - 1).as_str()),
            "{range}"
        );
        assert_eq!(r.body.len() as u64, MIB, "{range}");
        assert!(r.body == tail, "{range}: wrong bytes");
    }
}
