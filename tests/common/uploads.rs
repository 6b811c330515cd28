//! Helpers of the upload tests (tests/uploads.rs): `abr serve --ingest` with its data directory
//! that survives restarts and SIGKILLs, tus requests, the real clients (tuspy, tus-js-client)
//! and the job queue as the server left it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use base64::Engine as _;

use super::origin::{free_port, request, request_with_body, Response, Server};

/// Tus-Resumable header of every request.
pub const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
/// Content type of PATCH bodies.
pub const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

/// SHA-256 (hex) of `bytes`, by `sha256sum` (as an operator makes a token's hash).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `PRINCIPAL:SHA256(token)[:limits]`, the configured form of a token.
pub fn token_spec(principal: &str, token: &str, limits: &str) -> String {
    format!("{principal}:{}{limits}", sha256_hex(token.as_bytes()))
}

/// Base64 (standard, padded), as Upload-Metadata values are.
pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `abr serve --ingest` on a fixed port with its data directory, restartable.
pub struct Ingest {
    /// The running server (None between a kill and a restart).
    pub server: Option<Server>,
    /// Data directory (uploads/, queue.sqlite3).
    pub data: PathBuf,
    /// Package ROOT.
    pub root: PathBuf,
    /// Port (the same across restarts).
    pub port: u16,
    args: Vec<String>,
    starts: u32,
    /// The temporary directory of `data` and `root` (None for a [`Ingest::peer`]).
    _dir: Option<tempfile::TempDir>,
}

impl Ingest {
    /// Starts `abr serve --ingest --data-dir … --upload-tokens TOKENS` plus `extra`.
    pub fn start(tokens: &[String], extra: &[&str]) -> Ingest {
        Self::start_env(tokens, extra, &[])
    }

    /// Like [`Ingest::start`] with environment variables for the first process.
    pub fn start_env(tokens: &[String], extra: &[&str], env: &[(&str, &str)]) -> Ingest {
        let dir = tempfile::Builder::new()
            .prefix("abr-ingest-")
            .tempdir_in(super::fixture_dir())
            .unwrap();
        let data = dir.path().join("data");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let mut args: Vec<String> = vec![
            "--ingest".into(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
            "--upload-tokens".into(),
            tokens.join(","),
            "--log-format".into(),
            "json".into(),
        ];
        // No packaging workers unless the test asks: most upload tests send bytes that are not
        // media, and check the job the upload made before anything runs it.
        if !extra.iter().any(|a| a.starts_with("--job-workers")) {
            args.extend(["--job-workers".into(), "0".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut me = Ingest {
            server: None,
            data,
            root,
            port: free_port(),
            args,
            starts: 0,
            _dir: Some(dir),
        };
        me.restart_env(env);
        me
    }

    /// Another node on the same data directory and ROOT (a cluster behind a proxy): the same
    /// arguments plus `extra`, its own port. Drop it before `self`.
    pub fn peer(&self, extra: &[&str]) -> Ingest {
        let mut args = self.args.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut me = Ingest {
            server: None,
            data: self.data.clone(),
            root: self.root.clone(),
            port: free_port(),
            args,
            starts: 0,
            _dir: None,
        };
        me.restart();
        me
    }

    /// Starts the server again (same port, same data) and waits until it answers.
    pub fn restart(&mut self) {
        self.restart_env(&[]);
    }

    fn restart_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.server.is_none(), "the server still runs");
        self.starts += 1;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.server = Some(Server::start_env(
            &self.root,
            self.port,
            &format!("ingest-{}", self.starts),
            &args,
            env,
        ));
    }

    /// Sets `flag` to `value` for the next starts (replacing it when given before).
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.into(),
            _ => self.args.extend([flag.into(), value.into()]),
        }
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    /// The running server.
    pub fn server(&mut self) -> &mut Server {
        self.server.as_mut().expect("server running")
    }

    /// Address.
    pub fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/uploads", self.port)
    }

    /// The uploads directory.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data.join("uploads")
    }

    /// Ids of the uploads on disk (directories with a 32-hex-digit name).
    pub fn upload_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.uploads_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Every entry of the uploads directory (hidden ones too).
    pub fn upload_dir_entries(&self) -> usize {
        std::fs::read_dir(self.uploads_dir())
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    /// The data file of upload `id`.
    pub fn data_file(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id).join("data")
    }

    /// `info.json` of upload `id`.
    pub fn info(&self, id: &str) -> serde_json::Value {
        let p = self.uploads_dir().join(id).join("info.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    }

    /// The job queue, opened as the server left it.
    pub fn queue(&self) -> service::queue::SqliteQueue {
        service::queue::SqliteQueue::open(
            &self.data.join("queue.sqlite3"),
            service::queue::Settings::default(),
            std::sync::Arc::new(service::queue::SystemClock),
        )
        .expect("open the job queue")
    }

    /// How many `Enqueued` events job `id` has (1 = it was created once).
    pub fn enqueued_events(&self, id: &str) -> usize {
        use service::queue::Queue;
        self.queue()
            .events(0, 100_000)
            .unwrap()
            .iter()
            .filter(|e| e.job == id && e.kind == service::queue::EventKind::Enqueued)
            .count()
    }

    /// Sends a tus request with `Authorization: Bearer token` (None: no header) and `Tus-Resumable`.
    pub fn tus(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = vec![TUS];
        if let Some(a) = &auth {
            h.push(("Authorization", a));
        }
        h.extend_from_slice(headers);
        if body.is_empty() {
            request(self.addr(), method, path, &h)
        } else {
            request_with_body(self.addr(), method, path, &h, body)
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// POST creating an upload of `length` with package `name`; returns the response.
    pub fn create(&self, token: &str, length: u64, name: &str) -> Response {
        let meta = format!(
            "name {},filename {}",
            b64(name.as_bytes()),
            b64(b"clip.mp4")
        );
        let len = length.to_string();
        self.tus(
            "POST",
            "/api/v1/uploads",
            Some(token),
            &[("Upload-Length", &len), ("Upload-Metadata", &meta)],
            b"",
        )
    }

    /// [`Ingest::create`] asserting 201; returns the upload's path (Location).
    pub fn created(&self, token: &str, length: u64, name: &str) -> String {
        let r = self.create(token, length, name);
        assert_eq!(r.status, 201, "{r:?}");
        let loc = r.header("location").expect("Location").to_string();
        assert!(loc.starts_with("/api/v1/uploads/"), "{loc}");
        loc
    }

    /// PATCH `body` at `offset` with extra headers.
    pub fn patch(
        &self,
        path: &str,
        token: &str,
        offset: u64,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Response {
        let off = offset.to_string();
        let mut h = vec![OCTETS, ("Upload-Offset", off.as_str())];
        h.extend_from_slice(headers);
        self.tus("PATCH", path, Some(token), &h, body)
    }

    /// Waits until a client has created this server's one upload; returns its id and path.
    pub fn wait_single_upload(&self) -> (String, String) {
        super::origin::wait_until(
            std::time::Duration::from_secs(30),
            "the client creates its upload",
            || self.upload_ids().len() == 1,
        );
        let id = self.upload_ids()[0].clone();
        let path = format!("/api/v1/uploads/{id}");
        (id, path)
    }

    /// HEAD's Upload-Offset (asserting 200).
    pub fn offset(&self, path: &str, token: &str) -> u64 {
        let r = self.tus("HEAD", path, Some(token), &[], b"");
        assert_eq!(r.status, 200, "{r:?}");
        r.header("upload-offset").unwrap().parse().unwrap()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.kill();
    }
}

static SOURCE_LOCK: Mutex<()> = Mutex::new(());

/// A source file of `len` pseudo-random bytes (cached in target/fixtures).
pub fn source_file(len: u64, seed: u64) -> PathBuf {
    let _g = SOURCE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let p = super::fixture_dir().join(format!("upload-{len}-{seed}.bin"));
    if std::fs::metadata(&p).map(|m| m.len()).ok() != Some(len) {
        let tmp = p.with_extension("tmp");
        super::origin::write_pseudo_random(&tmp, len, seed);
        std::fs::rename(&tmp, &p).unwrap();
    }
    p
}

/// The command running real tus client `client` (`tuspy` or `tus-js-client`): panics (the test
/// fails) when it is not installed.
pub fn client_command(client: &str) -> Command {
    let dir = super::root().join("tests/tus");
    match client {
        "tuspy" => {
            let py = dir.join(".venv/bin/python");
            assert!(
                py.exists(),
                "tuspy is not installed: {} is missing (run scripts/setup.sh)",
                py.display()
            );
            let ok = Command::new(&py)
                .args(["-c", "import tusclient"])
                .status()
                .expect("run the venv's python");
            assert!(
                ok.success(),
                "tuspy is not installed in tests/tus/.venv (run scripts/setup.sh)"
            );
            let mut c = Command::new(py);
            c.arg(dir.join("upload.py"));
            c
        }
        "tus-js-client" => {
            let pkg = dir.join("node_modules/tus-js-client/package.json");
            assert!(
                pkg.exists(),
                "tus-js-client is not installed: {} is missing (run scripts/setup.sh)",
                pkg.display()
            );
            let mut c = Command::new("node");
            c.arg(dir.join("upload.mjs"));
            c
        }
        other => panic!("unknown client {other}"),
    }
}

/// The last JSON line of `text` that has `key`.
pub fn json_line(text: &str, key: &str) -> Option<serde_json::Value> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get(key).is_some())
}
