//! Resumable uploads, tus 1.0 (<https://tus.io/protocols/resumable-upload>), at
//! `/api/v1/uploads`: one module per part of the protocol, as rustus has them.
//!
//! - [`core`] — HEAD, PATCH, OPTIONS and the `Tus-*` headers;
//! - [`creation`] — POST (and `creation-with-upload`: bytes in the POST);
//! - [`termination`] — DELETE;
//! - [`expiration`] — `Upload-Expires` and the sweeper of expired incomplete uploads;
//! - [`checksum`] — `Upload-Checksum` (sha1, sha256);
//! - [`auth`] — bearer tokens (stored hashed), principals and their limits;
//! - [`metadata`] — `Upload-Metadata` and the package name;
//! - [`store`] — the uploads on disk (the offset never runs ahead of fsynced bytes);
//! - [`lock`] — one writer per upload;
//! - [`cors`] — preflights and exposed headers for uploads from other origins.
//!
//! When an upload's last byte is durable, its packaging job ([`crate::jobs::VideoJob`], id =
//! the upload's) is enqueued in the job queue (embedded, or Redis with `redis`), then the upload is marked complete. A crash
//! between the two is repaired at start-up and by the sweeper: an upload whose durable offset is
//! its length but which is not marked complete is enqueued again (a no-op for an existing job)
//! and marked, so every complete upload has exactly one job.

pub mod auth;
mod block;
pub mod checksum;
pub mod core;
pub mod cors;
pub mod creation;
pub mod expiration;
pub mod lock;
pub mod metadata;
mod offsets;
pub mod store;
pub mod termination;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, HttpResponseBuilder};

use crate::config::Config;
use crate::error::ServiceError;
use crate::jobs::{new_job, VideoJob};
use crate::metrics::UploadMetrics;
use crate::queue::{Queue, SystemClock};
use auth::Tokens;
use lock::Locker;
use store::{Info, Store, UploadState};

/// The protocol version served.
pub const TUS_VERSION: &str = "1.0.0";
/// The extensions served (`Tus-Extension`).
pub const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
/// Set to `1` (tests only): the process aborts after enqueueing a completed upload's job and
/// before marking the upload complete, the window that start-up recovery must repair.
pub const CRASH_AFTER_COMPLETE_ENV: &str = "ABR_TEST_CRASH_AFTER_UPLOAD_COMPLETE";
/// Tombstones of expired uploads kept (they answer 410 rather than 404).
const MAX_TOMBSTONES: usize = 100_000;

/// An upload known to this process.
pub struct Entry {
    info: Mutex<Info>,
    /// The durable offset (only ever set after the bytes up to it were fsynced).
    offset: AtomicU64,
}

impl Entry {
    fn new(info: Info, offset: u64) -> Entry {
        Entry {
            info: Mutex::new(info),
            offset: AtomicU64::new(offset),
        }
    }

    /// Its info (a short lock).
    pub fn info(&self) -> MutexGuard<'_, Info> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its durable offset.
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::Acquire)
    }
}

/// What the upload handlers share.
pub struct Uploads {
    pub(crate) store: Store,
    pub(crate) tokens: Tokens,
    max_size: u64,
    expiration: Duration,
    /// The origin's package ROOT (canonical): packages go to `ROOT/<principal>/<name>`.
    pub(crate) root: PathBuf,
    /// `data_dir` (canonical).
    pub(crate) data_dir: PathBuf,
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) locker: Arc<dyn Locker>,
    pub(crate) metrics: UploadMetrics,
    index: Mutex<HashMap<String, Arc<Entry>>>,
    /// Other nodes share `data_dir` (`redis` is set: a cluster): the files, not the index, are
    /// the truth, so requests read them again ([`Uploads::current`]).
    pub(crate) shared: bool,
    expired: Mutex<HashSet<String>>,
    crash_after_complete: bool,
    /// The origin's CORS policy, for preflights of the tus methods.
    cors: origin::cors::Cors,
}

/// A refused or failed request: its status and a one-line reason (the body).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TusError {
    /// Status.
    pub status: StatusCode,
    /// Reason.
    pub message: String,
}

impl TusError {
    /// A refusal with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> TusError {
        TusError {
            status,
            message: message.into(),
        }
    }

    fn internal(what: &str, e: impl std::fmt::Display) -> TusError {
        tracing::error!(target: "service", error = %e, "upload: {what}");
        TusError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed"))
    }

    /// The response.
    pub fn response(&self) -> HttpResponse {
        let mut b = tus_response(self.status);
        match self.status {
            StatusCode::UNAUTHORIZED => {
                b.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            StatusCode::PRECONDITION_FAILED => {
                b.insert_header(("Tus-Version", TUS_VERSION));
            }
            _ => {}
        }
        b.content_type("text/plain; charset=utf-8")
            .body(format!("{}\n", self.message))
    }
}

/// A response with the headers every tus response has.
pub fn tus_response(status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header(("Tus-Resumable", TUS_VERSION))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header(cors::expose());
    b
}

/// Runs blocking file or queue work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    web::block(f).await.map_err(io::Error::other)?
}

/// Now, Unix seconds.
fn now_s() -> u64 {
    crate::store::now_ms() / 1000
}

impl Uploads {
    /// Opens the uploads of `data_dir` and the job queue, enqueues the job of every upload that
    /// completed before a crash without being marked so.
    pub fn open(config: &Config, origin: &origin::State) -> Result<Arc<Uploads>, ServiceError> {
        let bad = |m: String| ServiceError::Uploads(m);
        let data_dir = config
            .data_dir
            .as_deref()
            .ok_or_else(|| ServiceError::Config("ingest needs data_dir".into()))?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| bad(format!("cannot create {}: {e}", data_dir.display())))?;
        let store = Store::open(&data_dir.join("uploads"))
            .map_err(|e| bad(format!("cannot open {}/uploads: {e}", data_dir.display())))?;
        let queue = crate::queue::open(
            data_dir,
            config.redis.as_deref(),
            config.job_settings().0,
            Arc::new(SystemClock),
        )
        .map_err(|e| bad(e.to_string()))?;
        let locker: Arc<dyn Locker> = match &config.redis {
            Some(url) => Arc::new(lock::RedisLocker::new(url).map_err(|e| bad(e.to_string()))?),
            None => Arc::new(lock::InProcess::default()),
        };
        let tokens = Tokens::parse(&config.upload_tokens).map_err(ServiceError::Config)?;
        if tokens.is_empty() {
            tracing::warn!(target: "service", "ingest is on but no upload_tokens are configured: every upload is refused");
        }
        let metrics = UploadMetrics::new(&origin.metrics)?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| bad(format!("cannot open {}: {e}", data_dir.display())))?;
        // Deletions a crash interrupted are finished first; a video whose deletion is pending
        // is never loaded.
        let deleting = crate::videos::finish_deletions(&data_dir, &store, queue.as_ref())
            .map_err(|e| bad(format!("cannot finish pending deletions: {e}")))?;
        let loaded = store
            .load_all(config.redis.is_none())
            .map_err(|e| bad(format!("cannot read the uploads: {e}")))?;
        let mut index = HashMap::new();
        for l in loaded.into_iter().filter(|l| !deleting.contains(&l.id)) {
            if l.info.state == UploadState::Incomplete {
                metrics.in_progress.inc();
            }
            index.insert(l.id, Arc::new(Entry::new(l.info, l.offset)));
        }
        let up = Arc::new(Uploads {
            store,
            tokens,
            max_size: config.upload_max_size,
            expiration: Duration::from_secs(config.upload_expiration_s),
            root: origin.root.path().to_path_buf(),
            data_dir: data_dir.clone(),
            queue,
            locker,
            metrics,
            index: Mutex::new(index),
            shared: config.redis.is_some(),
            expired: Mutex::new(HashSet::new()),
            crash_after_complete: std::env::var(CRASH_AFTER_COMPLETE_ENV).is_ok_and(|v| v == "1"),
            cors: origin.cors.clone(),
        });
        // Completed before a crash but not marked: enqueue (idempotent) and mark, now.
        for (id, e) in up.entries() {
            let (state, length) = {
                let i = e.info();
                (i.state, i.length)
            };
            if state == UploadState::Incomplete && e.offset() == length {
                up.complete_sync(&id, &e);
            }
        }
        tracing::info!(
            target: "service",
            uploads = up.entries().len(),
            tokens = up.tokens.len(),
            dir = %data_dir.display(),
            "ingest ready"
        );
        Ok(up)
    }

    /// The job queue the uploads enqueue into (`data_dir/queue.sqlite3`, or Redis with
    /// `redis`), for the in-process packaging workers.
    pub fn queue(&self) -> Arc<dyn Queue> {
        self.queue.clone()
    }

    /// The sweeper of expired uploads (call on the server's runtime).
    pub fn spawn_tasks(self: &Arc<Self>) {
        actix_web::rt::spawn(expiration::sweeper(self.clone()));
    }

    pub(crate) fn index(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn entries(&self) -> Vec<(String, Arc<Entry>)> {
        self.index()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Upload `id`'s entry. With a shared data directory it is read again from the disk first
    /// (another node may have created it, moved its offset, completed or deleted it).
    pub(crate) async fn current(&self, id: &str) -> io::Result<Option<Arc<Entry>>> {
        if !self.shared {
            return Ok(self.index().get(id).cloned());
        }
        let store = self.store.clone();
        let owned = id.to_string();
        let disk = blocking(move || store.read(&owned)).await?;
        let mut index = self.index();
        Ok(self.adopt(&mut index, id, disk))
    }

    /// With a shared data directory, the index brought up to the disk: the uploads other nodes
    /// created are added, the others refreshed, those they deleted dropped (for listings).
    pub(crate) async fn refresh_all(&self) -> io::Result<()> {
        if !self.shared {
            return Ok(());
        }
        let store = self.store.clone();
        let known: Vec<String> = self.index().keys().cloned().collect();
        let (all, gone) = blocking(move || {
            let mut out = Vec::new();
            for id in store.ids()? {
                if let Some((info, offset)) = store.read(&id)? {
                    out.push((id, info, offset));
                }
            }
            // Known here but not listed: deleted, unless created since the listing (an entry
            // enters the index only once its directory is in place, so it is on disk then).
            let listed: HashSet<&str> = out.iter().map(|(i, _, _)| i.as_str()).collect();
            let mut gone = Vec::new();
            for id in known {
                if !listed.contains(id.as_str()) && store.read(&id)?.is_none() {
                    gone.push(id);
                }
            }
            Ok((out, gone))
        })
        .await?;
        let mut index = self.index();
        for (id, info, offset) in all {
            self.adopt(&mut index, &id, Some((info, offset)));
        }
        for id in gone {
            self.adopt(&mut index, &id, None);
        }
        Ok(())
    }

    /// `id`'s entry set to what the disk says (the uploads-in-progress gauge follows what
    /// another node created, completed or deleted).
    fn adopt(
        &self,
        index: &mut HashMap<String, Arc<Entry>>,
        id: &str,
        disk: Option<(Info, u64)>,
    ) -> Option<Arc<Entry>> {
        let incomplete = |i: &Info| i.state == UploadState::Incomplete;
        let Some((info, offset)) = disk else {
            if index.remove(id).is_some_and(|e| incomplete(&e.info())) {
                self.metrics.in_progress.dec();
            }
            return None;
        };
        let now = i64::from(incomplete(&info));
        let e = match index.get(id) {
            Some(e) => {
                let before = i64::from(incomplete(&e.info()));
                self.metrics.in_progress.add(now - before);
                *e.info() = info;
                e.offset.store(offset, Ordering::Release);
                e.clone()
            }
            None => {
                self.metrics.in_progress.add(now);
                let e = Arc::new(Entry::new(info, offset));
                index.insert(id.to_string(), e.clone());
                e
            }
        };
        Some(e)
    }

    /// Upload `id` of `principal`: 404 when there is none or it is another principal's, 410
    /// when it expired (it is deleted then).
    async fn lookup(&self, id: &str, principal: &str) -> Result<Arc<Entry>, TusError> {
        let not_found = || TusError::new(StatusCode::NOT_FOUND, "no such upload");
        if !store::valid_id(id) {
            return Err(not_found());
        }
        let entry = self
            .current(id)
            .await
            .map_err(|e| TusError::internal("reading the upload", e))?;
        let Some(entry) = entry else {
            let gone = self
                .expired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id);
            return Err(if gone {
                TusError::new(StatusCode::GONE, "the upload expired")
            } else {
                not_found()
            });
        };
        let (owner_ok, expired) = {
            let i = entry.info();
            (
                i.principal == principal,
                i.state == UploadState::Incomplete && now_s() >= i.expires,
            )
        };
        if !owner_ok {
            return Err(not_found());
        }
        if expired {
            if let Ok(Some(_held)) = self.locker.try_lock(id).await {
                self.remove(id, "expired").await;
            }
            return Err(TusError::new(StatusCode::GONE, "the upload expired"));
        }
        Ok(entry)
    }

    /// `entry` of upload `id` once its lock is held: with a shared data directory read again
    /// (what another node wrote before it let the lock go); 404 when it was deleted meanwhile.
    pub(crate) async fn locked_entry(
        &self,
        id: &str,
        entry: Arc<Entry>,
    ) -> Result<Arc<Entry>, TusError> {
        if !self.shared {
            return Ok(entry);
        }
        self.current(id)
            .await
            .map_err(|e| TusError::internal("reading the upload", e))?
            .ok_or_else(|| TusError::new(StatusCode::NOT_FOUND, "no such upload"))
    }

    /// Deletes upload `id` (bytes and all) because of `reason` (`expired`, `terminated`).
    async fn remove(&self, id: &str, reason: &'static str) {
        let Some(e) = self.index().remove(id) else {
            return;
        };
        if e.info().state == UploadState::Incomplete {
            self.metrics.in_progress.dec();
            self.metrics.failed.with_label_values(&[reason]).inc();
        }
        if reason == "expired" {
            let mut t = self.expired.lock().unwrap_or_else(|e| e.into_inner());
            if t.len() >= MAX_TOMBSTONES {
                t.clear();
            }
            t.insert(id.to_string());
        }
        let store = self.store.clone();
        let owned = id.to_string();
        match blocking(move || store.remove(&owned)).await {
            Ok(()) => {
                tracing::info!(target: "service", upload = id, video = id, reason, "upload deleted")
            }
            Err(e) => {
                tracing::error!(target: "service", upload = id, video = id, reason, error = %e, "cannot delete upload")
            }
        }
    }

    /// Bytes of `principal`'s uploads on disk (their lengths).
    fn used_by(index: &HashMap<String, Arc<Entry>>, principal: &str) -> u64 {
        index
            .values()
            .map(|e| {
                let i = e.info();
                if i.principal == principal {
                    i.length
                } else {
                    0
                }
            })
            .fold(0u64, u64::saturating_add)
    }

    pub(crate) fn job_of(&self, id: &str, info: &Info) -> VideoJob {
        VideoJob {
            video: id.to_string(),
            principal: info.principal.clone(),
            name: info.name.clone(),
            source: self.store.data_path(id),
            out: self.root.join(&info.principal).join(&info.name),
        }
    }

    /// Enqueues the job of `id`, whose bytes are all durable, then marks it complete (in this
    /// order: see the module doc). Failures are logged; the sweeper tries again.
    async fn complete(self: &Arc<Self>, id: &str, entry: &Arc<Entry>) {
        let me = self.clone();
        let (id2, entry2) = (id.to_string(), entry.clone());
        if let Err(e) = blocking(move || {
            me.complete_sync(&id2, &entry2);
            Ok(())
        })
        .await
        {
            tracing::error!(target: "service", upload = id, video = id, error = %e, "completion did not run");
        }
    }

    /// [`Self::complete`] on this thread (blocking I/O).
    fn complete_sync(&self, id: &str, entry: &Entry) {
        let info = {
            let i = entry.info();
            if i.state == UploadState::Complete || entry.offset() != i.length {
                return;
            }
            i.clone()
        };
        let job = self.job_of(id, &info);
        let enqueued = match self.queue.enqueue(&new_job(&job)) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(target: "service", upload = id, video = id, job = id, error = %e, "cannot enqueue the packaging job; the sweeper retries");
                return;
            }
        };
        if self.crash_after_complete {
            tracing::warn!(target: "service", upload = id, video = id, "{CRASH_AFTER_COMPLETE_ENV}: aborting before marking the upload complete");
            std::process::abort();
        }
        let done = Info {
            state: UploadState::Complete,
            ..info
        };
        if let Err(e) = self.store.write_info(id, &done) {
            tracing::error!(target: "service", upload = id, video = id, error = %e, "cannot mark the upload complete; the sweeper retries");
            return;
        }
        *entry.info() = done;
        self.metrics.in_progress.dec();
        self.metrics.completed.inc();
        tracing::info!(target: "service", upload = id, video = id, job = id, principal = %job.principal, name = %job.name, enqueued = ?enqueued, "upload complete, packaging job enqueued");
    }
}

/// Registers the upload routes with `data` as their state (before the viewer API's scope:
/// the more specific prefix first).
pub fn configure(cfg: &mut web::ServiceConfig, data: web::Data<Uploads>) {
    cfg.service(
        web::scope("/api/v1/uploads")
            .app_data(data)
            .route("", web::route().to(creation::collection))
            .route("/", web::route().to(creation::collection))
            .route("/{id}", web::route().to(core::upload)),
    );
}
