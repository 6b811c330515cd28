//! What a packaging job wrote: the description the manifest writers turn into m3u8 and MPD files.
//!
//! Public layout of a package directory (stable; `abr serve` exposes it as URLs):
//! ```text
//! hls/master.m3u8   hls/<rung>/index.m3u8   hls/<rung>/seg_00001.ts ...
//! dash/manifest.mpd dash/<rep>/init.mp4     dash/<rep>/seg_00001.m4s ...
//! ```

/// File name of segment `number` (1-based) with extension `ext` (`"ts"` or `"m4s"`).
pub fn segment_file_name(number: u32, ext: &str) -> String {
    format!("seg_{number:05}.{ext}")
}

/// An exact rational number (frame rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ratio {
    /// Numerator.
    pub num: u32,
    /// Denominator (never 0).
    pub den: u32,
}

impl Ratio {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

/// One written media segment, in its track's timescale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Earliest presentation time, in media time (for DASH: before `presentation_time_offset`).
    pub start: u64,
    /// Presentation duration.
    pub duration: u64,
    /// Size of the segment file in bytes.
    pub bytes: u64,
}

/// Video properties of a rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Coded width in pixels (square pixels).
    pub width: u32,
    /// Coded height in pixels.
    pub height: u32,
    /// Constant output frame rate.
    pub frame_rate: Ratio,
}

/// Audio properties of a rendition.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u32,
}

/// One DASH representation (a track with its own init segment and media segments).
#[derive(Debug, Clone, PartialEq)]
pub struct DashRepresentation {
    /// Representation id and directory name, e.g. `720p` or `audio_128k`.
    pub id: String,
    /// RFC 6381 codec string of this track alone, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codecs: String,
    /// Timescale of `segments` (never 0).
    pub timescale: u32,
    /// Media time that maps to period time zero (`@presentationTimeOffset`): video media time is
    /// shifted by the encoder's B-frame delay so composition offsets stay non-negative.
    pub presentation_time_offset: u64,
    /// Measured peak bitrate over segments, bits/s (DASH `@bandwidth`).
    pub bandwidth: u64,
    /// Video properties, for video representations.
    pub video: Option<VideoInfo>,
    /// Audio properties, for audio representations.
    pub audio: Option<AudioInfo>,
    /// Media segments in order; file `k` (1-based) is `seg_0000k.m4s`.
    pub segments: Vec<Segment>,
}

/// One HLS variant stream (an MPEG-TS rendition with muxed audio, if any).
#[derive(Debug, Clone, PartialEq)]
pub struct HlsVariant {
    /// Directory name, e.g. `720p`.
    pub name: String,
    /// Combined RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Video properties.
    pub video: VideoInfo,
    /// Measured peak segment bitrate, bits/s (`BANDWIDTH`).
    pub peak_bandwidth: u64,
    /// Measured average bitrate, bits/s (`AVERAGE-BANDWIDTH`).
    pub average_bandwidth: u64,
    /// Timescale of `segments` (90 kHz for TS).
    pub timescale: u32,
    /// Segments in order; file `k` (1-based) is `seg_0000k.ts`.
    pub segments: Vec<Segment>,
}

/// Everything the manifest writers need.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageInfo {
    /// Total presentation duration in seconds.
    pub duration_secs: f64,
    /// Nominal segment duration in seconds.
    pub segment_duration_secs: f64,
    /// HLS variants, highest bandwidth first. Empty if HLS was not requested.
    pub hls: Vec<HlsVariant>,
    /// DASH video representations, highest first. Empty if DASH was not requested.
    pub dash_video: Vec<DashRepresentation>,
    /// DASH audio representation, if the source has audio and DASH was requested.
    pub dash_audio: Option<DashRepresentation>,
}
