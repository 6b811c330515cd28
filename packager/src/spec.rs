//! What a user asks for: the source, the package directory and every option that decides the
//! output. Validated before anything is read or written.

use std::path::PathBuf;

use crate::error::{PackageError, Result};
use crate::ladder::LadderSpec;

/// Which formats to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Formats {
    /// HLS (MPEG-TS + m3u8).
    pub hls: bool,
    /// DASH (fMP4 + MPD).
    pub dash: bool,
}

/// Default shard length in seconds (`--shard-seconds`). Measured (BENCHMARKS.md, sharding): a
/// seam costs quality only in the second after it (rate control restarts; −0.5 dB at 1080p,
/// −5 dB at 240p for that second), so its cost is per seam: 120 s halves it against 60 s and
/// still spreads a 2-hour source over 60 shards, losing at most 2 minutes of work to a crash.
pub const DEFAULT_SHARD_SECONDS: f64 = 120.0;

/// A packaging request.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Source file.
    pub input: PathBuf,
    /// Package directory to publish.
    pub out: PathBuf,
    /// Ladder.
    pub ladder: LadderSpec,
    /// Nominal segment duration in seconds.
    pub segment_duration: f64,
    /// Shard length in seconds (0 = the whole source is one shard).
    pub shard_seconds: f64,
    /// Formats to write.
    pub formats: Formats,
    /// Replace an existing package.
    pub force: bool,
}

impl Spec {
    /// Checks every option; one line per problem.
    pub fn validate(&self) -> Result<()> {
        if !(self.segment_duration.is_finite() && (1.0..=60.0).contains(&self.segment_duration)) {
            return Err(PackageError::Option(format!(
                "--segment-duration {} must be between 1 and 60 seconds",
                self.segment_duration
            )));
        }
        if !(self.shard_seconds.is_finite() && self.shard_seconds >= 0.0) {
            return Err(PackageError::Option(format!(
                "--shard-seconds {} must be 0 (one shard) or a positive number of seconds",
                self.shard_seconds
            )));
        }
        if !self.formats.hls && !self.formats.dash {
            return Err(PackageError::Option(
                "--formats must name hls, dash or both".into(),
            ));
        }
        self.ladder.validate()
    }

    /// Segment duration in milliseconds.
    pub fn segment_ms(&self) -> u64 {
        (self.segment_duration * 1000.0).round() as u64
    }

    /// Segments per shard (0 = all in one shard).
    pub fn shard_segments(&self) -> u64 {
        if self.shard_seconds == 0.0 {
            0
        } else {
            (self.shard_seconds / self.segment_duration)
                .round()
                .max(1.0) as u64
        }
    }
}
