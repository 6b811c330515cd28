//! abr packager: transcodes a source video once into an aligned H.264/AAC ladder and writes it as
//! HLS (MPEG-TS segments) and DASH (fMP4 segments) with manifests, published atomically.
//!
//! Data flows one way: [`probe`] → [`transcode`] (decode → scale → encode) → [`rendition`]
//! workers cutting at [`segment`] boundaries → [`mux`] (TS and fMP4) → [`manifest`] →
//! [`publish`]. [`job::run`] drives it all.

pub mod codec;
pub mod error;
pub mod job;
pub mod ladder;
pub mod manifest;
pub mod mux;
pub mod package;
pub mod probe;
pub mod progress;
pub mod publish;
pub mod rendition;
pub mod segment;
pub mod transcode;

pub use error::{PackageError, Result};
pub use job::{run, Formats, Job, Summary};
pub use ladder::LadderSpec;
pub use progress::ProgressMode;

/// Initialises libav once and keeps its logging to errors (our own logs go through tracing).
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
    });
}
