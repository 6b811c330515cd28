//! The control plane's metrics, registered with the origin's exposition (`/metrics`, `abr_`
//! prefix, `node` label).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::error::ServiceError;

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
