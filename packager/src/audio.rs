//! The audio task: one AAC encode over the whole source (per-shard audio would click and drift
//! at every join: AAC priming and 1024-sample frames), cut at the video's end. It writes the
//! packet file the TS renditions are muxed with and the DASH audio representation.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ffmpeg_next as ff;

use crate::demux::{self, Next};
use crate::error::{IoContext, PackageError, Result};
use crate::packets::{hex, FileDigest, PacketWriter};
use crate::plan::Plan;
use crate::rendition::{audio_before, AudioDashWriter, AUDIO_PACKETS};
use crate::transcode::decode::{AudioDecoder, AudioFormat};
use crate::transcode::encode::AacEncoder;
use crate::work::AudioRecord;

/// Encodes the audio of `plan`'s source into `dir`; `progress` counts output frames of video
/// time covered.
pub fn encode_audio(
    plan: &Plan,
    dir: &Path,
    abort: &AtomicBool,
    progress: &AtomicU64,
) -> Result<(AudioRecord, BTreeMap<String, FileDigest>)> {
    let (Some(ain), Some(aout)) = (&plan.audio_input, &plan.audio) else {
        return Err(PackageError::Option("the plan has no audio".into()));
    };
    let path = &plan.request.source.path;
    let mut input = demux::open(path)?;
    demux::keep_only(&mut input, ain.index);
    let target = AudioFormat {
        sample_rate: aout.sample_rate,
        channels: aout.channels,
    };
    let mut adec = {
        let st = input
            .stream(ain.index)
            .ok_or_else(|| PackageError::SourceChanged(path.clone()))?;
        AudioDecoder::new(&st, ain.origin, target)?
    };
    let mut aac = AacEncoder::new(aout.sample_rate, aout.channels, aout.bitrate)?;
    let rate = aac.sample_rate;
    let fr = plan.frame_rate;
    let end = plan.frames as i64;
    let pkt_path = dir.join(AUDIO_PACKETS);
    let mut packets = if plan.formats.hls {
        Some(PacketWriter::create(&pkt_path).write_ctx(&pkt_path)?)
    } else {
        None
    };
    let mut dash = if plan.formats.dash {
        Some(AudioDashWriter::new(
            dir.to_path_buf(),
            rate,
            aac.channels,
            &aac.asc,
            plan.boundaries(),
        )?)
    } else {
        None
    };
    let past_end = std::cell::Cell::new(false);
    // Audio past the video's end is dropped (the package ends with its last picture).
    let mut sink = |p: ff::Packet| -> Result<()> {
        let pts = p.pts().unwrap_or(0);
        if !audio_before(pts, rate, end, fr) {
            past_end.set(true);
            return Ok(());
        }
        let data = p.data().unwrap_or(&[]);
        if let Some(w) = packets.as_mut() {
            w.write(pts, pts, p.duration(), true, data)
                .write_ctx(&pkt_path)?;
        }
        if let Some(d) = dash.as_mut() {
            d.push(pts, p.duration(), data)?;
        }
        let frames = (i128::from(pts.max(0)) * i128::from(fr.num)
            / (i128::from(rate) * i128::from(fr.den))) as u64;
        progress.fetch_max(frames, Ordering::Relaxed);
        Ok(())
    };
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(PackageError::Aborted);
        }
        let pkt = match demux::next_packet(&mut input) {
            Next::Packet(p) => p,
            Next::End => break,
            Next::Error(e) => {
                tracing::warn!("audio: read error in {}: {e}", path.display());
                break;
            }
        };
        if pkt.stream() != ain.index {
            continue;
        }
        adec.push(Some(&pkt), &mut |f| aac.encode(&f, &mut sink))?;
        if past_end.get() {
            break;
        }
    }
    adec.push(None, &mut |f| aac.encode(&f, &mut sink))?;
    aac.finish(&mut sink)?;
    let mut files = BTreeMap::new();
    if let Some(w) = packets {
        files.insert(AUDIO_PACKETS.to_string(), w.finish().write_ctx(&pkt_path)?);
    }
    let mut segments = Vec::new();
    if let Some(d) = dash {
        let (s, f) = d.finish()?;
        segments = s;
        files.extend(f);
    }
    let codec = crate::codec::aac_codec_string(&aac.asc).map_err(|source| PackageError::Codec {
        context: "audio".into(),
        source,
    })?;
    progress.store(plan.frames, Ordering::Relaxed);
    Ok((
        AudioRecord {
            asc: hex(&aac.asc),
            codec,
            segments,
        },
        files,
    ))
}
