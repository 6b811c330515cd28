//! Running one task of a plan (a video shard or the audio task): a pure function of (plan,
//! index), written into a temporary directory and renamed into place with its sidecar. A task
//! already in place and intact is not redone; two runs of one task at once leave one result.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use crate::error::{IoContext, PackageError, Result};
use crate::plan::{Plan, Task};
use crate::work::{host_name, verify_task, TaskRecord, WorkArea};

/// How a task run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Encoded by this run.
    Done(TaskRecord),
    /// Already in place and intact (another run did it).
    Reused(TaskRecord),
}

impl Outcome {
    /// The task's record.
    pub fn into_record(self) -> TaskRecord {
        match self {
            Outcome::Done(r) | Outcome::Reused(r) => r,
        }
    }
}

/// Options of a task run.
pub struct RunOptions<'a> {
    /// Set by someone else to stop the task (its temporary files are removed).
    pub abort: &'a AtomicBool,
    /// Output frames done so far.
    pub progress: &'a AtomicU64,
    /// The process runs only this task: its CPU time is the task's.
    pub alone: bool,
}

/// Process CPU time (user + system), seconds.
pub fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage fills a struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Removes a temporary directory when dropped (error paths, aborts).
struct TempGuard<'a>(&'a Path, bool);

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = fs::remove_dir_all(self.0);
        }
    }
}

/// Runs task `index` of `plan` in `work`.
pub fn run_task(
    work: &WorkArea,
    plan: &Plan,
    index: usize,
    opts: &RunOptions<'_>,
) -> Result<Outcome> {
    // A task process never probes (which is where libav was quieted): quiet it here too.
    crate::init();
    let task = plan.task(index)?;
    let final_dir = work.task_dir(index);
    match verify_task(work, &plan.plan_hash, index) {
        Ok(rec) => return Ok(Outcome::Reused(rec)),
        Err(reason) if final_dir.exists() => {
            tracing::warn!(task = index, "redoing task: {reason}");
            fs::remove_dir_all(&final_dir).write_ctx(&final_dir)?;
        }
        Err(_) => {}
    }
    plan.check_source()?;
    let started = Instant::now();
    let cpu0 = process_cpu_secs();
    let tmp = work.temp_dir(index)?;
    let mut guard = TempGuard(&tmp, false);
    let mut rec = TaskRecord {
        plan_hash: plan.plan_hash.clone(),
        index,
        kind: String::new(),
        frames: None,
        rungs: Vec::new(),
        audio: None,
        files: Default::default(),
        host: host_name(),
        elapsed_s: 0.0,
        cpu_s: None,
    };
    match task {
        Task::Shard(s) => {
            tracing::info!(task = index, frames = %format!("{}..{}", s.start_frame, s.end_frame), "encoding shard");
            let out = crate::pipeline::encode_shard(plan, s, &tmp, opts.abort, opts.progress)
                .map_err(|e| in_task(index, e))?;
            rec.kind = "shard".into();
            rec.frames = Some((s.start_frame, s.end_frame));
            rec.rungs = out.rungs;
            rec.files = out.files;
        }
        Task::Audio => {
            tracing::info!(task = index, "encoding audio");
            let (a, files) = crate::audio::encode_audio(plan, &tmp, opts.abort, opts.progress)
                .map_err(|e| in_task(index, e))?;
            rec.kind = "audio".into();
            rec.audio = Some(a);
            rec.files = files;
        }
    }
    rec.elapsed_s = started.elapsed().as_secs_f64();
    rec.cpu_s = opts.alone.then(|| process_cpu_secs() - cpu0);
    rec.write(&tmp)?;
    crate::publish::sync_dir(&tmp);
    for d in rec.rungs.iter().map(|r| tmp.join(&r.name)) {
        crate::publish::sync_dir(&d);
    }
    match fs::rename(&tmp, &final_dir) {
        Ok(()) => {
            guard.1 = true;
            crate::publish::sync_dir(&work.tasks_dir());
            Ok(Outcome::Done(rec))
        }
        // Another run of the same task finished first: keep its (identical) result.
        Err(_) if final_dir.exists() => match verify_task(work, &plan.plan_hash, index) {
            Ok(theirs) => Ok(Outcome::Reused(theirs)),
            Err(reason) => Err(PackageError::Task {
                index,
                reason: format!("another run left a bad result: {reason}"),
            }),
        },
        Err(e) => Err(PackageError::Write {
            path: final_dir,
            source: e,
        }),
    }
}

/// Puts the task index into errors that do not name it.
fn in_task(index: usize, e: PackageError) -> PackageError {
    match e {
        PackageError::Aborted | PackageError::Truncated { .. } | PackageError::NotMedia { .. } => e,
        other => PackageError::Task {
            index,
            reason: other.to_string(),
        },
    }
}

/// The task index an array engine gives this process: the first set of `JOB_COMPLETION_INDEX`
/// (Kubernetes Indexed Job), `SLURM_ARRAY_TASK_ID` (Slurm), `AWS_BATCH_JOB_ARRAY_INDEX`.
pub fn index_from_env(get: impl Fn(&str) -> Option<String>) -> Result<usize> {
    for var in ENGINE_INDEX_VARS {
        if let Some(v) = get(var).filter(|v| !v.trim().is_empty()) {
            return v
                .trim()
                .parse()
                .map_err(|_| PackageError::Option(format!("{var}={v} is not a task index")));
        }
    }
    Err(PackageError::Option(format!(
        "--index-from-env: none of {} is set",
        ENGINE_INDEX_VARS.join(", ")
    )))
}

/// Environment variables of array engines, in the order they are read.
pub const ENGINE_INDEX_VARS: [&str; 3] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_index_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            index_from_env(env(&[("SLURM_ARRAY_TASK_ID", "3")])).unwrap(),
            3
        );
        assert_eq!(
            index_from_env(env(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("JOB_COMPLETION_INDEX", "5")
            ]))
            .unwrap(),
            5
        );
        assert_eq!(
            index_from_env(env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "7")])).unwrap(),
            7
        );
        assert!(index_from_env(env(&[("JOB_COMPLETION_INDEX", "x")])).is_err());
        assert!(index_from_env(env(&[])).is_err());
    }
}
