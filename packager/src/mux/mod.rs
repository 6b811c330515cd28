//! Container writers: MPEG-TS for HLS and fragmented MP4 (CMAF) for DASH.

pub mod fmp4;
pub mod ts;

/// One encoded access unit in its track's timescale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Payload. Video: length-prefixed (4-byte) NAL units without SPS/PPS/AUD for fMP4.
    /// Audio: one raw AAC frame (no ADTS header).
    pub data: Vec<u8>,
    /// Presentation time.
    pub pts: i64,
    /// Decode time (≤ pts for the first sample of a segment).
    pub dts: i64,
    /// Duration in decode order.
    pub duration: u32,
    /// Sync sample (IDR / every audio frame).
    pub keyframe: bool,
}
