//! `abr package`: plan + every task on an in-process pool + assemble, resuming an interrupted
//! run of the same job.

use anyhow::Result;
use packager::{Job, ProgressMode};

use super::{ProgressArg, SpecArgs};

/// `abr package` arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Tasks run at once (0 = one per core).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// Keep the work area (plan and tasks) after publishing.
    #[arg(long)]
    keep_work: bool,
    /// Progress output.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
}

/// Runs `abr package`.
pub fn run(a: Args) -> Result<()> {
    let progress: ProgressMode = a.progress.into();
    let job = Job {
        spec: a.spec.spec()?,
        jobs: a.jobs,
        progress,
        keep_work: a.keep_work,
    };
    let s = packager::run(&job)?;
    if progress != ProgressMode::Json {
        let n = s.info.hls.len().max(s.info.dash_video.len());
        let resumed = if s.reused > 0 {
            format!(", {} of {} tasks reused", s.reused, s.plan.tasks)
        } else {
            String::new()
        };
        eprintln!(
            "abr: packaged {} ({:.1} s, {n} renditions, {} shards{resumed}) in {:.1} s ({:.2}× realtime) → {}",
            s.input.display(),
            s.info.duration_secs,
            s.plan.shards.len(),
            s.elapsed.as_secs_f64(),
            s.info.duration_secs / s.elapsed.as_secs_f64().max(1e-3),
            s.out.display()
        );
    }
    Ok(())
}
