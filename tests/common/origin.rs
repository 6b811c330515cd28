//! Running `abr serve` in tests: a packaged fixture as ROOT, a free loopback port, readiness by
//! polling /healthz, SIGTERM on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{fixture, fixture_dir, package, test_ladder};

/// A ROOT with one package named `sample` (1080p30 source with audio, 3 rungs, 2 s segments),
/// built once per test binary.
pub fn sample_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("abr-origin-root-").tempdir_in(fixture_dir()).unwrap().keep();
        let src = fixture("1080p30", 8);
        let ladder = test_ladder(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        package(&src, &root.join("sample"), &["--ladder", ladder.to_str().unwrap(), "--segment-duration", "2"]);
        root
    })
    .clone()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = fixture_dir().join(format!("serve-{port}-{}.log", std::process::id()));
        let logf = std::fs::File::create(&log).unwrap();
        let player = super::root().join("origin/player/node_modules");
        let child = Command::new(env!("CARGO_BIN_EXE_abr"))
            .args(["serve", "--root", root.to_str().unwrap(), "--listen", &addr.to_string()])
            .args(["--player-assets", player.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn abr serve");
        let s = Server { child, addr, log };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = get(self.addr, "/healthz", &[]) {
                if r.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("abr serve on {} not ready; log: {}", self.addr, std::fs::read_to_string(&self.log).unwrap_or_default());
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
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one raw request (method, path as-is, headers) with `Connection: close` and reads the
/// whole response. The path is sent byte for byte, so hostile paths reach the server unaltered.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
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
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if head_only || status == 304 || status == 204 {
        Vec::new()
    } else if chunked {
        let mut out = Vec::new();
        let mut r = rest;
        loop {
            let le = r.windows(2).position(|w| w == b"\r\n").ok_or_else(|| bad("chunk size"))?;
            let size = usize::from_str_radix(std::str::from_utf8(&r[..le]).map_err(|_| bad("chunk"))?.trim(), 16)
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
    Ok(Response { status, headers, body })
}
