//! Errors that stop the origin from starting.

/// Why `abr serve` could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// Invalid configuration.
    #[error("config: {0}")]
    Config(String),
    /// Binding or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// An [`crate::extension::Extension`] could not be set up.
    #[error("{0}")]
    Extension(Box<dyn std::error::Error + Send + Sync>),
}
