//! The packaging job of an uploaded video: what the upload API enqueues and the worker runs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::queue::{NewJob, NewTask};

/// The payload of a video's packaging job (JSON in the queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoJob {
    /// The video's id (the upload's); also the job's id.
    pub video: String,
    /// Who uploaded it.
    pub principal: String,
    /// The package name.
    pub name: String,
    /// The uploaded source file (absolute).
    pub source: PathBuf,
    /// Where the package is published (absolute: `ROOT/<principal>/<name>`).
    pub out: PathBuf,
}

/// The queue job of `job`: id = the video's, its payload, and the plan task (stage 0).
pub fn new_job(job: &VideoJob) -> NewJob {
    let payload = serde_json::to_string(job).unwrap_or_else(|_| {
        // Only a path that is not UTF-8 fails; keep it readable rather than lose the job.
        serde_json::json!({
            "video": job.video,
            "principal": job.principal,
            "name": job.name,
            "source": job.source.to_string_lossy(),
            "out": job.out.to_string_lossy(),
        })
        .to_string()
    });
    NewJob {
        id: job.video.clone(),
        payload,
        tasks: vec![NewTask {
            stage: 0,
            payload: "{\"kind\":\"plan\"}".into(),
        }],
    }
}
