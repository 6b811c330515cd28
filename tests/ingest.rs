//! The video service end to end on one box: a tus upload of a generated fixture becomes, through
//! the packaging workers inside `abr serve --ingest`, a package that hls.js and dash.js play from
//! the same server, also through its `/play/<principal>/<name>` page (issue 13, acceptance 2,
//! single box).

mod common;

use std::time::{Duration, Instant};

use common::origin::{assert_page_plays, assert_plays, sha256sum};
use common::uploads::{token_spec, Ingest};
use common::webhooks::Receiver;
use service::queue::{EventKind, JobInfo, JobState, Queue, SqliteQueue, TaskState};

#[test]
fn an_upload_becomes_a_package_that_hls_js_and_dash_js_play() {
    // 1080p with audio, 13 s: the default ladder keeps every rung, and the last segment is
    // short (not a multiple of the 4 s segment).
    let src = common::fixture("1080p30", 13);
    let bytes = std::fs::read(&src).unwrap();
    let ing = Ingest::start(&[token_spec("alice", "tok-a", "")], &["--job-workers", "1"]);

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

    // The videos API says ready, with where it plays.
    let r = common::origin::request(
        ing.addr(),
        "GET",
        &format!("/api/v1/videos/{id}"),
        &[("Authorization", "Bearer tok-a")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["state"], "ready", "{v}");
    assert_eq!(v["urls"]["play"], "/play/alice/holiday", "{v}");
    assert_eq!(v["urls"]["hls"], "/alice/holiday/hls/master.m3u8", "{v}");

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
        assert_page_plays(&server.url("/play/alice/holiday"), player);
    }
}

/// Uploads `src` for `alice` as `name` in one PATCH; returns the upload (= job) id.
fn upload(ing: &Ingest, src: &std::path::Path, name: &str) -> String {
    let bytes = std::fs::read(src).unwrap();
    let loc = ing.created("tok-a", bytes.len() as u64, name);
    let r = ing.patch(&loc, "tok-a", 0, &bytes, &[]);
    assert_eq!(r.status, 204, "{r:?}");
    loc.rsplit('/').next().unwrap().to_string()
}

/// Polls job `id` until `cond` holds (panics after `secs`).
fn wait_job(
    q: &SqliteQueue,
    id: &str,
    secs: u64,
    what: &str,
    cond: impl Fn(&JobInfo) -> bool,
) -> JobInfo {
    let t0 = Instant::now();
    loop {
        let j = q.job(id).unwrap().expect("job exists");
        if cond(&j) {
            return j;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not after {secs} s: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A leased video shard that has made progress.
fn encoding(j: &JobInfo) -> bool {
    j.tasks
        .iter()
        .any(|t| t.stage == 1 && t.state == TaskState::Leased && t.progress > 0.0)
}

/// The single box survives its own stops: a SIGTERM mid-shard hands the shard back at once (its
/// attempt fails as "worker stopped", the server exits); a SIGKILL mid-shard leaves the lease to
/// pass; after each restart the job goes on, and ends with one published package. A webhook
/// receiver hears `video.processing` once, not once per restart.
#[test]
fn the_job_survives_a_sigterm_and_a_sigkill_of_the_single_box() {
    let src = common::fixture("1080p30", 13);
    let rx = Receiver::start();
    let hook = format!("{} hex:00ff", rx.url);
    // A short lease: after the SIGKILL the restarted server's worker reclaims the shard soon.
    let mut ing = Ingest::start(
        &[token_spec("alice", "tok-a", "")],
        &["--job-workers", "1", "--job-lease", "3", "--webhook", &hook],
    );
    let id = upload(&ing, &src, "trip");
    let q = ing.queue();
    let delivered = |kind: &str| {
        rx.delivered()
            .into_iter()
            .filter(|h| h.json()["type"] == kind && h.json()["video"] == id.as_str())
            .map(|h| h.header("idempotency-key").to_string())
            .collect::<std::collections::HashSet<_>>()
    };

    wait_job(&q, &id, 300, "a shard encoding", encoding);
    common::origin::wait_until(
        Duration::from_secs(30),
        "video.processing delivered",
        || !delivered("video.processing").is_empty(),
    );
    let pid = ing.server().child.id() as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let st = ing.server().wait_exit(Duration::from_secs(60));
    assert!(
        st.is_some_and(|s| s.success()),
        "abr serve after SIGTERM: {st:?}"
    );
    ing.server = None;
    let j = q.job(&id).unwrap().unwrap();
    let handed_back = j
        .tasks
        .iter()
        .find(|t| t.stage == 1 && t.error.as_deref() == Some("worker stopped"));
    assert!(
        handed_back.is_some_and(|t| t.state == TaskState::Pending),
        "no shard handed back as \"worker stopped\": {j:?}"
    );

    ing.restart();
    wait_job(&q, &id, 300, "a shard encoding again", encoding);
    ing.kill();
    ing.restart();
    let j = wait_job(&q, &id, 900, "the job's end", |j| j.state.is_final());
    assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    common::origin::wait_until(Duration::from_secs(30), "video.ready delivered", || {
        !delivered("video.ready").is_empty()
    });
    assert_eq!(
        delivered("video.processing").len(),
        1,
        "video.processing announced again after a restart (one key per event)"
    );
    // The plan ran once: its finished task was never claimed again.
    let plan_claims = q
        .events(0, 10_000)
        .unwrap()
        .iter()
        .filter(|e| e.job == id && e.task == Some(0) && e.kind == EventKind::Claimed)
        .count();
    assert_eq!(plan_claims, 1, "the plan task was claimed again");
    let pkg = ing.root.join("alice").join("trip");
    assert!(pkg.join("hls/master.m3u8").is_file());
    let names: Vec<_> = std::fs::read_dir(ing.root.join("alice"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["trip"], "one package, nothing else");
    let o = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(
            ing.server
                .as_ref()
                .unwrap()
                .url("/alice/trip/hls/master.m3u8"),
        )
        .output()
        .unwrap();
    let d: f64 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    assert!((d - 13.0).abs() < 0.2, "ffprobe duration {d}: {o:?}");
}
