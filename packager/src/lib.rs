//! abr packager: transcodes a source video once into an aligned H.264/AAC ladder and writes it as
//! HLS (MPEG-TS segments) and DASH (fMP4 segments) with manifests, published atomically.
//!
//! The unit of work is a task of a [`plan`]: [`spec`] (what is asked) → [`plan`] ([`probe`] +
//! [`scan`]: boundaries, seek points, ladder, x264 settings, written to the [`work`] area) →
//! [`shard`] tasks ([`pipeline`]: decode → [`cfr`] → per-rung [`rendition`] workers over one
//! frame range; [`audio`]: one AAC pass) → [`assemble`] (TS [`mux`] across seams, fMP4
//! placement, [`manifest`]s, [`publish`]). [`job::run`] drives it all in one process.

pub mod assemble;
pub mod audio;
pub mod cfr;
pub mod codec;
pub mod demux;
pub mod error;
pub mod job;
pub mod ladder;
pub mod manifest;
pub mod mux;
pub mod package;
pub mod packets;
pub mod pipeline;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod publish;
pub mod rendition;
pub mod scan;
pub mod segment;
pub mod shard;
pub mod spec;
pub mod transcode;
pub mod work;

pub use error::{PackageError, Result};
pub use job::{run, Job, Summary};
pub use ladder::LadderSpec;
pub use progress::ProgressMode;
pub use spec::{Formats, Spec};

/// Initialises libav once and keeps its logging to errors (our own logs go through tracing).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
    });
}
