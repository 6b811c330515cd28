//! Webhooks (with `ingest`): the video lifecycle, derived from the queue's durable events
//! ([`Queue::events`]), POSTed as JSON to each configured endpoint.
//!
//! Events: `video.queued` (enqueued, or queued again by a retry), `video.processing` (the first
//! claim of a job since it was queued, as this process saw it), `video.ready` (with `urls`,
//! paths on the origin), `video.failed` (with `reason`), `video.cancelled` (with `reason`),
//! `video.deleted` (recorded by the deletion, `data_dir/webhooks/deletions/`, announced once
//! the endpoint caught up with the queue). Body:
//! `{"id", "type", "video", "job", "principal", "name", "seq", "at_ms", ["urls"], ["reason"]}`.
//!
//! Headers: `Content-Type: application/json`, `X-Abr-Timestamp` (Unix seconds of this
//! attempt), `X-Abr-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, and
//! `Idempotency-Key` (the same for one event and endpoint on every attempt, across restarts).
//! A receiver verifies the HMAC over the timestamp, a dot and the raw body with a constant-time
//! comparison, refuses timestamps older than a few minutes (replays), and drops keys it has
//! already seen (duplicates).
//!
//! Delivery is at-least-once, in queue order, one thread per endpoint (never on a request
//! path): an attempt that times out or gets a non-2xx answer is retried with exponential
//! backoff and jitter, up to `webhook_attempts`; then the event is kept as a dead letter in
//! `data_dir/webhooks/<endpoint>/dead/<id>-<video>.json`, logged, and skipped. The endpoint's cursor
//! in `data_dir/webhooks/<endpoint>/cursor` (the last delivered seq on its first line, then the
//! jobs whose `video.processing` went out, one per line, so a claim after a restart does not
//! announce it twice) is replaced atomically only after a 2xx (or a dead letter), so after a
//! restart whatever was not acknowledged is sent again with the same body and key. A new
//! endpoint starts at the queue's newest event.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::jobs::VideoJob;
use crate::queue::{Event, EventKind, Queue, QueueError};
use crate::uploads::store::replace;
use crate::videos::{Urls, DELETED_REASON};

/// How often the queue is read for new events while none are waiting.
const POLL: Duration = Duration::from_millis(500);
/// Timeout of one delivery attempt (connect to the end of the answer).
const TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay (doubles with each attempt, ±50 % jitter).
const BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The cursor's file name in an endpoint's directory.
const CURSOR: &str = "cursor";
/// The file of the last deletion record announced, in an endpoint's directory.
const DELETIONS_CURSOR: &str = "deletions-cursor";
/// Events read from the queue per call.
const BATCH: usize = 100;

/// A configured endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// Where to POST.
    pub url: String,
    secret: Vec<u8>,
    /// Short stable id of the URL (its directory under `data_dir/webhooks/`).
    pub id: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Parses `URL SECRET`: the secret is `file:PATH` (the file's content, trimmed),
    /// `env:VAR` (the variable's), `hex:…` or text.
    pub fn parse(spec: &str) -> Result<Endpoint, String> {
        let (url, secret) = spec.trim().split_once(char::is_whitespace).ok_or_else(|| {
            "a webhook is `URL SECRET` (secret: file:PATH, env:VAR, hex:… or text)".to_string()
        })?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "webhook '{url}' must be an http:// or https:// URL"
            ));
        }
        let secret = secret.trim();
        let secret = if let Some(p) = secret.strip_prefix("file:") {
            let text = fs::read_to_string(p)
                .map_err(|e| format!("webhook {url}: cannot read its secret file {p}: {e}"))?;
            origin::auth::key_bytes(text.trim())
        } else if let Some(v) = secret.strip_prefix("env:") {
            let text = std::env::var(v)
                .map_err(|_| format!("webhook {url}: its secret variable {v} is not set"))?;
            origin::auth::key_bytes(text.trim())
        } else {
            origin::auth::key_bytes(secret)
        };
        if secret.is_empty() {
            return Err(format!("webhook {url}: empty secret"));
        }
        let id = hex(&Sha256::digest(url.as_bytes())[..8]);
        Ok(Endpoint {
            url: url.to_string(),
            secret,
            id,
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, the `X-Abr-Signature` value.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// The `Idempotency-Key` of event `id` (of `job`) for `endpoint`.
pub fn idempotency_key(endpoint: &Endpoint, id: &str, job: &str) -> String {
    let d = Sha256::digest(format!("{}\n{id}\n{job}", endpoint.url).as_bytes());
    hex(&d[..16])
}

/// One webhook body.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// Event id: `<seq>` (unique within the queue), or `deleted-<ms>` for a deletion.
    pub id: String,
    /// `video.queued`, `video.processing`, `video.ready`, `video.failed`, `video.cancelled`,
    /// `video.deleted`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The video.
    pub video: String,
    /// Its packaging job (the same id).
    pub job: String,
    /// Who uploaded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Its package name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The queue event's sequence number (none for a deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When it happened (Unix ms).
    pub at_ms: u64,
    /// Where a ready video plays (paths on the origin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<Urls>,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The lifecycle notice of queue event `e`, if it is one; `started` holds the jobs whose
/// processing was announced since they were queued.
pub fn notice(
    queue: &dyn Queue,
    e: &Event,
    started: &mut HashSet<String>,
) -> Result<Option<Notice>, QueueError> {
    let kind = match (e.kind, e.task) {
        (EventKind::Enqueued | EventKind::Retried, _) => {
            started.remove(&e.job);
            "video.queued"
        }
        (EventKind::Claimed, Some(_)) => {
            if !started.insert(e.job.clone()) {
                return Ok(None);
            }
            "video.processing"
        }
        (EventKind::JobSucceeded, _) => "video.ready",
        (EventKind::JobFailed, _) => "video.failed",
        // Deletions are announced from their records ([`record_deletion`]), whatever the
        // job's state was.
        (EventKind::Cancelled, None) if e.detail.as_deref() == Some(DELETED_REASON) => {
            started.remove(&e.job);
            return Ok(None);
        }
        (EventKind::Cancelled, None) => "video.cancelled",
        _ => return Ok(None),
    };
    if matches!(kind, "video.ready" | "video.failed" | "video.cancelled") {
        started.remove(&e.job);
    }
    let job = queue
        .job(&e.job)?
        .and_then(|j| serde_json::from_str::<VideoJob>(&j.payload).ok());
    let urls = match (&job, kind) {
        (Some(j), "video.ready") => Some(Urls::of(&j.principal, &j.name)),
        _ => None,
    };
    let reason = match kind {
        "video.failed" | "video.cancelled" => e
            .detail
            .as_deref()
            .map(|r| r.lines().next().unwrap_or_default().trim().to_string()),
        _ => None,
    };
    Ok(Some(Notice {
        id: e.seq.to_string(),
        kind,
        video: e.job.clone(),
        job: e.job.clone(),
        principal: job.as_ref().map(|j| j.principal.clone()),
        name: job.map(|j| j.name),
        seq: Some(e.seq),
        at_ms: e.at_ms,
        urls,
        reason,
    }))
}

/// `data_dir/webhooks/deletions/`: one record per deletion, `<ms, 20 digits>-<id>.json`.
fn deletions_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("webhooks").join("deletions")
}

/// Records the deletion of video `id` (asked at `requested_ms`) durably, for every endpoint
/// to announce as `video.deleted` (blocking; before the deletion is acknowledged).
pub fn record_deletion(
    data_dir: &Path,
    id: &str,
    principal: &str,
    name: &str,
    requested_ms: u64,
) -> io::Result<()> {
    let dir = deletions_dir(data_dir);
    fs::create_dir_all(&dir)?;
    let n = Notice {
        id: format!("deleted-{requested_ms}"),
        kind: "video.deleted",
        video: id.into(),
        job: id.into(),
        principal: Some(principal.into()),
        name: Some(name.into()),
        seq: None,
        at_ms: requested_ms,
        urls: None,
        reason: None,
    };
    let bytes = serde_json::to_vec(&n).map_err(io::Error::other)?;
    replace(&dir, &format!("{requested_ms:020}-{id}.json"), &bytes)
}

/// The deletion records' names after `after`, oldest first.
fn deletions_after(data_dir: &Path, after: &str) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = match fs::read_dir(deletions_dir(data_dir)) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.') && n.as_str() > after)
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names)
}

/// Starts one delivery thread per endpoint (state under `data_dir/webhooks/`).
pub fn spawn(
    queue: Arc<dyn Queue>,
    data_dir: &Path,
    endpoints: Vec<Endpoint>,
    attempts: u32,
) -> io::Result<()> {
    for ep in endpoints {
        let d = Deliverer {
            queue: queue.clone(),
            data_dir: data_dir.to_path_buf(),
            dir: data_dir.join("webhooks").join(&ep.id),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(TIMEOUT))
                .max_redirects(0)
                .build()
                .into(),
            endpoint: ep,
            attempts: attempts.max(1),
        };
        fs::create_dir_all(&d.dir)?;
        thread::Builder::new()
            .name(format!("webhook-{}", d.endpoint.id))
            .spawn(move || d.run())?;
    }
    Ok(())
}

/// The cursor file's text: `seq`, then the jobs of `started` (sorted, one per line).
fn cursor_text(seq: u64, started: &HashSet<String>) -> String {
    let mut jobs: Vec<&str> = started.iter().map(String::as_str).collect();
    jobs.sort_unstable();
    let mut s = format!("{seq}\n");
    for j in jobs {
        s.push_str(j);
        s.push('\n');
    }
    s
}

/// Parses [`cursor_text`] (or an earlier version's bare seq).
fn parse_cursor(s: &str) -> Option<(u64, HashSet<String>)> {
    let mut lines = s.lines();
    let seq = lines.next()?.trim().parse().ok()?;
    let started = lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    Some((seq, started))
}

struct Deliverer {
    queue: Arc<dyn Queue>,
    data_dir: PathBuf,
    endpoint: Endpoint,
    dir: PathBuf,
    agent: ureq::Agent,
    attempts: u32,
}

impl Deliverer {
    fn cursor_path(&self) -> PathBuf {
        self.dir.join(CURSOR)
    }

    /// The last delivered seq and the jobs whose processing was announced; a new endpoint
    /// starts at the queue's newest event.
    fn start(&self) -> Result<(u64, HashSet<String>), String> {
        match fs::read_to_string(self.cursor_path()) {
            Ok(s) => parse_cursor(&s)
                .ok_or_else(|| format!("{}: not a sequence number", self.cursor_path().display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let after = self.queue.last_event_seq().map_err(|e| e.to_string())?;
                let newest = deletions_after(&self.data_dir, "")
                    .map_err(|e| e.to_string())?
                    .pop()
                    .unwrap_or_default();
                replace(&self.dir, DELETIONS_CURSOR, newest.as_bytes())
                    .map_err(|e| format!("{}: {e}", self.dir.display()))?;
                self.save(after, &HashSet::new())
                    .map_err(|e| format!("{}: {e}", self.cursor_path().display()))?;
                Ok((after, HashSet::new()))
            }
            Err(e) => Err(format!("{}: {e}", self.cursor_path().display())),
        }
    }

    fn save(&self, seq: u64, started: &HashSet<String>) -> io::Result<()> {
        replace(&self.dir, CURSOR, cursor_text(seq, started).as_bytes())
    }

    fn run(self) {
        let url = self.endpoint.url.clone();
        let (mut after, mut started) = loop {
            match self.start() {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!(target: "service", webhook = %url, error = %e, "webhook cursor unreadable; retrying");
                    thread::sleep(BACKOFF * 5);
                }
            }
        };
        tracing::info!(target: "service", webhook = %url, after, "webhook deliveries started");
        loop {
            let events = match self.queue.events(after, BATCH) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(target: "service", webhook = %url, error = %e, "cannot read job events");
                    thread::sleep(POLL);
                    continue;
                }
            };
            if events.is_empty() {
                // Caught up with the queue: the deletions recorded meanwhile.
                if let Err(e) = self.deletions() {
                    tracing::warn!(target: "service", webhook = %url, error = %e, "cannot announce deletions");
                }
                thread::sleep(POLL);
                continue;
            }
            for e in events {
                let n = loop {
                    match notice(self.queue.as_ref(), &e, &mut started) {
                        Ok(n) => break n,
                        Err(err) => {
                            tracing::warn!(target: "service", webhook = %url, job = %e.job, video = %e.job, error = %err, "cannot read the job of an event; retrying");
                            thread::sleep(POLL);
                        }
                    }
                };
                if let Some(n) = n {
                    self.deliver(&n);
                }
                after = e.seq;
                // Events without a notice move the cursor too (lazily: losing that write only
                // rereads them).
                if let Err(err) = self.save(after, &started) {
                    tracing::error!(target: "service", webhook = %url, error = %err, "cannot save the webhook cursor");
                }
            }
        }
    }

    /// Announces the deletions recorded after the last one announced (a new endpoint starts
    /// after the newest, see [`Deliverer::start`]).
    fn deletions(&self) -> io::Result<()> {
        let after = match fs::read_to_string(self.dir.join(DELETIONS_CURSOR)) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        for name in deletions_after(&self.data_dir, &after)? {
            let p = deletions_dir(&self.data_dir).join(&name);
            match fs::read(&p) {
                Ok(bytes) => self.deliver_bytes(&name, bytes),
                Err(e) => {
                    tracing::error!(target: "service", webhook = %self.endpoint.url, record = %p.display(), error = %e, "unreadable deletion record skipped")
                }
            }
            replace(&self.dir, DELETIONS_CURSOR, name.as_bytes())?;
        }
        Ok(())
    }

    /// Delivers the recorded notice `bytes` (deletion record `name`).
    fn deliver_bytes(&self, name: &str, bytes: Vec<u8>) {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) => {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                self.send(&s("id"), &s("video"), "video.deleted", bytes);
            }
            Err(e) => {
                tracing::error!(target: "service", webhook = %self.endpoint.url, record = name, error = %e, "unparsable deletion record skipped")
            }
        }
    }

    /// Delivers `n` until a 2xx or the last attempt (then a dead letter).
    fn deliver(&self, n: &Notice) {
        let url = &self.endpoint.url;
        let body = match serde_json::to_vec(n) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(target: "service", webhook = %url, video = %n.video, job = %n.job, error = %e, "cannot encode a webhook");
                return;
            }
        };
        self.send(&n.id, &n.video, n.kind, body);
    }

    /// Delivers `body` (event `id` of `video`) until a 2xx or the last attempt (then a dead
    /// letter).
    fn send(&self, id: &str, video: &str, kind: &str, body: Vec<u8>) {
        let url = &self.endpoint.url;
        let key = idempotency_key(&self.endpoint, id, video);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let ts = crate::store::now_ms() / 1000;
            let r = self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Abr-Timestamp", ts.to_string())
                .header(
                    "X-Abr-Signature",
                    signature(&self.endpoint.secret, ts, &body),
                )
                .header("Idempotency-Key", &key)
                .send(&body[..]);
            last = match r {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(target: "service", webhook = %url, video = %video, job = %video, event = kind, id = %id, attempt, "webhook delivered");
                    return;
                }
                Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
                Err(e) => e.to_string(),
            };
            if attempt < self.attempts {
                let delay = backoff(attempt);
                tracing::warn!(target: "service", webhook = %url, video = %video, job = %video, event = kind, id = %id, attempt, error = %last, retry_in_s = delay.as_secs_f64(), "webhook delivery failed; retrying");
                thread::sleep(delay);
            }
        }
        let dead_dir = self.dir.join("dead");
        let name = format!("{id}-{video}.json");
        let dead = dead_dir.join(&name);
        let letter = serde_json::json!({
            "url": url, "idempotency_key": key, "attempts": self.attempts, "error": last,
            "body": serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
        });
        let kept = fs::create_dir_all(&dead_dir)
            .and_then(|()| replace(&dead_dir, &name, letter.to_string().as_bytes()));
        tracing::error!(target: "service", webhook = %url, video = %video, job = %video, event = kind, id = %id, attempts = self.attempts, error = %last, dead_letter = %dead.display(), kept = kept.is_ok(), "webhook dropped after its last attempt");
    }
}

/// Delay after failed attempt `attempt` (1-based): `BACKOFF·2^(attempt-1)`, at most
/// [`MAX_BACKOFF`], times a random factor in [0.5, 1.5).
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(rand::random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_signatures_are_stable() {
        let e = Endpoint::parse("http://127.0.0.1:9/hook hex:00ff").expect("parses");
        assert_eq!(e.secret, vec![0, 255]);
        assert_eq!(e.id.len(), 16);
        for bad in [
            "http://x/hook",
            "ftp://x s",
            "http://x env:ABR_TEST_NO_SUCH_VAR",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        let s = signature(b"k", 1, b"{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_eq!(s, signature(b"k", 1, b"{}"));
        assert_ne!(s, signature(b"k", 2, b"{}"));
        assert_eq!(
            idempotency_key(&e, "3", "v"),
            idempotency_key(&e, "3", "v"),
            "stable"
        );
        assert_ne!(idempotency_key(&e, "3", "v"), idempotency_key(&e, "4", "v"));
        for a in 1..30 {
            let d = backoff(a);
            assert!(
                d >= BACKOFF / 2 && d < MAX_BACKOFF.mul_f64(1.5),
                "{a}: {d:?}"
            );
        }
    }

    #[test]
    fn cursors_round_trip_with_the_jobs_in_processing() {
        let started: HashSet<String> = ["b".to_string(), "a".to_string()].into();
        let t = cursor_text(42, &started);
        assert_eq!(t, "42\na\nb\n");
        assert_eq!(parse_cursor(&t), Some((42, started)));
        assert_eq!(
            parse_cursor("7\n"),
            Some((7, HashSet::new())),
            "an earlier version's"
        );
        assert_eq!(parse_cursor("x\n"), None);
        assert_eq!(parse_cursor(""), None);
    }
}
