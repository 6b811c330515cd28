//! `abr worker`: packaging workers on the job queue — in `--redis` (shared by a cluster) or
//! in `--data-dir` (`queue.sqlite3`, shared by every process on the box) — until SIGTERM or
//! SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use service::queue::{Settings as QueueSettings, SystemClock};
use service::worker::{spawn_pool, stop_on_signals, PlanOptions, Settings};

/// `abr worker` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The shared data directory: the job queue (`queue.sqlite3`, created if missing) unless
    /// `--redis`, and the uploads the jobs read.
    #[arg(long, env = "ABR_DATA_DIR")]
    data_dir: PathBuf,
    /// Redis URL of the cluster's job queue (`redis://host:port/db`); none = the SQLite queue
    /// in `--data-dir`.
    #[arg(long, env = "ABR_REDIS")]
    redis: Option<String>,
    /// Workers (tasks run at once) in this process.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Lease of a claimed task, seconds: a worker that stops renewing (killed, hung) loses its
    /// task to another after this long.
    #[arg(long, default_value_t = 30)]
    lease_seconds: u64,
    /// Attempts of a task before its job fails.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Ladder file (TOML) of the plans this worker makes; the default ladder otherwise.
    #[arg(long)]
    ladder: Option<PathBuf>,
    /// Nominal segment duration of the plans this worker makes, seconds (1–60).
    #[arg(long, default_value_t = 4.0)]
    segment_duration: f64,
    /// Shard length of the plans this worker makes, seconds (0 = one shard).
    #[arg(long, default_value_t = packager::spec::DEFAULT_SHARD_SECONDS)]
    shard_seconds: f64,
}

/// Runs `abr worker`.
pub fn run(a: Args) -> Result<()> {
    if a.workers == 0 || a.lease_seconds == 0 || a.max_attempts == 0 {
        bail!("--workers, --lease-seconds and --max-attempts must be at least 1");
    }
    let ladder = match &a.ladder {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read ladder file {}", p.display()))?;
            packager::LadderSpec::from_toml(&text)
                .with_context(|| format!("ladder file {}", p.display()))?
        }
        None => packager::LadderSpec::default(),
    };
    let plan = PlanOptions {
        ladder,
        segment_duration: a.segment_duration,
        shard_seconds: a.shard_seconds,
        ..PlanOptions::default()
    };
    // Refuse options that would fail every plan now, not at the first job.
    packager::Spec {
        input: PathBuf::new(),
        out: PathBuf::new(),
        ladder: plan.ladder.clone(),
        segment_duration: plan.segment_duration,
        shard_seconds: plan.shard_seconds,
        formats: plan.formats,
        force: false,
    }
    .validate()?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;
    let lease = Duration::from_secs(a.lease_seconds);
    let queue = service::queue::open(
        &a.data_dir,
        a.redis.as_deref(),
        QueueSettings {
            lease,
            max_attempts: a.max_attempts,
            ..QueueSettings::default()
        },
        Arc::new(SystemClock),
    )?;
    let settings = Settings {
        lease,
        plan,
        ..Settings::default()
    };
    let pool = spawn_pool(queue, a.workers, settings)?;
    stop_on_signals(pool.stopper())?;
    tracing::info!(workers = ?pool.ids(), "abr worker running");
    pool.join();
    Ok(())
}
