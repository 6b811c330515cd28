//! The origin behind the shipped CDN edge (issue 12): `scripts/cdn/edge.sh` runs nginx with
//! proxy_cache, slice and stale serving on loopback in front of real `abr serve` processes, and
//! hls.js and dash.js play through it in headless Chromium (the page on another port).
//! - CORS is cache-correct: segments first fetched without `Origin` still play in a browser; with
//!   an origin list, an unlisted origin is refused by the browser and a listed one plays, through
//!   the same cache.
//! - The slice cache returns byte-exact files and ranges; a second pass is all hits with no new
//!   origin request; an expired manifest is revalidated with a 304; purge empties a prefix.
//! - With every origin killed (SIGKILL), both players keep playing the package for ≥ 20 s from
//!   the warmed edge, the expired manifests served stale.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::cdn::{is_media, package_files, Edge};
use common::origin::*;
use common::packages::packaged_root;
use common::*;

/// One headless Chromium at a time in this binary: playback must keep up with real time.
static BROWSER: Mutex<()> = Mutex::new(());

fn browser_lock() -> std::sync::MutexGuard<'static, ()> {
    BROWSER.lock().unwrap_or_else(|e| e.into_inner())
}

/// A ROOT with one package `movie`: a 23 s 1080p30 source with audio (not a multiple of the
/// 2 s segment), the 3-rung test ladder; long enough for 20 s of playback during the outage.
fn movie_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| packaged_root("abr-cdn-root-", "1080p30", 23, "movie"))
        .clone()
}

const HLS: &str = "/movie/hls/master.m3u8";
const DASH: &str = "/movie/dash/manifest.mpd";

/// What Chromium-based players send, reduced by the edge to `br` like Chromium's own
/// "gzip, deflate, br, zstd": a manifest cached for one is a hit for the other.
const BROWSER_AE: &str = "gzip, deflate, br";

/// Fetches every file of `movie` through the edge without an `Origin` header (manifests also
/// as a browser would accept them), checking the bytes. Returns the number of requests.
fn warm(edge: &Edge, root: &std::path::Path) -> usize {
    let mut n = 0;
    for (path, file) in package_files(root, "movie") {
        let want = std::fs::read(&file).unwrap();
        let r = get(edge.addr, &path, &[]).unwrap();
        assert_eq!(r.status, 200, "{path}: {:?}", r.headers);
        assert!(r.body == want, "{path}: wrong bytes through the edge");
        n += 1;
        if !is_media(&path) {
            let r = get(edge.addr, &path, &[("Accept-Encoding", BROWSER_AE)]).unwrap();
            assert_eq!(r.status, 200, "{path}");
            n += 1;
        }
    }
    n
}

/// `play.mjs --manifest-url URL --player PLAYER EXTRA…`, whatever its outcome.
fn play(
    url: &str,
    player: &str,
    extra: &[&str],
) -> (std::process::ExitStatus, serde_json::Value, String) {
    let mut args = vec!["--manifest-url", url, "--player", player];
    args.extend_from_slice(extra);
    node_json("play.mjs", &args)
}

/// Requests of the origin's access log for segments and init files.
fn origin_media_requests(s: &Server) -> usize {
    s.access_log()
        .iter()
        .filter(|l| is_media(l["path"].as_str().unwrap_or("")))
        .count()
}

/// A loopback port held until the listener is dropped (so the origin started meanwhile cannot
/// be given it).
fn held_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
}

#[test]
fn cors_through_the_edge_with_any_origin_and_with_a_list() {
    let root = movie_root();

    // cors_origins = ["*"] (the default): segments cached from requests without Origin.
    let s = Server::start(&root, &[]);
    let edge = Edge::up(&[s.addr]);
    warm(&edge, &root);
    let r = get(edge.addr, "/movie/hls/360p/seg_00002.ts", &[]).unwrap();
    assert_eq!(r.header("x-cache-status"), Some("HIT"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let filled = origin_media_requests(&s);
    {
        let _b = browser_lock();
        for (player, manifest) in [("hls", HLS), ("dash", DASH)] {
            let v = assert_plays(&edge.url(manifest), player, &[]);
            eprintln!(
                "any origin, {player}: played {} s, {}/{} renditions",
                v["played"], v["renditionsVisited"], v["renditionsTotal"]
            );
        }
    }
    // The browsers got the responses cached for the Origin-less requests: every media request
    // carrying an Origin was a hit, and the origin saw no media request after the warm-up.
    let log = edge.access_log();
    let browser_media: Vec<_> = log
        .iter()
        .filter(|l| l["origin"] != "" && is_media(l["uri"].as_str().unwrap_or("")))
        .collect();
    assert!(browser_media.len() >= 10, "{browser_media:?}");
    for l in &browser_media {
        assert_eq!(l["cache"], "HIT", "{l}");
        assert_eq!(l["status"], 200, "{l}");
    }
    assert_eq!(
        origin_media_requests(&s),
        filled,
        "media requests reached the origin"
    );
    drop(edge);
    drop(s);

    // A list of origins: one page origin listed, another not.
    let (listed_l, listed) = held_port();
    let (other_l, other) = held_port();
    let listed_origin = format!("http://127.0.0.1:{listed}");
    let other_origin = format!("http://127.0.0.1:{other}");
    let s = Server::start(&root, &["--cors-origins", &listed_origin]);
    let edge = Edge::up(&[s.addr]);
    warm(&edge, &root);
    for (path, origin) in [
        (HLS, other_origin.as_str()),
        ("/movie/hls/720p/seg_00001.ts", other_origin.as_str()),
        (HLS, listed_origin.as_str()),
        ("/movie/hls/720p/seg_00001.ts", listed_origin.as_str()),
    ] {
        let r = get(edge.addr, path, &[("Origin", origin)]).unwrap();
        assert_eq!(r.status, 200);
        let vary: Vec<String> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "vary")
            .map(|(_, v)| v.to_ascii_lowercase())
            .collect();
        assert_eq!(vary.len(), 1, "one Vary line: {vary:?}");
        assert!(vary[0].contains("origin"), "{path} {origin}: {vary:?}");
        let acao = r.header("access-control-allow-origin");
        if origin == listed_origin {
            assert_eq!(acao, Some(origin), "{path}");
        } else {
            assert_eq!(acao, None, "{path}");
        }
    }
    drop((listed_l, other_l));
    let answered_other = |edge: &Edge| {
        edge.access_log()
            .iter()
            .filter(|l| {
                l["uri"] == HLS && l["origin"] == other_origin.as_str() && l["status"] == 200
            })
            .count()
    };
    let before = answered_other(&edge);
    let _b = browser_lock();
    // The unlisted page: the edge answers, the browser refuses the response.
    let url = edge.url(HLS);
    let (st, v, stderr) = play(
        &url,
        "hls",
        &["--page-port", &other.to_string(), "--timeout", "40"],
    );
    assert!(!st.success() && v["ok"] == false, "{v}\n{stderr}");
    assert_eq!(v["pageOrigin"], other_origin.as_str(), "{v}");
    let refused = v["httpErrors"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .any(|e| e["url"] == url.as_str() && e["error"] == "net::ERR_FAILED"),
        "{v}"
    );
    assert!(
        v["consoleErrors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap_or("").contains("CORS policy")),
        "{v}"
    );
    assert!(
        answered_other(&edge) > before,
        "the edge did not answer the unlisted page's request"
    );
    // The listed page plays the same URLs through the same cache.
    let v = assert_plays(&url, "hls", &["--page-port", &listed.to_string()]);
    assert_eq!(v["pageOrigin"], listed_origin.as_str());
    eprintln!("listed origin, hls: played {} s", v["played"]);
}

/// (range header, first byte, last byte) of the requests made of a file of `len` bytes.
fn ranges(len: u64) -> Vec<(Option<String>, u64, u64)> {
    let mut v = vec![
        (None, 0, len - 1),
        (Some("bytes=0-0".into()), 0, 0),
        (
            Some(format!("bytes={}-{}", len / 3, len / 2)),
            len / 3,
            len / 2,
        ),
        (
            Some(format!("bytes=-{}", len.min(1000))),
            len - len.min(1000),
            len - 1,
        ),
    ];
    const MIB: u64 = 1 << 20;
    if len > 3 * MIB {
        // Across slice boundaries, and an open range from inside a slice to the end.
        v.push((
            Some(format!("bytes={}-{}", MIB - 700, MIB + 700)),
            MIB - 700,
            MIB + 700,
        ));
        v.push((
            Some(format!("bytes={}-{}", 2 * MIB - 1, 3 * MIB)),
            2 * MIB - 1,
            3 * MIB,
        ));
        v.push((
            Some(format!("bytes={}-", 3 * MIB + 5)),
            3 * MIB + 5,
            len - 1,
        ));
    }
    v
}

/// Every request of [`ranges`] for every media file through the edge: the exact bytes; returns
/// the cache statuses seen.
fn ranged_pass(edge: &Edge, files: &[(String, PathBuf)]) -> Vec<String> {
    let mut statuses = Vec::new();
    for (path, file) in files {
        let data = std::fs::read(file).unwrap();
        let len = data.len() as u64;
        for (range, a, b) in ranges(len) {
            let h: Vec<(&str, &str)> = range.iter().map(|r| ("Range", r.as_str())).collect();
            let r = get(edge.addr, path, &h).unwrap();
            let what = format!("{path} {range:?}");
            match range {
                None => assert_eq!(r.status, 200, "{what}"),
                Some(_) => {
                    assert_eq!(r.status, 206, "{what}");
                    assert_eq!(
                        r.header("content-range"),
                        Some(format!("bytes {a}-{b}/{len}").as_str()),
                        "{what}"
                    );
                }
            }
            assert!(
                r.body == data[a as usize..=b as usize],
                "{what}: {} bytes, not the file's",
                r.body.len()
            );
            statuses.push(r.header("x-cache-status").unwrap_or("none").to_string());
        }
    }
    statuses
}

#[test]
fn slice_cache_is_byte_exact_all_hits_then_revalidates_and_purges() {
    let t = tempfile::Builder::new()
        .prefix("abr-cdn-slice-")
        .tempdir_in(fixture_dir())
        .unwrap();
    let root = t.path().join("root");
    copy_tree(&movie_root(), &root);
    // A media file of several slices (1 MiB each), not a multiple of the slice size.
    write_pseudo_random(
        &root.join("movie/dash/720p/seg_99999.m4s"),
        (5 << 20) + 12_345,
        0xcd_7e,
    );
    let s = Server::start(&root, &["--manifest-max-age", "1"]);
    let edge = Edge::up(&[s.addr]);
    let media: Vec<_> = package_files(&root, "movie")
        .into_iter()
        .filter(|(p, _)| is_media(p))
        .collect();
    assert!(media.len() > 40, "{}", media.len());

    let first = ranged_pass(&edge, &media);
    assert!(first.iter().any(|c| c == "MISS"), "{first:?}");
    let fills = origin_media_requests(&s);
    assert!(fills >= media.len(), "{fills} origin requests");
    // Every slice came from the origin as a Range request of at most one slice.
    for l in s.access_log() {
        if is_media(l["path"].as_str().unwrap_or("")) {
            assert_eq!(l["status"], 206, "{l}");
            assert!(l["bytes"].as_u64().unwrap() <= 1 << 20, "{l}");
        }
    }
    let second = ranged_pass(&edge, &media);
    assert!(second.iter().all(|c| c == "HIT"), "{second:?}");
    assert_eq!(
        origin_media_requests(&s),
        fills,
        "the second pass reached the origin"
    );

    // An expired manifest (max-age 1 s) is revalidated: the origin answers 304, the edge keeps
    // serving the same bytes.
    let manifest = "/movie/hls/720p/index.m3u8";
    let want = std::fs::read(root.join("movie/hls/720p/index.m3u8")).unwrap();
    let r = get(edge.addr, manifest, &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("cache-control").unwrap().contains("max-age=1,"));
    let revalidated = || {
        s.access_log()
            .iter()
            .any(|l| l["path"] == manifest && l["status"] == 304)
    };
    wait_until(Duration::from_secs(20), "a 304 for the manifest", || {
        let r = get(edge.addr, manifest, &[]).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == want, "manifest bytes changed");
        std::thread::sleep(Duration::from_millis(100));
        revalidated()
    });
    let statuses: Vec<_> = edge
        .access_log()
        .iter()
        .filter(|l| l["uri"] == manifest)
        .map(|l| l["cache"].as_str().unwrap().to_string())
        .collect();
    assert!(
        statuses
            .iter()
            .any(|c| ["REVALIDATED", "UPDATING", "STALE"].contains(&c.as_str())),
        "{statuses:?}"
    );

    // Purge a prefix: its objects are fetched again, others stay cached.
    let n = edge.purge("/movie/hls/360p/");
    assert!(n > 5, "purged {n}");
    let r = get(edge.addr, "/movie/hls/360p/seg_00003.ts", &[]).unwrap();
    assert_eq!(r.header("x-cache-status"), Some("MISS"));
    let r = get(edge.addr, "/movie/hls/720p/seg_00003.ts", &[]).unwrap();
    assert_eq!(r.header("x-cache-status"), Some("HIT"));
    assert_eq!(origin_media_requests(&s), fills + 1);
}

#[test]
fn players_keep_playing_from_the_edge_while_every_origin_is_down() {
    let root = movie_root();
    let mut origins: Vec<Server> = (0..2)
        .map(|_| Server::start(&root, &["--manifest-max-age", "1"]))
        .collect();
    let addrs: Vec<SocketAddr> = origins.iter().map(|s| s.addr).collect();
    let edge = Edge::up(&addrs);
    let warmed = warm(&edge, &root);
    let cc = get(edge.addr, HLS, &[]).unwrap();
    let cc = cc.header("cache-control").unwrap().to_string();
    assert!(cc.contains("stale-if-error=86400"), "{cc}");

    // SIGKILL every origin.
    for s in &mut origins {
        s.child.kill().unwrap();
        s.child.wait().unwrap();
    }
    for a in &addrs {
        assert!(get(*a, "/healthz", &[]).is_err(), "{a} still answers");
    }
    let outage_from = edge.access_log().len();
    // The manifests expired (max-age 1 s): the edge serves them stale.
    wait_until(Duration::from_secs(10), "a stale manifest", || {
        let r = get(edge.addr, HLS, &[]).unwrap();
        assert_eq!(r.status, 200);
        r.header("x-cache-status") == Some("STALE")
    });

    let _b = browser_lock();
    for (player, manifest) in [("hls", HLS), ("dash", DASH)] {
        let url = edge.url(manifest);
        let (st, v, stderr) = play(&url, player, &["--seconds", "20.5", "--timeout", "90"]);
        assert!(
            st.success() && v["ok"] == true,
            "{player} during the outage: {v}\n{stderr}"
        );
        assert!(v["played"].as_f64().unwrap() >= 20.0, "{player}: {v}");
        let fatal = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["fatal"] == true)
            .count();
        assert_eq!(fatal, 0, "{player}: {v}");
        assert_eq!(v["httpErrors"], serde_json::json!([]), "{player}: {v}");
        eprintln!(
            "outage, {player}: played {} s, {}/{} renditions, {} s wall",
            v["played"], v["renditionsVisited"], v["renditionsTotal"], v["elapsedS"]
        );
    }
    // Everything the players asked for came from the cache: manifests stale, media hits.
    let log = edge.access_log();
    let during = &log[outage_from..];
    let browser: Vec<_> = during.iter().filter(|l| l["origin"] != "").collect();
    assert!(browser.len() >= 20, "{browser:?}");
    for l in &browser {
        assert_eq!(l["status"], 200, "{l}");
        let uri = l["uri"].as_str().unwrap();
        if is_media(uri) {
            assert_eq!(l["cache"], "HIT", "{l}");
        } else {
            assert!(
                ["STALE", "UPDATING", "HIT"].contains(&l["cache"].as_str().unwrap()),
                "{l}"
            );
        }
    }
    assert!(
        browser
            .iter()
            .any(|l| l["uri"] == HLS && l["cache"] == "STALE"),
        "{browser:?}"
    );
    assert!(
        browser
            .iter()
            .any(|l| l["uri"] == DASH && l["cache"] == "STALE"),
        "{browser:?}"
    );
    eprintln!(
        "outage: {warmed} warm-up requests, {} browser requests served by the edge alone",
        browser.len()
    );
}

/// Signed URLs through the edge: each token's URLs are cached under their own key, served from
/// the cache while the token is valid, and refused (the origin's 403) once it expired — the
/// origin caps their freshness at the token's lifetime.
#[test]
fn signed_urls_stop_working_at_their_expiry_through_the_edge() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let key = "hex:5eed00112233";
    let s = Server::start(&movie_root(), &["--signing-key", key]);
    let edge = Edge::up(&[s.addr]);
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let expiry = now() + 5;
    let prefix = ::origin::auth::signed_prefix(&::origin::auth::key_bytes(key), expiry, "movie");
    let paths = [
        format!("{prefix}hls/360p/index.m3u8"),
        format!("{prefix}hls/360p/seg_00001.ts"),
    ];
    for p in &paths {
        let r = get(edge.addr, p, &[]).unwrap();
        assert_eq!(r.status, 200, "{p}");
        let cc = r.header("cache-control").unwrap();
        let max_age: u64 = cc
            .split(", ")
            .find_map(|d| d.strip_prefix("max-age="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(max_age <= 5, "{p}: {cc}");
        assert!(!cc.contains("stale-while-revalidate"), "{p}: {cc}");
        let r = get(edge.addr, p, &[]).unwrap();
        assert_eq!(r.status, 200, "{p}");
        assert_eq!(r.header("x-cache-status"), Some("HIT"), "{p}");
    }
    // Unsigned: refused, and not cached either.
    for _ in 0..2 {
        let r = get(edge.addr, "/movie/hls/360p/seg_00001.ts", &[]).unwrap();
        assert_eq!(r.status, 403);
    }
    // One second of slack: the edge counts freshness from its own whole-second clock.
    wait_until(Duration::from_secs(15), "the token's expiry", || {
        now() > expiry
    });
    for p in &paths {
        let r = get(edge.addr, p, &[]).unwrap();
        assert_eq!(r.status, 403, "{p} after the expiry: {:?}", r.headers);
    }
}
