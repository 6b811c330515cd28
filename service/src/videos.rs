//! The videos API at `/api/v1/videos` (with `ingest`): one video per upload (same id), seen by
//! its principal only (the uploads' bearer tokens; another principal's video is 404).
//!
//! - `GET /api/v1/videos?limit=N&after=CURSOR` — the principal's videos, newest first, with a
//!   `next` cursor while more follow; `GET /api/v1/videos/{id}` — one.
//! - `POST /api/v1/videos/{id}/cancel` — cancels its packaging job (202; 409 when over).
//! - `POST /api/v1/videos/{id}/retry` — queues a failed or cancelled job again (202; 409).
//! - `DELETE /api/v1/videos/{id}` — 202, then nothing of it is left (see [deletion](#deletion)).
//!
//! A video's `state` is one machine: `uploading` (`received` of `size` bytes) → `queued` (its
//! job waits) → `processing` (`percent`, `tasks_done`/`tasks_total`, `speed` in percent per
//! second over the last minute and `eta_s` once two observations a second apart exist) →
//! `ready` (`urls`) | `failed` (`reason`) | `cancelled` (`reason`).
//!
//! # Deletion
//!
//! A deletion first writes a durable tombstone `data_dir/deleting/<id>.json` (what to remove),
//! and takes the video out of the index, so every later request is 404. Then the pieces go: the
//! job is cancelled (a leased worker learns it at its next renew; its rows are kept), the
//! upload directory, the packager's work area `.<name>.abr-work` and staging directories
//! `.<name>.abr-staging.*` beside the package, and the published package. Start-up finishes
//! every tombstone before loading the uploads, so a kill half-way is repaired. A worker that
//! had not yet learnt of the cancel may still publish for a while: the sweeper removes the
//! pieces again until [`DELETE_GRACE`] has passed (unless another live video now owns the
//! same package directory), then removes the tombstone. Responses in flight finish (open files
//! outlive their names).
//!
//! The queue's job events are also published on the viewer API's event stream
//! ([`spawn_job_events`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::queue::{JobInfo, JobState, Queue, QueueError};
use crate::uploads::auth::Principal;
use crate::uploads::store::{self, Store, UploadState};
use crate::uploads::{Entry, Uploads};

/// The reason of the cancel a deletion makes (webhooks announce it as `video.deleted`).
pub const DELETED_REASON: &str = "the video was deleted";
/// Videos listed per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest `limit`.
pub const MAX_LIMIT: usize = 100;
/// Share of the plan task (stage 0) in a job's percent: it is short next to the encodes.
pub const PLAN_SHARE: f64 = 5.0;
/// Progress observations older than this do not count for `speed`.
const SPEED_WINDOW_MS: u64 = 60_000;
/// How long after a deletion its pieces are removed again (a worker learns of the cancel at
/// its next renew, within a lease: twice the default lease).
pub const DELETE_GRACE: Duration = Duration::from_secs(60);
/// Set to `1` (tests only): a deletion aborts the process after removing the upload directory
/// and before the package and work area, the half-way point start-up must finish.
pub const CRASH_MID_DELETE_ENV: &str = "ABR_TEST_CRASH_MID_DELETE";
/// Jobs whose progress is tracked for `speed` at most (the map is cleared past it).
const MAX_TRACKED: usize = 10_000;

/// A refused or failed request: status and a one-line reason (`{"error": …}`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Status.
    pub status: StatusCode,
    /// Reason.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "no such video")
    }

    fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!(target: "service", error = %e, "videos: {what}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{what} failed"))
    }

    fn response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status);
        b.insert_header((header::CACHE_CONTROL, "no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            b.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        b.json(serde_json::json!({ "error": self.message }))
    }
}

/// Where a ready video is served (paths on this origin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Urls {
    /// The origin's player page of the package.
    pub play: Option<String>,
    /// HLS master playlist.
    pub hls: String,
    /// DASH manifest.
    pub dash: String,
}

impl Urls {
    /// The URLs of package `<principal>/<name>`.
    pub fn of(principal: &str, name: &str) -> Urls {
        Urls {
            play: Some(format!("/play/{principal}/{name}")),
            hls: format!("/{principal}/{name}/hls/master.m3u8"),
            dash: format!("/{principal}/{name}/dash/manifest.mpd"),
        }
    }
}

/// Where a video is (the `state` field and its own fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VideoState {
    /// The upload is incomplete.
    Uploading {
        /// Durable bytes received.
        received: u64,
    },
    /// The packaging job waits for a worker.
    Queued,
    /// A worker runs it.
    Processing {
        /// 0–100, the tasks' progress weighted by task (the plan counts [`PLAN_SHARE`]).
        percent: f64,
        /// Tasks done.
        tasks_done: usize,
        /// Tasks known (the plan adds the others when it completes).
        tasks_total: usize,
        /// Percent per second over the last minute, when measured.
        #[serde(skip_serializing_if = "Option::is_none")]
        speed: Option<f64>,
        /// Seconds left at that speed.
        #[serde(skip_serializing_if = "Option::is_none")]
        eta_s: Option<u64>,
    },
    /// Packaged and published.
    Ready {
        /// Where it plays.
        urls: Urls,
    },
    /// The job failed.
    Failed {
        /// Why (one line).
        reason: String,
    },
    /// The job was cancelled.
    Cancelled {
        /// Why, when given.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// One video as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Video {
    /// Id (the upload's).
    pub id: String,
    /// Package name.
    pub name: String,
    /// The client's file name.
    pub filename: Option<String>,
    /// Bytes of the source.
    pub size: u64,
    /// Creation of the upload (Unix seconds).
    pub created: u64,
    /// State.
    #[serde(flatten)]
    pub state: VideoState,
}

/// `reason` on one line (the first, trimmed).
fn one_line(reason: &str) -> String {
    reason.lines().next().unwrap_or_default().trim().to_string()
}

/// The job's percent (0–100): the plan (stage 0) counts [`PLAN_SHARE`], the other tasks share
/// the rest equally; a done task counts whole.
pub fn percent(job: &JobInfo) -> f64 {
    let progress = |t: &crate::queue::TaskInfo| {
        if t.state == crate::queue::TaskState::Done {
            1.0
        } else {
            t.progress.clamp(0.0, 1.0)
        }
    };
    let avg = |it: Vec<f64>| {
        if it.is_empty() {
            None
        } else {
            Some(it.iter().sum::<f64>() / it.len() as f64)
        }
    };
    let plan = avg(job
        .tasks
        .iter()
        .filter(|t| t.stage == 0)
        .map(progress)
        .collect());
    let rest = avg(job
        .tasks
        .iter()
        .filter(|t| t.stage > 0)
        .map(progress)
        .collect());
    let p = PLAN_SHARE * plan.unwrap_or(1.0) + (100.0 - PLAN_SHARE) * rest.unwrap_or(0.0);
    (p * 10.0).round() / 10.0
}

/// Percent per second over `samples` (Unix ms, percent; oldest first) once they span a second
/// and progress moved.
pub fn speed(samples: &VecDeque<(u64, f64)>) -> Option<f64> {
    let (t0, p0) = *samples.front()?;
    let (t1, p1) = *samples.back()?;
    let dt = t1.checked_sub(t0)?;
    if dt < 1000 || p1 <= p0 {
        return None;
    }
    Some((p1 - p0) / (dt as f64 / 1000.0))
}

/// The state of a complete upload whose job is `job` (`None`: not enqueued yet, so queued),
/// `samples` the recent progress observations of a running one.
pub fn job_state(
    job: Option<&JobInfo>,
    principal: &str,
    name: &str,
    samples: &VecDeque<(u64, f64)>,
) -> VideoState {
    let Some(job) = job else {
        return VideoState::Queued;
    };
    match job.state {
        JobState::Queued => VideoState::Queued,
        JobState::Running => {
            let (tasks_done, tasks_total) = job.done();
            let percent = samples.back().map_or_else(|| percent(job), |s| s.1);
            let speed = speed(samples);
            let eta_s = speed.map(|s| ((100.0 - percent).max(0.0) / s).ceil() as u64);
            VideoState::Processing {
                percent,
                tasks_done,
                tasks_total,
                speed: speed.map(|s| (s * 1000.0).round() / 1000.0),
                eta_s,
            }
        }
        JobState::Succeeded => VideoState::Ready {
            urls: Urls::of(principal, name),
        },
        JobState::Failed => VideoState::Failed {
            reason: one_line(job.reason.as_deref().unwrap_or("the job failed")),
        },
        JobState::Cancelled => VideoState::Cancelled {
            reason: job.reason.as_deref().map(one_line),
        },
    }
}

/// Progress observations of running jobs, for `speed`.
#[derive(Debug, Default)]
pub struct Tracker(Mutex<HashMap<String, VecDeque<(u64, f64)>>>);

impl Tracker {
    /// Records `job` as seen at `now_ms` and returns its recent observations (empty unless it
    /// runs). Percent never goes back while it runs (tasks added later dilute it).
    pub fn observe(&self, job: &JobInfo, now_ms: u64) -> VecDeque<(u64, f64)> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if job.state != JobState::Running {
            map.remove(&job.id);
            return VecDeque::new();
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(&job.id) {
            map.clear();
        }
        let s = map.entry(job.id.clone()).or_default();
        let p = s.back().map_or(0.0, |b| b.1).max(percent(job));
        if s.back().is_none_or(|b| now_ms > b.0) {
            s.push_back((now_ms, p));
        }
        while s.len() > 2 && s.front().is_some_and(|f| f.0 + SPEED_WINDOW_MS < now_ms) {
            s.pop_front();
        }
        while s.len() > 256 {
            s.pop_front();
        }
        s.clone()
    }
}

/// What the video handlers share.
pub struct Videos {
    up: Arc<Uploads>,
    tracker: Tracker,
    crash_mid_delete: bool,
    /// Record each deletion for the webhooks ([`crate::webhooks::record_deletion`]).
    pub(crate) announce_deletions: bool,
}

impl Videos {
    /// The videos of `up`'s uploads.
    pub fn new(up: Arc<Uploads>) -> Videos {
        Videos {
            up,
            tracker: Tracker::default(),
            crash_mid_delete: std::env::var(CRASH_MID_DELETE_ENV).is_ok_and(|v| v == "1"),
            announce_deletions: false,
        }
    }

    fn authenticate(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        self.up
            .tokens
            .authenticate(
                req.headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )
            .ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required")
            })
    }

    /// `principal`'s video `id` (404 for none, another's, or one being deleted).
    async fn entry(&self, id: &str, principal: &str) -> Result<Arc<Entry>, ApiError> {
        if !store::valid_id(id) {
            return Err(ApiError::not_found());
        }
        let e = self
            .up
            .current(id)
            .await
            .map_err(|e| ApiError::internal("reading the upload", e))?;
        match e {
            Some(e) if e.info().principal == principal => Ok(e),
            _ => Err(ApiError::not_found()),
        }
    }

    /// The API view of `entries` (their jobs read in one blocking call).
    async fn view(
        self: &Arc<Self>,
        entries: Vec<(String, Arc<Entry>)>,
    ) -> Result<Vec<Video>, ApiError> {
        let me = self.clone();
        web::block(move || -> Result<Vec<Video>, QueueError> {
            let now = crate::store::now_ms();
            let mut out = Vec::with_capacity(entries.len());
            for (id, e) in entries {
                let info = e.info().clone();
                let state = if info.state == UploadState::Incomplete {
                    VideoState::Uploading {
                        received: e.offset(),
                    }
                } else {
                    let job = me.up.queue.job(&id)?;
                    let samples = job
                        .as_ref()
                        .map(|j| me.tracker.observe(j, now))
                        .unwrap_or_default();
                    job_state(job.as_ref(), &info.principal, &info.name, &samples)
                };
                out.push(Video {
                    id,
                    name: info.name,
                    filename: info.filename,
                    size: info.length,
                    created: info.created,
                    state,
                });
            }
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::internal("reading the jobs", e))?
        .map_err(|e| ApiError::internal("reading the jobs", e))
    }

    /// A blocking queue call on the blocking pool.
    async fn queue_call<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&dyn Queue) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let q = self.up.queue.clone();
        match web::block(move || f(q.as_ref())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(QueueError::NotFound(_))) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "the video has no packaging job yet",
            )),
            Ok(Err(e)) => Err(ApiError::internal(what, e)),
            Err(e) => Err(ApiError::internal(what, e)),
        }
    }
}

/// Registers the routes with `data` as their state (before the viewer API's `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig, data: web::Data<Videos>) {
    cfg.service(
        web::scope("/api/v1/videos")
            .app_data(data)
            .route("", web::get().to(list))
            .route("/", web::get().to(list))
            .route("/{id}", web::get().to(get))
            .route("/{id}", web::delete().to(delete))
            .route("/{id}/cancel", web::post().to(cancel))
            .route("/{id}/retry", web::post().to(retry)),
    );
}

fn ok_json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// Query of the list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

/// A page of the list.
#[derive(Debug, Serialize)]
struct Page {
    videos: Vec<Video>,
    next: Option<String>,
}

/// The cursor of a video in the list order (newest first: created, then id, descending).
fn cursor(created: u64, id: &str) -> String {
    format!("{created}-{id}")
}

fn parse_cursor(s: &str) -> Option<(u64, String)> {
    let (created, id) = s.split_once('-')?;
    store::valid_id(id).then_some(())?;
    Some((created.parse().ok()?, id.to_string()))
}

async fn list(req: HttpRequest, q: web::Query<ListQuery>, v: web::Data<Videos>) -> HttpResponse {
    let v = v.into_inner();
    let r = async {
        let p = v.authenticate(&req)?;
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit must be 1–{MAX_LIMIT}"),
            ));
        }
        let after = match q.after.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                parse_cursor(c)
                    .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad cursor"))?,
            ),
        };
        v.up.refresh_all()
            .await
            .map_err(|e| ApiError::internal("reading the uploads", e))?;
        let mut mine: Vec<(u64, String, Arc<Entry>)> =
            v.up.entries()
                .into_iter()
                .filter_map(|(id, e)| {
                    let (owner, created) = {
                        let i = e.info();
                        (i.principal == p.name, i.created)
                    };
                    owner.then_some((created, id, e))
                })
                .filter(|(created, id, _)| {
                    after
                        .as_ref()
                        .is_none_or(|(ac, aid)| (*created, id.as_str()) < (*ac, aid.as_str()))
                })
                .collect();
        mine.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        let more = mine.len() > limit;
        mine.truncate(limit);
        let next = more
            .then(|| mine.last().map(|(c, id, _)| cursor(*c, id)))
            .flatten();
        let videos = v
            .view(mine.into_iter().map(|(_, id, e)| (id, e)).collect())
            .await?;
        Ok(ok_json(StatusCode::OK, &Page { videos, next }))
    };
    r.await.unwrap_or_else(|e: ApiError| e.response())
}

async fn get(req: HttpRequest, id: web::Path<String>, v: web::Data<Videos>) -> HttpResponse {
    let v = v.into_inner();
    let r = async {
        let p = v.authenticate(&req)?;
        let e = v.entry(&id, &p.name).await?;
        let mut one = v.view(vec![(id.to_string(), e)]).await?;
        let video = one.pop().ok_or_else(ApiError::not_found)?;
        Ok(ok_json(StatusCode::OK, &video))
    };
    r.await.unwrap_or_else(|e: ApiError| e.response())
}

/// The entry of a complete upload (409 while it uploads: it has no job).
async fn complete_entry(v: &Videos, req: &HttpRequest, id: &str) -> Result<Arc<Entry>, ApiError> {
    let p = v.authenticate(req)?;
    let e = v.entry(id, &p.name).await?;
    if e.info().state == UploadState::Incomplete {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the upload is not complete: it has no job (DELETE the video to drop it)",
        ));
    }
    Ok(e)
}

async fn cancel(req: HttpRequest, id: web::Path<String>, v: web::Data<Videos>) -> HttpResponse {
    let v = v.into_inner();
    let r = async {
        complete_entry(&v, &req, &id).await?;
        let owned = id.to_string();
        let done = v
            .queue_call("cancelling the job", move |q| {
                q.cancel(&owned, "cancelled by its owner")
            })
            .await?;
        if !done {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "the job is already over",
            ));
        }
        tracing::info!(target: "service", video = %id, job = %id, "video job cancelled");
        Ok(ok_json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"id": *id, "state": "cancelled"}),
        ))
    };
    r.await.unwrap_or_else(|e: ApiError| e.response())
}

async fn retry(req: HttpRequest, id: web::Path<String>, v: web::Data<Videos>) -> HttpResponse {
    let v = v.into_inner();
    let r = async {
        complete_entry(&v, &req, &id).await?;
        let owned = id.to_string();
        let done = v
            .queue_call("retrying the job", move |q| q.retry(&owned))
            .await?;
        if !done {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "only a failed or cancelled job is retried",
            ));
        }
        tracing::info!(target: "service", video = %id, job = %id, "video job retried");
        Ok(ok_json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"id": *id, "state": "queued"}),
        ))
    };
    r.await.unwrap_or_else(|e: ApiError| e.response())
}

async fn delete(req: HttpRequest, id: web::Path<String>, v: web::Data<Videos>) -> HttpResponse {
    let v = v.into_inner();
    let r = async {
        let p = v.authenticate(&req)?;
        let e = v.entry(&id, &p.name).await?;
        let held = match v.up.locker.try_lock(&id).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::LOCKED,
                    "a request is writing this upload; try again when it ends",
                ))
            }
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    e.to_string(),
                ))
            }
        };
        let info = e.info().clone();
        let job = v.up.job_of(&id, &info);
        let tomb = Tombstone {
            id: id.to_string(),
            out: job.out,
            requested_ms: crate::store::now_ms(),
            purged: false,
        };
        let dir = v.up.data_dir.clone();
        let t = tomb.clone();
        let announce = v
            .announce_deletions
            .then(|| (info.principal.clone(), info.name.clone()));
        web::block(move || {
            write_tombstone(&dir, &t)?;
            match announce {
                Some((principal, name)) => {
                    crate::webhooks::record_deletion(&dir, &t.id, &principal, &name, t.requested_ms)
                }
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| ApiError::internal("recording the deletion", e))?
        .map_err(|e| ApiError::internal("recording the deletion", e))?;
        // From here on the video is gone for every request.
        if v.up.index().remove(id.as_str()).is_some() && info.state == UploadState::Incomplete {
            v.up.metrics.in_progress.dec();
            v.up.metrics.failed.with_label_values(&["terminated"]).inc();
        }
        tracing::info!(target: "service", video = %id, principal = %p.name, name = %info.name, "video deletion recorded");
        let me = v.clone();
        actix_web::rt::spawn(async move {
            let id = tomb.id.clone();
            let r = web::block(move || {
                let _held = held;
                let up = &me.up;
                purge(
                    &up.data_dir,
                    &up.store,
                    up.queue.as_ref(),
                    &tomb,
                    me.crash_mid_delete,
                )
            })
            .await;
            match r {
                Ok(Ok(())) => tracing::info!(target: "service", video = %id, "video deleted"),
                Ok(Err(e)) => {
                    tracing::error!(target: "service", video = %id, error = %e, "video deletion incomplete; the sweeper retries")
                }
                Err(e) => {
                    tracing::error!(target: "service", video = %id, error = %e, "video deletion did not run; the sweeper retries")
                }
            }
        });
        Ok(ok_json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"id": *id, "state": "deleting"}),
        ))
    };
    r.await.unwrap_or_else(|e: ApiError| e.response())
}

// ---- Job events on the event stream ----

/// How often the queue's events are read for the event stream.
const EVENTS_EVERY: Duration = Duration::from_secs(1);

/// Follows the queue's events from now on and sends each to `tx` (the viewer API's event
/// stream, `GET /api/v1/events`) as a JSON line `{"type":"job", "seq", "job", "task",
/// "attempt", "kind", "detail", "at_ms"}`. Call on the server's runtime.
pub fn spawn_job_events(up: Arc<Uploads>, tx: tokio::sync::broadcast::Sender<String>) {
    actix_web::rt::spawn(async move {
        let q = up.queue.clone();
        let mut after = match web::block(move || q.last_event_seq()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::error!(target: "service", error = %e, "job events not followed");
                return;
            }
            Err(e) => {
                tracing::error!(target: "service", error = %e, "job events not followed");
                return;
            }
        };
        loop {
            actix_web::rt::time::sleep(EVENTS_EVERY).await;
            if tx.receiver_count() == 0 {
                // Nobody listens: skip what happened meanwhile.
                let q = up.queue.clone();
                if let Ok(Ok(s)) = web::block(move || q.last_event_seq()).await {
                    after = s;
                }
                continue;
            }
            let q = up.queue.clone();
            let events = match web::block(move || q.events(after, 256)).await {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => {
                    tracing::warn!(target: "service", error = %e, "cannot read job events");
                    continue;
                }
                Err(_) => continue,
            };
            for e in events {
                after = e.seq;
                let mut v = match serde_json::to_value(&e) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                v["type"] = "job".into();
                let _ = tx.send(v.to_string());
            }
        }
    });
}

// ---- Deletion ----

/// `data_dir/deleting/<id>.json`: a deletion to finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tombstone {
    /// The video.
    pub id: String,
    /// Its package directory (`ROOT/<principal>/<name>`).
    pub out: PathBuf,
    /// When the deletion was asked (Unix ms).
    pub requested_ms: u64,
    /// Whether every piece was removed once (then only the grace passes are left).
    pub purged: bool,
}

fn deleting_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("deleting")
}

fn write_tombstone(data_dir: &Path, t: &Tombstone) -> io::Result<()> {
    let dir = deleting_dir(data_dir);
    fs::create_dir_all(&dir)?;
    let bytes = serde_json::to_vec_pretty(t).map_err(io::Error::other)?;
    store::replace(&dir, &format!("{}.json", t.id), &bytes)
}

fn read_tombstones(data_dir: &Path) -> io::Result<Vec<Tombstone>> {
    let dir = deleting_dir(data_dir);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Tombstone>(&b).map_err(|e| e.to_string()))
        {
            Ok(t) if store::valid_id(&t.id) => out.push(t),
            Ok(_) | Err(_) => {
                tracing::error!(target: "service", file = %p.display(), "unreadable deletion record skipped")
            }
        }
    }
    Ok(out)
}

fn remove_tombstone(data_dir: &Path, id: &str) -> io::Result<()> {
    let dir = deleting_dir(data_dir);
    match fs::remove_file(dir.join(format!("{id}.json"))) {
        Ok(()) => store::sync_dir(&dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The package `out`, the packager's work area and staging directories beside it
/// (`packager::work::WorkArea::for_output`, `packager::publish`): `.<name>.abr-work`,
/// `.<name>.abr-staging.<pid>`.
fn remove_package(out: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (out.parent(), out.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(());
    };
    remove_tree(&parent.join(format!(".{name}.abr-work")))?;
    let staging = format!(".{name}.abr-staging.");
    match fs::read_dir(parent) {
        Ok(rd) => {
            for e in rd.flatten() {
                if e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&staging))
                {
                    remove_tree(&e.path())?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    remove_tree(out)
}

/// One full removal of `t`'s pieces (blocking): the job cancelled, the upload directory, the
/// work area, staging, the package; then the tombstone marked purged (or removed once the
/// grace passed).
fn purge(
    data_dir: &Path,
    store: &Store,
    queue: &dyn Queue,
    t: &Tombstone,
    crash_mid: bool,
) -> io::Result<()> {
    match queue.cancel(&t.id, DELETED_REASON) {
        Ok(_) | Err(QueueError::NotFound(_)) => {}
        Err(e) => return Err(io::Error::other(e)),
    }
    store.remove(&t.id)?;
    if crash_mid {
        tracing::warn!(target: "service", video = %t.id, "{CRASH_MID_DELETE_ENV}: aborting half-way through a deletion");
        std::process::abort();
    }
    remove_package(&t.out)?;
    finish_pass(data_dir, t)
}

/// After a pass: the tombstone is kept, marked purged, until the grace passed.
fn finish_pass(data_dir: &Path, t: &Tombstone) -> io::Result<()> {
    let grace = u64::try_from(DELETE_GRACE.as_millis()).unwrap_or(u64::MAX);
    if crate::store::now_ms() >= t.requested_ms.saturating_add(grace) {
        remove_tombstone(data_dir, &t.id)
    } else if !t.purged {
        write_tombstone(
            data_dir,
            &Tombstone {
                purged: true,
                ..t.clone()
            },
        )
    } else {
        Ok(())
    }
}

/// At start-up, before the uploads are loaded: finishes every pending deletion's first pass;
/// returns the ids of every deletion still recorded (never to be loaded).
pub fn finish_deletions(
    data_dir: &Path,
    store: &Store,
    queue: &dyn Queue,
) -> io::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for t in read_tombstones(data_dir)? {
        if !t.purged {
            match purge(data_dir, store, queue, &t, false) {
                Ok(()) => {
                    tracing::info!(target: "service", video = %t.id, "interrupted video deletion finished")
                }
                Err(e) => {
                    tracing::error!(target: "service", video = %t.id, error = %e, "cannot finish a video deletion; the sweeper retries")
                }
            }
        }
        ids.insert(t.id);
    }
    Ok(ids)
}

/// The sweeper's pass: deletions not purged yet are purged; purged ones within the grace
/// have their package pieces removed again (unless a live video owns the same directory now),
/// and their tombstone removed once it passed.
pub(crate) async fn sweep_deletions(up: &Arc<Uploads>) {
    let live: HashSet<PathBuf> = up
        .entries()
        .iter()
        .map(|(id, e)| up.job_of(id, &e.info()).out)
        .collect();
    let me = up.clone();
    let r = web::block(move || -> io::Result<()> {
        for t in read_tombstones(&me.data_dir)? {
            let r = if !t.purged {
                purge(&me.data_dir, &me.store, me.queue.as_ref(), &t, false)
            } else if live.contains(&t.out) {
                finish_pass(&me.data_dir, &t)
            } else {
                remove_package(&t.out).and_then(|()| finish_pass(&me.data_dir, &t))
            };
            if let Err(e) = r {
                tracing::error!(target: "service", video = %t.id, error = %e, "video deletion pass failed; the next sweep retries");
            }
        }
        Ok(())
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(target: "service", error = %e, "cannot read the pending video deletions")
        }
        Err(e) => {
            tracing::error!(target: "service", error = %e, "video deletion sweep did not run")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{TaskInfo, TaskState};

    fn task(index: u32, stage: u32, state: TaskState, progress: f64) -> TaskInfo {
        TaskInfo {
            index,
            stage,
            state,
            attempt: 1,
            worker: Some("w".into()),
            progress,
            error: None,
        }
    }

    fn job(state: JobState, tasks: Vec<TaskInfo>, reason: Option<&str>) -> JobInfo {
        JobInfo {
            id: "0123456789abcdef0123456789abcdef".into(),
            payload: "{}".into(),
            state,
            reason: reason.map(str::to_string),
            tasks,
            created_ms: 1,
            updated_ms: 2,
        }
    }

    /// The plan counts little; the other tasks share the rest; speed and ETA come from the
    /// tracker's observations, and percent never goes back while the job runs.
    #[test]
    fn running_job_maps_to_processing_with_percent_and_eta() {
        let plan_only = job(
            JobState::Running,
            vec![task(0, 0, TaskState::Leased, 0.5)],
            None,
        );
        assert_eq!(percent(&plan_only), 2.5);
        let j = job(
            JobState::Running,
            vec![
                task(0, 0, TaskState::Done, 1.0),
                task(1, 1, TaskState::Done, 1.0),
                task(2, 1, TaskState::Leased, 0.5),
                task(3, 1, TaskState::Pending, 0.0),
                task(4, 2, TaskState::Pending, 0.0),
            ],
            None,
        );
        // 5 + 95 × (1 + 0.5 + 0 + 0) / 4
        assert_eq!(percent(&j), 40.6);
        let none = VecDeque::new();
        match job_state(Some(&j), "alice", "cat", &none) {
            VideoState::Processing {
                percent,
                tasks_done,
                tasks_total,
                speed,
                eta_s,
            } => {
                assert_eq!((percent, tasks_done, tasks_total), (40.6, 2, 5));
                assert_eq!((speed, eta_s), (None, None), "one observation: no speed");
            }
            other => panic!("{other:?}"),
        }
        let tracker = Tracker::default();
        let t0 = 1_000_000;
        tracker.observe(&j, t0);
        let later = job(
            JobState::Running,
            vec![
                task(0, 0, TaskState::Done, 1.0),
                task(1, 1, TaskState::Done, 1.0),
                task(2, 1, TaskState::Done, 1.0),
                task(3, 1, TaskState::Leased, 0.5),
                task(4, 2, TaskState::Pending, 0.0),
            ],
            None,
        );
        // 10 s later: 5 + 95 × 2.5 / 4 = 64.4, so 2.38 %/s and 15 s left.
        let s = tracker.observe(&later, t0 + 10_000);
        match job_state(Some(&later), "alice", "cat", &s) {
            VideoState::Processing {
                percent,
                speed,
                eta_s,
                ..
            } => {
                assert_eq!(percent, 64.4);
                assert_eq!(speed, Some(2.38));
                assert_eq!(eta_s, Some(15));
            }
            other => panic!("{other:?}"),
        }
        // A task added later dilutes the fraction: the percent shown does not go back.
        let mut diluted = later.clone();
        diluted.tasks.push(task(5, 3, TaskState::Pending, 0.0));
        let s = tracker.observe(&diluted, t0 + 11_000);
        assert_eq!(s.back().map(|b| b.1), Some(64.4));
        // Over: the observations are dropped.
        let done = job(JobState::Succeeded, later.tasks.clone(), None);
        assert!(tracker.observe(&done, t0 + 12_000).is_empty());
    }

    /// Succeeded → ready with the package URLs; failed → the reason's first line; queued and
    /// not-yet-enqueued → queued; cancelled → its reason.
    #[test]
    fn final_states_map_to_ready_failed_cancelled() {
        let none = VecDeque::new();
        let ok = job(JobState::Succeeded, vec![], None);
        assert_eq!(
            job_state(Some(&ok), "alice", "cat", &none),
            VideoState::Ready {
                urls: Urls {
                    play: Some("/play/alice/cat".into()),
                    hls: "/alice/cat/hls/master.m3u8".into(),
                    dash: "/alice/cat/dash/manifest.mpd".into(),
                }
            }
        );
        let v = serde_json::to_value(Video {
            id: "x".into(),
            name: "cat".into(),
            filename: None,
            size: 3,
            created: 4,
            state: job_state(Some(&ok), "alice", "cat", &none),
        })
        .unwrap();
        assert_eq!(v["state"], "ready");
        assert_eq!(v["urls"]["hls"], "/alice/cat/hls/master.m3u8");
        let bad = job(
            JobState::Failed,
            vec![],
            Some("task 1 failed 3 of 3 attempts: x264\nbacktrace…"),
        );
        assert_eq!(
            job_state(Some(&bad), "alice", "cat", &none),
            VideoState::Failed {
                reason: "task 1 failed 3 of 3 attempts: x264".into()
            }
        );
        let q = job(JobState::Queued, vec![], None);
        assert_eq!(job_state(Some(&q), "a", "b", &none), VideoState::Queued);
        assert_eq!(job_state(None, "a", "b", &none), VideoState::Queued);
        let c = job(JobState::Cancelled, vec![], Some("by its owner"));
        assert_eq!(
            job_state(Some(&c), "a", "b", &none),
            VideoState::Cancelled {
                reason: Some("by its owner".into())
            }
        );
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_cursor(&cursor(17, id)), Some((17, id.to_string())));
        for bad in ["", "17", "x-0123456789abcdef0123456789abcdef", "17-../etc"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    /// A purge removes the upload, the work area, staging and the package; the tombstone is
    /// kept (purged) within the grace and removed after it.
    #[test]
    fn purge_removes_every_piece() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let root = tmp.path().join("root/alice");
        fs::create_dir_all(&data).unwrap();
        let store = Store::open(&data.join("uploads")).unwrap();
        let queue = crate::queue::SqliteQueue::open(
            &data.join("queue.sqlite3"),
            crate::queue::Settings::default(),
            Arc::new(crate::queue::SystemClock),
        )
        .unwrap();
        let id = store::new_id();
        let info = store::Info {
            principal: "alice".into(),
            length: 1,
            metadata: String::new(),
            name: "cat".into(),
            filename: None,
            created: 1,
            expires: 2,
            state: UploadState::Complete,
        };
        store.create(&id, &info).unwrap();
        let out = root.join("cat");
        for d in [
            out.join("hls"),
            root.join(".cat.abr-work/tasks/0"),
            root.join(".cat.abr-staging.123/hls"),
            root.join("other/hls"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(out.join("hls/master.m3u8"), "#EXTM3U\n").unwrap();
        let t = Tombstone {
            id: id.clone(),
            out: out.clone(),
            requested_ms: crate::store::now_ms(),
            purged: false,
        };
        write_tombstone(&data, &t).unwrap();
        let pending = finish_deletions(&data, &store, &queue).unwrap();
        assert!(pending.contains(&id));
        assert!(!store.dir_of(&id).exists());
        let mut left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["other"]);
        let ts = read_tombstones(&data).unwrap();
        assert!(ts.len() == 1 && ts[0].purged, "{ts:?}");
        // Past the grace, a pass removes the record.
        let old = Tombstone {
            requested_ms: 0,
            ..ts[0].clone()
        };
        finish_pass(&data, &old).unwrap();
        assert!(read_tombstones(&data).unwrap().is_empty());
    }
}
