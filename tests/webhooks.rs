//! Webhooks of the video lifecycle end to end (issue 13, events): a real receiver on
//! 127.0.0.1 refuses the first deliveries (500), the server is SIGKILLed before any was
//! acknowledged and started again: the receiver then gets queued → processing → ready in
//! order, the refused event again with the same body and Idempotency-Key, every signature
//! verifies, and a non-media upload gives `video.failed` with its reason.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::origin::{metric, wait_until};
use common::uploads::{source_file, token_spec, Ingest};
use common::webhooks::{Monitor, Receiver};

const SECRET: &[u8] = b"webhook-secret-of-the-test";

/// Uploads `bytes` for `alice` as `name` in one PATCH; returns the video id.
fn upload(ing: &Ingest, bytes: &[u8], name: &str) -> String {
    let loc = ing.created("tok-a", bytes.len() as u64, name);
    let r = ing.patch(&loc, "tok-a", 0, bytes, &[]);
    assert_eq!(r.status, 204, "{r:?}");
    loc.rsplit('/').next().unwrap().to_string()
}

/// The delivered (200) bodies of `video`'s events, in arrival order.
fn delivered_of(rx: &Receiver, video: &str) -> Vec<serde_json::Value> {
    rx.delivered()
        .iter()
        .map(|h| h.json())
        .filter(|v| v["video"] == video)
        .collect()
}

#[test]
fn lifecycle_webhooks_are_signed_retried_and_survive_a_restart() {
    let rx = Receiver::start();
    rx.refuse.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hook.key");
    std::fs::write(&secret_file, SECRET).unwrap();
    let hook = format!("{} file:{}", rx.url, secret_file.display());
    // No workers in the first process: the job waits, only `video.queued` is due.
    let mut ing = Ingest::start(
        &[token_spec("alice", "tok-a", "")],
        &["--job-workers", "0", "--node", "hooks", "--webhook", &hook],
    );
    let src = common::fixture("360p25-mono", 4);
    let id = upload(&ing, &std::fs::read(&src).unwrap(), "clip");

    // The first delivery and at least one retry are refused.
    wait_until(Duration::from_secs(30), "a refused retry", || {
        rx.hits().len() >= 2
    });
    ing.kill();
    let refused = rx.hits();
    assert!(refused.iter().all(|h| h.status == 500), "{refused:?}");
    let first = &refused[0];
    assert_eq!(first.json()["type"], "video.queued", "{:?}", first.json());
    assert_eq!(first.json()["video"], id.as_str());
    assert_eq!(first.header("content-type"), "application/json");
    for h in &refused {
        assert_eq!(h.header("idempotency-key"), first.header("idempotency-key"));
        assert_eq!(h.body, first.body, "a retry carries the same body");
    }
    assert!(!first.header("idempotency-key").is_empty());
    let cursors: Vec<_> = std::fs::read_dir(ing.data.join("webhooks"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("cursor")).unwrap())
        .collect();
    assert_eq!(cursors.len(), 1, "{cursors:?}");
    let queued_seq = first.json()["seq"].as_u64().unwrap();
    let cursor_seq = cursors[0].lines().next().unwrap_or_default();
    assert!(
        cursor_seq.trim().parse::<u64>().unwrap() < queued_seq,
        "the cursor moved past an unacknowledged event: {cursors:?}"
    );

    // Restarted with a worker, the receiver now accepting: the refused event comes again.
    rx.refuse.store(false, Ordering::SeqCst);
    ing.set_arg("--job-workers", "1");
    // `abr monitor` follows the job events of the data directory from now on.
    let data = ing.data.to_str().unwrap().to_string();
    let mon = Monitor::start(&["--data-dir", &data, "--json", "--interval", "0.2"]);
    ing.restart();
    wait_until(Duration::from_secs(600), "video.ready delivered", || {
        delivered_of(&rx, &id)
            .iter()
            .any(|v| v["type"] == "video.ready")
    });
    let got = delivered_of(&rx, &id);
    let kinds: Vec<&str> = got.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["video.queued", "video.processing", "video.ready"],
        "{got:?}"
    );
    let seqs: Vec<u64> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let again = rx
        .delivered()
        .into_iter()
        .find(|h| h.json()["seq"] == queued_seq)
        .expect("the refused event delivered after the restart");
    assert_eq!(again.body, first.body, "same body after the restart");
    assert_eq!(
        again.header("idempotency-key"),
        first.header("idempotency-key"),
        "same key after the restart"
    );
    let ready = &got[2];
    assert_eq!(ready["urls"]["play"], "/play/alice/clip", "{ready}");
    assert_eq!(ready["principal"], "alice", "{ready}");

    // Bytes that are not media: the job fails at once, announced with the reason.
    let junk = std::fs::read(source_file(64 * 1024, 7)).unwrap();
    let bad = upload(&ing, &junk, "junk");
    wait_until(Duration::from_secs(120), "video.failed delivered", || {
        delivered_of(&rx, &bad)
            .iter()
            .any(|v| v["type"] == "video.failed")
    });
    let failed = delivered_of(&rx, &bad)
        .into_iter()
        .find(|v| v["type"] == "video.failed")
        .unwrap();
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "{failed}");
    eprintln!("failed: {reason}");

    // The job metrics moved (with the node label): one job succeeded and one failed on this
    // node's watch, their durations observed, the tasks' completions counted.
    let scrape = || {
        String::from_utf8(
            common::origin::get(ing.addr(), "/metrics", &[])
                .unwrap()
                .body,
        )
        .unwrap()
    };
    let settled = |t: &str| {
        metric(t, "abr_jobs", &[("state", "failed")]) == 1.0
            && metric(
                t,
                "abr_job_duration_seconds_count",
                &[("outcome", "failed")],
            ) == 1.0
    };
    // The metrics follow the queue once a second.
    wait_until(Duration::from_secs(10), "the job metrics catch up", || {
        settled(&scrape())
    });
    let text = scrape();
    let m = |name: &str, labels: &[(&str, &str)]| metric(&text, name, labels);
    let node = [("node", "hooks")];
    assert_eq!(
        m("abr_jobs", &[node[0], ("state", "succeeded")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        m("abr_jobs", &[node[0], ("state", "failed")]),
        1.0,
        "{text}"
    );
    assert_eq!(m("abr_jobs", &[("state", "queued")]), 0.0, "{text}");
    assert_eq!(m("abr_jobs", &[("state", "running")]), 0.0, "{text}");
    for outcome in ["succeeded", "failed"] {
        assert_eq!(
            m(
                "abr_job_duration_seconds_count",
                &[node[0], ("outcome", outcome)]
            ),
            1.0,
            "{text}"
        );
    }
    // plan + at least one shard + audio + assembly of the video, the failed plan of the junk.
    assert!(
        m("abr_job_tasks_total", &[node[0], ("outcome", "completed")]) >= 4.0,
        "{text}"
    );
    assert_eq!(
        m("abr_job_tasks_total", &[("outcome", "failed")]),
        1.0,
        "{text}"
    );
    // Exposed (nothing was reclaimed here: no worker died holding a lease).
    assert!(
        text.contains("abr_job_lease_reclaims_total{node=\"hooks\"} 0"),
        "{text}"
    );

    // The monitor showed the job events: claims, progress, ready (with the player page) of the
    // video, queued and failed of the junk.
    let shown = |video: &str, event: &str| {
        mon.json()
            .into_iter()
            .find(|v| v["type"] == "job" && v["video"] == video && v["event"] == event)
    };
    wait_until(
        Duration::from_secs(10),
        "the monitor shows the failure",
        || shown(&bad, "failed").is_some(),
    );
    assert!(shown(&id, "claimed").is_some(), "{:?}", mon.json());
    let p = shown(&id, "progress").unwrap_or_else(|| panic!("{:?}", mon.json()));
    assert!(
        p["percent"]
            .as_f64()
            .is_some_and(|p| (0.0..=100.0).contains(&p)),
        "{p}"
    );
    let r = shown(&id, "ready").unwrap_or_else(|| panic!("{:?}", mon.json()));
    assert_eq!(r["play"], "/play/alice/clip", "{r}");
    assert!(shown(&bad, "queued").is_some(), "{:?}", mon.json());
    assert!(
        shown(&id, "queued").is_none(),
        "it follows from its start only"
    );
    drop(mon);

    // The JSON log lines of the worker and the uploads carry the video and job ids.
    let log = ing.server().log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let line = |msg: &str| {
        lines
            .iter()
            .find(|v| v["message"] == msg && v["video"] == id.as_str())
            .unwrap_or_else(|| panic!("no JSON line {msg:?} of video {id}: {log}"))
    };
    let done = line("task completed");
    assert_eq!(done["job"], id.as_str(), "{done}");
    assert!(done["task"].is_u64() && done["attempt"].is_u64(), "{done}");
    assert_eq!(line("package published")["job"], id.as_str());
    let complete = lines
        .iter()
        .find(|v| {
            v["message"] == "upload complete, packaging job enqueued" && v["video"] == bad.as_str()
        })
        .unwrap_or_else(|| panic!("no upload line of video {bad}: {log}"));
    assert_eq!(complete["job"], bad.as_str(), "{complete}");

    // Deleting the ready video (its job is over: nothing to cancel) is announced too.
    let r = common::origin::request(
        ing.addr(),
        "DELETE",
        &format!("/api/v1/videos/{id}"),
        &[("Authorization", "Bearer tok-a")],
    )
    .unwrap();
    assert_eq!(r.status, 202, "{r:?}");
    wait_until(Duration::from_secs(30), "video.deleted delivered", || {
        delivered_of(&rx, &id)
            .iter()
            .any(|v| v["type"] == "video.deleted")
    });
    let kinds: Vec<String> = delivered_of(&rx, &id)
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "video.queued",
            "video.processing",
            "video.ready",
            "video.deleted"
        ],
        "once each, in order"
    );
    let deleted = delivered_of(&rx, &id).pop().unwrap();
    assert_eq!(deleted["name"], "clip", "{deleted}");

    // Every request, refused or not, is signed with the secret over timestamp.body; the wrong
    // secret does not verify.
    let all = rx.hits();
    assert!(all.iter().all(|h| h.verifies(SECRET)), "{all:?}");
    assert!(!all[0].verifies(b"another secret"));
    let keys: std::collections::HashSet<&str> = all
        .iter()
        .filter(|h| h.status == 200)
        .map(|h| h.header("idempotency-key"))
        .collect();
    assert_eq!(
        keys.len(),
        rx.delivered().len(),
        "one key per delivered event"
    );
}

/// An event refused `webhook_attempts` times is kept as a dead letter and skipped: the next
/// event is delivered, the cursor moves past both.
#[test]
fn an_event_refused_to_its_last_attempt_becomes_a_dead_letter() {
    let rx = Receiver::start();
    rx.refuse_next.store(2, Ordering::SeqCst);
    let hook = format!("{} hex:{}", rx.url, "6b6579");
    let ing = Ingest::start(
        &[token_spec("alice", "tok-a", "")],
        &["--webhook", &hook, "--webhook-attempts", "2"],
    );
    let junk = std::fs::read(source_file(4096, 11)).unwrap();
    let a = upload(&ing, &junk, "a");
    let b = upload(&ing, &junk, "b");
    wait_until(Duration::from_secs(30), "the second video's queued", || {
        !delivered_of(&rx, &b).is_empty()
    });
    let hits = rx.hits();
    let of_a: Vec<_> = hits
        .iter()
        .filter(|h| h.json()["video"] == a.as_str())
        .collect();
    assert_eq!(of_a.len(), 2, "two attempts: {hits:?}");
    assert!(of_a.iter().all(|h| h.status == 500 && h.verifies(b"key")));
    assert!(delivered_of(&rx, &a).is_empty());

    let dir = std::fs::read_dir(ing.data.join("webhooks"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let seq_a = of_a[0].json()["seq"].as_u64().unwrap();
    let letter: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("dead").join(format!("{seq_a}-{a}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(letter["body"]["video"], a.as_str(), "{letter}");
    assert_eq!(letter["error"], "HTTP 500", "{letter}");
    assert_eq!(letter["attempts"], 2, "{letter}");
    assert_eq!(letter["idempotency_key"], of_a[0].header("idempotency-key"));
    let seq_b = delivered_of(&rx, &b)[0]["seq"].as_u64().unwrap();
    wait_until(Duration::from_secs(10), "the cursor passes both", || {
        std::fs::read_to_string(dir.join("cursor"))
            .ok()
            .and_then(|c| c.trim().parse::<u64>().ok())
            .is_some_and(|c| c >= seq_b)
    });
}
