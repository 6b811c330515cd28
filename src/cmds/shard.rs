//! `abr shard`: run one task of a plan (any engine's array index).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Result};
use packager::plan::{Plan, Task};
use packager::progress::Progress;
use packager::shard::{index_from_env, run_task, Outcome, RunOptions};
use packager::work::WorkArea;
use packager::ProgressMode;

use super::ProgressArg;

/// `abr shard` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Package directory given to `abr plan --out`.
    dir: std::path::PathBuf,
    /// Task index (0..N-1, N from `abr plan`).
    #[arg(long, conflicts_with = "index_from_env")]
    index: Option<usize>,
    /// Read the index from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX.
    #[arg(long)]
    index_from_env: bool,
    /// Progress output.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
}

/// Runs `abr shard`.
pub fn run(a: Args) -> Result<()> {
    let index = match (a.index, a.index_from_env) {
        (Some(i), _) => i,
        (None, true) => index_from_env(|k| std::env::var(k).ok())?,
        (None, false) => bail!("give --index I or --index-from-env"),
    };
    let work = WorkArea::for_output(&a.dir)?;
    let plan = Plan::load(&work)?;
    let task = plan.task(index)?;
    let frames = match task {
        Task::Shard(s) => s.end_frame - s.start_frame,
        Task::Audio => plan.frames,
    };
    let mode: ProgressMode = a.progress.into();
    let fps = plan.frame_rate;
    let secs = |f: u64| f as f64 * f64::from(fps.den) / f64::from(fps.num);
    let abort = AtomicBool::new(false);
    let counter = AtomicU64::new(0);
    let mut progress = Progress::new(mode, secs(frames));
    let outcome = std::thread::scope(|s| {
        let h = s.spawn(|| {
            run_task(
                &work,
                &plan,
                index,
                &RunOptions {
                    abort: &abort,
                    progress: &counter,
                    alone: true,
                },
            )
        });
        while !h.is_finished() {
            progress.update(secs(counter.load(Ordering::Relaxed)));
            std::thread::sleep(Duration::from_millis(100));
        }
        h.join().unwrap_or(Err(packager::PackageError::Aborted))
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            progress.finish(None);
            return Err(e.into());
        }
    };
    let dir = work.task_dir(index);
    progress.finish(Some(&dir));
    if mode != ProgressMode::Json {
        match &outcome {
            Outcome::Done(r) => eprintln!(
                "abr: task {index} of {} ({}) done in {:.1} s → {}",
                plan.tasks,
                r.kind,
                r.elapsed_s,
                dir.display()
            ),
            Outcome::Reused(_) => eprintln!(
                "abr: task {index} of {} was already done → {}",
                plan.tasks,
                dir.display()
            ),
        }
    }
    Ok(())
}
