//! Errors of a packaging job. Every variant renders as one line suitable for a CLI.

use std::path::PathBuf;

/// Why a packaging job failed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The input path does not exist or cannot be read.
    #[error("cannot read input {path}: {source}")]
    InputUnreadable {
        /// Input path.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The input file is empty.
    #[error("input {0} is empty (0 bytes)")]
    InputEmpty(PathBuf),
    /// libavformat could not recognise the input as media.
    #[error("input {path} is not a media file libavformat can read: {reason}")]
    NotMedia {
        /// Input path.
        path: PathBuf,
        /// libav's reason.
        reason: String,
    },
    /// The input has no video stream.
    #[error("input {0} has no video stream (abr packages video, optionally with audio)")]
    NoVideo(PathBuf),
    /// No decoder for a stream's codec.
    #[error("input {path}: no decoder for {kind} codec '{codec}'")]
    UnknownCodec {
        /// Input path.
        path: PathBuf,
        /// "video" or "audio".
        kind: &'static str,
        /// Codec name as reported by libavformat.
        codec: String,
    },
    /// The input ended before its declared duration or failed to decode.
    #[error("input {path} is truncated or corrupt: {detail}")]
    Truncated {
        /// Input path.
        path: PathBuf,
        /// What was observed.
        detail: String,
    },
    /// The output directory exists and `--force` was not given.
    #[error("output {0} already exists (use --force to replace it)")]
    OutputExists(PathBuf),
    /// Writing output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// File or directory being written.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The ladder file or option is invalid.
    #[error("invalid ladder: {0}")]
    Ladder(String),
    /// Invalid job option.
    #[error("invalid option: {0}")]
    Option(String),
    /// A libav call failed.
    #[error("{context}: {source}")]
    Av {
        /// What was being done (stream / rendition context).
        context: String,
        /// libav error.
        source: ffmpeg_next::Error,
    },
    /// Bitstream problem in encoder output.
    #[error("{context}: {source}")]
    Codec {
        /// Rendition context.
        context: String,
        /// Parse error.
        source: crate::codec::CodecError,
    },
    /// fMP4 writing failed.
    #[error("{context}: {source}")]
    Fmp4 {
        /// Rendition context.
        context: String,
        /// Writer error.
        source: crate::mux::fmp4::Fmp4Error,
    },
    /// Manifest writing failed.
    #[error("manifest: {0}")]
    Manifest(String),
    /// The plan file is missing, corrupt or from another version.
    #[error("plan {path}: {reason}")]
    Plan {
        /// plan.json.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The source is not the file that was planned.
    #[error("source {0} changed since it was planned (size, time or content): plan again")]
    SourceChanged(PathBuf),
    /// One task failed.
    #[error("task {index}: {reason}")]
    Task {
        /// Task index.
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// Tasks missing or corrupt at assembly.
    #[error("cannot assemble {out}: {detail}")]
    Incomplete {
        /// Package directory.
        out: PathBuf,
        /// Which tasks, and why (e.g. `task 3 missing; task 5 corrupt: …`).
        detail: String,
        /// Indices of the tasks to run again.
        tasks: Vec<usize>,
    },
    /// The job was interrupted by another worker's failure.
    #[error("aborted")]
    Aborted,
}

/// Result alias.
pub type Result<T, E = PackageError> = std::result::Result<T, E>;

/// Attaches a context string to libav errors.
pub(crate) trait AvContext<T> {
    fn av(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> AvContext<T> for std::result::Result<T, ffmpeg_next::Error> {
    fn av(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| PackageError::Av {
            context: context(),
            source,
        })
    }
}

/// Attaches a path to I/O errors.
pub(crate) trait IoContext<T> {
    fn write_ctx(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn write_ctx(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| PackageError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}
