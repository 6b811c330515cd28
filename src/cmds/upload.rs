//! `abr upload`: sends a video to `abr serve --ingest` with tus 1.0 (creation, then one PATCH
//! per chunk with its `Upload-Checksum: sha256`), resumable across runs: the upload's URL is
//! kept in a state file keyed by the file (absolute path, size, mtime) and the server, so a
//! rerun HEADs it and goes on from the server's offset (a new upload when it is gone).
//! Transient failures (connection, 5xx, 423) are retried with a doubling backoff. `--wait`
//! follows `GET /api/v1/videos/{id}` until the video is ready or failed.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `abr upload` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The video file.
    file: PathBuf,
    /// The server (`http://host:port`), where `/api/v1/uploads` is.
    #[arg(long, env = "ABR_SERVER")]
    server: String,
    /// Upload token (`Authorization: Bearer`).
    #[arg(long, env = "ABR_UPLOAD_TOKEN", hide_env_values = true)]
    token: String,
    /// Package name (default: the file's name without its extension, made a valid name).
    #[arg(long)]
    name: Option<String>,
    /// Bytes per PATCH, MiB.
    #[arg(long, default_value_t = 8)]
    chunk_mib: u32,
    /// Wait until the video is packaged: print its URL (exit 0) or the failure (exit 1).
    #[arg(long)]
    wait: bool,
    /// Consecutive transient failures (connection, 5xx, 423) tolerated, with a doubling
    /// backoff from 0.5 s to 30 s.
    #[arg(long, default_value_t = 10)]
    retries: u32,
}

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often `--wait` asks.
const POLL: Duration = Duration::from_secs(2);

/// What a rerun needs to resume.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// The upload's URL (absolute).
    url: String,
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
    server: String,
}

/// The state directory: `$XDG_STATE_HOME/abr`, else `~/.local/state/abr`.
fn state_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("abr"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow!("neither XDG_STATE_HOME nor HOME is set (where to keep the upload's state)")
        })?;
    Ok(PathBuf::from(home).join(".local/state/abr"))
}

/// The state file of (file, size, mtime, server).
fn state_path(path: &Path, size: u64, mtime_ns: u128, server: &str) -> Result<PathBuf> {
    let mut h = Sha256::new();
    h.update(path.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(size.to_string());
    h.update([0]);
    h.update(mtime_ns.to_string());
    h.update([0]);
    h.update(server);
    let key: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(state_dir()?.join("uploads").join(format!("{key}.json")))
}

fn save_state(p: &Path, s: &State) -> Result<()> {
    let dir = p.parent().ok_or_else(|| anyhow!("bad state path"))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = p.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(s)?)?;
    f.sync_all()?;
    fs::rename(&tmp, p).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(())
}

/// A valid package name from a file name: `[A-Za-z0-9._-]`, no leading dot, ≤ 128.
fn default_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    n = n.trim_start_matches('.').chars().take(128).collect();
    if n.is_empty() {
        "video".into()
    } else {
        n
    }
}

/// One HTTP exchange's outcome.
struct Reply {
    status: u16,
    location: Option<String>,
    offset: Option<u64>,
    body: String,
}

/// The client: the server's base URL, token, an agent that returns 4xx/5xx as replies.
struct Client {
    server: String,
    auth: String,
    agent: ureq::Agent,
}

/// A failed exchange: transient (retry) or not.
enum Failure {
    Transient(String),
    Fatal(anyhow::Error),
}

impl Client {
    fn new(server: &str, token: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .max_redirects(0)
            .build()
            .into();
        Client {
            server: server.trim_end_matches('/').to_string(),
            auth: format!("Bearer {}", token.trim()),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.server)
        }
    }

    /// The transport error as a failure naming the server.
    fn transport(&self, e: ureq::Error) -> Failure {
        let what = match &e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!("cannot connect to {}: connection refused", self.server)
            }
            ureq::Error::HostNotFound => {
                return Failure::Fatal(anyhow!("cannot resolve the server {}", self.server))
            }
            ureq::Error::BadUri(u) => {
                return Failure::Fatal(anyhow!("bad server URL {}: {u}", self.server))
            }
            ureq::Error::ConnectionFailed => format!("cannot connect to {}", self.server),
            other => format!("{}: {other}", self.server),
        };
        Failure::Transient(what)
    }

    fn reply(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, Failure> {
        let mut r = r.map_err(|e| self.transport(e))?;
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = h("location");
        let offset = h("upload-offset").and_then(|v| v.parse().ok());
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let reply = Reply {
            status,
            location,
            offset,
            body: body.lines().next().unwrap_or_default().trim().to_string(),
        };
        match status {
            401 => Err(Failure::Fatal(anyhow!(
                "the server refused the token (401): check --token"
            ))),
            413 => Err(Failure::Fatal(anyhow!(
                "the server refused the upload as too large (413): {}",
                reply.body
            ))),
            423 | 429 | 500..=599 => Err(Failure::Transient(format!(
                "{} answered {status}: {}",
                self.server, reply.body
            ))),
            _ => Ok(reply),
        }
    }

    fn head(&self, url: &str) -> Result<Reply, Failure> {
        self.reply(
            self.agent
                .head(url)
                .header("Tus-Resumable", "1.0.0")
                .header("Authorization", &self.auth)
                .call(),
        )
    }

    fn create(&self, size: u64, name: &str, filename: &str) -> Result<Reply, Failure> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let meta = format!("name {},filename {}", b64(name), b64(filename));
        self.reply(
            self.agent
                .post(self.url("/api/v1/uploads"))
                .header("Tus-Resumable", "1.0.0")
                .header("Authorization", &self.auth)
                .header("Upload-Length", &size.to_string())
                .header("Upload-Metadata", &meta)
                .send_empty(),
        )
    }

    fn patch(&self, url: &str, offset: u64, chunk: &[u8]) -> Result<Reply, Failure> {
        let sum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(chunk));
        self.reply(
            self.agent
                .patch(url)
                .header("Tus-Resumable", "1.0.0")
                .header("Authorization", &self.auth)
                .header("Content-Type", "application/offset+octet-stream")
                .header("Upload-Offset", &offset.to_string())
                .header("Upload-Checksum", &format!("sha256 {sum}"))
                .send(chunk),
        )
    }

    fn video(&self, id: &str) -> Result<Reply, Failure> {
        self.reply(
            self.agent
                .get(self.url(&format!("/api/v1/videos/{id}")))
                .header("Authorization", &self.auth)
                .call(),
        )
    }
}

/// Retries `f` on transient failures with a doubling backoff.
fn with_retries<T>(
    max_tries: u32,
    what: &str,
    mut f: impl FnMut() -> Result<T, Failure>,
) -> Result<T> {
    let mut delay = FIRST_BACKOFF;
    let mut tries = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient(m)) => {
                tries += 1;
                if tries >= max_tries.max(1) {
                    bail!("{what}: {m} (gave up after {tries} tries)");
                }
                tracing::warn!("{what}: {m}; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Uploads (or resumes) the file; with `--wait`, follows the video to its end.
pub fn run(a: Args) -> Result<()> {
    let path = a
        .file
        .canonicalize()
        .with_context(|| format!("cannot open {}", a.file.display()))?;
    let meta = fs::metadata(&path).with_context(|| format!("cannot open {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    let size = meta.len();
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    if a.chunk_mib == 0 || a.chunk_mib > 1024 {
        bail!("--chunk-mib must be 1–1024");
    }
    let chunk = usize::try_from(a.chunk_mib)? << 20;
    let name = match a.name {
        Some(n) => n,
        None => default_name(&path),
    };
    let filename = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let client = Client::new(&a.server, &a.token);
    let sp = state_path(&path, size, mtime_ns, &client.server)?;

    // Resume from the state file, if the server still has the upload.
    let mut resumed: Option<(String, u64)> = None;
    if let Ok(bytes) = fs::read(&sp) {
        if let Ok(st) = serde_json::from_slice::<State>(&bytes) {
            let r = with_retries(a.retries, "resuming", || client.head(&st.url))?;
            match (r.status, r.offset) {
                (200, Some(off)) if off <= size => {
                    eprintln!("abr: resuming {} at {off} of {size} bytes", st.url);
                    resumed = Some((st.url, off));
                }
                (404 | 410 | 403, _) => {
                    eprintln!(
                        "abr: the server no longer has {} ({}): starting over",
                        st.url, r.status
                    );
                }
                (s, _) => bail!("resuming {}: the server answered {s}: {}", st.url, r.body),
            }
        }
    }
    let (url, mut offset) = match resumed {
        Some(v) => v,
        None => {
            let r = with_retries(a.retries, "creating the upload", || {
                client.create(size, &name, &filename)
            })?;
            if r.status != 201 {
                bail!("the server refused the upload ({}): {}", r.status, r.body);
            }
            let loc = r
                .location
                .ok_or_else(|| anyhow!("the server's 201 has no Location"))?;
            let url = client.url(&loc);
            save_state(
                &sp,
                &State {
                    url: url.clone(),
                    path: path.clone(),
                    size,
                    mtime_ns,
                    server: client.server.clone(),
                },
            )?;
            (url, r.offset.unwrap_or(0))
        }
    };
    let id = url
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| anyhow!("upload URL {url} has no id"))?
        .to_string();
    tracing::info!(video = %id, url = %url, size, "uploading");

    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(offset);
    let mut file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; chunk];
    let t0 = Instant::now();
    while offset < size {
        let n = usize::try_from((size - offset).min(chunk as u64))?;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut buf[..n])
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut bad_sums = 0;
        let next = with_retries(a.retries, "uploading", || {
            let r = client.patch(&url, offset, &buf[..n])?;
            match r.status {
                204 => Ok(r.offset.unwrap_or(offset + n as u64)),
                // Where the server is: ask it.
                409 => {
                    let h = client.head(&url)?;
                    h.offset
                        .ok_or_else(|| Failure::Fatal(anyhow!("HEAD {url}: no Upload-Offset")))
                }
                460 if bad_sums < 3 => {
                    bad_sums += 1;
                    Err(Failure::Transient(
                        "the chunk's checksum did not match".into(),
                    ))
                }
                404 | 410 => Err(Failure::Fatal(anyhow!(
                    "the server dropped the upload ({}): run again to start over",
                    r.status
                ))),
                s => Err(Failure::Fatal(anyhow!("PATCH answered {s}: {}", r.body))),
            }
        });
        match next {
            Ok(o) => offset = o,
            Err(e) => {
                bar.abandon();
                if e.to_string().contains("dropped the upload") {
                    let _ = fs::remove_file(&sp);
                }
                return Err(e);
            }
        }
        bar.set_position(offset);
    }
    bar.finish_and_clear();
    eprintln!(
        "abr: uploaded {} ({size} bytes) as video {id} in {:.1?}",
        path.display(),
        t0.elapsed()
    );
    println!("{id}");
    if !a.wait {
        return Ok(());
    }
    wait(&client, &id, a.retries)
}

/// Polls the video until it is ready (prints its URL) or failed/cancelled (an error).
fn wait(client: &Client, id: &str, retries: u32) -> Result<()> {
    let mut last = String::new();
    loop {
        let r = with_retries(retries, "following the video", || client.video(id))?;
        if r.status != 200 {
            bail!("GET /api/v1/videos/{id} answered {}: {}", r.status, r.body);
        }
        let v: serde_json::Value =
            serde_json::from_str(&r.body).context("the video's state is not JSON")?;
        let state = v["state"].as_str().unwrap_or_default().to_string();
        match state.as_str() {
            "ready" => {
                let urls = &v["urls"];
                let u = urls["play"]
                    .as_str()
                    .or_else(|| urls["hls"].as_str())
                    .unwrap_or_default();
                println!("{}", client.url(u));
                return Ok(());
            }
            "failed" => bail!(
                "packaging failed: {}",
                v["reason"].as_str().unwrap_or("no reason given")
            ),
            "cancelled" => bail!(
                "the video's job was cancelled: {}",
                v["reason"].as_str().unwrap_or("no reason given")
            ),
            _ => {}
        }
        let line = match v["percent"].as_f64() {
            Some(p) => format!("{state} {p:.1}%"),
            None => state.clone(),
        };
        if line != last {
            eprintln!("abr: {line}");
            last = line;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_package_names() {
        assert_eq!(default_name(Path::new("/x/My Clip (1).mp4")), "My-Clip--1-");
        assert_eq!(default_name(Path::new("/x/.hidden.mov")), "hidden");
        assert_eq!(default_name(Path::new("/x/...")), "video");
    }
}
