//! Errors of the control plane's set-up.

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Invalid configuration.
    #[error("config: {0}")]
    Config(String),
    /// A metric could not be registered with the origin's exposition.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The uploads or the job queue could not be opened.
    #[error("uploads: {0}")]
    Uploads(String),
}

/// Why a packaging task failed in a worker (see [`crate::worker`]).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The job's payload is not a [`crate::jobs::VideoJob`].
    #[error("job {job}: the payload is not a video job: {reason}")]
    BadJob {
        /// Job id.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// The task's payload is not a [`crate::jobs::TaskPayload`] of its stage.
    #[error("job {job} task {task}: the payload is not a packaging task: {reason}")]
    BadTask {
        /// Job id.
        job: String,
        /// Task index in the queue.
        task: u32,
        /// What is wrong.
        reason: String,
    },
    /// The packager failed (its one-line message).
    #[error(transparent)]
    Package(#[from] packager::PackageError),
    /// A worker thread or the signal watcher could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What.
        what: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl WorkerError {
    /// Whether no retry can fix it: bad payloads, and the packager's input and option errors
    /// (not media, no video stream, unknown codec, truncated, unreadable or changed source,
    /// existing output, invalid ladder or option). Anything else (writes, libav, a corrupt or
    /// missing task, a plan from another version) may go away on another attempt or machine.
    pub fn is_permanent(&self) -> bool {
        use packager::PackageError as P;
        match self {
            WorkerError::BadJob { .. } | WorkerError::BadTask { .. } => true,
            WorkerError::Spawn { .. } => false,
            WorkerError::Package(e) => matches!(
                e,
                P::InputUnreadable { .. }
                    | P::InputEmpty(_)
                    | P::NotMedia { .. }
                    | P::NoVideo(_)
                    | P::UnknownCodec { .. }
                    | P::Truncated { .. }
                    | P::OutputExists(_)
                    | P::Ladder(_)
                    | P::Option(_)
                    | P::SourceChanged(_)
            ),
        }
    }
}
