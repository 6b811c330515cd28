//! `abr plan`: probe the source once and write the job's plan; print how many tasks it has.

use anyhow::Result;

use super::SpecArgs;

/// `abr plan` arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `abr plan`.
pub fn run(a: Args) -> Result<()> {
    let spec = a.spec.spec()?;
    let (work, plan, kept) = packager::plan::prepare(&spec)?;
    if a.json {
        let v = serde_json::json!({
            "plan": work.plan_path(),
            "work": work.dir(),
            "plan_hash": plan.plan_hash,
            "reused": kept,
            "frames": plan.frames,
            "segments": plan.segments,
            "shards": plan.shards.len(),
            "audio_task": plan.audio_task,
            "tasks": plan.tasks,
        });
        println!("{v}");
    } else {
        println!("work area: {}", work.dir().display());
        println!("{}", plan.describe());
    }
    Ok(())
}
