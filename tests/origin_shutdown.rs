//! Graceful shutdown of `abr serve` (issue 4, point 4): SIGTERM while a slow client downloads a
//! large file (the download completes, /readyz is 503 during the grace period, exit status 0),
//! and a zero-downtime switch to a second instance on the same port (SO_REUSEPORT) with a client
//! loop that sees no failed request.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::origin::{free_port, get, request, sample_root, Server};

/// Polls `f` every 10 ms until it returns `Some`, or panics with `what` after `timeout`.
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// FNV-1a 64 (a digest for messages; contents are also compared byte for byte).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// `len` deterministic pseudo-random bytes (xorshift64*).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A ROOT holding one package `big` whose `dash/720p/seg_00001.m4s` is `bytes`.
fn big_root(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("abr-shutdown-root-")
        .tempdir_in(common::fixture_dir())
        .unwrap();
    let root = dir.path().join("root");
    let seg = root.join("big/dash/720p/seg_00001.m4s");
    std::fs::create_dir_all(seg.parent().unwrap()).unwrap();
    std::fs::write(&seg, bytes).unwrap();
    (dir, root)
}

/// Enables `net.ipv4.tcp_migrate_req` when it exists and is writable: connections already queued
/// on a closing SO_REUSEPORT listener then move to another listener of the group instead of being
/// reset (a deployment requirement, see docs/OPERATIONS.md). Returns whether it is on.
fn enable_tcp_migrate_req() -> bool {
    let p = Path::new("/proc/sys/net/ipv4/tcp_migrate_req");
    if std::fs::read_to_string(p).is_ok_and(|v| v.trim() == "1") {
        return true;
    }
    if std::fs::write(p, "1").is_err() {
        eprintln!("note: cannot enable net.ipv4.tcp_migrate_req; queued connections may be reset");
        return false;
    }
    std::fs::read_to_string(p).is_ok_and(|v| v.trim() == "1")
}

/// A response head: status and headers (names lowercased).
type Head = (u16, Vec<(String, String)>);

/// Reads one response head (status line and headers) from `r`. `Ok(None)` when the connection
/// ended before the first byte.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut status = None;
    let mut headers = Vec::new();
    let mut first = true;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            if first {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed inside the head",
            ));
        }
        first = false;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if status.is_none() {
            status = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            if status.is_none() {
                return Err(std::io::Error::other(format!("bad status line {line:?}")));
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok(Some((status.unwrap(), headers)))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Point 4, first half: a slow client downloads 32 MiB at ~4 MiB/s; SIGTERM arrives once it has
/// started. /readyz answers 503 on new connections during the 1 s grace period, then new
/// connections are refused (listener closed), the download still completes with exactly the
/// file's bytes, and the process exits 0.
#[test]
fn sigterm_lets_a_slow_download_finish() {
    const SIZE: usize = 32 << 20;
    const RATE: f64 = 4.0 * 1024.0 * 1024.0; // bytes per second
    const GRACE: Duration = Duration::from_secs(1);
    let expected = Arc::new(pattern(SIZE));
    let (_dir, root) = big_root(&expected);
    let mut server = Server::start(&root, &["--shutdown-grace", "1", "--drain-timeout", "30"]);
    let addr = server.addr;

    // The slow client: one connection, reads throttled to RATE, compares as it goes.
    let received = Arc::new(AtomicU64::new(0));
    let client = {
        let (expected, received) = (expected.clone(), received.clone());
        thread::spawn(move || -> Result<(u16, u64, u64, Duration), String> {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let req = format!("GET /big/dash/720p/seg_00001.m4s HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes())
                .map_err(|e| format!("send: {e}"))?;
            let mut r = BufReader::with_capacity(64 << 10, s);
            let (status, headers) = read_head(&mut r)
                .map_err(|e| format!("head: {e}"))?
                .ok_or("no response")?;
            let len: u64 = header(&headers, "content-length")
                .and_then(|v| v.parse().ok())
                .ok_or("no Content-Length")?;
            let start = Instant::now();
            let mut got = 0usize;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = r
                    .read(&mut buf)
                    .map_err(|e| format!("body after {got} bytes: {e}"))?;
                if n == 0 {
                    break;
                }
                if got + n > expected.len() || buf[..n] != expected[got..got + n] {
                    return Err(format!("body differs from the file at or after byte {got}"));
                }
                got += n;
                received.store(got as u64, Ordering::SeqCst);
                let due = Duration::from_secs_f64(got as f64 / RATE);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    thread::sleep(wait);
                }
            }
            Ok((status, len, got as u64, start.elapsed()))
        })
    };

    wait_for(
        Duration::from_secs(20),
        "the slow download to start",
        || (received.load(Ordering::SeqCst) >= 1 << 20).then_some(()),
    );
    let t0 = Instant::now();
    server.terminate();

    // Readiness on fresh connections: 200 only before the signal is handled, then 503 until the
    // listener closes, then connection refused.
    let mut seen_503: Option<Duration> = None;
    let mut refused_at: Option<Duration> = None;
    let mut log = Vec::new();
    while refused_at.is_none() && t0.elapsed() < Duration::from_secs(10) {
        let at = t0.elapsed();
        match get(addr, "/readyz", &[]) {
            Ok(r) => {
                log.push(format!("{:>5} ms {}", at.as_millis(), r.status));
                match r.status {
                    503 => {
                        seen_503.get_or_insert(at);
                    }
                    200 => assert!(seen_503.is_none(), "/readyz 200 after 503: {log:?}"),
                    s => panic!("/readyz {s}: {log:?}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                log.push(format!("{:>5} ms refused", at.as_millis()));
                refused_at = Some(at);
            }
            // A /readyz request racing the listener closing; keep polling until refused.
            Err(e) => log.push(format!("{:>5} ms {e}", at.as_millis())),
        }
        thread::sleep(Duration::from_millis(20));
    }
    let first_503 = seen_503.unwrap_or_else(|| panic!("/readyz never answered 503: {log:?}"));
    let refused = refused_at.unwrap_or_else(|| panic!("listener never closed: {log:?}"));
    assert!(
        first_503 < Duration::from_millis(500),
        "/readyz 503 only after {first_503:?}: {log:?}"
    );
    assert!(
        refused >= GRACE,
        "listener closed {refused:?} after SIGTERM, before the grace period: {log:?}"
    );
    let n503 = log.iter().filter(|l| l.ends_with(" 503")).count();
    assert!(
        n503 >= 5,
        "only {n503} /readyz answers during the grace period: {log:?}"
    );
    let at_close = received.load(Ordering::SeqCst);
    assert!(
        at_close < SIZE as u64 / 2,
        "the download ({at_close} bytes) should still be running when the listener closes"
    );

    let (status, len, got, took) = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("slow download failed: {e}\n{}", server.log_text()));
    let done = t0.elapsed();
    assert_eq!(status, 200);
    assert_eq!(len, SIZE as u64, "Content-Length");
    assert_eq!(got, SIZE as u64, "download length");
    assert_eq!(received.load(Ordering::SeqCst), SIZE as u64);
    assert!(
        done > refused,
        "the download finished before the listener closed"
    );

    let st = server
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| {
            panic!(
                "abr serve did not exit after the drain\n{}",
                server.log_text()
            )
        });
    let exited = t0.elapsed();
    assert!(st.success(), "exit status {st:?}\n{}", server.log_text());
    let text = server.log_text();
    assert!(text.contains("shutdown: readiness off"), "{text}");
    assert!(text.contains("abr serve stopped"), "{text}");
    eprintln!(
        "slow download of {SIZE} bytes (fnv64 {:016x}) took {took:.2?}; after SIGTERM: first /readyz 503 at \
         {first_503:?}, {n503} answers 503, refused at {refused:?} ({at_close} bytes received then), download \
         done at {done:?}, exit 0 at {exited:?}",
        fnv64(&expected),
    );
}

/// What a client loop saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Keep-alive responses with `Connection: close`.
    closes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, t0: Instant, what: String) {
        self.failures
            .lock()
            .unwrap()
            .push(format!("{:>6} ms {what}", t0.elapsed().as_millis()));
    }
}

const SEGMENT: &str = "/sample/dash/720p/seg_00001.m4s";
const RANGE: (usize, usize) = (100, 8291);

/// Checks a 206 answer to `Range: bytes=RANGE`.
fn check_206(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    file: &[u8],
) -> Result<(), String> {
    let want = &file[RANGE.0..=RANGE.1];
    let cr = format!("bytes {}-{}/{}", RANGE.0, RANGE.1, file.len());
    if status != 206 {
        return Err(format!("status {status}"));
    }
    if header(headers, "content-range") != Some(cr.as_str()) {
        return Err(format!(
            "Content-Range {:?}, want {cr:?}",
            header(headers, "content-range")
        ));
    }
    if body != want {
        return Err(format!(
            "body of {} bytes differs from the file's range",
            body.len()
        ));
    }
    Ok(())
}

/// Sequential requests, each on a new connection.
fn fresh_connection_loop(
    addr: SocketAddr,
    file: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    t0: Instant,
) {
    let range = format!("bytes={}-{}", RANGE.0, RANGE.1);
    while !stop.load(Ordering::SeqCst) {
        match request(addr, "GET", SEGMENT, &[("Range", &range)]) {
            Ok(r) => match check_206(r.status, &r.headers, &r.body, &file) {
                Ok(()) => {
                    tally.ok.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => tally.fail(t0, format!("new connection: {e}")),
            },
            Err(e) => tally.fail(t0, format!("new connection: {e} ({:?})", e.kind())),
        }
    }
}

/// Sequential requests on a keep-alive connection, and a new connection after a response with
/// `Connection: close`. A connection closed without an answer to its request is a failure.
fn keep_alive_loop(
    addr: SocketAddr,
    file: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    t0: Instant,
) {
    let req = format!(
        "GET {SEGMENT} HTTP/1.1\r\nHost: {addr}\r\nRange: bytes={}-{}\r\n\r\n",
        RANGE.0, RANGE.1
    );
    let mut conn: Option<(BufReader<TcpStream>, u64)> = None;
    let mut connections = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    connections += 1;
                    conn = Some((BufReader::new(s), 0));
                }
                Err(e) => {
                    tally.fail(t0, format!("keep-alive connect: {e}"));
                    continue;
                }
            }
        }
        let (r, served) = conn.as_mut().unwrap();
        let result = (|| -> Result<bool, String> {
            r.get_mut()
                .write_all(req.as_bytes())
                .map_err(|e| format!("send: {e}"))?;
            let (status, headers) = read_head(r)
                .map_err(|e| format!("head: {e}"))?
                .ok_or("closed before the response")?;
            let len: usize = header(&headers, "content-length")
                .and_then(|v| v.parse().ok())
                .ok_or("no Content-Length")?;
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
            check_206(status, &headers, &body, &file)?;
            Ok(header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")))
        })();
        match result {
            Ok(close) => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
                *served += 1;
                if close {
                    tally.closes.fetch_add(1, Ordering::SeqCst);
                    conn = None;
                }
            }
            Err(e) => {
                tally.fail(
                    t0,
                    format!("keep-alive connection #{connections} after {served} responses: {e}"),
                );
                conn = None;
            }
        }
    }
}

/// Point 4, second half: server B starts on A's port (SO_REUSEPORT) and answers; A gets SIGTERM
/// and drains; client loops (new connection per request, and keep-alive) keep running until A has
/// exited and B has served several hundred more requests, and none of their requests fails.
#[test]
fn second_instance_takes_over_without_failed_requests() {
    let migrate = enable_tcp_migrate_req();
    let root = sample_root();
    let file = Arc::new(std::fs::read(root.join(SEGMENT.trim_start_matches('/'))).unwrap());
    assert!(file.len() > RANGE.1, "segment too small for the range");
    let port = free_port();
    let args = ["--shutdown-grace", "1", "--drain-timeout", "10"];
    let mut a = Server::start_tagged(&root, port, "a", &args);
    let addr = a.addr;

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut loops = Vec::new();
    for i in 0..3 {
        let (file, stop, tally) = (file.clone(), stop.clone(), tally.clone());
        loops.push(thread::spawn(move || {
            if i == 0 {
                keep_alive_loop(addr, file, stop, tally, t0)
            } else {
                fresh_connection_loop(addr, file, stop, tally, t0)
            }
        }));
    }
    let ok = || tally.ok.load(Ordering::SeqCst);
    wait_for(Duration::from_secs(20), "200 requests served by A", || {
        (ok() >= 200).then_some(())
    });

    let b = Server::start_tagged(&root, port, "b", &args);
    // B answers once the loops' requests show up in its access log.
    wait_for(
        Duration::from_secs(20),
        "B to serve the client loops",
        || (b.log_text().matches(SEGMENT).count() >= 20).then_some(()),
    );
    let before_term = ok();
    let t_term = t0.elapsed();
    a.terminate();
    let st = a
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("A did not exit\n{}", a.log_text()));
    let t_exit = t0.elapsed();
    let at_exit = ok();
    wait_for(
        Duration::from_secs(30),
        "300 more requests after A exited",
        || (ok() >= at_exit + 300).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.join().unwrap();
    }

    let failures = tally.failures.lock().unwrap();
    let served_a = a.log_text().matches(SEGMENT).count();
    let served_b = b.log_text().matches(SEGMENT).count();
    eprintln!(
        "tcp_migrate_req={}: {} requests ok ({before_term} before SIGTERM of A at {t_term:?}, {at_exit} when A \
         exited at {t_exit:?}), A served {served_a}, B served {served_b}, {} failed, {} keep-alive \
         responses with Connection: close",
        u8::from(migrate),
        ok(),
        failures.len(),
        tally.closes.load(Ordering::SeqCst),
    );
    assert!(
        failures.is_empty(),
        "{} failed requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(st.success(), "A exit status {st:?}\n{}", a.log_text());
    // The keep-alive connection opened on A before B existed was told to leave during the grace.
    assert!(
        tally.closes.load(Ordering::SeqCst) >= 1,
        "A never answered the keep-alive loop with Connection: close"
    );
    // The acceptor is paused before the listener is shut down: no accept error.
    if migrate {
        let text = a.log_text();
        assert!(!text.contains(r#""level":"ERROR""#), "{text}");
    }
    assert!(served_b >= 300, "B served only {served_b} requests");
    assert!(
        served_a + served_b >= ok() as usize,
        "A and B logged {served_a} + {served_b} of {} requests",
        ok()
    );
}

/// On SIGTERM, a keep-alive connection idle between requests is closed when the workers stop
/// (after the grace period), not left open until the drain timeout: the process exits long
/// before `--drain-timeout`, and the idle client sees the connection end.
#[test]
fn idle_keep_alive_connections_close_at_the_stop() {
    let mut s = Server::start(
        &sample_root(),
        &[
            "--shutdown-grace",
            "0.5",
            "--drain-timeout",
            "20",
            "--keep-alive",
            "60",
        ],
    );
    let mut idle = TcpStream::connect(s.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(idle.try_clone().unwrap());
    let head = read_head(&mut r).unwrap().expect("a response");
    assert_eq!(head.0, 200);
    let mut body = [0u8; 3];
    r.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"ok\n");
    let t0 = Instant::now();
    s.terminate();
    let status = wait_for(Duration::from_secs(15), "abr serve to exit", || {
        s.child.try_wait().unwrap()
    });
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(10),
        "exit took {took:?}: the idle connection was held to the drain timeout"
    );
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}
