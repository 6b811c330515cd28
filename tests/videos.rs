//! The videos API at `/api/v1/videos` of `abr serve --ingest` (uploads by plain tus requests):
//! states before the worker (uploading, queued, cancelled), auth, pagination, cancel, retry,
//! delete (everything of the video goes, also when the server dies half-way through).
//! `processing` and `ready` need the worker: their mapping is unit-tested in
//! `service/src/videos.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::origin::{request, wait_until, Response};
use common::uploads::{token_spec, Ingest};
use service::queue::{JobState, Queue};

const ALICE: &str = "alice-secret-token";
const BOB: &str = "bob-secret-token";
const CAROL: &str = "carol-secret-token";

fn tokens() -> Vec<String> {
    vec![
        token_spec("alice", ALICE, ""),
        token_spec("bob", BOB, ""),
        token_spec("carol", CAROL, ""),
    ]
}

/// A request to the videos API with `Authorization: Bearer token` (None: none).
fn api(s: &Ingest, method: &str, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let h: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    request(s.addr(), method, path, &h).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The JSON body of a response with `status`.
fn json(r: &Response, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{r:?}");
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

/// `GET /api/v1/videos/{id}` as `token`, asserting 200.
fn video(s: &Ingest, id: &str, token: &str) -> serde_json::Value {
    json(
        &api(s, "GET", &format!("/api/v1/videos/{id}"), Some(token)),
        200,
    )
}

/// A complete upload of `len` bytes named `name`; returns its id.
fn uploaded(s: &Ingest, token: &str, name: &str, len: usize) -> String {
    let path = s.created(token, len as u64, name);
    let r = s.patch(&path, token, 0, &vec![7u8; len], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    id_of(&path)
}

fn id_of(location: &str) -> String {
    location.rsplit('/').next().unwrap().to_string()
}

/// A stand-in for a worker's output of `<principal>/<name>`: the package, its work area and a
/// staging directory, as the packager names them. Returns the three paths.
fn fake_package(root: &Path, principal: &str, name: &str) -> [PathBuf; 3] {
    let dir = root.join(principal);
    let out = dir.join(name);
    let work = dir.join(format!(".{name}.abr-work"));
    let staging = dir.join(format!(".{name}.abr-staging.4242"));
    std::fs::create_dir_all(out.join("hls")).unwrap();
    std::fs::write(out.join("hls/master.m3u8"), "#EXTM3U\n").unwrap();
    std::fs::create_dir_all(work.join("tasks/0")).unwrap();
    std::fs::write(work.join("plan.json"), "{}").unwrap();
    std::fs::create_dir_all(staging.join("hls")).unwrap();
    [out, work, staging]
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Before any worker: an incomplete upload is `uploading` with its durable bytes, a complete
/// one `queued`; tokens: none or a wrong one is 401 (with `WWW-Authenticate`), another
/// principal's video, an unknown or malformed id 404.
#[test]
fn states_before_the_worker_and_auth() {
    let s = Ingest::start(&tokens(), &[]);
    let path = s.created(ALICE, 10, "cat");
    let id = id_of(&path);
    assert_eq!(s.patch(&path, ALICE, 0, b"abcd", &[]).status, 204);
    let v = video(&s, &id, ALICE);
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["state"], "uploading", "{v}");
    assert_eq!(
        (v["received"].as_u64(), v["size"].as_u64()),
        (Some(4), Some(10))
    );
    assert_eq!(
        (v["name"].as_str(), v["filename"].as_str()),
        (Some("cat"), Some("clip.mp4"))
    );
    assert!(v["created"].as_u64().unwrap() <= now_s());
    // Auth.
    let one = format!("/api/v1/videos/{id}");
    for (token, status) in [(None, 401), (Some("wrong"), 401), (Some(BOB), 404)] {
        let r = api(&s, "GET", &one, token);
        assert_eq!(r.status, status, "{token:?}: {r:?}");
        assert!(json(&r, status)["error"].is_string());
        if status == 401 {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    for r in [
        api(&s, "GET", "/api/v1/videos", None),
        api(&s, "DELETE", &one, Some(BOB)),
        api(&s, "POST", &format!("{one}/cancel"), Some(BOB)),
        api(&s, "POST", &format!("{one}/retry"), None),
    ] {
        assert!(matches!(r.status, 401 | 404), "{r:?}");
    }
    for bad in ["0123456789abcdef0123456789abcdef", "nope", "..%2F..%2Fetc"] {
        assert_eq!(
            api(&s, "GET", &format!("/api/v1/videos/{bad}"), Some(ALICE)).status,
            404
        );
    }
    // Bob sees nothing of Alice's.
    let page = json(&api(&s, "GET", "/api/v1/videos", Some(BOB)), 200);
    assert_eq!(page["videos"].as_array().unwrap().len(), 0, "{page}");
    // The rest of the bytes: queued.
    assert_eq!(s.patch(&path, ALICE, 4, b"efghij", &[]).status, 204);
    let v = video(&s, &id, ALICE);
    assert_eq!(v["state"], "queued", "{v}");
    assert!(v.get("received").is_none(), "{v}");
    // Cancelling an upload that has no job yet is refused.
    let other = id_of(&s.created(ALICE, 10, "dog"));
    let r = api(
        &s,
        "POST",
        &format!("/api/v1/videos/{other}/cancel"),
        Some(ALICE),
    );
    assert_eq!(r.status, 409, "{r:?}");
}

/// Five videos created a second apart, paged two at a time: each is seen once, newest first,
/// and the last page has no `next`; bad `limit` and cursors are 400.
#[test]
fn pagination_newest_first() {
    let s = Ingest::start(&tokens(), &[]);
    let mut made = Vec::new();
    for i in 0..5 {
        if i > 0 {
            // Creation times are seconds: wait for the next one so the order is known.
            let t = now_s();
            wait_until(Duration::from_secs(3), "the next second", || now_s() > t);
        }
        made.push(id_of(&s.created(CAROL, 10, &format!("v{i}"))));
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &next {
            None => "/api/v1/videos?limit=2".to_string(),
            Some(c) => format!("/api/v1/videos?limit=2&after={c}"),
        };
        let page = json(&api(&s, "GET", &path, Some(CAROL)), 200);
        pages += 1;
        let vids = page["videos"].as_array().unwrap();
        assert!(vids.len() <= 2, "{page}");
        seen.extend(vids.iter().map(|v| v["id"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "the pages do not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made, "each once, newest first");
    for bad in ["limit=0", "limit=101", "after=zzz", "limit=x"] {
        let r = api(&s, "GET", &format!("/api/v1/videos?{bad}"), Some(CAROL));
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    // Alice's list does not show Carol's.
    let page = json(
        &api(&s, "GET", "/api/v1/videos?limit=100", Some(ALICE)),
        200,
    );
    assert!(page["videos"].as_array().unwrap().is_empty());
}

/// Cancel → 202 and `cancelled` (the job in the queue too), a second cancel 409; retry of the
/// cancelled job → 202 and `queued`, a second retry 409.
#[test]
fn cancel_then_retry() {
    let s = Ingest::start(&tokens(), &[]);
    let id = uploaded(&s, ALICE, "cat", 16);
    let one = format!("/api/v1/videos/{id}");
    assert_eq!(video(&s, &id, ALICE)["state"], "queued");
    json(&api(&s, "POST", &format!("{one}/retry"), Some(ALICE)), 409);
    json(&api(&s, "POST", &format!("{one}/cancel"), Some(ALICE)), 202);
    let v = video(&s, &id, ALICE);
    assert_eq!(v["state"], "cancelled", "{v}");
    assert!(v["reason"].is_string(), "{v}");
    assert_eq!(
        s.queue().job(&id).unwrap().unwrap().state,
        JobState::Cancelled
    );
    json(&api(&s, "POST", &format!("{one}/cancel"), Some(ALICE)), 409);
    json(&api(&s, "POST", &format!("{one}/retry"), Some(BOB)), 404);
    json(&api(&s, "POST", &format!("{one}/retry"), Some(ALICE)), 202);
    assert_eq!(video(&s, &id, ALICE)["state"], "queued");
    assert_eq!(s.queue().job(&id).unwrap().unwrap().state, JobState::Queued);
    json(&api(&s, "POST", &format!("{one}/retry"), Some(ALICE)), 409);
}

/// DELETE → 202, and at once 404 (API and tus); then the upload directory, the package, its
/// work area and staging are gone and the job cancelled. An incomplete upload is deleted the
/// same way. Another video's package beside it stays.
#[test]
fn delete_removes_everything() {
    let s = Ingest::start(&tokens(), &[]);
    let id = uploaded(&s, ALICE, "cat", 16);
    let keep = uploaded(&s, ALICE, "dog", 16);
    let pieces = fake_package(&s.root, "alice", "cat");
    let kept = fake_package(&s.root, "alice", "dog");
    let one = format!("/api/v1/videos/{id}");
    json(&api(&s, "DELETE", &one, Some(BOB)), 404);
    let r = json(&api(&s, "DELETE", &one, Some(ALICE)), 202);
    assert_eq!(r["id"], id.as_str());
    json(&api(&s, "GET", &one, Some(ALICE)), 404);
    json(&api(&s, "DELETE", &one, Some(ALICE)), 404);
    let head = s.tus(
        "HEAD",
        &format!("/api/v1/uploads/{id}"),
        Some(ALICE),
        &[],
        b"",
    );
    assert_eq!(head.status, 404, "{head:?}");
    wait_until(Duration::from_secs(10), "the pieces go", || {
        !s.uploads_dir().join(&id).exists() && pieces.iter().all(|p| !p.exists())
    });
    assert_eq!(
        s.queue().job(&id).unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert!(
        kept.iter().all(|p| p.exists()),
        "another video's package stays"
    );
    let page = json(&api(&s, "GET", "/api/v1/videos", Some(ALICE)), 200);
    let ids: Vec<&str> = page["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [keep.as_str()]);
    // Incomplete.
    let path = s.created(ALICE, 10, "half");
    let half = id_of(&path);
    assert_eq!(s.patch(&path, ALICE, 0, b"abc", &[]).status, 204);
    json(
        &api(&s, "DELETE", &format!("/api/v1/videos/{half}"), Some(ALICE)),
        202,
    );
    json(
        &api(&s, "GET", &format!("/api/v1/videos/{half}"), Some(ALICE)),
        404,
    );
    wait_until(Duration::from_secs(10), "the upload goes", || {
        !s.uploads_dir().join(&half).exists()
    });
    assert_eq!(s.upload_ids(), vec![keep]);
}

/// The server dies (abort) half-way through a deletion, after the upload directory and before
/// the package; at restart the deletion is finished before the server answers, and the video
/// stays 404.
#[test]
fn interrupted_delete_is_finished_after_restart() {
    let mut s = Ingest::start_env(&tokens(), &[], &[("ABR_TEST_CRASH_MID_DELETE", "1")]);
    let id = uploaded(&s, ALICE, "cat", 16);
    let pieces = fake_package(&s.root, "alice", "cat");
    let one = format!("/api/v1/videos/{id}");
    // The 202 may or may not leave before the abort.
    let auth = format!("Bearer {ALICE}");
    if let Ok(r) = request(s.addr(), "DELETE", &one, &[("Authorization", &auth)]) {
        assert_eq!(r.status, 202, "{r:?}");
    }
    let st = s.server().wait_exit(Duration::from_secs(20));
    assert!(
        st.is_some_and(|st| !st.success()),
        "the server aborted: {st:?}"
    );
    assert!(!s.uploads_dir().join(&id).exists(), "the upload went first");
    assert!(pieces[0].exists(), "the package was not reached");
    assert!(s.data.join("deleting").join(format!("{id}.json")).exists());
    s.kill();
    s.restart();
    assert!(pieces.iter().all(|p| !p.exists()), "finished at start-up");
    json(&api(&s, "GET", &one, Some(ALICE)), 404);
    assert!(s.upload_ids().is_empty());
    assert_eq!(
        s.queue().job(&id).unwrap().unwrap().state,
        JobState::Cancelled
    );
}

/// `abr upload` with its state under `state`.
fn abr_upload(s: &Ingest, state: &Path, file: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_abr"));
    c.arg("upload")
        .arg(file)
        .args(["--server", &format!("http://127.0.0.1:{}", s.port)])
        .args(extra)
        .env("XDG_STATE_HOME", state)
        .env_remove("ABR_UPLOAD_TOKEN")
        .stdin(std::process::Stdio::null());
    c
}

/// `abr upload` of a 64 MiB file in 1 MiB chunks is SIGKILLed part-way (HEAD shows the
/// progress); the rerun resumes the same upload from the server's offset (its state file was
/// reused: no second upload), the stored bytes are the source's and one job exists.
#[test]
fn abr_upload_resumes_after_sigkill() {
    use std::process::Stdio;
    let t0 = std::time::Instant::now();
    let size: u64 = 64 << 20;
    let src = common::uploads::source_file(size, 3);
    let s = Ingest::start(&tokens(), &[]);
    let state = tempfile::tempdir().unwrap();
    let args = ["--token", ALICE, "--name", "big", "--chunk-mib", "1"];
    let mut child = abr_upload(&s, state.path(), &src, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (id, path) = s.wait_single_upload();
    wait_until(Duration::from_secs(60), "the upload reaches 16 MiB", || {
        s.offset(&path, ALICE) >= 16 << 20
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = s.offset(&path, ALICE);
    assert!(
        at_kill < size,
        "the client finished before the kill ({at_kill})"
    );
    let states: Vec<_> = std::fs::read_dir(state.path().join("abr/uploads"))
        .unwrap()
        .collect();
    assert_eq!(states.len(), 1, "one state file");
    let out = abr_upload(&s, state.path(), &src, &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rerun: {err}");
    assert!(err.contains("resuming"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    assert_eq!(s.upload_ids(), vec![id.clone()], "no second upload");
    assert_eq!(s.offset(&path, ALICE), size);
    assert_eq!(
        common::origin::sha256sum(&s.data_file(&id)),
        common::origin::sha256sum(&src)
    );
    assert_eq!(s.enqueued_events(&id), 1);
    assert_eq!(video(&s, &id, ALICE)["state"], "queued");
    eprintln!(
        "abr upload: {size} bytes, killed at {at_kill}, resumed, {:.1?}",
        t0.elapsed()
    );
}

/// One-line errors: a wrong token (401), a file over the limit (413), a server that is not
/// there (named); `--wait` ends with exit 1 when the video's job is cancelled.
#[test]
fn abr_upload_errors_and_wait() {
    let s = Ingest::start(&tokens(), &["--upload-max-size", "100000"]);
    let state = tempfile::tempdir().unwrap();
    let small = state.path().join("small clip.mp4");
    std::fs::write(&small, vec![1u8; 5000]).unwrap();
    let big = state.path().join("big.mp4");
    std::fs::write(&big, vec![1u8; 200_000]).unwrap();
    let run = |file: &Path, extra: &[&str]| {
        let o = abr_upload(&s, state.path(), file, extra).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&small, &["--token", "wrong", "--retries", "1"]);
    assert!(!ok && err.contains("401") && err.contains("token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (ok, err) = run(&big, &["--token", ALICE, "--retries", "1"]);
    assert!(!ok && err.contains("413"), "{err}");
    let port = common::origin::free_port();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_abr"))
        .arg("upload")
        .arg(&small)
        .args(["--server", &format!("http://127.0.0.1:{port}")])
        .args(["--token", ALICE, "--retries", "1"])
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("refused"),
        "{err}"
    );
    // --wait: the default name comes from the file; cancelling the job ends the wait.
    let child = abr_upload(&s, state.path(), &small, &["--token", ALICE, "--wait"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Complete as the API says it (its job is enqueued a moment before the upload is marked).
    wait_until(Duration::from_secs(30), "the upload completes", || {
        s.upload_ids()
            .first()
            .is_some_and(|id| video(&s, id, ALICE)["state"] != "uploading")
    });
    let id = s.upload_ids()[0].clone();
    assert_eq!(video(&s, &id, ALICE)["name"], "small-clip");
    json(
        &api(
            &s,
            "POST",
            &format!("/api/v1/videos/{id}/cancel"),
            Some(ALICE),
        ),
        202,
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cancelled"), "{err}");
}

/// The queue's job events reach the event stream (`GET /api/v1/events`): a completed upload's
/// `enqueued` and a cancel's `cancelled`, as `{"type":"job", …}` lines.
#[test]
fn job_events_on_the_event_stream() {
    use std::io::{BufRead, BufReader, Write};
    let s = Ingest::start(&tokens(), &[]);
    let mut conn = std::net::TcpStream::connect(s.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(conn.try_clone().unwrap()).lines();
    // The head is in: the subscription exists.
    let status = lines.next().unwrap().unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let id = uploaded(&s, ALICE, "cat", 16);
    json(
        &api(
            &s,
            "POST",
            &format!("/api/v1/videos/{id}/cancel"),
            Some(ALICE),
        ),
        202,
    );
    let mut kinds = Vec::new();
    for line in lines {
        let line = line.expect("events within 20 s");
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        if v["type"] == "job" && v["job"] == id.as_str() {
            kinds.push(v["kind"].as_str().unwrap().to_string());
            if kinds.last().map(String::as_str) == Some("cancelled") {
                break;
            }
        }
    }
    assert_eq!(kinds, ["enqueued", "cancelled"]);
}

/// The server is SIGKILLed under a running `abr upload` and restarted on the same port: the
/// client retries (connection refused, then the server's offset via 409/HEAD) and completes the
/// one upload with the source's bytes.
#[test]
fn abr_upload_retries_across_a_server_restart() {
    use std::process::Stdio;
    let size: u64 = 64 << 20;
    let src = common::uploads::source_file(size, 4);
    let mut s = Ingest::start(&tokens(), &[]);
    let state = tempfile::tempdir().unwrap();
    let args = ["--token", ALICE, "--name", "restarted", "--chunk-mib", "1"];
    let child = abr_upload(&s, state.path(), &src, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (id, path) = s.wait_single_upload();
    wait_until(Duration::from_secs(60), "the upload reaches 16 MiB", || {
        s.offset(&path, ALICE) >= 16 << 20
    });
    s.kill();
    s.restart();
    let at_restart = s.offset(&path, ALICE);
    assert!(at_restart < size, "finished before the restart");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    assert_eq!(s.upload_ids(), vec![id.clone()]);
    assert_eq!(
        common::origin::sha256sum(&s.data_file(&id)),
        common::origin::sha256sum(&src)
    );
    assert_eq!(s.enqueued_events(&id), 1);
}

/// Every path under `dir` (files and directories).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Delete during playback (issue 13, acceptance 5): hls.js plays a real package of the video
/// and a slow curl downloads a 16 MiB segment of it when the video is deleted. The download
/// finishes byte-identical (the origin serves the open file), new requests 404 once the
/// open-file cache (1 s) forgot the files, and neither the data directory nor ROOT holds
/// anything of the video.
#[test]
fn delete_during_playback() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    // Expiration 8 s: the sweeper runs every 2 s (it removes the tombstone after the grace).
    let s = Ingest::start(&tokens(), &["--upload-expiration", "8"]);
    let id = uploaded(&s, ALICE, "cat", 16);
    let other = uploaded(&s, ALICE, "dog", 16);
    // The package as a worker leaves it: published, plus a work area and a staging directory.
    let pieces = fake_package(&s.root, "alice", "cat");
    common::origin::copy_tree(&common::origin::sample_root().join("sample"), &pieces[0]);
    // The slow download: a 16 MiB segment, larger than loopback's socket buffers, so most of
    // it is still to be read from the file when the file is unlinked.
    let seg = pieces[0].join("hls/big/seg_00001.ts");
    let seg_len: u64 = 16 << 20;
    common::origin::write_pseudo_random(&seg, seg_len, 9);
    let expected = common::origin::sha256sum(&seg);
    let seg_path = "/alice/cat/hls/big/seg_00001.ts";

    let server = s.server.as_ref().unwrap();
    let mut player = Command::new("node")
        .arg(common::root().join("tests/player/play.mjs"))
        .args(["--manifest-url", &server.url("/alice/cat/hls/master.m3u8")])
        .args(["--player", "hls", "--seconds", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(player.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let l = lines
            .next()
            .expect("play.mjs ended before playing")
            .unwrap();
        if l.contains("play.mjs: playing") {
            break;
        }
        seen.push(l);
        assert!(seen.len() < 500, "{seen:?}");
    }
    // About 16 s for the segment: the deletion (a few file-system calls) ends well within it.
    let rate = (seg_len / 16).to_string();
    let out = s.data.parent().unwrap().join("slow-download.ts");
    let mut curl = Command::new("curl")
        .args(["-sS", "--fail", "--limit-rate", &rate, "-o"])
        .arg(&out)
        .arg(server.url(seg_path))
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "the slow download starts", || {
        std::fs::metadata(&out).is_ok_and(|m| m.len() > 0)
    });

    json(
        &api(&s, "DELETE", &format!("/api/v1/videos/{id}"), Some(ALICE)),
        202,
    );
    let t0 = std::time::Instant::now();
    wait_until(Duration::from_secs(10), "the package goes", || {
        pieces.iter().all(|p| !p.exists())
    });
    eprintln!("package deleted in {:?}", t0.elapsed());
    assert!(
        std::fs::metadata(&out).unwrap().len() < seg_len,
        "the download ended before the delete: make it slower"
    );
    let st = curl.wait().unwrap();
    assert!(st.success(), "curl: {st:?}");
    assert_eq!(common::origin::sha256sum(&out), expected, "the download");
    // New requests (the player's among them) are 404 once the open-file cache forgot it.
    wait_until(Duration::from_secs(5), "the segment is 404", || {
        request(s.addr(), "GET", seg_path, &[]).is_ok_and(|r| r.status == 404)
    });
    assert_eq!(
        request(s.addr(), "GET", "/alice/cat/hls/master.m3u8", &[])
            .unwrap()
            .status,
        404
    );
    let _ = player.kill();
    let _ = player.wait();
    // The tombstone stays for the grace (a worker that had not learnt of the cancel may still
    // publish; the sweeper removes that again), then goes too.
    let tomb = s.data.join("deleting").join(format!("{id}.json"));
    wait_until(
        service::videos::DELETE_GRACE + Duration::from_secs(20),
        "the tombstone goes after the grace",
        || !tomb.exists(),
    );
    for dir in [&s.data, &s.root] {
        let left: Vec<_> = walk(dir)
            .into_iter()
            .filter(|p| {
                let p = p.to_string_lossy();
                p.contains(&id) || p.contains("/cat") || p.contains(".cat.")
            })
            .collect();
        assert!(left.is_empty(), "left of the video: {left:?}");
    }
    // The other video is untouched.
    assert!(s.uploads_dir().join(&other).exists());
}

/// One video per name and principal: a second upload named like a live video is 409 (it would
/// publish over the first one's package); another principal may use the name; once the video
/// is deleted the name is free again.
#[test]
fn a_name_in_use_is_409_until_its_video_is_deleted() {
    let s = Ingest::start(&tokens(), &[]);
    let id = uploaded(&s, ALICE, "cat", 16);
    let r = s.create(ALICE, 16, "cat");
    assert_eq!(r.status, 409, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains(&id),
        "the answer names the video using it: {r:?}"
    );
    assert_eq!(s.create(BOB, 16, "cat").status, 201);
    // An incomplete upload holds its name too.
    s.created(ALICE, 16, "dog");
    assert_eq!(s.create(ALICE, 16, "dog").status, 409);
    json(
        &api(&s, "DELETE", &format!("/api/v1/videos/{id}"), Some(ALICE)),
        202,
    );
    assert_eq!(s.create(ALICE, 16, "cat").status, 201);
}
