//! Per-rendition workers: the muxing state machines that turn encoded packets into aligned
//! segments. One video worker per rung (scale → x264 → TS + fMP4, audio muxed into the TS), one
//! audio worker for the DASH audio representation. Encode once, package twice.

use std::collections::VecDeque;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use ff::{frame, Rational};
use ffmpeg_next as ff;

use crate::codec;
use crate::error::{IoContext, PackageError, Result};
use crate::ladder::Rung;
use crate::mux::fmp4::{self, TrackConfig, TrackKind};
use crate::mux::ts::{TsAudio, TsWriter};
use crate::mux::Sample;
use crate::package::{segment_file_name, DashRepresentation, Ratio, Segment, VideoInfo};
use crate::segment::Boundaries;
use crate::transcode::encode::{RungEncoder, X264Settings};

/// Work for a video worker, in source order.
pub enum RungMsg {
    /// A decoded, upright, constant-rate frame (pts = frame index) and whether it starts a segment.
    Frame(Arc<frame::Video>, bool),
    /// An encoded AAC packet (time base 1/sample_rate) to mux into the TS rendition.
    Audio(Arc<ff::Packet>),
}

/// The encoded audio track as the muxers need it.
#[derive(Debug, Clone)]
pub struct AudioTrack {
    /// AudioSpecificConfig.
    pub asc: Vec<u8>,
    /// Sample rate (audio packets are timestamped in 1/sample_rate).
    pub sample_rate: u32,
    /// Channels.
    pub channels: u32,
}

/// Timescale used for a frame rate in fMP4 and manifests, and the ticks per frame.
/// Chosen so that one frame is a whole number of ticks and the clock is near 90 kHz.
pub fn video_timescale(fr: Ratio) -> (u32, u64) {
    let m = 90_000u32.div_ceil(fr.num).max(1);
    (fr.num * m, u64::from(fr.den) * u64::from(m))
}

/// Compares audio time `a / rate` with frame time `f × den / num`: true when audio < frame.
fn audio_before(a: i64, rate: u32, f: i64, fr: Ratio) -> bool {
    i128::from(a) * i128::from(fr.num) < i128::from(f) * i128::from(fr.den) * i128::from(rate)
}

/// What a video worker wrote.
#[derive(Debug, Clone)]
pub struct RungOutput {
    /// Rung.
    pub rung: Rung,
    /// `avc1.*` codec string from the SPS.
    pub video_codec: String,
    /// Start frame of each segment, in order.
    pub starts: Vec<u64>,
    /// End frame (one past the last frame).
    pub end_frame: u64,
    /// Encoder delay in frames (B-frame reordering): DASH media time runs this far ahead.
    pub delay_frames: u64,
    /// TS segment sizes (empty without HLS).
    pub ts_bytes: Vec<u64>,
    /// fMP4 media segment sizes (empty without DASH).
    pub m4s_bytes: Vec<u64>,
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
    /// `hls/<rung>` directory, when writing HLS.
    pub hls_dir: Option<PathBuf>,
    /// `dash/<rung>` directory, when writing DASH.
    pub dash_dir: Option<PathBuf>,
    /// Audio muxed into the TS, if any.
    pub audio: Option<AudioTrack>,
    /// Frames encoded so far (progress).
    pub progress: Arc<AtomicU64>,
}

struct PendingSample {
    data: Vec<u8>,
    pts: i64,
    dts: i64,
    key: bool,
}

struct DashState {
    dir: PathBuf,
    config: Option<TrackConfig>,
    samples: Vec<PendingSample>,
}

struct RungWorker {
    job: RungJob,
    enc: RungEncoder,
    ts: Option<TsWriter>,
    dash: Option<DashState>,
    audio_q: VecDeque<Arc<ff::Packet>>,
    dts_shift: Option<i64>,
    codec_string: Option<String>,
    out: RungOutput,
    max_pts: i64,
    context: String,
}

/// Runs a video worker until its channel closes.
pub fn run_rung(job: RungJob, rx: Receiver<RungMsg>) -> Result<RungOutput> {
    let context = format!("rendition {}", job.rung.name);
    let enc = RungEncoder::new(&job.rung, job.frame_rate, &job.x264)?;
    let ts = match &job.hls_dir {
        Some(dir) => {
            fs::create_dir_all(dir).write_ctx(dir)?;
            let audio = job.audio.as_ref().map(|a| TsAudio {
                sample_rate: a.sample_rate,
                channels: a.channels,
                asc: a.asc.clone(),
                time_base: Rational::new(1, a.sample_rate as i32),
            });
            let tb = Rational::new(job.frame_rate.den as i32, job.frame_rate.num as i32);
            Some(TsWriter::new(
                dir,
                job.rung.width,
                job.rung.height,
                tb,
                audio.as_ref(),
            )?)
        }
        None => None,
    };
    let dash = match &job.dash_dir {
        Some(dir) => {
            fs::create_dir_all(dir).write_ctx(dir)?;
            Some(DashState {
                dir: dir.clone(),
                config: None,
                samples: Vec::new(),
            })
        }
        None => None,
    };
    let out = RungOutput {
        rung: job.rung.clone(),
        video_codec: String::new(),
        starts: Vec::new(),
        end_frame: 0,
        delay_frames: 0,
        ts_bytes: Vec::new(),
        m4s_bytes: Vec::new(),
    };
    let mut w = RungWorker {
        job,
        enc,
        ts,
        dash,
        audio_q: VecDeque::new(),
        dts_shift: None,
        codec_string: None,
        out,
        max_pts: -1,
        context,
    };
    for msg in rx {
        match msg {
            RungMsg::Frame(f, idr) => {
                let RungWorker { enc, .. } = &mut w;
                let mut pkts = Vec::new();
                enc.encode(&f, idr, |p| {
                    pkts.push(p);
                    Ok(())
                })?;
                for p in pkts {
                    w.on_video(p)?;
                }
            }
            RungMsg::Audio(p) => w.audio_q.push_back(p),
        }
    }
    w.finish()
}

impl RungWorker {
    fn on_video(&mut self, pkt: ff::Packet) -> Result<()> {
        let (Some(pts), Some(dts)) = (pkt.pts(), pkt.dts()) else {
            return Err(PackageError::Manifest(format!(
                "{}: encoder packet without timestamps",
                self.context
            )));
        };
        let shift = *self.dts_shift.get_or_insert((-dts).max(0));
        if pkt.is_key() && pts >= 0 && self.job.boundaries.is_start(pts as u64) {
            self.cut(pts)?;
        }
        if self.out.starts.is_empty() {
            return Err(PackageError::Manifest(format!(
                "{}: first packet is not a keyframe",
                self.context
            )));
        }
        self.write_audio_before(dts)?;
        if let Some(ts) = self.ts.as_mut() {
            ts.write_video(&pkt)?;
        }
        let data = pkt.data().unwrap_or(&[]);
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
        if let Some(d) = self.dash.as_mut() {
            if d.config.is_none() {
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
                    let path = d.dir.join("init.mp4");
                    fs::write(&path, fmp4::init_segment(&cfg)).write_ctx(&path)?;
                    d.config = Some(cfg);
                }
            }
            // Media time = presentation time + encoder delay, so every composition offset is
            // non-negative (ffmpeg's mp4 demuxer mis-times negative offsets); the MPD maps it back
            // with presentationTimeOffset.
            d.samples.push(PendingSample {
                data: au.data,
                pts: pts + shift,
                dts: dts + shift,
                key: pkt.is_key(),
            });
        }
        self.max_pts = self.max_pts.max(pts);
        self.job
            .progress
            .fetch_max((pts + 1) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Writes queued audio earlier than video frame time `frame` into the current TS segment.
    fn write_audio_before(&mut self, frame: i64) -> Result<()> {
        let Some(a) = self.job.audio.as_ref() else {
            return Ok(());
        };
        let rate = a.sample_rate;
        while let Some(p) = self.audio_q.front() {
            let t = p.pts().unwrap_or(0);
            if !audio_before(t, rate, frame, self.job.frame_rate) {
                break;
            }
            if let Some(ts) = self.ts.as_mut() {
                ts.write_audio(p)?;
            }
            self.audio_q.pop_front();
        }
        Ok(())
    }

    /// Closes the open segment (if any) and opens the next one starting at frame `start`.
    fn cut(&mut self, start: i64) -> Result<()> {
        if !self.out.starts.is_empty() {
            self.write_audio_before(start)?;
            self.close_segment(false)?;
        }
        self.out.starts.push(start as u64);
        let n = self.out.starts.len() as u32;
        if let Some(ts) = self.ts.as_mut() {
            ts.start_segment(n)?;
        }
        Ok(())
    }

    /// Writes the open fMP4 segment and closes the TS segment (the final TS segment is closed
    /// by the trailer in `finish`).
    fn close_segment(&mut self, is_final: bool) -> Result<()> {
        let n = self.out.starts.len() as u32;
        if let Some(ts) = self.ts.as_mut() {
            if !is_final {
                self.out.ts_bytes.push(ts.finish_segment()?);
            }
        }
        if let Some(d) = self.dash.as_mut() {
            let cfg = d.config.as_ref().ok_or_else(|| {
                PackageError::Manifest(format!(
                    "{}: no SPS/PPS before the first segment ended",
                    self.context
                ))
            })?;
            let (_, tick) = video_timescale(self.job.frame_rate);
            let tick = tick as i64;
            let samples: Vec<Sample> = d
                .samples
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    // Decode durations: to the next sample; the last one of a segment gets one
                    // frame (x264's decode times advance one frame per packet).
                    let next = d.samples.get(i + 1).map_or(s.dts + 1, |n| n.dts);
                    Sample {
                        data: s.data.clone(),
                        pts: s.pts * tick,
                        dts: s.dts * tick,
                        duration: ((next - s.dts).max(1) * tick) as u32,
                        keyframe: s.key,
                    }
                })
                .collect();
            d.samples.clear();
            let bytes =
                fmp4::media_segment(cfg, n, &samples).map_err(|source| PackageError::Fmp4 {
                    context: self.context.clone(),
                    source,
                })?;
            let path = d.dir.join(segment_file_name(n, "m4s"));
            fs::write(&path, &bytes).write_ctx(&path)?;
            self.out.m4s_bytes.push(bytes.len() as u64);
        }
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
        if self.out.starts.is_empty() {
            return Err(PackageError::Truncated {
                path: PathBuf::from(&self.context),
                detail: "no video frame could be decoded".into(),
            });
        }
        self.write_audio_before(i64::MAX / 1_000_000)?;
        self.close_segment(true)?;
        if let Some(ts) = self.ts.take() {
            self.out.ts_bytes.push(ts.finish()?);
        }
        self.out.end_frame = (self.max_pts + 1) as u64;
        self.out.delay_frames = self.dts_shift.unwrap_or(0).max(0) as u64;
        self.out.video_codec = self.codec_string.take().unwrap_or_default();
        Ok(self.out)
    }
}

impl RungOutput {
    /// The DASH representation this worker wrote.
    pub fn dash(&self, frame_rate: Ratio) -> DashRepresentation {
        let (timescale, tick) = video_timescale(frame_rate);
        let pto = self.delay_frames * tick;
        let mut segments = segments_from(&self.starts, self.end_frame, tick, &self.m4s_bytes);
        for s in &mut segments {
            s.start += pto;
        }
        DashRepresentation {
            presentation_time_offset: pto,
            id: self.rung.name.clone(),
            codecs: self.video_codec.clone(),
            timescale,
            bandwidth: peak_bitrate(&segments, timescale),
            video: Some(VideoInfo {
                width: self.rung.width,
                height: self.rung.height,
                frame_rate,
            }),
            audio: None,
            segments,
        }
    }
}

/// Segments from start frames and sizes, in ticks.
pub(crate) fn segments_from(starts: &[u64], end: u64, tick: u64, bytes: &[u64]) -> Vec<Segment> {
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let e = starts.get(i + 1).copied().unwrap_or(end).max(s);
            Segment {
                start: s * tick,
                duration: (e - s) * tick,
                bytes: bytes.get(i).copied().unwrap_or(0),
            }
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

/// Settings of the DASH audio worker.
pub struct AudioJob {
    /// `dash/audio_<kbps>k` directory.
    pub dir: PathBuf,
    /// Representation id.
    pub id: String,
    /// The encoded track.
    pub track: AudioTrack,
    /// Cut rule (video frame boundaries).
    pub boundaries: Boundaries,
}

/// Writes the DASH audio representation: cuts AAC packets at the video segment boundaries.
pub fn run_audio_dash(job: AudioJob, rx: Receiver<Arc<ff::Packet>>) -> Result<DashRepresentation> {
    let context = format!("audio representation {}", job.id);
    fs::create_dir_all(&job.dir).write_ctx(&job.dir)?;
    let rate = job.track.sample_rate;
    let cfg = TrackConfig {
        track_id: 1,
        timescale: rate,
        kind: TrackKind::Audio {
            sample_rate: rate,
            channels: job.track.channels as u16,
            asc: job.track.asc.clone(),
        },
        language: "und".into(),
    };
    let init = job.dir.join("init.mp4");
    fs::write(&init, fmp4::init_segment(&cfg)).write_ctx(&init)?;
    let fr = job.boundaries.frame_rate;
    let mut segments: Vec<Segment> = Vec::new();
    let mut pending: Vec<Sample> = Vec::new();
    let mut seg_index: u64 = 0;
    let flush = |pending: &mut Vec<Sample>, segments: &mut Vec<Segment>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let n = segments.len() as u32 + 1;
        let bytes = fmp4::media_segment(&cfg, n, pending).map_err(|source| PackageError::Fmp4 {
            context: context.clone(),
            source,
        })?;
        let path = job.dir.join(segment_file_name(n, "m4s"));
        fs::write(&path, &bytes).write_ctx(&path)?;
        let start = pending[0].pts as u64;
        let duration = pending.iter().map(|s| u64::from(s.duration)).sum();
        segments.push(Segment {
            start,
            duration,
            bytes: bytes.len() as u64,
        });
        pending.clear();
        Ok(())
    };
    for p in rx {
        let Some(pts) = p.pts() else { continue };
        // AAC priming (negative time) is dropped for DASH: segments start at time zero.
        if pts < 0 {
            continue;
        }
        while !audio_before(
            pts,
            rate,
            job.boundaries.start_frame(seg_index + 1) as i64,
            fr,
        ) {
            seg_index += 1;
            flush(&mut pending, &mut segments)?;
        }
        let duration = u32::try_from(p.duration()).unwrap_or(1024).max(1);
        pending.push(Sample {
            data: p.data().unwrap_or(&[]).to_vec(),
            pts,
            dts: pts,
            duration,
            keyframe: true,
        });
    }
    flush(&mut pending, &mut segments)?;
    let codecs = codec::aac_codec_string(&job.track.asc)
        .map_err(|source| PackageError::Codec { context, source })?;
    Ok(DashRepresentation {
        presentation_time_offset: 0,
        id: job.id,
        codecs,
        timescale: rate,
        bandwidth: peak_bitrate(&segments, rate),
        video: None,
        audio: Some(crate::package::AudioInfo {
            sample_rate: rate,
            channels: job.track.channels,
        }),
        segments,
    })
}
