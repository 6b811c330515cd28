//! The library page at `/` of `abr serve --ingest` in headless Chromium (issue 13, acceptance
//! 6): an upload through the form becomes a video that plays from its row's link; a reload
//! during an upload resumes the same upload; a refused token is asked again; a non-media upload
//! shows the packager's reason and can be deleted; pause resumes, and a row cancels and retries.

mod common;

use common::library::{drive, progress_between};
use common::origin::{assert_page_plays, get, sample_root, sha256sum, Server};
use common::uploads::{token_spec, Ingest};
use service::queue::{EventKind, JobState, Queue};

fn alice() -> Vec<String> {
    vec![token_spec("alice", "tok-a", "")]
}

/// The principal's videos as the API lists them.
fn videos(ing: &Ingest) -> Vec<serde_json::Value> {
    let r = get(
        ing.addr(),
        "/api/v1/videos?limit=100",
        &[("Authorization", "Bearer tok-a")],
    )
    .expect("GET /api/v1/videos");
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON list");
    v["videos"].as_array().cloned().unwrap_or_default()
}

#[test]
fn an_upload_through_the_page_becomes_ready_and_its_play_link_plays() {
    // Real encoded video (480p, 25 Mb/s, with audio): ~30 MiB, four 8 MiB chunks.
    let src = common::fixture("mezz480", 10);
    let ing = Ingest::start(&alice(), &["--job-workers", "1"]);

    // The page and the vendored client, with their headers.
    let r = get(ing.addr(), "/", &[]).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let r = get(ing.addr(), "/_library/tus-js-client-4.3.1.min.js", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let npm = common::root().join("tests/tus/node_modules/tus-js-client/dist/tus.min.js");
    assert!(
        r.body == std::fs::read(&npm).expect("tus-js-client installed (scripts/setup.sh)"),
        "served tus-js-client differs from {}",
        npm.display()
    );

    // Each PATCH held 300 ms: the bar is read between chunks, not only at 0 and 100.
    let v = drive(
        &ing,
        "tok-a",
        Some(&src),
        "upload",
        &["--name", "holiday", "--delay-ms", "300"],
    );
    eprintln!(
        "progress {}, states {}, {} s",
        v["progress"], v["states"], v["elapsedS"]
    );
    let between = progress_between(&v);
    assert!(between.len() >= 2, "progress readings: {v}");
    assert!(
        between.windows(2).all(|w| w[0] < w[1]),
        "progress goes up: {between:?}"
    );
    let last = v["progress"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|p| p.as_f64());
    assert_eq!(last, Some(100.0), "the bar ends full: {v}");
    assert_eq!(v["creates"], 1, "{v}");
    assert_eq!(
        v["states"].as_array().and_then(|a| a.last()),
        Some(&"ready".into()),
        "{v}"
    );
    assert_eq!(v["playHref"], "/play/alice/holiday", "{v}");

    let (id, _) = ing.wait_single_upload();
    assert_eq!(v["id"], id.as_str(), "{v}");
    assert_eq!(
        sha256sum(&ing.data_file(&id)),
        sha256sum(&src),
        "stored bytes"
    );
    let list = videos(&ing);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "ready", "{list:?}");
    assert_eq!(list[0]["filename"], "mezz480-10s.mp4", "{list:?}");

    let server = ing.server.as_ref().expect("server running");
    assert_page_plays(&server.url("/play/alice/holiday"), "hls");
}

/// An upload of a 10 s mezzanine through the page as `name`, interrupted by `mode` (`reload` or
/// `pause`, see library.mjs) while its second PATCH is held (each is held 3 s before it), on a
/// server without workers (the video stops at `queued`). Returns the server, the report and the
/// source.
fn interrupted(mode: &str, name: &str) -> (Ingest, serde_json::Value, std::path::PathBuf) {
    let src = common::fixture("mezz480", 10);
    let ing = Ingest::start(&alice(), &[]);
    let v = drive(
        &ing,
        "tok-a",
        Some(&src),
        mode,
        &["--name", name, "--delay-ms", "3000"],
    );
    eprintln!(
        "{mode}: received at the interruption {}, patches {}, states {}",
        v["receivedAtReload"], v["patches"], v["states"]
    );
    (ing, v, src)
}

/// After an interrupted upload (reload or pause, `drive`'s report `v`) of `src`: one upload was
/// created, bytes were sent before the interruption, the first PATCH after it started at the
/// server's offset then, and the stored bytes are `src`'s. Returns the upload's id and that
/// offset.
fn assert_resumed(ing: &Ingest, v: &serde_json::Value, src: &std::path::Path) -> (String, u64) {
    assert_eq!(v["creates"], 1, "one upload, resumed: {v}");
    let at = v["receivedAtReload"].as_u64().unwrap_or(0);
    assert!(at > 0, "{v}");
    let patches = v["patches"].as_array().cloned().unwrap_or_default();
    assert!(
        patches.iter().any(|p| p["afterReload"] == false),
        "a chunk was sent before the interruption: {v}"
    );
    let first_after = patches
        .iter()
        .find(|p| p["afterReload"] == true)
        .unwrap_or_else(|| panic!("no PATCH after the interruption: {v}"));
    assert_eq!(
        first_after["offset"].as_u64(),
        Some(at),
        "the first PATCH after the interruption starts at the server's offset: {v}"
    );
    let ids = ing.upload_ids();
    assert_eq!(ids.len(), 1, "no second upload: {ids:?}");
    assert_eq!(
        sha256sum(&ing.data_file(&ids[0])),
        sha256sum(src),
        "stored bytes"
    );
    (ids[0].clone(), at)
}

#[test]
fn a_reload_during_an_upload_resumes_the_same_upload_from_the_servers_offset() {
    let (ing, v, src) = interrupted("reload", "resumed");
    assert_eq!(
        v["loginAfterReload"], false,
        "the token is kept for the tab: {v}"
    );
    let (id, at_reload) = assert_resumed(&ing, &v, &src);
    assert_eq!(
        at_reload % (8 << 20),
        0,
        "no PATCH was cut short by the reload: {v}"
    );
    assert_eq!(v["id"], id.as_str(), "{v}");
    let list = videos(&ing);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "queued", "{list:?}");
}

/// Pause and resume through the form, then Cancel and Retry on the row: one upload, resumed
/// from the server's offset, its job cancelled and queued again.
#[test]
fn pause_resumes_and_the_row_cancels_and_retries() {
    let (ing, v, src) = interrupted("pause", "paused");
    let (id, _) = assert_resumed(&ing, &v, &src);
    let states: Vec<&str> = v["states"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    assert!(
        states.ends_with(&["queued", "cancelled", "queued"]),
        "{states:?}"
    );
    let job = ing.queue().job(&id).unwrap().expect("its job");
    assert_eq!(job.state, JobState::Queued, "{job:?}");
    let events = ing.queue().events(0, 1000).unwrap();
    let kinds: Vec<EventKind> = events
        .iter()
        .filter(|e| e.job == id && e.task.is_none())
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&EventKind::Cancelled) && kinds.contains(&EventKind::Retried),
        "{kinds:?}"
    );
}

#[test]
fn a_refused_token_is_asked_again_and_a_non_media_upload_shows_the_packagers_reason() {
    let src = common::fixture("notmedia", 1);
    let ing = Ingest::start(&alice(), &["--job-workers", "1"]);
    // A file name that would be markup if the page rendered it as HTML.
    let shown = "<img src=x onerror=alert(1)><b>x.bin";
    let v = drive(
        &ing,
        "tok-a",
        Some(&src),
        "failed",
        &[
            "--name",
            "junk",
            "--filename",
            shown,
            "--bad-token",
            "wrong",
        ],
    );
    // A refused token is asked again.
    assert!(v["refused"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(
        v["refusalShown"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{v}"
    );
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not a media file"), "{v}");
    let id = v["id"].as_str().unwrap_or_default();
    let job = ing
        .queue()
        .job(id)
        .unwrap()
        .expect("the job stays after the delete");
    let queued = job.reason.unwrap_or_default();
    assert_eq!(
        reason,
        queued.lines().next().unwrap_or_default().trim(),
        "{v}"
    );
    assert_eq!(v["filenameText"], shown, "shown as text: {v}");
    assert_eq!(v["injected"], 0, "no element from the file name: {v}");
    assert_eq!(v["deleted"], true, "{v}");
    assert!(videos(&ing).is_empty());
}

/// Without ingest `/` is what it was: a directory of ROOT, 404 (no listing), and no page assets.
#[test]
fn without_ingest_there_is_no_library_page() {
    let s = Server::start(&sample_root(), &[]);
    let r = get(s.addr, "/", &[]).unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.header("content-security-policy").is_none(), "{r:?}");
    let r = get(s.addr, "/_library/library.js", &[]).unwrap();
    assert_eq!(r.status, 404, "{r:?}");
}

/// More videos than a page: the newest 20, Older shows the rest, Newest goes back.
#[test]
fn the_list_pages_through_older_videos() {
    let ing = Ingest::start(&alice(), &[]);
    for i in 0..21 {
        ing.created("tok-a", 1000, &format!("clip{i}"));
    }
    let v = drive(&ing, "tok-a", None, "pages", &[]);
    let ids = |k: &str| -> Vec<String> {
        v["pages"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (all, first, older) = (ids("all"), ids("first"), ids("older"));
    assert_eq!(all.len(), 21, "{v}");
    assert_eq!(first, all[..20].to_vec(), "newest first: {v}");
    assert_eq!(older, all[20..].to_vec(), "{v}");
    assert_eq!(ids("back"), first, "{v}");
}
