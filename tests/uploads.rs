//! Resumable uploads (tus 1.0) at `/api/v1/uploads` of `abr serve --ingest`, with real clients
//! (tuspy, tus-js-client) and raw requests: resume across SIGKILLs with a durable offset,
//! checksums, offsets, expiry, tokens, limits, names, and the one packaging job of a complete
//! upload, also when the server dies at completion.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::origin::{free_port, parse_response};
use common::origin::{sha256sum, wait_until};
use common::uploads::{
    b64, client_command, json_line, source_file, token_spec, Ingest, OCTETS, TUS,
};
use service::jobs::VideoJob;
use service::queue::Queue;

/// Size of the file the real clients upload (1 GiB when the run stays fast enough; see the
/// report of the run in the commit).
const UPLOAD_SIZE: u64 = 1 << 30;
/// Chunk size of the real clients (one PATCH each).
const CHUNK: u64 = 8 << 20;
/// The server is SIGKILLed when the upload passes these fractions of its size.
const KILL_AT: [f64; 3] = [0.2, 0.45, 0.7];

const ALICE: &str = "alice-secret-token";
const BOB: &str = "bob-secret-token";

fn tokens() -> Vec<String> {
    vec![token_spec("alice", ALICE, ""), token_spec("bob", BOB, "")]
}

/// The job of upload `id` in the queue: exactly one (one `Enqueued` event), its payload the
/// worker's contract.
fn assert_one_job(s: &Ingest, id: &str, name: &str, principal: &str) {
    let job = s.queue().job(id).unwrap().expect("a job for the upload");
    let v: VideoJob = serde_json::from_str(&job.payload).expect("VideoJob payload");
    assert_eq!(v.video, id);
    assert_eq!((v.principal.as_str(), v.name.as_str()), (principal, name));
    assert_eq!(v.source, s.data_file(id).canonicalize().unwrap());
    assert!(v.source.is_absolute() && v.out.is_absolute(), "{v:?}");
    assert_eq!(
        v.out,
        s.root.canonicalize().unwrap().join(principal).join(name)
    );
    assert_eq!(job.tasks.len(), 1);
    assert_eq!(s.enqueued_events(id), 1, "exactly one job was created");
    let raw: serde_json::Value = serde_json::from_str(&job.payload).unwrap();
    let keys: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{raw}");
}

/// `client` uploads UPLOAD_SIZE bytes in CHUNK chunks while the server is SIGKILLed and
/// restarted 3 times; the client resumes from the server's offset each time. A poller checks
/// throughout that HEAD's Upload-Offset never exceeds the data file's size on disk; at the end
/// the stored bytes are the source's and one job exists.
fn upload_survives_sigkills(client: &str, name: &str, seed: u64) {
    let t0 = Instant::now();
    let src = source_file(UPLOAD_SIZE, seed);
    let mut cmd = client_command(client);
    let mut s = Ingest::start(&tokens(), &[]);
    let mut child = cmd
        .args(["--endpoint", &s.endpoint(), "--file", src.to_str().unwrap()])
        .args([
            "--token",
            ALICE,
            "--name",
            name,
            "--chunk-size",
            &CHUNK.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {client}: {e}"));
    let out = Arc::new(Mutex::new(String::new()));
    let reader = {
        let out = out.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        })
    };
    let (id, path) = s.wait_single_upload();
    let data = s.data_file(&id);
    // The poller: HEAD, then the file's size (which only shrinks back to a durable offset, never
    // below one already reported).
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let violation: Arc<Mutex<Option<String>>> = Arc::default();
    let poller = {
        let (stop, seen, polls) = (stop.clone(), seen.clone(), polls.clone());
        let violation = violation.clone();
        let (addr, path, data) = (s.addr(), path.clone(), data.clone());
        std::thread::spawn(move || {
            let auth = format!("Bearer {ALICE}");
            while !stop.load(Ordering::SeqCst) {
                let r =
                    common::origin::request(addr, "HEAD", &path, &[TUS, ("Authorization", &auth)]);
                if let Ok(r) = r {
                    if r.status == 200 {
                        let off: u64 = r
                            .header("upload-offset")
                            .unwrap_or("0")
                            .parse()
                            .unwrap_or(0);
                        let size = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
                        if off > size {
                            *violation.lock().unwrap() =
                                Some(format!("HEAD said {off} with {size} bytes on disk"));
                            return;
                        }
                        seen.fetch_max(off, Ordering::SeqCst);
                        polls.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Fails the test as soon as the poller saw the offset run ahead of the bytes.
    let check = |child: &mut std::process::Child| {
        if let Some(v) = violation.lock().unwrap().clone() {
            let _ = child.kill();
            panic!("{client}: the offset ran ahead of the data file: {v}");
        }
    };
    for frac in KILL_AT {
        let at = (UPLOAD_SIZE as f64 * frac) as u64;
        wait_until(Duration::from_secs(120), "the upload progresses", || {
            check(&mut child);
            seen.load(Ordering::SeqCst) >= at
        });
        s.kill();
        s.restart();
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        check(&mut child);
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{client} did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let out = out.lock().unwrap().clone();
    let result =
        json_line(&out, "ok").unwrap_or_else(|| panic!("{client}: no result\n{out}\n{err}"));
    assert!(
        status.success() && result["ok"] == true,
        "{client}: {result}\n{err}"
    );
    assert!(
        result["retries"].as_u64().unwrap_or(0) >= 1,
        "{client} resumed: {result}"
    );
    stop.store(true, Ordering::SeqCst);
    poller.join().unwrap();
    check(&mut child);
    assert!(polls.load(Ordering::SeqCst) > 10, "the poller ran");
    assert_eq!(s.offset(&path, ALICE), UPLOAD_SIZE);
    assert_eq!(sha256sum(&data), sha256sum(&src), "{client}: stored bytes");
    assert_eq!(s.info(&id)["state"], "complete");
    assert_one_job(&s, &id, name, "alice");
    eprintln!(
        "{client}: {UPLOAD_SIZE} bytes, 3 SIGKILLs, {:.1?}",
        t0.elapsed()
    );
}

#[test]
fn tuspy_resumes_across_sigkills() {
    upload_survives_sigkills("tuspy", "from-tuspy", 1);
}

#[test]
fn tus_js_client_resumes_across_sigkills() {
    upload_survives_sigkills("tus-js-client", "from-tus-js", 1);
}

/// OPTIONS tells what is offered; a wrong checksum is 460 and keeps nothing; a wrong offset
/// is 409; unsupported version, algorithm, content type, bytes past the length are refused
/// without moving the offset; the last byte completes the upload with one job.
#[test]
fn checksum_offset_version_and_content_type() {
    let s = Ingest::start(&tokens(), &["--upload-max-size", "1000000"]);
    let r = s.tus("OPTIONS", "/api/v1/uploads", None, &[], b"");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    assert_eq!(r.header("tus-max-size"), Some("1000000"));
    assert_eq!(r.header("tus-checksum-algorithm"), Some("sha1,sha256"));
    let ext = r.header("tus-extension").unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{ext}");
    }
    let up = s.created(ALICE, 10, "clip");
    let id = up.rsplit('/').next().unwrap().to_string();
    let data = s.data_file(&id);
    let sha256 = |b: &[u8]| {
        let hex = common::uploads::sha256_hex(b);
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        b64(&bytes)
    };
    // Wrong checksum: 460, nothing kept.
    let wrong = format!("sha256 {}", sha256(b"HELLO"));
    let r = s.patch(&up, ALICE, 0, b"hello", &[("Upload-Checksum", &wrong)]);
    assert_eq!(r.status, 460, "{r:?}");
    assert_eq!(s.offset(&up, ALICE), 0);
    assert_eq!(
        std::fs::metadata(&data).unwrap().len(),
        0,
        "the chunk was discarded"
    );
    // Right checksum: kept.
    let right = format!("sha256 {}", sha256(b"hello"));
    let r = s.patch(&up, ALICE, 0, b"hello", &[("Upload-Checksum", &right)]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("5"));
    assert_eq!(r.header("tus-resumable"), Some("1.0.0"));
    // Wrong offset: 409.
    let r = s.patch(&up, ALICE, 3, b"xx", &[]);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(s.offset(&up, ALICE), 5);
    // Unsupported algorithm and a bad digest: 400.
    let r = s.patch(
        &up,
        ALICE,
        5,
        b"world",
        &[("Upload-Checksum", "md5 XUFAKrxLKna5cZ2REBfFkg==")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = s.patch(&up, ALICE, 5, b"world", &[("Upload-Checksum", "sha1 !!")]);
    assert_eq!(r.status, 400, "{r:?}");
    // Content type: 415; version: 412 with Tus-Version.
    let r = s.tus(
        "PATCH",
        &up,
        Some(ALICE),
        &[
            ("Content-Type", "application/octet-stream"),
            ("Upload-Offset", "5"),
        ],
        b"world",
    );
    assert_eq!(r.status, 415, "{r:?}");
    let r = common::origin::request_with_body(
        s.addr(),
        "PATCH",
        &up,
        &[
            ("Tus-Resumable", "0.2.2"),
            OCTETS,
            ("Upload-Offset", "5"),
            ("Authorization", &format!("Bearer {ALICE}")),
        ],
        b"world",
    )
    .unwrap();
    assert_eq!(r.status, 412, "{r:?}");
    assert_eq!(r.header("tus-version"), Some("1.0.0"));
    let r = common::origin::request(
        s.addr(),
        "HEAD",
        &up,
        &[("Authorization", &format!("Bearer {ALICE}"))],
    )
    .unwrap();
    assert_eq!(r.status, 412, "{r:?}");
    // Past Upload-Length: 413, nothing stored.
    let r = s.patch(&up, ALICE, 5, b"world!", &[]);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(s.offset(&up, ALICE), 5);
    assert_eq!(std::fs::metadata(&data).unwrap().len(), 5);
    assert!(
        s.queue().job(&id).unwrap().is_none(),
        "no job before completion"
    );
    // The rest, with sha1: complete, one job, no expiry any more.
    let sha1 = "sha1 fCEUM/AgcVl3Qeb/Wo6jR4mrv0M="; // sha1("world")
    let r = s.patch(&up, ALICE, 5, b"world", &[("Upload-Checksum", sha1)]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("10"));
    assert_eq!(r.header("upload-expires"), None);
    assert_eq!(std::fs::read(&data).unwrap(), b"helloworld");
    assert_eq!(s.info(&id)["state"], "complete");
    assert_one_job(&s, &id, "clip", "alice");
    // Metrics of what happened so far.
    let m = common::origin::get(s.addr(), "/metrics", &[]).unwrap();
    let m = String::from_utf8_lossy(&m.body);
    let value = |name: &str, label: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics:\n{m}"))
    };
    assert_eq!(value("abr_uploads_completed_total", ""), 1.0);
    assert_eq!(value("abr_uploads_in_progress", ""), 0.0);
    assert_eq!(
        value("abr_upload_bytes_received_total", ""),
        15.0,
        "5 discarded + 10 kept"
    );
    for reason in ["checksum", "offset", "too_long"] {
        let label = format!("reason=\"{reason}\"");
        assert_eq!(
            value("abr_upload_chunks_rejected_total", &label),
            1.0,
            "{reason}"
        );
    }
    let h = s.tus("HEAD", &up, Some(ALICE), &[], b"");
    assert_eq!(h.header("upload-length"), Some("10"));
    assert!(h.header("upload-metadata").unwrap().contains(&b64(b"clip")));
    // A second PATCH while one holds the upload: 423 (checked before the offset).
    let big = s.created(ALICE, 100, "slow");
    let start_first = || {
        let mut c = TcpStream::connect(s.addr()).unwrap();
        write!(
            c,
            "PATCH {big} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\n\
             Authorization: Bearer {ALICE}\r\nContent-Type: application/offset+octet-stream\r\n\
             Upload-Offset: 0\r\nContent-Length: 100\r\n\r\n{}",
            "a".repeat(40)
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        c
    };
    let mut first = start_first();
    // A probe that takes the lock just before the first PATCH does makes *it* the refused one
    // (it is answered 423 at once): then it is sent again.
    wait_until(
        Duration::from_secs(10),
        "a concurrent PATCH is refused with 423",
        || {
            if s.patch(&big, ALICE, 99, b"b", &[]).status == 423 {
                return true;
            }
            let mut b = [0u8; 64];
            if matches!(first.read(&mut b), Ok(n) if n > 0) {
                first = start_first();
            }
            false
        },
    );
    first.set_read_timeout(None).unwrap();
    first.write_all("a".repeat(60).as_bytes()).unwrap();
    let mut raw = Vec::new();
    first.read_to_end(&mut raw).unwrap();
    let r = parse_response(&raw, false).unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(s.offset(&big, ALICE), 100);
}

/// An incomplete upload expires (`Upload-Expires`): a request finds it gone (410), the sweeper
/// deletes an untouched one on its own; bytes and directory are gone. A complete one stays.
#[test]
fn expired_uploads_answer_410_and_their_bytes_are_gone() {
    let s = Ingest::start(&tokens(), &["--upload-expiration", "2"]);
    let a = s.created(ALICE, 100, "a");
    let b = s.created(ALICE, 100, "b");
    // creation-with-upload: all three bytes in the POST complete it.
    let meta = format!("name {}", b64(b"c"));
    let r = s.tus(
        "POST",
        "/api/v1/uploads",
        Some(ALICE),
        &[("Upload-Length", "3"), ("Upload-Metadata", &meta), OCTETS],
        b"abc",
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("3"));
    let c = r.header("location").unwrap().to_string();
    let r = s.patch(&a, ALICE, 0, b"0123456789", &[]);
    assert_eq!(r.status, 204, "{r:?}");
    let exp = r.header("upload-expires").expect("Upload-Expires");
    assert!(
        exp.ends_with(" GMT") && exp.len() == 29,
        "RFC 7231 date: {exp}"
    );
    let (ida, idb) = (a.rsplit('/').next().unwrap(), b.rsplit('/').next().unwrap());
    let (dira, dirb) = (s.uploads_dir().join(ida), s.uploads_dir().join(idb));
    // The sweeper removes b without any request.
    wait_until(
        Duration::from_secs(15),
        "the sweeper deletes the expired upload",
        || !dirb.exists(),
    );
    assert_eq!(s.tus("HEAD", &b, Some(ALICE), &[], b"").status, 410);
    // a: gone too, 410 to HEAD and PATCH.
    wait_until(Duration::from_secs(15), "the upload expires", || {
        s.tus("HEAD", &a, Some(ALICE), &[], b"").status == 410
    });
    assert_eq!(s.patch(&a, ALICE, 10, b"x", &[]).status, 410);
    wait_until(Duration::from_secs(5), "its directory is gone", || {
        !dira.exists()
    });
    // The complete one is kept.
    assert_eq!(s.offset(&c, ALICE), 3);
    assert_eq!(s.upload_ids().len(), 1);
}

/// Tokens, principals, limits and names: 401 without or with a wrong token, 404 for another
/// principal's upload, 413 over the size limits and the quota with nothing written, 400 for a
/// bad package name or metadata; DELETE removes the bytes and frees the quota.
#[test]
fn tokens_limits_and_names() {
    let tokens = vec![
        token_spec("alice", ALICE, ":1000:1500"),
        token_spec("bob", BOB, ""),
    ];
    let s = Ingest::start(&tokens, &["--upload-max-size", "10000"]);
    // No token, a wrong one, another scheme: 401 with WWW-Authenticate.
    let meta = format!("name {}", b64(b"x"));
    for auth in [None, Some("Bearer nope"), Some("Basic YWxpY2U6eA==")] {
        let mut h = vec![
            TUS,
            ("Upload-Length", "10"),
            ("Upload-Metadata", meta.as_str()),
        ];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        let r = common::origin::request(s.addr(), "POST", "/api/v1/uploads", &h).unwrap();
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let a = s.created(ALICE, 100, "mine");
    assert_eq!(s.tus("HEAD", &a, Some("wrong"), &[], b"").status, 401);
    // Another principal's upload does not exist for bob.
    assert_eq!(s.tus("HEAD", &a, Some(BOB), &[], b"").status, 404);
    assert_eq!(s.patch(&a, BOB, 0, b"x", &[]).status, 404);
    assert_eq!(s.tus("DELETE", &a, Some(BOB), &[], b"").status, 404);
    assert_eq!(
        s.tus(
            "HEAD",
            "/api/v1/uploads/0123456789abcdef0123456789abcdef",
            Some(ALICE),
            &[],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        s.tus(
            "HEAD",
            "/api/v1/uploads/..%2f..%2fetc",
            Some(ALICE),
            &[],
            b""
        )
        .status,
        404
    );
    assert_eq!(s.offset(&a, ALICE), 0);
    let before = s.upload_dir_entries();
    // Size limits and the quota: 413 before anything is written.
    assert_eq!(s.create(ALICE, 1001, "big").status, 413, "alice's MAX_SIZE");
    assert_eq!(s.create(BOB, 10_001, "big").status, 413, "upload_max_size");
    assert_eq!(s.created(ALICE, 900, "fits").len(), 48);
    let r = s.create(ALICE, 600, "over");
    assert_eq!(r.status, 413, "quota: {r:?}");
    assert_eq!(s.upload_dir_entries(), before + 1);
    // Names and metadata: 400 with one line.
    for bad in ["a/b", "..", ".hidden", "", "x y", &"n".repeat(129)] {
        let r = s.create(BOB, 10, bad);
        assert_eq!(r.status, 400, "{bad:?}: {r:?}");
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(body.trim_end().lines().count(), 1, "{body}");
    }
    for meta in [
        "filename eA==".to_string(),
        "name !!".into(),
        format!("name {},name {}", b64(b"a"), b64(b"b")),
    ] {
        let r = s.tus(
            "POST",
            "/api/v1/uploads",
            Some(BOB),
            &[("Upload-Length", "10"), ("Upload-Metadata", &meta)],
            b"",
        );
        assert_eq!(r.status, 400, "{meta}: {r:?}");
    }
    let r = s.tus(
        "POST",
        "/api/v1/uploads",
        Some(BOB),
        &[("Upload-Length", "ten"), ("Upload-Metadata", &meta)],
        b"",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        s.upload_dir_entries(),
        before + 1,
        "nothing written by refused creations"
    );
    // DELETE: bytes gone, later requests 404, the quota freed.
    assert_eq!(s.patch(&a, ALICE, 0, b"12345", &[]).status, 204);
    let id = a.rsplit('/').next().unwrap();
    assert!(s.uploads_dir().join(id).exists());
    assert_eq!(s.tus("DELETE", &a, Some(ALICE), &[], b"").status, 204);
    assert!(!s.uploads_dir().join(id).exists());
    assert_eq!(s.tus("HEAD", &a, Some(ALICE), &[], b"").status, 404);
    assert_eq!(s.created(ALICE, 600, "now-fits").len(), 48);
    // The viewer API still answers next to the uploads.
    let r = common::origin::request(s.addr(), "POST", "/api/v1/session", &[]).unwrap();
    assert_ne!(r.status, 404, "{r:?}");
}

/// The process dies between enqueueing a completed upload's job and marking the upload
/// complete; after a restart the upload is complete with exactly one job. Same for a SIGKILL
/// right after the last PATCH's response.
#[test]
fn completion_makes_exactly_one_job_across_crashes() {
    // Crash inside completion (the test switch aborts the server there).
    let mut s = Ingest::start_env(
        &tokens(),
        &[],
        &[("ABR_TEST_CRASH_AFTER_UPLOAD_COMPLETE", "1")],
    );
    let up = s.created(ALICE, 6, "crashy");
    let id = up.rsplit('/').next().unwrap().to_string();
    let auth = format!("Bearer {ALICE}");
    let r = common::origin::request_with_body(
        s.addr(),
        "PATCH",
        &up,
        &[
            TUS,
            OCTETS,
            ("Upload-Offset", "0"),
            ("Authorization", &auth),
        ],
        b"abcdef",
    );
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|r| r.status >= 500),
        "{r:?}"
    );
    let st = s
        .server()
        .wait_exit(Duration::from_secs(10))
        .expect("the server aborted");
    assert!(!st.success());
    s.server = None;
    assert_eq!(s.info(&id)["state"], "incomplete", "killed before marking");
    assert_eq!(s.enqueued_events(&id), 1, "the job exists already");
    s.restart();
    assert_eq!(s.info(&id)["state"], "complete");
    assert_eq!(s.offset(&up, ALICE), 6);
    assert_one_job(&s, &id, "crashy", "alice");
    // SIGKILL right after the response of the last PATCH.
    let up = s.created(ALICE, 4, "killed");
    let id = up.rsplit('/').next().unwrap().to_string();
    assert_eq!(s.patch(&up, ALICE, 0, b"wxyz", &[]).status, 204);
    s.kill();
    s.restart();
    assert_eq!(s.offset(&up, ALICE), 4);
    assert_eq!(s.info(&id)["state"], "complete");
    assert_one_job(&s, &id, "killed", "alice");
    assert_eq!(std::fs::read(s.data_file(&id)).unwrap(), b"wxyz");
    // Deleting a complete upload cancels its job (its source is gone).
    assert_eq!(s.tus("DELETE", &up, Some(ALICE), &[], b"").status, 204);
    assert!(!s.uploads_dir().join(&id).exists());
    let job = s.queue().job(&id).unwrap().unwrap();
    assert_eq!(job.state, service::queue::JobState::Cancelled);
}

/// tus-js-client in Chromium on a page of another origin: the browser's preflights for POST
/// and PATCH (tus headers, Authorization) pass for an allowed origin, it reads Location and
/// Upload-Offset, and the stored bytes are the page's; an origin not in `cors_origins` is
/// refused by the browser before any byte is stored.
#[test]
fn a_browser_on_another_origin_uploads_with_tus_js_client() {
    let (app, evil) = (free_port(), free_port());
    let app_origin = format!("http://127.0.0.1:{app}");
    let s = Ingest::start(&tokens(), &["--cors-origins", &app_origin]);
    let run = |port: u16, name: &str| {
        let out = std::process::Command::new("node")
            .arg(common::root().join("tests/tus/browser-cors.mjs"))
            .args([
                "--endpoint",
                &s.endpoint(),
                "--token",
                ALICE,
                "--name",
                name,
            ])
            .args(["--page-port", &port.to_string()])
            .output()
            .expect("run node");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let v = json_line(&text, "ok")
            .unwrap_or_else(|| panic!("browser-cors.mjs printed no result:\n{text}\n{err}"));
        (out.status.code(), v, err)
    };

    let (code, v, err) = run(app, "from-app");
    assert_eq!(code, Some(0), "{v}\n{err}");
    let url = v["url"].as_str().unwrap();
    let id = url.rsplit('/').next().unwrap();
    assert!(url.starts_with(&s.endpoint()), "{url}");
    assert_eq!(
        sha256sum(&s.data_file(id)),
        v["sha256"].as_str().unwrap(),
        "stored bytes"
    );
    assert_eq!(s.info(id)["state"], "complete", "{}", s.info(id));

    let before = s.upload_ids().len();
    let (code, v, err) = run(evil, "from-evil");
    assert_eq!(code, Some(1), "{v}\n{err}");
    assert!(err.contains("CORS"), "not refused for CORS: {err}");
    assert_eq!(s.upload_ids().len(), before, "an upload was created: {v}");

    // The preflight as the browser sent it, and what the server answered.
    let r = s.tus(
        "OPTIONS",
        "/api/v1/uploads/x",
        None,
        &[
            ("Origin", &app_origin),
            ("Access-Control-Request-Method", "PATCH"),
            (
                "Access-Control-Request-Headers",
                "authorization,tus-resumable,upload-offset,content-type",
            ),
        ],
        b"",
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(app_origin.as_str())
    );
    let allowed = r.header("access-control-allow-headers").unwrap_or_default();
    for h in [
        "Authorization",
        "Tus-Resumable",
        "Upload-Offset",
        "Upload-Checksum",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
}
