//! Per-rendition workers of a shard: one video worker per rung (scale → x264 → the rung's packet
//! file for the TS muxer of `assemble`, and its fMP4 segments), and the DASH audio writer of the
//! audio task. Encode once, package twice.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use ff::frame;
use ffmpeg_next as ff;

use crate::codec;
use crate::error::{IoContext, PackageError, Result};
use crate::ladder::Rung;
use crate::mux::fmp4::{self, TrackConfig, TrackKind};
use crate::mux::Sample;
use crate::package::{segment_file_name, Ratio, Segment};
use crate::packets::{write_durable, FileDigest, PacketWriter};
use crate::segment::Boundaries;
use crate::transcode::encode::{RungEncoder, X264Settings};
use crate::work::{RungRecord, SegmentRecord};

/// Name of a rung's packet file in a shard.
pub const VIDEO_PACKETS: &str = "video.pkt";
/// Name of the audio task's packet file.
pub const AUDIO_PACKETS: &str = "audio.pkt";

/// A decoded, upright frame to encode as output frame `index`, and whether it starts a segment.
pub struct FrameMsg {
    /// The picture (shared by every rung; the same picture may be sent for several indices).
    pub frame: Arc<frame::Video>,
    /// Output frame index.
    pub index: u64,
    /// Starts a segment (forced IDR).
    pub idr: bool,
}

/// Timescale used for a frame rate in fMP4 and manifests, and the ticks per frame.
/// Chosen so that one frame is a whole number of ticks and the clock is near 90 kHz.
pub fn video_timescale(fr: Ratio) -> (u32, u64) {
    let m = 90_000u32.div_ceil(fr.num).max(1);
    (fr.num * m, u64::from(fr.den) * u64::from(m))
}

/// Compares audio time `a / rate` with frame time `f × den / num`: true when audio < frame.
pub fn audio_before(a: i64, rate: u32, f: i64, fr: Ratio) -> bool {
    i128::from(a) * i128::from(fr.num) < i128::from(f) * i128::from(fr.den) * i128::from(rate)
}

/// Settings of one video worker.
pub struct RungJob {
    /// The rung.
    pub rung: Rung,
    /// Output frame rate.
    pub frame_rate: Ratio,
    /// Cut rule.
    pub boundaries: Boundaries,
    /// x264 settings.
    pub x264: X264Settings,
    /// The rung's directory in the task's temporary directory.
    pub dir: PathBuf,
    /// Write the packet file (HLS).
    pub packets: bool,
    /// Write fMP4 segments (DASH).
    pub dash: bool,
    /// Frames of the shard: `[start, end)`.
    pub frames: (u64, u64),
    /// Frames encoded so far (progress).
    pub progress: Arc<AtomicU64>,
    /// Set when the shard is abandoned (aborted, or its decoder failed): the worker stops at
    /// the next frame instead of encoding what is queued and flushing the encoder's lookahead.
    pub quit: Arc<AtomicBool>,
}

/// What a video worker wrote: its record and its files (relative to the task directory).
pub struct RungOutput {
    /// Sidecar record.
    pub record: RungRecord,
    /// Files written.
    pub files: BTreeMap<String, FileDigest>,
}

struct PendingSample {
    data: Vec<u8>,
    pts: i64,
    dts: i64,
    key: bool,
}

struct RungWorker {
    job: RungJob,
    enc: RungEncoder,
    packets: Option<PacketWriter>,
    config: Option<TrackConfig>,
    samples: Vec<PendingSample>,
    dts_shift: Option<i64>,
    codec_string: Option<String>,
    /// Start frame and number of the open segment.
    open: Option<(u64, u32)>,
    segments: Vec<SegmentRecord>,
    files: BTreeMap<String, FileDigest>,
    max_pts: i64,
    context: String,
}

/// Runs a video worker until its channel closes.
pub fn run_rung(job: RungJob, rx: Receiver<FrameMsg>) -> Result<RungOutput> {
    let context = format!("rendition {}", job.rung.name);
    let enc = RungEncoder::new(&job.rung, job.frame_rate, &job.x264)?;
    fs::create_dir_all(&job.dir).write_ctx(&job.dir)?;
    let packets = if job.packets {
        let p = job.dir.join(VIDEO_PACKETS);
        Some(PacketWriter::create(&p).write_ctx(&p)?)
    } else {
        None
    };
    let mut w = RungWorker {
        job,
        enc,
        packets,
        config: None,
        samples: Vec::new(),
        dts_shift: None,
        codec_string: None,
        open: None,
        segments: Vec::new(),
        files: BTreeMap::new(),
        max_pts: -1,
        context,
    };
    let mut pkts = Vec::new();
    for msg in rx {
        if w.job.quit.load(Ordering::Relaxed) {
            return Err(PackageError::Aborted);
        }
        let RungWorker { enc, .. } = &mut w;
        enc.encode(&msg.frame, msg.index, msg.idr, |p| {
            pkts.push(p);
            Ok(())
        })?;
        drop(msg);
        for p in pkts.drain(..) {
            w.on_video(p)?;
        }
    }
    if w.job.quit.load(Ordering::Relaxed) {
        return Err(PackageError::Aborted);
    }
    w.finish()
}

impl RungWorker {
    fn rel(&self, name: &str) -> String {
        format!("{}/{name}", self.job.rung.name)
    }

    fn on_video(&mut self, pkt: ff::Packet) -> Result<()> {
        let (Some(pts), Some(dts)) = (pkt.pts(), pkt.dts()) else {
            return Err(PackageError::Manifest(format!(
                "{}: encoder packet without timestamps",
                self.context
            )));
        };
        // The encoder delay: decode times start this far before the shard's first frame.
        let shift = *self
            .dts_shift
            .get_or_insert((self.job.frames.0 as i64 - dts).max(0));
        if pkt.is_key() && pts >= 0 && self.job.boundaries.is_start(pts as u64) {
            self.cut(pts as u64)?;
        }
        if self.open.is_none() {
            return Err(PackageError::Manifest(format!(
                "{}: first packet is not a keyframe",
                self.context
            )));
        }
        let data = pkt.data().unwrap_or(&[]);
        if let Some(pw) = self.packets.as_mut() {
            let p = self.job.dir.join(VIDEO_PACKETS);
            pw.write(pts, dts, pkt.duration(), pkt.is_key(), data)
                .write_ctx(&p)?;
        }
        let au = codec::annexb_to_avcc(data);
        if self.codec_string.is_none() {
            if let Some(sps) = &au.sps {
                self.codec_string =
                    Some(
                        codec::avc_codec_string(sps).map_err(|source| PackageError::Codec {
                            context: self.context.clone(),
                            source,
                        })?,
                    );
            }
        }
        if self.job.dash {
            if self.config.is_none() {
                if let (Some(sps), Some(pps)) = (&au.sps, &au.pps) {
                    let (timescale, _) = video_timescale(self.job.frame_rate);
                    let cfg = TrackConfig {
                        track_id: 1,
                        timescale,
                        kind: TrackKind::Video {
                            width: self.job.rung.width,
                            height: self.job.rung.height,
                            sps: sps.clone(),
                            pps: pps.clone(),
                        },
                        language: "und".into(),
                    };
                    let path = self.job.dir.join("init.mp4");
                    let d = write_durable(&path, &fmp4::init_segment(&cfg)).write_ctx(&path)?;
                    self.files.insert(self.rel("init.mp4"), d);
                    self.config = Some(cfg);
                }
            }
            // Media time = presentation time + encoder delay, so every composition offset is
            // non-negative (ffmpeg's mp4 demuxer mis-times negative offsets); the MPD maps it back
            // with presentationTimeOffset.
            self.samples.push(PendingSample {
                data: au.data,
                pts: pts + shift,
                dts: dts + shift,
                key: pkt.is_key(),
            });
        }
        self.max_pts = self.max_pts.max(pts);
        let done = (pts + 1 - self.job.frames.0 as i64).max(0) as u64;
        self.job.progress.fetch_max(done, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the open segment (if any) and opens the one starting at frame `start`.
    fn cut(&mut self, start: u64) -> Result<()> {
        if self.open.is_some() {
            self.close_segment(start)?;
        }
        let number = u32::try_from(self.job.boundaries.segment_of(start) + 1)
            .map_err(|_| PackageError::Manifest(format!("{}: too many segments", self.context)))?;
        self.open = Some((start, number));
        Ok(())
    }

    /// Writes the open fMP4 segment, which ends at frame `end`, and records it.
    fn close_segment(&mut self, end: u64) -> Result<()> {
        let Some((start, number)) = self.open.take() else {
            return Ok(());
        };
        let (_, tick) = video_timescale(self.job.frame_rate);
        let mut rec = SegmentRecord {
            number,
            pts: start * tick,
            duration: end.saturating_sub(start) * tick,
            frames: end.saturating_sub(start),
            bytes: 0,
            sha256: String::new(),
        };
        if self.job.dash {
            let cfg = self.config.as_ref().ok_or_else(|| {
                PackageError::Manifest(format!(
                    "{}: no SPS/PPS before the first segment ended",
                    self.context
                ))
            })?;
            let tick = tick as i64;
            let dts: Vec<i64> = self.samples.iter().map(|s| s.dts).collect();
            let samples: Vec<Sample> = self
                .samples
                .drain(..)
                .enumerate()
                .map(|(i, s)| {
                    // Decode durations: to the next sample; the last one of a segment gets one
                    // frame (x264's decode times advance one frame per packet).
                    let next = dts.get(i + 1).copied().unwrap_or(s.dts + 1);
                    Sample {
                        data: s.data,
                        pts: s.pts * tick,
                        dts: s.dts * tick,
                        duration: ((next - s.dts).max(1) * tick) as u32,
                        keyframe: s.key,
                    }
                })
                .collect();
            let bytes = fmp4::media_segment(cfg, number, &samples).map_err(|source| {
                PackageError::Fmp4 {
                    context: format!("{} segment {number}", self.context),
                    source,
                }
            })?;
            let name = segment_file_name(number, "m4s");
            let path = self.job.dir.join(&name);
            let d = write_durable(&path, &bytes).write_ctx(&path)?;
            rec.bytes = d.bytes;
            rec.sha256 = d.sha256.clone();
            self.files.insert(self.rel(&name), d);
        }
        self.segments.push(rec);
        Ok(())
    }

    fn finish(mut self) -> Result<RungOutput> {
        let mut pkts = Vec::new();
        self.enc.finish(|p| {
            pkts.push(p);
            Ok(())
        })?;
        for p in pkts {
            self.on_video(p)?;
        }
        let (start, end) = self.job.frames;
        if self.open.is_none() {
            return Err(PackageError::Truncated {
                path: PathBuf::from(&self.context),
                detail: "no video frame could be decoded".into(),
            });
        }
        let got = (self.max_pts + 1).max(0) as u64;
        if got != end {
            return Err(PackageError::Manifest(format!(
                "{}: encoded frames {start}..{got}, the plan has {start}..{end}",
                self.context
            )));
        }
        self.close_segment(end)?;
        if let Some(pw) = self.packets.take() {
            let p = self.job.dir.join(VIDEO_PACKETS);
            let d = pw.finish().write_ctx(&p)?;
            self.files.insert(self.rel(VIDEO_PACKETS), d);
        }
        Ok(RungOutput {
            record: RungRecord {
                name: self.job.rung.name.clone(),
                codec: self.codec_string.take().unwrap_or_default(),
                delay_frames: self.dts_shift.unwrap_or(0).max(0) as u64,
                segments: self.segments,
            },
            files: self.files,
        })
    }
}

/// Segments of a track from its records, in its timescale, shifted by `offset`.
pub fn segments_of(
    records: &[SegmentRecord],
    offset: u64,
    bytes: impl Fn(&SegmentRecord) -> u64,
) -> Vec<Segment> {
    records
        .iter()
        .map(|r| Segment {
            start: r.pts + offset,
            duration: r.duration,
            bytes: bytes(r),
        })
        .collect()
}

/// Peak bitrate over segments (bit/s). A short final segment (< half of the longest) is left
/// out when there are others: its fixed overhead would overstate the rate players must sustain.
pub fn peak_bitrate(segments: &[Segment], timescale: u32) -> u64 {
    let longest = segments.iter().map(|s| s.duration).max().unwrap_or(0);
    let rate = |s: &Segment| s.bytes as f64 * 8.0 * f64::from(timescale) / s.duration.max(1) as f64;
    let n = segments.len();
    segments
        .iter()
        .enumerate()
        .filter(|(i, s)| n == 1 || *i + 1 < n || s.duration * 2 >= longest)
        .map(|(_, s)| rate(s).ceil() as u64)
        .max()
        .unwrap_or(0)
}

/// Average bitrate over all segments (bit/s).
pub fn average_bitrate(segments: &[Segment], timescale: u32) -> u64 {
    let bytes: u64 = segments.iter().map(|s| s.bytes).sum();
    let dur: u64 = segments.iter().map(|s| s.duration).sum();
    (bytes as f64 * 8.0 * f64::from(timescale) / dur.max(1) as f64).ceil() as u64
}

/// Writes the DASH audio representation of the audio task: cuts AAC packets at the video
/// segment boundaries into independent fMP4 segments.
pub struct AudioDashWriter {
    cfg: TrackConfig,
    dir: PathBuf,
    boundaries: Boundaries,
    rate: u32,
    pending: Vec<Sample>,
    seg_index: u64,
    /// Segments written.
    pub segments: Vec<SegmentRecord>,
    /// Files written (names relative to the task directory).
    pub files: BTreeMap<String, FileDigest>,
}

impl AudioDashWriter {
    /// Writes `init.mp4` into `dir` for an AAC track.
    pub fn new(
        dir: PathBuf,
        sample_rate: u32,
        channels: u32,
        asc: &[u8],
        boundaries: Boundaries,
    ) -> Result<Self> {
        let cfg = TrackConfig {
            track_id: 1,
            timescale: sample_rate,
            kind: TrackKind::Audio {
                sample_rate,
                channels: channels as u16,
                asc: asc.to_vec(),
            },
            language: "und".into(),
        };
        let init = dir.join("init.mp4");
        let d = write_durable(&init, &fmp4::init_segment(&cfg)).write_ctx(&init)?;
        let mut files = BTreeMap::new();
        files.insert("init.mp4".to_string(), d);
        Ok(AudioDashWriter {
            cfg,
            dir,
            boundaries,
            rate: sample_rate,
            pending: Vec::new(),
            seg_index: 0,
            segments: Vec::new(),
            files,
        })
    }

    /// Adds an AAC packet (time base 1/sample_rate). Priming (negative time) is dropped: DASH
    /// segments start at time zero.
    pub fn push(&mut self, pts: i64, duration: i64, data: &[u8]) -> Result<()> {
        if pts < 0 {
            return Ok(());
        }
        let fr = self.boundaries.frame_rate;
        while !audio_before(
            pts,
            self.rate,
            self.boundaries.start_frame(self.seg_index + 1) as i64,
            fr,
        ) {
            self.seg_index += 1;
            self.flush()?;
        }
        self.pending.push(Sample {
            data: data.to_vec(),
            pts,
            dts: pts,
            duration: u32::try_from(duration).unwrap_or(1024).max(1),
            keyframe: true,
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let n = self.segments.len() as u32 + 1;
        let bytes = fmp4::media_segment(&self.cfg, n, &self.pending).map_err(|source| {
            PackageError::Fmp4 {
                context: format!("audio segment {n}"),
                source,
            }
        })?;
        let name = segment_file_name(n, "m4s");
        let path = self.dir.join(&name);
        let d = write_durable(&path, &bytes).write_ctx(&path)?;
        self.segments.push(SegmentRecord {
            number: n,
            pts: self.pending[0].pts as u64,
            duration: self.pending.iter().map(|s| u64::from(s.duration)).sum(),
            frames: self.pending.len() as u64,
            bytes: d.bytes,
            sha256: d.sha256.clone(),
        });
        self.files.insert(name, d);
        self.pending.clear();
        Ok(())
    }

    /// Writes the last segment.
    pub fn finish(mut self) -> Result<(Vec<SegmentRecord>, BTreeMap<String, FileDigest>)> {
        self.flush()?;
        Ok((self.segments, self.files))
    }
}
