//! One demux-only pass over the video stream (no decoding): where it really ends, where its
//! keyframes are, and whether the file is truncated. The plan's frame count and each shard's
//! seek point come from here, so they follow the source's own timestamps (VFR included).

use ffmpeg_next as ff;

use crate::demux::{self, Next};
use crate::error::{PackageError, Result};
use crate::probe::Probe;

/// What the pass found, in the video stream's time base.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Time zero of the package: the video stream's start time (0 when unknown).
    pub origin: i64,
    /// Latest packet end (pts + duration) seen.
    pub end: i64,
    /// Presentation times of keyframe packets, ascending.
    pub keyframes: Vec<i64>,
    /// Video packets read.
    pub packets: u64,
}

/// Reads every video packet of `probe.path`; fails like decoding would on a truncated file.
pub fn scan(probe: &Probe) -> Result<Scan> {
    let path = &probe.path;
    let mut input = demux::open(path)?;
    let vidx = probe.video.index;
    let origin = {
        let st = input
            .stream(vidx)
            .ok_or_else(|| PackageError::NoVideo(path.clone()))?;
        let s = st.start_time();
        if s == ff::ffi::AV_NOPTS_VALUE {
            0
        } else {
            s
        }
    };
    demux::keep_only(&mut input, vidx);
    let mut end = i64::MIN;
    let mut first = i64::MAX;
    let mut keyframes = Vec::new();
    let mut packets = 0u64;
    let mut read_error = None;
    loop {
        let pkt = match demux::next_packet(&mut input) {
            Next::Packet(p) => p,
            Next::End => break,
            Next::Error(e) => {
                read_error = Some(e);
                break;
            }
        };
        if pkt.stream() != vidx {
            continue;
        }
        let Some(pts) = pkt.pts().or(pkt.dts()) else {
            continue;
        };
        packets += 1;
        first = first.min(pts);
        end = end.max(pts + pkt.duration().max(0));
        if pkt.is_key() {
            keyframes.push(pts);
        }
    }
    keyframes.sort_unstable();
    keyframes.dedup();
    let tb = f64::from(probe.video.time_base);
    let read_secs = if packets == 0 {
        0.0
    } else {
        (end - origin.min(first)) as f64 * tb
    };
    let expected = probe.duration_secs;
    let short = expected > 0.0 && read_secs < expected * 0.95 - 0.5;
    if packets == 0 || short || (read_error.is_some() && read_secs < expected - 1.0) {
        let detail = match read_error {
            Some(e) => format!("read error after {read_secs:.2} s of {expected:.2} s: {e}"),
            None if packets == 0 => "no video frame could be decoded".into(),
            None => format!("only {read_secs:.2} s of {expected:.2} s could be decoded"),
        };
        return Err(PackageError::Truncated {
            path: path.clone(),
            detail,
        });
    }
    if let Some(e) = read_error {
        tracing::warn!("read error near the end of {}: {e}", path.display());
    }
    Ok(Scan {
        origin,
        end,
        keyframes,
        packets,
    })
}
