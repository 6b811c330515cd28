//! `abr assemble`: check every task of the plan and publish the package.

use anyhow::Result;
use packager::assemble::{assemble, AssembleOptions};
use packager::plan::Plan;
use packager::work::WorkArea;

/// `abr assemble` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Package directory given to `abr plan --out`.
    dir: std::path::PathBuf,
    /// Keep the work area (plan and tasks) after publishing.
    #[arg(long)]
    keep_work: bool,
    /// Replace an existing package at DIR.
    #[arg(long)]
    force: bool,
}

/// Runs `abr assemble`.
pub fn run(a: Args) -> Result<()> {
    let started = std::time::Instant::now();
    let work = WorkArea::for_output(&a.dir)?;
    let plan = Plan::load(&work)?;
    let (out, info) = assemble(
        &work,
        &plan,
        AssembleOptions {
            keep_work: a.keep_work,
            force: a.force,
            abort: None,
        },
    )?;
    eprintln!(
        "abr: assembled {} tasks ({:.1} s of video) in {:.1} s → {}",
        plan.tasks,
        info.duration_secs,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
