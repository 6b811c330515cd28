//! The video service end to end on one box: a tus upload of a generated fixture becomes, through
//! the packaging workers inside `abr serve --ingest`, a package that hls.js and dash.js play from
//! the same server, also through its `/play/<principal>/<name>` page (issue 13, acceptance 2,
//! single box).

mod common;

use std::time::{Duration, Instant};

use common::origin::{assert_plays, node_json, sha256sum};
use common::uploads::{token_spec, Ingest};
use service::queue::{JobState, Queue};

#[test]
fn an_upload_becomes_a_package_that_hls_js_and_dash_js_play() {
    // 1080p with audio, 13 s: the default ladder keeps every rung, and the last segment is
    // short (not a multiple of the 4 s segment).
    let src = common::fixture("1080p30", 13);
    let bytes = std::fs::read(&src).unwrap();
    let ing = Ingest::start(&[token_spec("alice", "tok-a", "")], &[]);

    let loc = ing.created("tok-a", bytes.len() as u64, "holiday");
    let id = loc.rsplit('/').next().unwrap().to_string();
    // Two PATCHes, the second from the offset the server reports.
    let half = bytes.len() / 2;
    assert_eq!(ing.patch(&loc, "tok-a", 0, &bytes[..half], &[]).status, 204);
    let off = ing.offset(&loc, "tok-a");
    assert_eq!(off, half as u64);
    let r = ing.patch(&loc, "tok-a", off, &bytes[half..], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        sha256sum(&ing.data_file(&id)),
        sha256sum(&src),
        "stored bytes"
    );

    // The job runs on the server's own workers: plan, every task, assembly.
    let queue = ing.queue();
    let t0 = Instant::now();
    let job = loop {
        let j = queue.job(&id).unwrap().expect("the upload's job exists");
        if j.state.is_final() {
            break j;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "job {id} not finished after 900 s: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let (done, total) = job.done();
    assert!(total >= 3 && done == total, "{job:?}");
    eprintln!(
        "upload → package: {:.1} s, {total} tasks",
        t0.elapsed().as_secs_f64()
    );

    // Published under ROOT/<principal>/<name>; the work area is gone.
    let pkg = ing.root.join("alice").join("holiday");
    assert!(pkg.join("hls/master.m3u8").is_file(), "{}", pkg.display());
    assert!(pkg.join("dash/manifest.mpd").is_file(), "{}", pkg.display());
    let leftovers: Vec<_> = std::fs::read_dir(ing.root.join("alice"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "holiday")
        .collect();
    assert!(
        leftovers.is_empty(),
        "left beside the package: {leftovers:?}"
    );

    let server = ing.server.as_ref().expect("server running");
    for (player, manifest) in [
        ("hls", "/alice/holiday/hls/master.m3u8"),
        ("dash", "/alice/holiday/dash/manifest.mpd"),
    ] {
        let v = assert_plays(&server.url(manifest), player, &[]);
        eprintln!(
            "{player}: played {} s, {}/{} renditions",
            v["played"], v["renditionsVisited"], v["renditionsTotal"]
        );
        // The origin's own player page of the nested package.
        let page = server.url("/play/alice/holiday");
        let (st, v, stderr) = node_json("playpage.mjs", &["--url", &page, "--player", player]);
        assert!(
            st.success() && v["ok"] == true,
            "{player} page failed: {v}\n{stderr}"
        );
        assert!(
            v["advanced"].as_f64().unwrap_or(0.0) >= 3.0,
            "{player}: {v}"
        );
        assert_eq!(v["pageErrors"], serde_json::json!([]), "{player}: {v}");
        assert_eq!(v["httpErrors"], serde_json::json!([]), "{player}: {v}");
    }
}
