//! Uploads on a cluster: two `abr serve --ingest --redis URL` nodes on one data directory and
//! ROOT (as behind nginx, where the PATCHes of one upload may reach different nodes), with
//! their own redis-server: the files on disk are the truth for every node, the upload lock and
//! the job queue are in Redis.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::origin::{parse_response, request, wait_until, Response};
use common::redis::Redis;
use common::uploads::{token_spec, Ingest, OCTETS, TUS};
use service::queue::{EventKind, JobState, Queue, RedisQueue, Settings, SystemClock};

const ALICE: &str = "alice-cluster-token";

/// Redis, node A and node B (drop order: B, A, Redis).
fn cluster() -> (Redis, Ingest, Ingest) {
    let redis = Redis::start();
    let url = redis.url();
    let a = Ingest::start(&[token_spec("alice", ALICE, "")], &["--redis", &url]);
    let b = a.peer(&[]);
    (redis, a, b)
}

fn id_of(path: &str) -> String {
    path.rsplit('/').next().unwrap().to_string()
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// `GET /api/v1/videos` on `node`, its body (asserting 200).
fn listing(node: &Ingest) -> String {
    let auth = format!("Bearer {ALICE}");
    let r: Response = request(
        node.addr(),
        "GET",
        "/api/v1/videos",
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    String::from_utf8_lossy(&r.body).into_owned()
}

/// `GET /api/v1/videos/{id}` on `node`, its JSON (asserting 200).
fn video(node: &Ingest, id: &str) -> serde_json::Value {
    let auth = format!("Bearer {ALICE}");
    let r: Response = request(
        node.addr(),
        "GET",
        &format!("/api/v1/videos/{id}"),
        &[("Authorization", &auth)],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_slice(&r.body).unwrap()
}

/// Created on A, half sent to A, HEAD on B reports A's offset, the rest sent to B completes
/// it: the bytes are whole, exactly one job exists (queued, in Redis), and both nodes' video
/// API (listing included) say so.
#[test]
fn one_upload_across_two_nodes() {
    let (redis, a, b) = cluster();
    let data = body(300_000);
    let path = a.created(ALICE, data.len() as u64, "cat");
    let id = id_of(&path);
    let r = a.patch(&path, ALICE, 0, &data[..100_000], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(b.offset(&path, ALICE), 100_000, "B sees A's offset");
    // A stale offset is refused on B as on A.
    assert_eq!(b.patch(&path, ALICE, 0, &data[..10], &[]).status, 409);
    let r = b.patch(&path, ALICE, 100_000, &data[100_000..], &[]);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("upload-offset"), Some("300000"));
    assert_eq!(a.offset(&path, ALICE), 300_000, "A sees B's offset");
    assert_eq!(std::fs::read(a.data_file(&id)).unwrap(), data);
    assert_eq!(a.info(&id)["state"], "complete");
    // The job is in Redis, once.
    let q = RedisQueue::open(
        &redis.url(),
        service::queue::redis::DEFAULT_PREFIX,
        Settings::default(),
        std::sync::Arc::new(SystemClock),
    )
    .unwrap();
    assert_eq!(q.job(&id).unwrap().unwrap().state, JobState::Queued);
    let enqueued = q
        .events(0, 1000)
        .unwrap()
        .iter()
        .filter(|e| e.job == id && e.kind == EventKind::Enqueued)
        .count();
    assert_eq!(enqueued, 1);
    assert!(
        !a.data.join("queue.sqlite3").exists(),
        "no SQLite queue with redis"
    );
    for node in [&a, &b] {
        assert_eq!(video(node, &id)["state"], "queued");
    }
    // B lists the video A created.
    assert!(listing(&b).contains(&id));
}

/// Two PATCHes of one upload at once, on A and on B: while A's (its body sent slowly) holds the
/// upload's lock in Redis, B's is refused with 423 and A renews the lock; A's then completes
/// the upload and releases the lock.
#[test]
fn concurrent_patches_on_two_nodes_one_is_locked() {
    let (redis, a, b) = cluster();
    let data = body(50_000);
    let path = a.created(ALICE, data.len() as u64, "dog");
    let id = id_of(&path);
    // The creation held the lock too: once it let it go, the key is only A's PATCH's.
    let key = format!("abr:lock:upload:{id}");
    wait_until(
        Duration::from_secs(10),
        "the creation releases the lock",
        || !redis.exists(&key),
    );
    let mut slow = TcpStream::connect(a.addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{}: {}\r\n{}: {}\r\n\
         Authorization: Bearer {ALICE}\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        a.addr(),
        TUS.0,
        TUS.1,
        OCTETS.0,
        OCTETS.1,
        data.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(&data[..1000]).unwrap();
    wait_until(Duration::from_secs(10), "A takes the upload's lock", || {
        redis.exists(&key)
    });
    let r = b.patch(&path, ALICE, 0, &data, &[]);
    assert_eq!(r.status, 423, "{r:?}");
    // A renews its lock while the body is still coming (every third of the 10 s ttl): the
    // key's remaining time goes up again.
    let pttl = || -> i64 {
        let r = redis.inline(&format!("PTTL {key}")).unwrap_or_default();
        r.trim_start_matches(':').parse().unwrap_or(-3)
    };
    let mut last = pttl();
    assert!(last > 0, "the lock has a ttl: {last}");
    wait_until(Duration::from_secs(10), "A renews the lock", || {
        let now = pttl();
        let renewed = now > last;
        last = now;
        renewed
    });
    slow.write_all(&data[1000..]).unwrap();
    let mut raw = Vec::new();
    slow.read_to_end(&mut raw).unwrap();
    let r = parse_response(&raw, false).unwrap();
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(b.offset(&path, ALICE), data.len() as u64);
    assert_eq!(std::fs::read(a.data_file(&id)).unwrap(), data);
    wait_until(Duration::from_secs(10), "A releases the lock", || {
        !redis.exists(&key)
    });
}

/// An upload created on A and deleted on B (tus termination) is gone for A too: A's listing
/// drops it, HEAD on A answers 404 and its directory is removed.
#[test]
fn deleted_on_one_node_gone_on_the_other() {
    let (_redis, a, b) = cluster();
    let path = a.created(ALICE, 1000, "owl");
    let id = id_of(&path);
    assert_eq!(a.patch(&path, ALICE, 0, &body(10), &[]).status, 204);
    assert!(listing(&a).contains(&id));
    let r = b.tus("DELETE", &path, Some(ALICE), &[], b"");
    assert_eq!(r.status, 204, "{r:?}");
    let after = listing(&a);
    assert!(!after.contains(&id), "{after}");
    let r = a.tus("HEAD", &path, Some(ALICE), &[], b"");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(!a.uploads_dir().join(&id).exists());
}

/// An upload created on A, which then dies for good, still expires: B's sweeper covers the
/// uploads other nodes created (B started before the upload existed), and its bytes go.
#[test]
fn an_upload_of_a_dead_node_expires_on_another() {
    let redis = Redis::start();
    let url = redis.url();
    let mut a = Ingest::start(
        &[token_spec("alice", ALICE, "")],
        &["--redis", &url, "--upload-expiration", "2"],
    );
    let b = a.peer(&[]);
    let path = a.created(ALICE, 1000, "moth");
    let id = id_of(&path);
    assert_eq!(a.patch(&path, ALICE, 0, &body(10), &[]).status, 204);
    a.kill();
    let dir = b.uploads_dir().join(&id);
    assert!(dir.exists());
    wait_until(
        Duration::from_secs(30),
        "B's sweeper removes the expired upload",
        || !dir.exists(),
    );
    let r = b.tus("HEAD", &path, Some(ALICE), &[], b"");
    assert_eq!(r.status, 410, "{r:?}");
    drop(b);
    drop(a);
}
