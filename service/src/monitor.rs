//! `abr monitor`: follows playback events on the cluster's Redis channel and shows live viewers
//! per package, reconnecting by itself when Redis goes away; with a data directory, follows the
//! job queue's events too (queued, claimed, progress of running jobs, ready, failed, …).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::jobs::VideoJob;
use crate::queue::{
    EventKind, JobState, Queue, QueueError, RedisQueue, Settings, SqliteQueue, SystemClock,
};
use crate::store::redis::{viewers_key, PACKAGES_KEY};
use crate::store::{now_ms, Event, EVENTS_CHANNEL};
use crate::videos::Urls;

/// Monitor settings.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Redis URL (playback events and live viewers).
    pub redis: Option<String>,
    /// Data directory of `abr serve --ingest` (job events from its `queue.sqlite3`).
    pub data_dir: Option<PathBuf>,
    /// A viewer counts as live for this long after its last event (match the nodes' setting).
    pub window: Duration,
    /// Period of the live-viewer summary, and of the job queue's reads.
    pub interval: Duration,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Exit after this many events (0 = run until interrupted).
    pub max_events: u64,
}

/// Why the monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Unusable Redis URL.
    #[error("redis URL: {0}")]
    Url(String),
    /// Runtime setup failed.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// Neither Redis nor a data directory was given.
    #[error("nothing to follow: give a Redis URL, a data directory, or both")]
    Nothing,
    /// The data directory has no job queue.
    #[error("no job queue at {0} (is it the data_dir of `abr serve --ingest`?)")]
    NoQueue(PathBuf),
    /// The job queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Live viewers per package, read from Redis (the same window as the nodes use).
async fn live(
    conn: &mut redis::aio::MultiplexedConnection,
    window: Duration,
) -> redis::RedisResult<BTreeMap<String, u64>> {
    let packages: Vec<String> = redis::cmd("SMEMBERS")
        .arg(PACKAGES_KEY)
        .query_async(conn)
        .await?;
    let since = now_ms().saturating_sub(window.as_millis() as u64);
    let mut out = BTreeMap::new();
    for p in packages {
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(viewers_key(&p))
            .arg(format!("({since}"))
            .arg("+inf")
            .query_async(conn)
            .await?;
        out.insert(p, n);
    }
    Ok(out)
}

fn print_event(json: bool, raw: &str) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{raw}");
    } else {
        match serde_json::from_str::<Event>(raw) {
            Ok(e) => {
                let p = &e.position;
                let _ = writeln!(
                    out,
                    "{}  {:<8} viewer {}…  {:<16} {:>9.1} s  {:<7} {:<10} live={}",
                    origin::conditional::http_date(
                        std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(p.updated_ms)
                    ),
                    p.node,
                    &e.viewer[..e.viewer.len().min(8)],
                    p.package,
                    p.position_s,
                    if p.paused { "paused" } else { "playing" },
                    p.rendition.as_deref().unwrap_or("-"),
                    e.viewers
                );
            }
            Err(_) => {
                let _ = writeln!(out, "(unparsed event) {raw}");
            }
        }
    }
    let _ = out.flush();
}

fn print_live(json: bool, window: Duration, live: &BTreeMap<String, u64>) {
    let mut out = std::io::stdout().lock();
    if json {
        let v =
            serde_json::json!({ "live": live, "window_s": window.as_secs(), "at_ms": now_ms() });
        let _ = writeln!(out, "{v}");
    } else if live.is_empty() {
        let _ = writeln!(out, "live viewers: none");
    } else {
        let list: Vec<String> = live.iter().map(|(p, n)| format!("{p}={n}")).collect();
        let _ = writeln!(
            out,
            "live viewers (last {} s): {}",
            window.as_secs(),
            list.join("  ")
        );
    }
    let _ = out.flush();
}

/// Runs until interrupted (or `max_events` events were shown, playback and job events
/// together).
pub fn run(o: MonitorOptions) -> Result<(), MonitorError> {
    let seen = Arc::new(AtomicU64::new(0));
    // The jobs are where `abr serve --ingest` keeps them: in Redis when it has one (a
    // cluster), else in the data directory's SQLite queue.
    let queue: Option<Box<dyn Queue>> = match (&o.redis, &o.data_dir) {
        (Some(url), _) => Some(Box::new(RedisQueue::open(
            url,
            crate::queue::redis::DEFAULT_PREFIX,
            Settings::default(),
            Arc::new(SystemClock),
        )?)),
        (None, Some(d)) => {
            let p = d.join("queue.sqlite3");
            if !p.is_file() {
                return Err(MonitorError::NoQueue(p));
            }
            Some(Box::new(SqliteQueue::open(
                &p,
                Settings::default(),
                Arc::new(SystemClock),
            )?))
        }
        (None, None) => None,
    };
    let Some(redis) = o.redis.clone() else {
        let q = queue.ok_or(MonitorError::Nothing)?;
        return follow_jobs(q.as_ref(), &o, &seen);
    };
    if let Some(q) = queue {
        let (o, seen) = (o.clone(), seen.clone());
        std::thread::Builder::new()
            .name("monitor-jobs".into())
            .spawn(move || {
                if let Err(e) = follow_jobs(q.as_ref(), &o, &seen) {
                    eprintln!("abr monitor: job events: {e}");
                }
            })?;
    }
    follow_redis(&redis, &o, &seen)
}

/// Whether `seen`, one more shown, reached `max` (0 = no limit).
fn counted(seen: &AtomicU64, max: u64) -> bool {
    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
    max > 0 && n >= max
}

/// The name `abr monitor` shows for a queue event.
fn job_event_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Enqueued => "queued",
        EventKind::Claimed => "claimed",
        EventKind::Completed => "task_done",
        EventKind::TasksAdded => "tasks_added",
        EventKind::Retrying => "retrying",
        EventKind::LeaseExpired => "lease_expired",
        EventKind::TaskFailed => "task_failed",
        EventKind::JobSucceeded => "ready",
        EventKind::JobFailed => "failed",
        EventKind::Cancelled => "cancelled",
        EventKind::Retried => "requeued",
    }
}

/// One job line: JSON `{"type":"job", "event", "job", "video", …}` or text.
fn print_job(json: bool, line: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{line}");
    } else {
        let s = |k: &str| line[k].as_str().unwrap_or("").to_string();
        let task = line["task"]
            .as_u64()
            .map(|t| format!(" task {t}"))
            .unwrap_or_default();
        let attempt = line["attempt"]
            .as_u64()
            .map(|a| format!(" attempt {a}"))
            .unwrap_or_default();
        let extra = match s("event").as_str() {
            "progress" => format!(" {:.1} %", line["percent"].as_f64().unwrap_or(0.0)),
            "ready" => format!(" {}", s("play")),
            _ => line["detail"]
                .as_str()
                .map(|d| format!(" {d}"))
                .unwrap_or_default(),
        };
        let at = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_millis(line["at_ms"].as_u64().unwrap_or(0));
        let _ = writeln!(
            out,
            "{}  job {}  {:<13}{task}{attempt}{extra}",
            origin::conditional::http_date(at),
            s("job"),
            s("event")
        );
    }
    let _ = out.flush();
}

/// Follows the queue's events from its newest on, and the progress of the jobs seen running,
/// every `interval`.
fn follow_jobs(
    queue: &dyn Queue,
    o: &MonitorOptions,
    seen: &AtomicU64,
) -> Result<(), MonitorError> {
    let mut after = queue.last_event_seq()?;
    // Said once the start is fixed: every later event is shown (scripts and tests wait for it).
    eprintln!("abr monitor: following the job events after #{after}");
    // Running jobs and the percent last shown.
    let mut running: HashMap<String, Option<f64>> = HashMap::new();
    let mut down = false;
    loop {
        // The queue's storage going away (Redis restarting) is waited out, said once.
        match show_jobs(queue, o, seen, &mut after, &mut running) {
            Ok(true) => return Ok(()),
            Ok(false) => {
                if down {
                    eprintln!("abr monitor: job queue reachable again");
                    down = false;
                }
            }
            Err(MonitorError::Queue(e @ QueueError::Storage { .. })) => {
                if !down {
                    eprintln!("abr monitor: job events: {e}; retrying");
                    down = true;
                }
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(o.interval);
    }
}

/// One pass of [`follow_jobs`]: the new events, then the progress of running jobs; true when
/// `max_events` were shown.
fn show_jobs(
    queue: &dyn Queue,
    o: &MonitorOptions,
    seen: &AtomicU64,
    after: &mut u64,
    running: &mut HashMap<String, Option<f64>>,
) -> Result<bool, MonitorError> {
    for e in queue.events(*after, 256)? {
        *after = e.seq;
        let mut line = serde_json::json!({
            "type": "job", "event": job_event_name(e.kind), "job": e.job, "video": e.job,
            "task": e.task, "attempt": e.attempt, "detail": e.detail, "seq": e.seq,
            "at_ms": e.at_ms,
        });
        match e.kind {
            EventKind::Claimed => {
                running.entry(e.job.clone()).or_insert(None);
            }
            EventKind::JobSucceeded => {
                running.remove(&e.job);
                if let Some(j) = queue
                    .job(&e.job)?
                    .and_then(|j| serde_json::from_str::<VideoJob>(&j.payload).ok())
                {
                    line["play"] = Urls::of(&j.principal, &j.name).play.into();
                }
            }
            EventKind::JobFailed | EventKind::Cancelled => {
                running.remove(&e.job);
            }
            _ => {}
        }
        print_job(o.json, &line);
        if counted(seen, o.max_events) {
            return Ok(true);
        }
    }
    let mut over = Vec::new();
    for (id, last) in running.iter_mut() {
        let Some(j) = queue.job(id)? else {
            over.push(id.clone());
            continue;
        };
        if j.state != JobState::Running {
            over.push(id.clone());
            continue;
        }
        let p = crate::videos::percent(&j);
        if *last != Some(p) {
            *last = Some(p);
            let (done, total) = j.done();
            print_job(
                o.json,
                &serde_json::json!({
                    "type": "job", "event": "progress", "job": id, "video": id,
                    "percent": p, "tasks_done": done, "tasks_total": total,
                    "at_ms": now_ms(),
                }),
            );
            if counted(seen, o.max_events) {
                return Ok(true);
            }
        }
    }
    for id in over {
        running.remove(&id);
    }
    Ok(false)
}

/// Follows the playback events of Redis at `url` and its live viewers.
fn follow_redis(url: &str, o: &MonitorOptions, seen: &AtomicU64) -> Result<(), MonitorError> {
    let client = redis::Client::open(url).map_err(|e| MonitorError::Url(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reached = || o.max_events > 0 && seen.load(Ordering::SeqCst) >= o.max_events;
    rt.block_on(async move {
        let mut down_logged = false;
        loop {
            let session = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(EVENTS_CHANNEL).await?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                Ok::<_, redis::RedisError>((ps, conn.clone(), live(&mut conn, o.window).await?))
            };
            let (ps, mut conn, snapshot) = match session.await {
                Ok(s) => s,
                Err(e) => {
                    if !down_logged {
                        eprintln!("abr monitor: redis {url}: {e}; retrying");
                        down_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if std::mem::take(&mut down_logged) {
                eprintln!("abr monitor: redis connected");
            }
            print_live(o.json, o.window, &snapshot);
            let mut msgs = ps.into_on_message();
            let mut tick = tokio::time::interval(o.interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    m = msgs.next() => match m {
                        Some(m) => {
                            if let Ok(raw) = m.get_payload::<String>() {
                                print_event(o.json, &raw);
                                if counted(seen, o.max_events) {
                                    return Ok(());
                                }
                            }
                        }
                        None => {
                            eprintln!("abr monitor: redis connection lost; reconnecting");
                            down_logged = true;
                            break;
                        }
                    },
                    _ = tick.tick() => {
                        if reached() {
                            return Ok(());
                        }
                        if let Ok(l) = live(&mut conn, o.window).await {
                            print_live(o.json, o.window, &l);
                        }
                    }
                }
            }
        }
    })
}
