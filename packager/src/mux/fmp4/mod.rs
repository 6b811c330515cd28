//! Fragmented MP4 (CMAF) writer for DASH: one init segment and independent media segments per
//! single-track representation.
//!
//! Hand-written because the `mp4` crate cannot write fragmented files, and the output needed is
//! small and fixed: a dozen box types with known field values. As in gst-plugins-rs
//! `mux/isobmff`, box serialisation ([`boxes`]) is kept apart from the muxing logic here
//! (validation, timing, offsets).

mod boxes;

use boxes::{BoxWriter, SidxReference, TrunSample};
use thiserror::Error;

use crate::codec;
use crate::mux::Sample;

/// Sample flags of a sync sample: depends on no other sample.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: depends on others, `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Codec-specific track properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackKind {
    /// H.264 video.
    Video {
        /// Width in pixels (square pixels).
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Sequence parameter set NAL unit, header byte included.
        sps: Vec<u8>,
        /// Picture parameter set NAL unit, header byte included.
        pps: Vec<u8>,
    },
    /// AAC audio.
    Audio {
        /// Sample rate in Hz.
        sample_rate: u32,
        /// Channel count.
        channels: u16,
        /// AudioSpecificConfig.
        asc: Vec<u8>,
    },
}

/// One track of a representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    /// Track id (≥ 1).
    pub track_id: u32,
    /// Media timescale (ticks per second) of all sample times.
    pub timescale: u32,
    /// Codec properties.
    pub kind: TrackKind,
    /// ISO 639-2/T language code; `"und"` if unknown.
    pub language: String,
}

/// A media segment could not be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fmp4Error {
    /// A segment needs at least one sample.
    #[error("media segment has no samples")]
    NoSamples,
    /// A sample has a negative decode or presentation time.
    #[error("sample {index} has a negative timestamp (pts {pts}, dts {dts})")]
    NegativeTime {
        /// Index of the sample in the segment.
        index: usize,
        /// Its presentation time.
        pts: i64,
        /// Its decode time.
        dts: i64,
    },
    /// A sample's composition offset does not fit in 32 signed bits.
    #[error("sample {index}: composition offset {offset} does not fit in 32 bits")]
    CompositionOffset {
        /// Index of the sample in the segment.
        index: usize,
        /// The offset (pts minus decode time).
        offset: i64,
    },
    /// The segment's data or duration exceeds the 32-bit (31-bit for sizes in `sidx`) fields.
    #[error("media segment too large: {0}")]
    TooLarge(&'static str),
}

/// The initialization segment of `cfg`: `ftyp` and a `moov` describing one fragmented track.
///
/// Video dimensions above 65535 pixels do not fit the sample entry and are clamped.
pub fn init_segment(cfg: &TrackConfig) -> Vec<u8> {
    let mut w = BoxWriter::new();
    boxes::file_type(
        &mut w,
        b"ftyp",
        b"iso6",
        &[b"iso6", b"iso5", b"cmfc", b"dash"],
    );
    let (audio, width, height) = match &cfg.kind {
        TrackKind::Video { width, height, .. } => (false, clamp16(*width), clamp16(*height)),
        TrackKind::Audio { .. } => (true, 0, 0),
    };
    w.boxed(b"moov", |w| {
        boxes::mvhd(w, cfg.timescale, cfg.track_id.saturating_add(1));
        w.boxed(b"trak", |w| {
            boxes::tkhd(w, cfg.track_id, audio, width, height);
            w.boxed(b"mdia", |w| {
                boxes::mdhd(w, cfg.timescale, &cfg.language);
                match audio {
                    false => boxes::hdlr(w, b"vide", "VideoHandler"),
                    true => boxes::hdlr(w, b"soun", "SoundHandler"),
                }
                w.boxed(b"minf", |w| {
                    match audio {
                        false => boxes::vmhd(w),
                        true => boxes::smhd(w),
                    }
                    boxes::dinf(w);
                    w.boxed(b"stbl", |w| {
                        boxes::stsd(w, |w| match &cfg.kind {
                            TrackKind::Video { sps, pps, .. } => {
                                boxes::avc1(w, width, height, &codec::avcc_decoder_config(sps, pps))
                            }
                            TrackKind::Audio {
                                sample_rate,
                                channels,
                                asc,
                            } => boxes::mp4a(w, *sample_rate, *channels, asc),
                        });
                        boxes::empty_sample_tables(w);
                    });
                });
            });
        });
        boxes::mvex(w, cfg.track_id);
    });
    w.into_bytes()
}

fn clamp16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// A media segment holding `samples` (in decode order) as one fragment:
/// `styp`, `sidx` (one reference), `moof` and `mdat`.
///
/// The fragment's decode time is `samples[0].dts`; later decode times follow from the sample
/// durations, and each composition offset is the sample's pts minus that implied decode time,
/// so presentation times are exact even if `dts` and `duration` disagree.
/// Video samples must be AVCC (see [`codec::annexb_to_avcc`]); audio samples raw AAC frames.
pub fn media_segment(
    cfg: &TrackConfig,
    sequence_number: u32,
    samples: &[Sample],
) -> Result<Vec<u8>, Fmp4Error> {
    let first = samples.first().ok_or(Fmp4Error::NoSamples)?;
    let mut entries = Vec::with_capacity(samples.len());
    let mut decode_time = first.dts;
    let mut earliest_pts = i64::MAX;
    let mut mdat_size: u64 = 8;
    for (index, s) in samples.iter().enumerate() {
        if s.dts < 0 || s.pts < 0 {
            return Err(Fmp4Error::NegativeTime {
                index,
                pts: s.pts,
                dts: s.dts,
            });
        }
        let offset = s.pts - decode_time;
        let composition_offset =
            i32::try_from(offset).map_err(|_| Fmp4Error::CompositionOffset { index, offset })?;
        let size = u32::try_from(s.data.len()).map_err(|_| Fmp4Error::TooLarge("sample size"))?;
        entries.push(TrunSample {
            duration: s.duration,
            size,
            flags: if s.keyframe {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            },
            composition_offset,
        });
        earliest_pts = earliest_pts.min(s.pts);
        decode_time = decode_time
            .checked_add(i64::from(s.duration))
            .ok_or(Fmp4Error::TooLarge("decode time"))?;
        mdat_size += u64::from(size);
    }
    let duration =
        u32::try_from(decode_time - first.dts).map_err(|_| Fmp4Error::TooLarge("duration"))?;
    let mdat_size = u32::try_from(mdat_size).map_err(|_| Fmp4Error::TooLarge("mdat"))?;
    let with_cts = entries.iter().any(|e| e.composition_offset != 0);

    let mut moof = BoxWriter::new();
    let mut data_offset_pos = 0;
    moof.boxed(b"moof", |w| {
        boxes::mfhd(w, sequence_number);
        w.boxed(b"traf", |w| {
            boxes::tfhd(w, cfg.track_id);
            boxes::tfdt(w, first.dts as u64);
            data_offset_pos = boxes::trun(w, &entries, with_cts);
        });
    });
    // Sample data starts right after the moof and the mdat header (default-base-is-moof).
    let moof_size = moof.len();
    let data_offset = i32::try_from(moof_size + 8).map_err(|_| Fmp4Error::TooLarge("moof"))?;
    moof.patch_u32(data_offset_pos, data_offset as u32);
    let referenced_size = u64::from(mdat_size) + moof_size as u64;
    let referenced_size = u32::try_from(referenced_size)
        .ok()
        .filter(|&s| s < 1 << 31)
        .ok_or(Fmp4Error::TooLarge("sidx referenced_size"))?;

    let mut w = BoxWriter::new();
    boxes::file_type(&mut w, b"styp", b"msdh", &[b"msdh", b"msix"]);
    let reference = SidxReference {
        referenced_size,
        duration,
        starts_with_sap: first.keyframe,
        sap_type: u8::from(first.keyframe),
    };
    boxes::sidx(
        &mut w,
        cfg.track_id,
        cfg.timescale,
        earliest_pts as u64,
        &reference,
    );
    let mut out = w.into_bytes();
    out.reserve(referenced_size as usize);
    out.extend_from_slice(&moof.into_bytes());
    out.extend_from_slice(&mdat_size.to_be_bytes());
    out.extend_from_slice(b"mdat");
    for s in samples {
        out.extend_from_slice(&s.data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
