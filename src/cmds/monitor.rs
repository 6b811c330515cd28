//! `abr monitor`: live playback events and viewers of a cluster, and the job events of an
//! ingest data directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

/// `abr monitor` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Redis URL of the cluster (playback events, live viewers, and the job events of its
    /// queue: with Redis the jobs live there).
    #[arg(long, env = "ABR_REDIS")]
    redis: Option<String>,
    /// Data directory of a single-box `abr serve --ingest` (no Redis): show the job events of
    /// its queue (queued, claimed, progress, ready, failed, …).
    #[arg(long, env = "ABR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Seconds a viewer stays live after its last event (the nodes' viewer_window_s).
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Seconds between live-viewer summaries (and job queue reads).
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Exit after this many events (0 = until interrupted).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

/// Runs until interrupted or `--count` events were shown.
pub fn run(a: Args) -> Result<()> {
    if !(a.interval.is_finite() && a.interval >= 0.1) {
        bail!("--interval must be at least 0.1 s");
    }
    if a.redis.is_none() && a.data_dir.is_none() {
        bail!("give --redis, --data-dir, or both");
    }
    service::monitor::run(service::monitor::MonitorOptions {
        redis: a.redis,
        data_dir: a.data_dir,
        window: Duration::from_secs(a.window.max(1)),
        interval: Duration::from_secs_f64(a.interval),
        json: a.json,
        max_events: a.count,
    })?;
    Ok(())
}
