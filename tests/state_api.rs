//! Viewer-state API (sessions, playback positions, live viewers, events, rate limits): one suite
//! run against the in-process backend and against Redis shared by several nodes; plus the
//! cluster-wide rate limit, `abr monitor`, and a Redis outage and return under load.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::origin::{get, request, request_with_body, sample_root, Response, Server};
use common::redis::Redis;

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

fn session(s: &Server) -> String {
    let r = request(s.addr, "POST", "/api/v1/session", &[]).unwrap();
    assert_eq!(r.status, 201);
    let cookie = r.header("set-cookie").expect("session cookie").to_string();
    assert!(
        cookie.starts_with("abr_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    json(&r)["token"].as_str().unwrap().to_string()
}

fn save(s: &Server, token: &str, body: &str) -> Response {
    let auth = format!("Bearer {token}");
    request_with_body(
        s.addr,
        "POST",
        "/api/v1/playback",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .unwrap()
}

fn load(s: &Server, token: &str) -> Response {
    // The cookie works as well as the bearer header.
    let cookie = format!("abr_session={token}");
    get(s.addr, "/api/v1/playback/sample", &[("Cookie", &cookie)]).unwrap()
}

fn viewers(s: &Server) -> u64 {
    let r = get(s.addr, "/api/v1/viewers/sample", &[]).unwrap();
    assert_eq!(r.status, 200);
    json(&r)["viewers"].as_u64().unwrap()
}

/// The API contract; `a` and `b` are two nodes sharing state (the same node in-process).
fn api_suite(a: &Server, b: &Server) {
    let t1 = session(a);
    // Refusals: no session, forged session, bad JSON, bad values, unknown package.
    let r = request_with_body(a.addr, "POST", "/api/v1/playback", &[], b"{}").unwrap();
    assert_eq!(r.status, 401);
    // Change the signature's first character (never to itself, which once let a forgery be the token).
    let sig_at = t1.rfind('.').expect("token has a signature") + 1;
    let swapped = if t1[sig_at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{swapped}{}", &t1[..sig_at], &t1[sig_at + 1..]);
    assert_ne!(forged, t1);
    assert_eq!(
        save(a, &forged, r#"{"package":"sample","position_s":1}"#).status,
        401
    );
    for (body, status) in [
        ("not json", 400),
        (r#"{"package":"sample"}"#, 400),
        (r#"{"package":"sample","position_s":-1}"#, 400),
        (r#"{"package":"sample","position_s":1,"extra":1}"#, 400),
        (
            r#"{"package":"sample","position_s":1,"rendition":"\u0001"}"#,
            400,
        ),
        (r#"{"package":"../etc","position_s":1}"#, 404),
        (r#"{"package":"nosuch","position_s":1}"#, 404),
    ] {
        let r = save(a, &t1, body);
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(json(&r)["error"].is_string());
    }
    assert_eq!(load(b, &t1).status, 204, "nothing saved yet");
    let before = viewers(a);

    // Written through A, read through B.
    let r = save(
        a,
        &t1,
        r#"{"package":"sample","position_s":42.5,"paused":true,"rendition":"720p"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = load(b, &t1);
    assert_eq!(r.status, 200);
    let p = json(&r);
    assert_eq!(p["position_s"], 42.5);
    assert_eq!(p["paused"], true);
    assert_eq!(p["rendition"], "720p");
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // Live viewers agree across nodes; a second viewer through B counts on A.
    assert_eq!(viewers(a), before + 1);
    assert_eq!(viewers(b), before + 1);
    let t2 = session(b);
    assert_eq!(
        save(b, &t2, r#"{"package":"sample","position_s":3}"#).status,
        200
    );
    assert_eq!(viewers(a), before + 2);
    assert_eq!(viewers(b), before + 2);
    assert_eq!(json(&load(a, &t2))["position_s"], 3.0);
    assert_eq!(
        json(&load(a, &t1))["position_s"],
        42.5,
        "viewers are separate"
    );

    // Per-viewer write limit (burst 10 at 2/s), counted across nodes.
    let t3 = session(a);
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..24 {
        let node = if i % 2 == 0 { a } else { b };
        let r = save(node, &t3, r#"{"package":"sample","position_s":1}"#);
        match r.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(r
                    .header("retry-after")
                    .is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(
        (10..=12).contains(&ok),
        "allowed {ok} of 24 writes (burst 10)"
    );
    assert_eq!(ok + limited, 24);
    let m = String::from_utf8(get(a.addr, "/metrics", &[]).unwrap().body).unwrap();
    assert!(
        m.contains("abr_playback_writes_total{result=\"rate_limited\""),
        "{m}"
    );
}

#[test]
fn api_in_process() {
    let s = Server::start(&sample_root(), &[]);
    api_suite(&s, &s);
}

#[test]
fn api_on_redis_across_nodes_with_monitor() {
    let redis = Redis::start();
    let url = redis.url();
    let args = ["--redis", &url, "--session-key", "shared-test-key"];
    let a = Server::start(&sample_root(), &args);
    let b = Server::start(&sample_root(), &args);
    // Wait for both nodes to see Redis.
    for s in [&a, &b] {
        wait_for(Duration::from_secs(10), "redis_up 1", || {
            metrics(s).contains("abr_redis_up{") && metric(s, "abr_redis_up") == 1.0
        });
    }
    // abr monitor follows the events of every node.
    let mut mon = Command::new(env!("CARGO_BIN_EXE_abr"))
        .args([
            "monitor",
            "--redis",
            &url,
            "--json",
            "--count",
            "2",
            "--interval",
            "0.2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(mon.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"live\""), "snapshot first: {first}");

    api_suite(&a, &b);

    let mut events = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        if v.get("viewer").is_some() {
            events.push(v);
        }
        if events.len() == 2 {
            break;
        }
    }
    assert_eq!(events[0]["package"], "sample");
    assert_eq!(events[0]["position_s"], 42.5);
    assert_eq!(events[0]["node"], a_node(&a));
    assert_eq!(events[1]["node"], a_node(&b), "events from every node");
    assert!(mon.wait().unwrap().success());
}

fn a_node(s: &Server) -> String {
    let m = metrics(s);
    let i = m.find("node=\"").unwrap() + 6;
    m[i..].split('"').next().unwrap().to_string()
}

fn metrics(s: &Server) -> String {
    get(s.addr, "/metrics", &[])
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .unwrap_or_default()
}

fn metric(s: &Server, name: &str) -> f64 {
    metrics(s)
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three nodes on one Redis give a client one budget, not three.
#[test]
fn rate_limit_is_cluster_wide_on_redis() {
    let redis = Redis::start();
    let url = redis.url();
    let (rps, burst) = (20u32, 20u32);
    let (r, b) = (rps.to_string(), burst.to_string());
    let args = [
        "--redis",
        &url,
        "--rate-limit",
        &r,
        "--rate-burst",
        &b,
        "--trusted-proxies",
        "127.0.0.1/32",
    ];
    let nodes: Vec<Server> = (0..3)
        .map(|_| Server::start(&sample_root(), &args))
        .collect();
    for s in &nodes {
        wait_for(Duration::from_secs(10), "redis_up 1", || {
            metric(s, "abr_redis_up") == 1.0
        });
    }
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let counts: Vec<(u32, u32)> = std::thread::scope(|sc| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                sc.spawn(move || {
                    let (mut ok, mut limited) = (0, 0);
                    while start.elapsed() < run {
                        let r = request(
                            n.addr,
                            "HEAD",
                            "/sample/hls/master.m3u8",
                            &[("X-Forwarded-For", "198.51.100.7")],
                        )
                        .unwrap();
                        match r.status {
                            200 => ok += 1,
                            429 => limited += 1,
                            s => panic!("status {s}"),
                        }
                    }
                    (ok, limited)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let allowed: u32 = counts.iter().map(|c| c.0).sum();
    let refused: u32 = counts.iter().map(|c| c.1).sum();
    let expected = f64::from(burst) + f64::from(rps) * elapsed;
    let err = (f64::from(allowed) - expected).abs() / expected;
    eprintln!("allowed {allowed} (expected {expected:.1}), refused {refused}, per node {counts:?}");
    assert!(refused > allowed, "the load must exceed the budget");
    assert!(
        err <= 0.10,
        "allowed {allowed} vs {expected:.1} expected: off by {:.1}%",
        err * 100.0
    );
    // Another client has its own budget.
    let r = request(
        nodes[0].addr,
        "HEAD",
        "/sample/hls/master.m3u8",
        &[("X-Forwarded-For", "198.51.100.8")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

/// Redis killed under load: video keeps being served, state answers 503, and everything
/// recovers when Redis returns, without restarting a node.
#[test]
fn redis_outage_degrades_state_only_and_recovers() {
    let mut redis = Redis::start();
    let port = redis.port;
    let url = redis.url();
    let args = [
        "--redis",
        &url,
        "--session-key",
        "k",
        "--rate-limit",
        "100000",
    ];
    let (a, b) = (
        &Server::start(&sample_root(), &args),
        &Server::start(&sample_root(), &args),
    );
    for s in [a, b] {
        wait_for(Duration::from_secs(10), "redis_up 1", || {
            metric(s, "abr_redis_up") == 1.0
        });
    }
    let t = session(a);
    assert_eq!(
        save(a, &t, r#"{"package":"sample","position_s":5}"#).status,
        200
    );

    let stop = std::sync::atomic::AtomicBool::new(false);
    let seg = {
        let dir = sample_root().join("sample/hls");
        let v = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.path().is_dir())
            .unwrap();
        let f = std::fs::read_dir(v.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.path().extension().is_some_and(|x| x == "ts"))
            .unwrap();
        let rel = f
            .path()
            .strip_prefix(sample_root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        (
            format!("/{rel}"),
            std::fs::metadata(f.path()).unwrap().len(),
        )
    };
    let (good, bad) = std::thread::scope(|sc| {
        let loader = sc.spawn(|| {
            let (mut good, mut bad) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in [a, b] {
                    match get(s.addr, &seg.0, &[("Range", "bytes=100-1099")]) {
                        Ok(r) if r.status == 206 && r.body.len() == 1000 => good += 1,
                        _ => bad += 1,
                    }
                }
            }
            (good, bad)
        });
        redis.kill();
        // State calls fail fast with 503 while video is served.
        wait_for(Duration::from_secs(5), "503 from the state API", || {
            save(a, &t, r#"{"package":"sample","position_s":6}"#).status == 503
        });
        let r = save(b, &t, r#"{"package":"sample","position_s":6}"#);
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
        wait_for(Duration::from_secs(5), "redis_up 0", || {
            metric(b, "abr_redis_up") == 0.0
        });
        let seg_ok = get(a.addr, &seg.0, &[]).unwrap();
        assert_eq!(seg_ok.status, 200);
        assert_eq!(seg_ok.body.len() as u64, seg.1);
        // Redis returns on the same port: nodes reconnect by themselves.
        let _back = Redis::start_on(port);
        for s in [a, b] {
            wait_for(Duration::from_secs(15), "state API back", || {
                save(s, &t, r#"{"package":"sample","position_s":7}"#).status == 200
            });
        }
        assert_eq!(json(&load(b, &t))["position_s"], 7.0);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let r = loader.join().unwrap();
        drop(_back);
        r
    });
    assert!(good > 20, "load ran ({good} requests)");
    assert_eq!(bad, 0, "video requests failed during the Redis outage");
    for s in [a, b] {
        let log = std::fs::read_to_string(&s.log).unwrap();
        assert!(
            log.contains("redis: unavailable"),
            "one log line for the outage"
        );
        assert!(log.contains("redis: connected"));
    }
}
