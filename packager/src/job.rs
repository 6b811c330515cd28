//! The one-process driver behind `abr package`: plan (or reuse the plan and finished tasks of
//! an interrupted run), run every remaining task on an in-process pool, assemble, publish.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use crate::assemble::{assemble_checked, AssembleOptions};
use crate::error::{IoContext, PackageError, Result};
use crate::package::PackageInfo;
use crate::plan::{self, Plan, Task};
use crate::progress::{Progress, ProgressMode};
use crate::shard::{run_task, Outcome, RunOptions};
use crate::spec::Spec;
use crate::work::{verify_task, TaskRecord};

/// A packaging job run in this process.
#[derive(Debug, Clone)]
pub struct Job {
    /// What to package.
    pub spec: Spec,
    /// Tasks run at once (0 = the default for this machine).
    pub jobs: usize,
    /// Progress display.
    pub progress: ProgressMode,
    /// Keep the work area after publishing.
    pub keep_work: bool,
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Published package directory.
    pub out: PathBuf,
    /// Source file.
    pub input: PathBuf,
    /// The plan it ran.
    pub plan: Plan,
    /// Manifest data (renditions, segments, bitrates).
    pub info: PackageInfo,
    /// Tasks reused from an earlier run.
    pub reused: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Tasks run at once by default: one per core. Each shard runs one single-threaded encoder per
/// rung ([`plan::X264_THREADS`]), and its top rung alone is the longest chain: one shard at a
/// time used 107 % CPU of 2 cores (BENCHMARKS.md), so shards must overlap to fill the machine.
pub fn default_jobs() -> usize {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    cores.clamp(1, 16)
}

/// Runs a job to completion. On any error nothing is published at the output; finished tasks
/// stay in the work area for the next run of the same job.
pub fn run(job: &Job) -> Result<Summary> {
    let started = Instant::now();
    let (work, plan, kept) = plan::prepare(&job.spec)?;
    tracing::info!(
        input = %job.spec.input.display(),
        plan = %plan.plan_hash,
        tasks = plan.tasks,
        reused_plan = kept,
        rungs = %plan.rungs.iter().map(|r| format!("{}={}x{}@{}k", r.name, r.width, r.height, r.bitrate / 1000)).collect::<Vec<_>>().join(" "),
        "packaging"
    );
    let mut progress = Progress::new(
        job.progress,
        plan.frames as f64 * f64::from(plan.frame_rate.den) / f64::from(plan.frame_rate.num),
    );
    // Tasks already done by an interrupted run of the same plan.
    let mut pending = VecDeque::new();
    let mut reused = 0usize;
    let mut frames_done = 0u64;
    // Each task's record once it is known intact (checked here or written by this run).
    let mut records: Vec<Option<TaskRecord>> = vec![None; plan.tasks];
    for (i, slot) in records.iter_mut().enumerate() {
        if let Ok(rec) = verify_task(&work, &plan.plan_hash, i) {
            reused += 1;
            if let Ok(Task::Shard(s)) = plan.task(i) {
                frames_done += s.end_frame - s.start_frame;
            }
            *slot = Some(rec);
        } else {
            pending.push_back(i);
        }
    }
    if reused > 0 {
        tracing::info!(
            reused,
            total = plan.tasks,
            "resuming: finished tasks reused"
        );
        progress
            .event(serde_json::json!({"event": "resumed", "reused": reused, "total": plan.tasks}));
    }
    // The audio task is one long pass: start it first so it never ends up alone at the end.
    if let Some(a) = plan.audio_task {
        if let Some(pos) = pending.iter().position(|&i| i == a) {
            pending.remove(pos);
            pending.push_front(a);
        }
    }
    let jobs = if job.jobs == 0 {
        default_jobs()
    } else {
        job.jobs
    };
    let workers = jobs.min(pending.len()).max(1);
    let queue = Mutex::new(pending);
    let abort = AtomicBool::new(false);
    let (tx, rx) = unbounded::<(usize, Result<Outcome>)>();
    let in_flight: Mutex<Vec<(usize, Arc<AtomicU64>)>> = Mutex::new(Vec::new());
    let mut first_err: Option<PackageError> = None;
    let mut done = reused;
    thread::scope(|s| -> Result<()> {
        for w in 0..workers {
            let (queue, abort, tx, in_flight, work, plan) =
                (&queue, &abort, tx.clone(), &in_flight, &work, &plan);
            thread::Builder::new()
                .name(format!("task-worker-{w}"))
                .spawn_scoped(s, move || loop {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let Some(i) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                        return;
                    };
                    let counter = Arc::new(AtomicU64::new(0));
                    if let Ok(mut f) = in_flight.lock() {
                        f.push((i, counter.clone()));
                    }
                    let opts = RunOptions {
                        abort,
                        progress: &counter,
                        alone: workers == 1,
                    };
                    let r = run_task(work, plan, i, &opts);
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut f) = in_flight.lock() {
                        f.retain(|(j, _)| *j != i);
                    }
                    let _ = tx.send((i, r));
                })
                .write_ctx(std::path::Path::new("task worker thread"))?;
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok((i, r)) => match r {
                    Ok(outcome) => {
                        done += 1;
                        let rec = outcome.into_record();
                        if let Some((a, b)) = rec.frames {
                            frames_done += b - a;
                        }
                        progress.event(serde_json::json!({
                            "event": "task_done", "index": i, "kind": rec.kind,
                            "done": done, "total": plan.tasks,
                        }));
                        if let Some(slot) = records.get_mut(i) {
                            *slot = Some(rec);
                        }
                    }
                    Err(e) => {
                        if first_err.is_none() || matches!(first_err, Some(PackageError::Aborted)) {
                            first_err = Some(e);
                        }
                    }
                },
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            let running: u64 = in_flight
                .lock()
                .map(|f| {
                    f.iter()
                        .filter(|(i, _)| plan.audio_task != Some(*i))
                        .map(|(_, c)| c.load(Ordering::Relaxed))
                        .sum()
                })
                .unwrap_or(0);
            let secs = (frames_done + running) as f64 * f64::from(plan.frame_rate.den)
                / f64::from(plan.frame_rate.num);
            progress.update(secs);
        }
        Ok(())
    })?;
    if let Some(e) = first_err {
        progress.finish(None);
        return Err(e);
    }
    let records: Vec<TaskRecord> = records.into_iter().flatten().collect();
    let (out, info) = assemble_checked(
        &work,
        &plan,
        &records,
        AssembleOptions {
            keep_work: job.keep_work,
            force: job.spec.force,
            abort: None,
        },
    )?;
    progress.finish(Some(&out));
    Ok(Summary {
        out,
        input: job.spec.input.clone(),
        plan,
        info,
        reused,
        elapsed: started.elapsed(),
    })
}
