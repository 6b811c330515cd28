//! The control plane's metrics, registered with the origin's exposition (`/metrics`, `abr_`
//! prefix, `node` label).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use crate::error::ServiceError;
use crate::queue::{Event, EventKind, JobState, Queue};

/// Viewer-state metrics.
pub struct Metrics {
    /// 1 while the shared-state Redis answers (0 when down or not configured).
    pub redis_up: IntGauge,
    /// Failed Redis calls.
    pub redis_errors: IntCounter,
    /// Playback writes by result (ok, invalid, unauthorized, rate_limited, unavailable).
    pub playback_writes: IntCounterVec,
    /// Live viewers per package, as of this node's last write or query.
    pub live_viewers: IntGaugeVec,
}

impl Metrics {
    /// Creates the metrics and registers them with `origin`'s.
    pub fn new(origin: &origin::telemetry::Metrics) -> Result<Self, ServiceError> {
        let m = Metrics {
            redis_up: IntGauge::new("redis_up", "1 while the shared-state Redis answers")?,
            redis_errors: IntCounter::new("redis_errors_total", "Failed Redis calls")?,
            playback_writes: IntCounterVec::new(
                Opts::new(
                    "playback_writes_total",
                    "Playback position writes by result",
                ),
                &["result"],
            )?,
            live_viewers: IntGaugeVec::new(
                Opts::new(
                    "live_viewers",
                    "Viewers seen within the viewer window, per package",
                ),
                &["package"],
            )?,
        };
        origin.register(Box::new(m.redis_up.clone()))?;
        origin.register(Box::new(m.redis_errors.clone()))?;
        origin.register(Box::new(m.playback_writes.clone()))?;
        origin.register(Box::new(m.live_viewers.clone()))?;
        Ok(m)
    }
}

/// Upload metrics (`uploads` module).
pub struct UploadMetrics {
    /// Incomplete uploads on disk.
    pub in_progress: IntGauge,
    /// Body bytes received by PATCH and POST.
    pub bytes_received: IntCounter,
    /// Uploads that received all their bytes (their job enqueued).
    pub completed: IntCounter,
    /// Incomplete uploads that ended without completing, by reason (expired, terminated).
    pub failed: IntCounterVec,
    /// Refused chunks by reason (offset, checksum, too_long).
    pub rejected: IntCounterVec,
}

impl UploadMetrics {
    /// Creates the metrics and registers them with `origin`'s.
    pub fn new(origin: &origin::telemetry::Metrics) -> Result<Self, ServiceError> {
        let m = UploadMetrics {
            in_progress: IntGauge::new("uploads_in_progress", "Incomplete uploads on disk")?,
            bytes_received: IntCounter::new(
                "upload_bytes_received_total",
                "Upload body bytes received",
            )?,
            completed: IntCounter::new(
                "uploads_completed_total",
                "Uploads completed (packaging job enqueued)",
            )?,
            failed: IntCounterVec::new(
                Opts::new(
                    "uploads_failed_total",
                    "Incomplete uploads deleted, by reason",
                ),
                &["reason"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "upload_chunks_rejected_total",
                    "Refused upload chunks, by reason",
                ),
                &["reason"],
            )?,
        };
        origin.register(Box::new(m.in_progress.clone()))?;
        origin.register(Box::new(m.bytes_received.clone()))?;
        origin.register(Box::new(m.completed.clone()))?;
        origin.register(Box::new(m.failed.clone()))?;
        origin.register(Box::new(m.rejected.clone()))?;
        Ok(m)
    }
}

/// Job metrics (with `ingest`), kept from the queue's events by [`JobMetrics::spawn`].
pub struct JobMetrics {
    /// Jobs by state (queued, running, succeeded, failed, cancelled).
    pub jobs: IntGaugeVec,
    /// Leases that passed without renewal (their tasks reclaimed).
    pub lease_reclaims: IntCounter,
    /// Enqueue (or retry) → final state, seconds, by outcome (succeeded, failed, cancelled).
    pub duration: HistogramVec,
    /// Task attempts' ends by outcome (completed, retrying, failed, lease_expired).
    pub tasks: IntCounterVec,
}

/// How often [`JobMetrics::spawn`]'s thread reads the queue's new events.
const JOB_METRICS_EVERY: Duration = Duration::from_secs(1);

impl JobMetrics {
    /// Creates the metrics and registers them with `origin`'s.
    pub fn new(origin: &origin::telemetry::Metrics) -> Result<Self, ServiceError> {
        let m = JobMetrics {
            jobs: IntGaugeVec::new(Opts::new("jobs", "Packaging jobs by state"), &["state"])?,
            lease_reclaims: IntCounter::new(
                "job_lease_reclaims_total",
                "Task leases that passed without renewal (tasks reclaimed)",
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "job_duration_seconds",
                    "Packaging job time from enqueue (or retry) to its final state, by outcome",
                )
                .buckets(vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                ]),
                &["outcome"],
            )?,
            tasks: IntCounterVec::new(
                Opts::new("job_tasks_total", "Ends of task attempts, by outcome"),
                &["outcome"],
            )?,
        };
        origin.register(Box::new(m.jobs.clone()))?;
        origin.register(Box::new(m.lease_reclaims.clone()))?;
        origin.register(Box::new(m.duration.clone()))?;
        origin.register(Box::new(m.tasks.clone()))?;
        for s in ["queued", "running", "succeeded", "failed", "cancelled"] {
            m.jobs.with_label_values(&[s]);
        }
        Ok(m)
    }

    /// Follows `queue`'s events on a thread: the job states are rebuilt from every event at
    /// start (the counters and the histogram count from then on), then kept up to date.
    pub fn spawn(self, queue: Arc<dyn Queue>) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("job-metrics".into())
            .spawn(move || {
                let mut jobs: HashMap<String, (JobState, u64)> = HashMap::new();
                let mut after = 0;
                let mut live = false;
                loop {
                    match queue.events(after, 1000) {
                        Ok(evs) if evs.is_empty() => {
                            live = true;
                            std::thread::sleep(JOB_METRICS_EVERY);
                        }
                        Ok(evs) => {
                            for e in &evs {
                                self.apply(&mut jobs, e, live);
                            }
                            after = evs.last().map_or(after, |e| e.seq);
                        }
                        Err(e) => {
                            tracing::warn!(target: "service", error = %e, "job metrics: cannot read job events");
                            std::thread::sleep(JOB_METRICS_EVERY);
                        }
                    }
                }
            })
            .map(|_| ())
    }

    /// One event: the job's state (and gauge), and when `live` the counters and durations.
    fn apply(&self, jobs: &mut HashMap<String, (JobState, u64)>, e: &Event, live: bool) {
        let task_outcome = match e.kind {
            EventKind::Completed => Some("completed"),
            EventKind::Retrying => Some("retrying"),
            EventKind::TaskFailed => Some("failed"),
            EventKind::LeaseExpired => Some("lease_expired"),
            _ => None,
        };
        if let (true, Some(o)) = (live, task_outcome) {
            self.tasks.with_label_values(&[o]).inc();
        }
        if live && e.kind == EventKind::LeaseExpired {
            self.lease_reclaims.inc();
        }
        let next = match (e.kind, e.task) {
            (EventKind::Enqueued | EventKind::Retried, _) => JobState::Queued,
            (EventKind::Claimed, _) => JobState::Running,
            (EventKind::JobSucceeded, _) => JobState::Succeeded,
            (EventKind::JobFailed, _) => JobState::Failed,
            (EventKind::Cancelled, None) => JobState::Cancelled,
            _ => return,
        };
        let prev = jobs.get(&e.job).copied();
        if prev.is_some_and(|(s, _)| s == next) {
            return;
        }
        let since = match (prev, next) {
            (
                Some((_, since)),
                JobState::Running | JobState::Succeeded | JobState::Failed | JobState::Cancelled,
            ) => since,
            _ => e.at_ms,
        };
        if let Some((s, _)) = prev {
            self.jobs.with_label_values(&[state_label(s)]).dec();
        }
        self.jobs.with_label_values(&[state_label(next)]).inc();
        if live && next.is_final() {
            self.duration
                .with_label_values(&[state_label(next)])
                .observe(e.at_ms.saturating_sub(since) as f64 / 1000.0);
        }
        jobs.insert(e.job.clone(), (next, since));
    }
}

fn state_label(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}
