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
