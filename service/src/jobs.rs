//! The packaging job as the queue carries it: one [`VideoJob`] per uploaded video, enqueued
//! with its plan task ([`new_job`]); the plan task adds one task per plan task and the assembly
//! ([`TaskPayload`]). Shared by the uploads side (which enqueues) and [`crate::worker`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::queue::{NewJob, NewTask};

/// Stage of the plan task.
pub const STAGE_PLAN: u32 = 0;
/// Stage of the video shards and the audio task.
pub const STAGE_TASKS: u32 = 1;
/// Stage of the assembly.
pub const STAGE_ASSEMBLE: u32 = 2;

/// A video to package: the job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoJob {
    /// Video id (the job id).
    pub video: String,
    /// Who uploaded it.
    pub principal: String,
    /// Its name (as shown).
    pub name: String,
    /// The source file.
    pub source: PathBuf,
    /// The package directory to publish (its parent is the package root).
    pub out: PathBuf,
}

/// What one task of a packaging job does: its payload, `{"kind":"plan"}`,
/// `{"kind":"task","index":i}` or `{"kind":"assemble"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskPayload {
    /// Plan the job (stage 0); completes with the other tasks.
    Plan,
    /// Task `index` of the plan: a video shard or the audio task (stage 1).
    Task {
        /// Plan task index.
        index: usize,
    },
    /// Assemble and publish (stage 2).
    Assemble,
}

impl TaskPayload {
    /// Its stage.
    pub fn stage(self) -> u32 {
        match self {
            TaskPayload::Plan => STAGE_PLAN,
            TaskPayload::Task { .. } => STAGE_TASKS,
            TaskPayload::Assemble => STAGE_ASSEMBLE,
        }
    }

    /// As a queue task.
    pub fn new_task(self) -> NewTask {
        NewTask {
            stage: self.stage(),
            // A two-variant enum of an integer always serialises.
            payload: serde_json::to_string(&self).unwrap_or_default(),
        }
    }
}

/// The queue job of `v`: id = the video id, payload = `v` as JSON, first task = the plan.
pub fn new_job(v: &VideoJob) -> NewJob {
    NewJob {
        id: v.video.clone(),
        // A struct of strings and paths: serialising cannot fail (non-UTF-8 paths are refused
        // by serde_json, and become an empty payload the worker rejects).
        payload: serde_json::to_string(v).unwrap_or_default(),
        tasks: vec![NewTask {
            stage: STAGE_PLAN,
            payload: "{\"kind\":\"plan\"}".into(),
        }],
    }
}

/// The tasks a plan of `tasks` tasks adds: one per plan task, then the assembly.
pub fn plan_tasks(tasks: usize) -> Vec<NewTask> {
    (0..tasks)
        .map(|index| TaskPayload::Task { index }.new_task())
        .chain(std::iter::once(TaskPayload::Assemble.new_task()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_the_contract() {
        let v = VideoJob {
            video: "v1".into(),
            principal: "alice".into(),
            name: "Holiday".into(),
            source: "/data/uploads/v1".into(),
            out: "/data/packages/v1".into(),
        };
        let j = new_job(&v);
        assert_eq!(j.id, "v1");
        assert_eq!(serde_json::from_str::<VideoJob>(&j.payload).unwrap(), v);
        assert_eq!(j.tasks.len(), 1);
        assert_eq!(j.tasks[0].stage, 0);
        assert_eq!(
            serde_json::from_str::<TaskPayload>(&j.tasks[0].payload).unwrap(),
            TaskPayload::Plan
        );
        let t = plan_tasks(2);
        let p: Vec<_> = t.iter().map(|t| (t.stage, t.payload.as_str())).collect();
        assert_eq!(
            p,
            [
                (1, "{\"kind\":\"task\",\"index\":0}"),
                (1, "{\"kind\":\"task\",\"index\":1}"),
                (2, "{\"kind\":\"assemble\"}"),
            ]
        );
        assert!(serde_json::from_str::<TaskPayload>("{\"kind\":\"x\"}").is_err());
    }
}
