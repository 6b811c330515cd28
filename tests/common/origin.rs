//! Running `abr serve` in tests: a packaged fixture as ROOT, a free loopback port, readiness by
//! polling /healthz, SIGTERM on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::fixture_dir;

/// A ROOT with one package named `sample` (12 s 1080p30 source with audio, 3 rungs, 2 s segments:
/// long enough for players to switch renditions several times),
/// built once per test binary.
pub fn sample_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| super::packages::packaged_root("abr-origin-root-", "1080p30", 12, "sample"))
        .clone()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `abr serve`.
pub struct Server {
    /// Child process.
    pub child: Child,
    /// Public address.
    pub addr: SocketAddr,
    /// Log file (stderr of the server: JSON access lines).
    pub log: PathBuf,
}

impl Server {
    /// Starts `abr serve --root ROOT --listen 127.0.0.1:<free>` plus `extra` args; waits until
    /// /healthz answers.
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        Self::start_on(root, port, extra)
    }

    /// Like [`Server::start`] on a given port (SO_REUSEPORT lets two servers share it).
    pub fn start_on(root: &Path, port: u16, extra: &[&str]) -> Server {
        let s = Self::spawn(root, port, "", extra);
        s.wait_ready();
        s
    }

    /// Starts the process without waiting; its log file is `serve-<port>-<pid><tag>.log`.
    fn spawn(root: &Path, port: u16, tag: &str, extra: &[&str]) -> Server {
        Self::spawn_env(root, port, tag, extra, &[])
    }

    /// Like [`Server::start_tagged`] with environment variables `env` set for the process
    /// (its log file is named after `tag` too); `wait` = wait until /healthz answers.
    pub fn start_env(
        root: &Path,
        port: u16,
        tag: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let s = Self::spawn_env(root, port, &format!("-{tag}"), extra, env);
        s.wait_ready();
        s
    }

    fn spawn_env(
        root: &Path,
        port: u16,
        tag: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = fixture_dir().join(format!("serve-{port}-{}{tag}.log", std::process::id()));
        let logf = std::fs::File::create(&log).unwrap();
        let player = super::root().join("origin/player/node_modules");
        let child = Command::new(env!("CARGO_BIN_EXE_abr"))
            .args([
                "serve",
                "--root",
                root.to_str().unwrap(),
                "--listen",
                &addr.to_string(),
            ])
            .args(["--player-assets", player.to_str().unwrap()])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn abr serve");
        Server { child, addr, log }
    }

    /// Polls `probe` until it holds (20 s deadline; the log is shown on failure).
    fn wait_until_ready(&self, probe: impl Fn(SocketAddr) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !probe(self.addr) {
            assert!(
                Instant::now() < deadline,
                "abr serve on {} not ready; log: {}",
                self.addr,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&self) {
        self.wait_until_ready(|addr| get(addr, "/healthz", &[]).is_ok_and(|r| r.status == 200));
    }

    /// Base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// First header value by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one raw request (method, path as-is, headers) with `Connection: close` and reads the
/// whole response. The path is sent byte for byte, so hostile paths reach the server unaltered.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    request_with_body(addr, method, path, headers, b"")
}

/// Like [`request`] with a request body (sent with its Content-Length when not empty).
pub fn request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

/// GET shorthand.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    request(addr, "GET", path, headers)
}

/// Parses a complete HTTP/1.1 response (Content-Length or chunked body).
pub fn parse_response(raw: &[u8], head_only: bool) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::other(m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if head_only || status == 304 || status == 204 {
        Vec::new()
    } else if chunked {
        let mut out = Vec::new();
        let mut r = rest;
        loop {
            let le = r
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("chunk size"))?;
            let size = usize::from_str_radix(
                std::str::from_utf8(&r[..le])
                    .map_err(|_| bad("chunk"))?
                    .trim(),
                16,
            )
            .map_err(|_| bad("chunk size"))?;
            r = &r[le + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&r[..size]);
            r = &r[size + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

impl Server {
    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait abr serve") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Server {
    /// Like [`Server::start_on`], with `tag` in the log file name, so two servers sharing a port
    /// (SO_REUSEPORT) in one test keep separate logs.
    pub fn start_tagged(root: &Path, port: u16, tag: &str, extra: &[&str]) -> Server {
        let s = Self::spawn(root, port, &format!("-{tag}"), extra);
        s.wait_ready();
        s
    }
}

// ---- Helpers of the client and TLS tests (origin_clients.rs, origin_tls.rs) ----

impl Server {
    /// Like [`Server::start`], but readiness is `probe(addr)` returning true (polled until a
    /// deadline) instead of plain-HTTP /healthz — e.g. /healthz over TLS.
    pub fn start_probed(root: &Path, extra: &[&str], probe: impl Fn(SocketAddr) -> bool) -> Server {
        let s = Self::spawn(root, free_port(), "-probed", extra);
        s.wait_until_ready(probe);
        s
    }

    /// The JSON access-log lines written so far (`"target":"access"`).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .collect()
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies the directory tree `src` to `dst` (regular files and directories).
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Writes `len` deterministic pseudo-random bytes (xorshift64* from `seed`) to `path`, creating
/// its parent directories.
pub fn write_pseudo_random(path: &Path, len: u64, seed: u64) {
    use std::io::BufWriter;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            c.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}

/// SHA-256 (hex) of a file, computed by `sha256sum`.
pub fn sha256sum(path: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Runs `node tests/player/<script> ARGS…` and returns (exit status, the last JSON line of
/// stdout, stderr); panics if there is no JSON line.
pub fn node_json(
    script: &str,
    args: &[&str],
) -> (std::process::ExitStatus, serde_json::Value, String) {
    let o = Command::new("node")
        .arg(super::root().join("tests/player").join(script))
        .args(args)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{script} {args:?}: no result line; stderr: {stderr}"));
    let v = serde_json::from_str(line).unwrap_or_else(|e| panic!("{script}: bad JSON {line}: {e}"));
    (o.status, v, stderr)
}

/// Plays the origin's player page `page_url` with `playpage.mjs` (headless Chromium, `player`
/// hls or dash); asserts success, ≥ 3 s advanced, no page or HTTP error. Returns the result.
pub fn assert_page_plays(page_url: &str, player: &str) -> serde_json::Value {
    let (st, v, stderr) = node_json("playpage.mjs", &["--url", page_url, "--player", player]);
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
    v
}

/// Plays `manifest_url` with `play.mjs` (hls.js or dash.js in headless Chromium, page on its own
/// port) for 6.5 s, visiting every video rendition, plus `extra` play.mjs arguments; asserts
/// success, ≥ 3 renditions all visited, ≥ 6 s played and no HTTP error. Returns the result.
pub fn assert_plays(manifest_url: &str, player: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--manifest-url",
        manifest_url,
        "--player",
        player,
        "--seconds",
        "6.5",
    ];
    args.extend_from_slice(extra);
    let (st, v, stderr) = node_json("play.mjs", &args);
    assert!(
        st.success() && v["ok"] == true,
        "{player} {manifest_url} failed: {v}\n{stderr}"
    );
    assert_eq!(
        v["renditionsVisited"], v["renditionsTotal"],
        "{player}: {v}"
    );
    assert!(
        v["renditionsTotal"].as_u64().unwrap_or(0) >= 3,
        "{player}: {v}"
    );
    assert!(v["played"].as_f64().unwrap_or(0.0) >= 6.0, "{player}: {v}");
    assert_eq!(v["httpErrors"], serde_json::json!([]), "{player}: {v}");
    v
}

/// Parses Prometheus text: the sum of the samples of `name` whose labels include `labels`
/// (0 when there is none yet).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, lbl) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let have: std::collections::BTreeMap<&str, &str> = lbl
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
            sum += value.parse::<f64>().unwrap();
        }
    }
    sum
}
