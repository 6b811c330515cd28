//! The multi-node deployment as shipped: `scripts/cluster/cluster.sh` starts 3 `abr serve`
//! nodes, Redis and nginx on loopback. A rolling restart under Range load loses no request;
//! kill -9 of a node while hls.js plays through nginx neither stalls nor breaks playback; the
//! observability files match what the nodes export.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::origin::{
    assert_plays, free_port, get, request, request_with_body, sample_root, wait_until, Response,
};
use common::uploads::{b64, token_spec, OCTETS, TUS};
use common::webhooks::Monitor;
use service::queue::{
    EventKind, JobState, Queue, RedisQueue, Settings as QueueSettings, SystemClock, TaskState,
};
use std::sync::Arc;

/// A cluster started by cluster.sh, stopped (`down`) on drop.
struct Cluster {
    dir: PathBuf,
    env: Vec<(String, String)>,
    nginx: SocketAddr,
    nodes: Vec<SocketAddr>,
}

/// The cluster's loopback ports, all distinct: `n` consecutive node ports (the first is
/// returned), then nginx's and Redis's. Every port stays bound until all are chosen, since a
/// port just released can be handed out again by the next bind to port 0.
fn cluster_ports(n: u16) -> (u16, u16, u16) {
    let any = || TcpListener::bind("127.0.0.1:0").unwrap();
    let port = |l: &TcpListener| l.local_addr().unwrap().port();
    let (base, _nodes) = loop {
        let base = free_port();
        if base < 60000 {
            let held: Result<Vec<_>, _> = (0..n)
                .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
                .collect();
            if let Ok(held) = held {
                break (base, held);
            }
        }
    };
    let (nginx, redis) = (any(), any());
    (base, port(&nginx), port(&redis))
}

impl Cluster {
    /// 3 nodes serving the sample package.
    fn up() -> Cluster {
        Cluster::up_with(&sample_root(), &[])
    }

    /// 3 nodes serving `root`, with more cluster.sh settings.
    fn up_with(root: &Path, settings: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("abr-cluster-")
            .tempdir_in(common::fixture_dir())
            .unwrap()
            .keep();
        let (base, nginx, redis) = cluster_ports(3);
        let mut env: Vec<(String, String)> = [
            ("ABR_BIN", env!("CARGO_BIN_EXE_abr").to_string()),
            ("CLUSTER_DIR", dir.to_str().unwrap().to_string()),
            ("CLUSTER_ROOT", root.to_str().unwrap().to_string()),
            ("CLUSTER_NODES", "3".into()),
            ("CLUSTER_PORT", nginx.to_string()),
            ("CLUSTER_NODE_BASE_PORT", base.to_string()),
            ("CLUSTER_REDIS_PORT", redis.to_string()),
            (
                "CLUSTER_EXTRA_ARGS",
                format!(
                    "--player-assets {}",
                    common::root().join("origin/player/node_modules").display()
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let c = Cluster {
            dir,
            env,
            nginx: format!("127.0.0.1:{nginx}").parse().unwrap(),
            nodes: (0..3)
                .map(|i| format!("127.0.0.1:{}", base + i).parse().unwrap())
                .collect(),
        };
        c.run(&["up"]);
        c
    }

    /// `cluster.sh ARGS` with this cluster's settings.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(common::root().join("scripts/cluster/cluster.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "cluster.sh {args:?} failed:\n{text}");
        text
    }

    fn pid(&self, node: usize) -> i32 {
        self.pid_of(&format!("node{node}"))
    }

    /// The pid cluster.sh recorded for component `name` (`node2`, `worker1`, `redis`).
    fn pid_of(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command(&["down"]).output();
    }
}

/// The `.ts` segments of the sample's HLS renditions, with their sizes.
fn segments() -> Vec<(String, u64)> {
    let root = sample_root();
    let mut out = Vec::new();
    for v in std::fs::read_dir(root.join("sample/hls"))
        .unwrap()
        .flatten()
    {
        if v.path().is_dir() {
            for f in std::fs::read_dir(v.path()).unwrap().flatten() {
                if f.path().extension().is_some_and(|x| x == "ts") {
                    let rel = f
                        .path()
                        .strip_prefix(&root)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string();
                    out.push((format!("/{rel}"), f.metadata().unwrap().len()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Range GETs through nginx until `stop`: (good, failures).
fn range_load(
    addr: SocketAddr,
    segs: &[(String, u64)],
    stop: &AtomicBool,
    seed: u64,
) -> (u64, Vec<String>) {
    let (mut good, mut bad) = (0u64, Vec::new());
    let mut x = seed | 1;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (path, len) = &segs[(x % segs.len() as u64) as usize];
        let start = (x >> 20) % (len / 2);
        let n = 1 + (x >> 40) % 65536.min(len - start);
        let range = format!("bytes={start}-{}", start + n - 1);
        match get(addr, path, &[("Range", &range)]) {
            Ok(r) if r.status == 206 && r.body.len() as u64 == n => good += 1,
            Ok(r) => bad.push(format!(
                "{path} {range}: {} ({} bytes)",
                r.status,
                r.body.len()
            )),
            Err(e) => bad.push(format!("{path} {range}: {e}")),
        }
    }
    (good, bad)
}

#[test]
fn rolling_restart_under_range_load_fails_no_request() {
    let c = Cluster::up();
    let segs = segments();
    assert!(!segs.is_empty());
    let pids: Vec<i32> = (1..=3).map(|i| c.pid(i)).collect();
    let stop = AtomicBool::new(false);
    let (good, bad) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4u64)
            .map(|i| {
                let (segs, stop) = (&segs, &stop);
                s.spawn(move || range_load(c.nginx, segs, stop, 0x9e37_79b9 * (i + 1)))
            })
            .collect();
        c.run(&["roll"]);
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).fold(
            (0, Vec::new()),
            |(g, mut b), (g2, b2)| {
                b.extend(b2);
                (g + g2, b)
            },
        )
    });
    // Every node was really replaced.
    for (i, old) in pids.iter().enumerate() {
        assert_ne!(c.pid(i + 1), *old, "node{} was not restarted", i + 1);
    }
    eprintln!("rolling restart: {good} ranged GETs, {} failed", bad.len());
    assert!(good > 300, "load ran: {good}");
    assert!(
        bad.is_empty(),
        "{} failed requests, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );

    // The state API through nginx: a position written lands on whichever node, read back.
    let r = request(c.nginx, "POST", "/api/v1/session", &[]).unwrap();
    assert_eq!(r.status, 201);
    let token: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let auth = format!("Bearer {}", token["token"].as_str().unwrap());
    let r = request_with_body(
        c.nginx,
        "POST",
        "/api/v1/playback",
        &[("Authorization", &auth)],
        br#"{"package":"sample","position_s":9.5,"rendition":"360p"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    for n in &c.nodes {
        let r = get(*n, "/api/v1/playback/sample", &[("Authorization", &auth)]).unwrap();
        assert_eq!(r.status, 200, "node {n}");
    }

    // Observability files: every metric the Grafana dashboard queries is exported by a node.
    // (All nodes: the playback write above landed on one of them.)
    let metrics: String = c
        .nodes
        .iter()
        .map(|n| String::from_utf8(get(*n, "/metrics", &[]).unwrap().body).unwrap())
        .collect();
    let dash = std::fs::read_to_string(
        common::root().join("scripts/observability/grafana-dashboard.json"),
    )
    .unwrap();
    let _: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    let mut names: Vec<String> = Vec::new();
    let mut rest = dash.as_str();
    while let Some(i) = rest.find("abr_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name.clone(), |n, s| {
                n.strip_suffix(s).map_or(n.clone(), str::to_string)
            });
        if !names.contains(&base) {
            names.push(base);
        }
    }
    assert!(names.len() >= 8, "{names:?}");
    for n in &names {
        assert!(
            metrics.contains(&format!("# TYPE {n} ")),
            "dashboard uses {n}, not exported:\n{metrics}"
        );
    }
    // The Filebeat mapping reads these keys from every access line.
    let log = std::fs::read_to_string(c.dir.join("node1.log")).unwrap();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "access")
        .expect("a JSON access line");
    for k in [
        "timestamp",
        "level",
        "method",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "range",
        "client",
        "request_id",
        "kind",
    ] {
        assert!(line.get(k).is_some(), "access line lacks {k}: {line}");
    }
    let fb =
        std::fs::read_to_string(common::root().join("scripts/observability/filebeat.yml")).unwrap();
    for k in ["duration_ms", "request_id", "status", "client"] {
        assert!(fb.contains(k), "filebeat.yml does not map {k}");
    }
    if Command::new("promtool").arg("--version").output().is_ok() {
        let out = Command::new("promtool")
            .args(["check", "config"])
            .arg(common::root().join("scripts/observability/prometheus.yml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn node_killed_while_hls_js_plays_through_nginx() {
    let c = Cluster::up();
    let url = format!("http://{}/sample/hls/master.m3u8", c.nginx);
    let mut play = Command::new("node")
        .arg(common::root().join("tests/player/play.mjs"))
        .args([
            "--manifest-url",
            &url,
            "--player",
            "hls",
            "--seconds",
            "10",
            "--max-stall",
            "2",
            // A segment node 2 was sending when it died arrives cut short:
            // nginx has begun that body and cannot retry it elsewhere. The
            // player must refetch it (through a live node) without stalling.
            "--allow-cut",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(play.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let l = err.next().expect("play.mjs ended before playing").unwrap();
        if l.contains("play.mjs: playing") {
            break;
        }
        seen.push(l);
        assert!(Instant::now() < deadline, "{seen:?}");
    }
    // kill -9 one node mid-playback.
    unsafe {
        libc::kill(c.pid(2), libc::SIGKILL);
    }
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    let out = play.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        out.status.success() && v["ok"] == true,
        "playback failed after node loss: {v}\n{rest:?}"
    );
    assert!(v["maxStallS"].as_f64().unwrap() <= 2.0, "{v}");
    assert_eq!(
        v["errors"]
            .as_array()
            .map(|a| a.iter().filter(|e| e["fatal"] == true).count()),
        Some(0),
        "{v}"
    );
    let status = c.command(&["status"]).output().unwrap();
    assert!(!status.status.success(), "status reports the dead node");
    eprintln!(
        "node loss: played {} s, max stall {} s, responses cut by the kill: {}",
        v["played"], v["maxStallS"], v["cutResponses"]
    );
}

/// A tus request through `addr` with alice's token.
fn tus(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut h = vec![TUS, ("Authorization", "Bearer tok-a")];
    h.extend_from_slice(headers);
    if body.is_empty() {
        request(addr, method, path, &h)
    } else {
        request_with_body(addr, method, path, &h, body)
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The video service on the cluster (issue 13, acceptance 2 and 3): an upload through nginx,
/// its PATCHes landing on different nodes, is packaged by two `abr worker`s with the jobs in
/// Redis. The worker running a shard is SIGKILLed, then Redis is stopped and started again (its
/// append-only file keeps the jobs); the job ends once on the other worker, reusing the tasks
/// done before, with one published package that hls.js and dash.js play through nginx.
#[test]
fn an_upload_through_nginx_survives_a_worker_kill_and_a_redis_restart() {
    let root = tempfile::Builder::new()
        .prefix("abr-cluster-root-")
        .tempdir_in(common::fixture_dir())
        .unwrap();
    let token = token_spec("alice", "tok-a", "");
    let c = Cluster::up_with(
        root.path(),
        &[
            ("CLUSTER_INGEST", "1"),
            ("CLUSTER_UPLOAD_TOKENS", &token),
            ("CLUSTER_JOB_WORKERS", "2"),
            // A short lease: the killed worker's shard is reclaimed soon.
            ("CLUSTER_WORKER_ARGS", "--lease-seconds 4 --shard-seconds 4"),
        ],
    );
    let redis_url = format!(
        "redis://127.0.0.1:{}/",
        c.env
            .iter()
            .find(|(k, _)| k == "CLUSTER_REDIS_PORT")
            .unwrap()
            .1
    );

    // An operator follows the cluster's job events from Redis (across its restart).
    let mon = Monitor::start(&["--redis", &redis_url, "--json", "--interval", "0.2"]);

    // 13 s of 1080p: 4 shards of 4 s (the last one short), audio, plan and assembly.
    let src = common::fixture("1080p30", 13);
    let bytes = std::fs::read(&src).unwrap();
    let meta = format!("name {},filename {}", b64(b"trip"), b64(b"trip.mp4"));
    let len = bytes.len().to_string();
    let r = tus(
        c.nginx,
        "POST",
        "/api/v1/uploads",
        &[("Upload-Length", &len), ("Upload-Metadata", &meta)],
        b"",
    );
    assert_eq!(r.status, 201, "{r:?}");
    let loc = r.header("location").unwrap().to_string();
    let id = loc.rsplit('/').next().unwrap().to_string();
    // Four PATCHes, each after a HEAD for the offset (as a resuming client does), each on a
    // new connection: nginx spreads them over the nodes.
    let chunk = bytes.len().div_ceil(4);
    loop {
        let r = tus(c.nginx, "HEAD", &loc, &[], b"");
        assert_eq!(r.status, 200, "{r:?}");
        let off: usize = r.header("upload-offset").unwrap().parse().unwrap();
        if off == bytes.len() {
            break;
        }
        let end = (off + chunk).min(bytes.len());
        let o = off.to_string();
        let r = tus(
            c.nginx,
            "PATCH",
            &loc,
            &[OCTETS, ("Upload-Offset", &o)],
            &bytes[off..end],
        );
        assert_eq!(r.status, 204, "PATCH at {off}: {r:?}");
    }
    let nginx_log = std::fs::read_to_string(c.dir.join("nginx-access.log")).unwrap();
    let patch_nodes: std::collections::BTreeSet<String> = nginx_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["method"] == "PATCH")
        .map(|v| v["upstream_addr"].as_str().unwrap().to_string())
        .collect();
    assert!(
        patch_nodes.len() >= 2,
        "the PATCHes all reached one node: {patch_nodes:?}"
    );

    // The worker running a video shard that has made progress is SIGKILLed.
    let q = RedisQueue::open(
        &redis_url,
        service::queue::redis::DEFAULT_PREFIX,
        QueueSettings::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let t0 = Instant::now();
    let (task, worker) = loop {
        let j = q.job(&id).unwrap().expect("the upload's job");
        let leased = j
            .tasks
            .iter()
            .find(|t| t.stage == 1 && t.state == TaskState::Leased && t.progress > 0.0);
        if let Some(t) = leased {
            break (t.index, t.worker.clone().unwrap());
        }
        assert!(!j.state.is_final(), "{j:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "no shard encoding: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let done_before: Vec<u32> = q
        .job(&id)
        .unwrap()
        .unwrap()
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .map(|t| t.index)
        .collect();
    let pid: i32 = worker.split(':').nth(1).unwrap().parse().unwrap();
    let victim = (1..=2)
        .find(|i| c.pid_of(&format!("worker{i}")) == pid)
        .unwrap_or_else(|| panic!("worker {worker} is not one of the cluster's"));
    c.run(&["kill-worker", &victim.to_string()]);

    // Redis goes away and comes back (SIGTERM: it finishes its append-only file).
    c.run(&["stop-redis"]);
    let r = get(
        c.nginx,
        &format!("/api/v1/videos/{id}"),
        &[("Authorization", "Bearer tok-a")],
    )
    .unwrap();
    assert!(r.status >= 500, "the videos API without Redis: {r:?}");
    c.run(&["start-redis"]);

    let job = loop {
        // The first call on a connection Redis closed fails; the queue reconnects for the next.
        let j = match q.job(&id) {
            Ok(j) => j.expect("the job survived the Redis restart"),
            Err(e) => {
                eprintln!("queue after the Redis restart: {e}");
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
        };
        if j.state.is_final() {
            break j;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "not finished: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let t = &job.tasks[task as usize];
    assert_ne!(t.worker.as_deref(), Some(worker.as_str()), "{t:?}");
    let events = q.events(0, 100_000).unwrap();
    for i in done_before {
        let claims = events
            .iter()
            .filter(|e| e.job == id && e.task == Some(i) && e.kind == EventKind::Claimed)
            .count();
        assert_eq!(claims, 1, "task {i}, done before the kill, ran again");
    }
    assert!(
        events
            .iter()
            .any(|e| e.job == id && e.task == Some(task) && e.kind == EventKind::LeaseExpired),
        "the killed worker's lease did not expire"
    );

    // The monitor showed the job from its queueing to ready (with where it plays), the lease
    // that expired included: it followed the queue across the outage. (Whether one of its polls
    // fell inside the short outage, and it said so, is timing: not asserted.)
    wait_until(Duration::from_secs(10), "the monitor shows ready", || {
        mon.json()
            .iter()
            .any(|v| v["job"] == id.as_str() && v["event"] == "ready")
    });
    let shown: Vec<serde_json::Value> = mon
        .json()
        .into_iter()
        .filter(|v| v["type"] == "job" && v["job"] == id.as_str())
        .collect();
    let err = mon.stderr().join("\n");
    let names: Vec<&str> = shown.iter().filter_map(|v| v["event"].as_str()).collect();
    for want in [
        "queued",
        "claimed",
        "progress",
        "task_done",
        "lease_expired",
        "ready",
    ] {
        assert!(
            names.contains(&want),
            "monitor: no {want} in {names:?}\n{err}"
        );
    }
    let ready = shown.iter().find(|v| v["event"] == "ready").unwrap();
    assert_eq!(ready["play"], "/play/alice/trip", "{ready}");

    // Ready through any node; one package under ROOT/alice, and it plays through nginx.
    let r = get(
        c.nginx,
        &format!("/api/v1/videos/{id}"),
        &[("Authorization", "Bearer tok-a")],
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["state"], "ready", "{v}");
    let names: Vec<_> = std::fs::read_dir(root.path().join("alice"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["trip"], "one package, nothing else");
    for (player, manifest) in [
        ("hls", "/alice/trip/hls/master.m3u8"),
        ("dash", "/alice/trip/dash/manifest.mpd"),
    ] {
        let v = assert_plays(&format!("http://{}{manifest}", c.nginx), player, &[]);
        eprintln!("{player} through nginx: played {} s", v["played"]);
    }
    eprintln!(
        "cluster upload → package with a worker kill and a Redis restart: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
