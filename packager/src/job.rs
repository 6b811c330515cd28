//! A packaging job from start to publication: probe → ladder → decode thread feeding one worker
//! per rendition over bounded channels → manifests → atomic publish.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use ff::{format, Rescale};
use ffmpeg_next as ff;

use crate::error::{IoContext, PackageError, Result};
use crate::ladder::{fit, LadderSpec};
use crate::manifest;
use crate::package::{HlsVariant, PackageInfo};
use crate::probe::{self, Probe};
use crate::progress::{Progress, ProgressMode};
use crate::publish::Staging;
use crate::rendition::{self, AudioJob, AudioTrack, RungJob, RungMsg, RungOutput};
use crate::segment::Boundaries;
use crate::transcode::decode::{AudioDecoder, AudioFormat, VideoDecoder};
use crate::transcode::encode::{AacEncoder, X264Settings};

/// Which formats to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// HLS (MPEG-TS + m3u8).
    pub hls: bool,
    /// DASH (fMP4 + MPD).
    pub dash: bool,
}

/// A packaging job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Source file.
    pub input: PathBuf,
    /// Package directory to publish.
    pub out: PathBuf,
    /// Ladder.
    pub ladder: LadderSpec,
    /// Nominal segment duration in seconds.
    pub segment_duration: f64,
    /// Formats to write.
    pub formats: Formats,
    /// Replace an existing package.
    pub force: bool,
    /// Progress display.
    pub progress: ProgressMode,
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Published package directory.
    pub out: PathBuf,
    /// The input as probed.
    pub probe: Probe,
    /// Manifest data (renditions, segments, bitrates).
    pub info: PackageInfo,
    /// Wall time.
    pub elapsed: Duration,
}

/// Bounded queue depth (frames) between the decoder and each rendition worker: memory stays
/// flat whatever the input length.
const FRAME_QUEUE: usize = 8;

/// Encoded audio held back waiting for video to catch up: about 60 s of AAC frames at 48 kHz
/// (a few MB). Interleaving in real files is far tighter.
const MAX_HELD_AUDIO_PACKETS: usize = 2800;

/// Runs a job to completion. On any error nothing is published at `job.out`.
pub fn run(job: &Job) -> Result<Summary> {
    let started = Instant::now();
    if !(job.segment_duration.is_finite() && (1.0..=60.0).contains(&job.segment_duration)) {
        return Err(PackageError::Option(format!(
            "--segment-duration {} must be between 1 and 60 seconds",
            job.segment_duration
        )));
    }
    if !job.formats.hls && !job.formats.dash {
        return Err(PackageError::Option(
            "--formats must name hls, dash or both".into(),
        ));
    }
    job.ladder.validate()?;
    let probe = probe::probe(&job.input)?;
    if job.out.exists() && !job.force {
        return Err(PackageError::OutputExists(job.out.clone()));
    }
    let rungs = fit(&job.ladder, probe.video.display_size());
    let fr = probe.video.frame_rate;
    let boundaries = Boundaries {
        segment_ms: (job.segment_duration * 1000.0).round() as u64,
        frame_rate: fr,
    };
    let x264 = X264Settings {
        preset: job.ladder.preset.clone(),
        keyint: boundaries.max_segment_frames() + 1,
    };
    tracing::info!(
        input = %job.input.display(),
        video = %format!("{}x{} {} {}/{} fps rot {}", probe.video.width, probe.video.height, probe.video.codec, fr.num, fr.den, probe.video.rotation),
        audio = probe.audio.is_some(),
        rungs = %rungs.iter().map(|r| format!("{}={}x{}@{}k", r.name, r.width, r.height, r.bitrate / 1000)).collect::<Vec<_>>().join(" "),
        "packaging"
    );

    let staging = Staging::create(&job.out, job.force)?;
    let root = staging.path().to_path_buf();

    let aac = match &probe.audio {
        Some(_) => {
            let a = &job.ladder.audio;
            Some(AacEncoder::new(
                a.sample_rate,
                a.channels,
                u64::from(a.bitrate_kbps) * 1000,
            )?)
        }
        None => None,
    };
    let audio_track = aac.as_ref().map(|e| AudioTrack {
        asc: e.asc.clone(),
        sample_rate: e.sample_rate,
        channels: e.channels,
    });

    let abort = Arc::new(AtomicBool::new(false));
    let mut rung_txs: Vec<Sender<RungMsg>> = Vec::new();
    let mut progress_counters = Vec::new();
    let mut workers = Vec::new();
    for rung in &rungs {
        let (tx, rx) = bounded::<RungMsg>(FRAME_QUEUE);
        let counter = Arc::new(AtomicU64::new(0));
        let rj = RungJob {
            rung: rung.clone(),
            frame_rate: fr,
            boundaries,
            x264: x264.clone(),
            hls_dir: job.formats.hls.then(|| root.join("hls").join(&rung.name)),
            dash_dir: job.formats.dash.then(|| root.join("dash").join(&rung.name)),
            audio: audio_track.clone(),
            progress: counter.clone(),
        };
        let abort = abort.clone();
        let h = thread::Builder::new()
            .name(format!("rung-{}", rung.name))
            .spawn(move || {
                let r = rendition::run_rung(rj, rx);
                if r.is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
                r
            })
            .write_ctx(Path::new("worker thread"))?;
        rung_txs.push(tx);
        progress_counters.push(counter);
        workers.push(h);
    }
    let audio_name = format!("audio_{}k", job.ladder.audio.bitrate_kbps);
    let (audio_tx, audio_worker) = match (&audio_track, job.formats.dash) {
        (Some(track), true) => {
            let (tx, rx) = bounded::<Arc<ff::Packet>>(256);
            let aj = AudioJob {
                dir: root.join("dash").join(&audio_name),
                id: audio_name.clone(),
                track: track.clone(),
                boundaries,
            };
            let abort = abort.clone();
            let h = thread::Builder::new()
                .name("audio-dash".into())
                .spawn(move || {
                    let r = rendition::run_audio_dash(aj, rx);
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .write_ctx(Path::new("worker thread"))?;
            (Some(tx), Some(h))
        }
        _ => (None, None),
    };

    let decode = {
        let probe = probe.clone();
        let abort = abort.clone();
        let target = AudioFormat {
            sample_rate: job.ladder.audio.sample_rate,
            channels: job.ladder.audio.channels,
        };
        let hls = job.formats.hls;
        thread::Builder::new()
            .name("decode".into())
            .spawn(move || {
                let r = decode_all(
                    &probe,
                    boundaries,
                    aac,
                    target,
                    &rung_txs,
                    hls,
                    audio_tx.as_ref(),
                    &abort,
                );
                if r.is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
                r
            })
            .write_ctx(Path::new("decode thread"))?
    };

    let mut progress = Progress::new(job.progress, probe.duration_secs);
    let frame_secs = f64::from(fr.den) / f64::from(fr.num);
    while !decode.is_finished() || workers.iter().any(|w| !w.is_finished()) {
        let done = progress_counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        progress.update(done as f64 * frame_secs);
        thread::sleep(Duration::from_millis(100));
        if abort.load(Ordering::Relaxed) && decode.is_finished() {
            break;
        }
    }
    let decoded = join(decode);
    let outputs: Vec<Result<RungOutput>> = workers.into_iter().map(join).collect();
    let audio_rep = audio_worker.map(join).transpose();
    // Report the root cause: a worker's own error rather than the decoder's "aborted".
    let mut first_err = None;
    let mut keep = |e: PackageError| {
        if first_err.is_none() || matches!(first_err, Some(PackageError::Aborted)) {
            first_err = Some(e);
        }
    };
    let decoded = decoded.map_err(&mut keep).ok();
    let outputs: Vec<RungOutput> = outputs
        .into_iter()
        .filter_map(|r| r.map_err(&mut keep).ok())
        .collect();
    let audio_rep = audio_rep.map_err(&mut keep).ok().flatten();
    if let Some(e) = first_err {
        progress.finish(None);
        return Err(e);
    }
    let frames = decoded.ok_or(PackageError::Aborted)?;
    tracing::debug!(frames, "decoded");

    let info = package_info(job, &outputs, audio_rep, &audio_track, boundaries)?;
    write_manifests(&root, &info)?;
    let out = staging.publish()?;
    progress.finish(Some(&out));
    Ok(Summary {
        out,
        probe,
        info,
        elapsed: started.elapsed(),
    })
}

fn join<T>(h: thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join().unwrap_or_else(|_| {
        Err(PackageError::Option(
            "internal error: worker thread panicked".into(),
        ))
    })
}

fn package_info(
    job: &Job,
    outputs: &[RungOutput],
    dash_audio: Option<crate::package::DashRepresentation>,
    audio: &Option<AudioTrack>,
    boundaries: Boundaries,
) -> Result<PackageInfo> {
    let fr = boundaries.frame_rate;
    let first = outputs
        .first()
        .ok_or_else(|| PackageError::Manifest("no renditions".into()))?;
    // Every rung cuts at the same frames; anything else is a bug worth failing loudly on.
    for o in outputs {
        if o.starts != first.starts || o.end_frame != first.end_frame {
            return Err(PackageError::Manifest(format!(
                "renditions {} and {} are not aligned",
                first.rung.name, o.rung.name
            )));
        }
    }
    let (timescale, tick) = rendition::video_timescale(fr);
    let duration_secs = first.end_frame as f64 * f64::from(fr.den) / f64::from(fr.num);
    let audio_codec =
        match audio {
            Some(a) => Some(crate::codec::aac_codec_string(&a.asc).map_err(|source| {
                PackageError::Codec {
                    context: "audio".into(),
                    source,
                }
            })?),
            None => None,
        };
    let hls = if job.formats.hls {
        outputs
            .iter()
            .map(|o| {
                let segments = rendition::segments_from(&o.starts, o.end_frame, tick, &o.ts_bytes);
                let codecs = match &audio_codec {
                    Some(a) => format!("{},{a}", o.video_codec),
                    None => o.video_codec.clone(),
                };
                HlsVariant {
                    name: o.rung.name.clone(),
                    codecs,
                    video: crate::package::VideoInfo {
                        width: o.rung.width,
                        height: o.rung.height,
                        frame_rate: fr,
                    },
                    peak_bandwidth: rendition::peak_bitrate(&segments, timescale),
                    average_bandwidth: rendition::average_bitrate(&segments, timescale),
                    timescale,
                    segments,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let dash_video = if job.formats.dash {
        outputs.iter().map(|o| o.dash(fr)).collect()
    } else {
        Vec::new()
    };
    Ok(PackageInfo {
        duration_secs,
        segment_duration_secs: job.segment_duration,
        hls,
        dash_video,
        dash_audio,
    })
}

fn write_manifests(root: &Path, info: &PackageInfo) -> Result<()> {
    let write = |p: PathBuf, data: &[u8]| std::fs::write(&p, data).write_ctx(&p);
    if !info.hls.is_empty() {
        write(
            root.join("hls/master.m3u8"),
            &manifest::hls::master_playlist(info),
        )?;
        for v in &info.hls {
            write(
                root.join("hls").join(&v.name).join("index.m3u8"),
                &manifest::hls::media_playlist(v),
            )?;
        }
    }
    if !info.dash_video.is_empty() {
        let mpd = manifest::dash::mpd(info).map_err(|e| PackageError::Manifest(e.to_string()))?;
        write(root.join("dash/manifest.mpd"), mpd.as_bytes())?;
    }
    Ok(())
}

/// Reads the source once: decodes video into shared frames for every rendition worker and
/// encodes audio once, handing packets to the TS renditions and the DASH audio worker.
#[allow(clippy::too_many_arguments)]
fn decode_all(
    probe: &Probe,
    boundaries: Boundaries,
    mut aac: Option<AacEncoder>,
    target: AudioFormat,
    rung_txs: &[Sender<RungMsg>],
    audio_to_ts: bool,
    audio_tx: Option<&Sender<Arc<ff::Packet>>>,
    abort: &AtomicBool,
) -> Result<u64> {
    let path = &probe.path;
    let mut input = format::input(path).map_err(|e| PackageError::NotMedia {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let vidx = probe.video.index;
    let (vtb, origin) = {
        let st = input
            .stream(vidx)
            .ok_or_else(|| PackageError::NoVideo(path.clone()))?;
        let s = st.start_time();
        (
            st.time_base(),
            if s == ff::ffi::AV_NOPTS_VALUE { 0 } else { s },
        )
    };
    let mut vdec = VideoDecoder::new(
        &input
            .stream(vidx)
            .ok_or_else(|| PackageError::NoVideo(path.clone()))?,
        &probe.video,
        origin,
    )?;
    let mut adec = match (&probe.audio, aac.is_some()) {
        (Some(a), true) => {
            let st = input
                .stream(a.index)
                .ok_or_else(|| PackageError::NoVideo(path.clone()))?;
            let aorigin = origin.rescale(vtb, st.time_base());
            Some((a.index, AudioDecoder::new(&st, a, aorigin, target)?))
        }
        _ => None,
    };
    let fr = boundaries.frame_rate;
    let rate = target.sample_rate;
    let mut frames_sent: u64 = 0;
    let mut held: VecDeque<ff::Packet> = VecDeque::new();
    let send_audio = |p: ff::Packet| -> Result<()> {
        let p = Arc::new(p);
        if audio_to_ts {
            for tx in rung_txs {
                tx.send(RungMsg::Audio(p.clone()))
                    .map_err(|_| PackageError::Aborted)?;
            }
        }
        if let Some(tx) = audio_tx {
            tx.send(p).map_err(|_| PackageError::Aborted)?;
        }
        Ok(())
    };
    // Releases held audio that starts before frame `upto`: audio never runs ahead of video, so
    // every consumer sees it in time order and audio past the video's end can be dropped.
    let release = |held: &mut VecDeque<ff::Packet>, upto: u64| -> Result<()> {
        while let Some(p) = held.front() {
            let t = p.pts().unwrap_or(0);
            if i128::from(t) * i128::from(fr.num)
                >= i128::from(upto) * i128::from(fr.den) * i128::from(rate)
            {
                break;
            }
            if let Some(p) = held.pop_front() {
                send_audio(p)?;
            }
        }
        Ok(())
    };
    let on_frame = |f: ff::frame::Video, frames_sent: &mut u64| -> Result<()> {
        let idx = f.pts().unwrap_or(*frames_sent as i64).max(0) as u64;
        let idr = boundaries.is_start(idx);
        let f = Arc::new(f);
        for tx in rung_txs {
            tx.send(RungMsg::Frame(f.clone(), idr))
                .map_err(|_| PackageError::Aborted)?;
        }
        *frames_sent = idx + 1;
        Ok(())
    };
    let mut read_error = None;
    let mut dropped_audio = 0u64;
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(PackageError::Aborted);
        }
        // A fresh packet per read: FFmpeg 5.1's ff_read_packet resets a reused packet with
        // av_init_packet without unreferencing its buffer, leaking every packet read.
        let mut pkt = ff::Packet::empty();
        match pkt.read(&mut input) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => continue,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
        let si = pkt.stream();
        if si == vidx {
            vdec.push(Some(&pkt), &mut |f| on_frame(f, &mut frames_sent))?;
            release(&mut held, frames_sent)?;
        } else if let Some((aidx, ad)) = adec.as_mut() {
            if si == *aidx {
                if let Some(enc) = aac.as_mut() {
                    ad.push(Some(&pkt), &mut |f| {
                        enc.encode(&f, |p| {
                            held.push_back(p);
                            Ok(())
                        })
                    })?;
                    // Audio running far past the video's end (a video track that stopped early)
                    // is never released: drop the excess to keep memory bounded.
                    while held.len() > MAX_HELD_AUDIO_PACKETS {
                        held.pop_front();
                        dropped_audio += 1;
                    }
                }
            }
        }
    }
    vdec.push(None, &mut |f| on_frame(f, &mut frames_sent))?;
    if let (Some((_, ad)), Some(enc)) = (adec.as_mut(), aac.as_mut()) {
        ad.push(None, &mut |f| {
            enc.encode(&f, |p| {
                held.push_back(p);
                Ok(())
            })
        })?;
        enc.finish(|p| {
            held.push_back(p);
            Ok(())
        })?;
    }
    release(&mut held, frames_sent)?;
    if dropped_audio > 0 {
        tracing::warn!(
            dropped_audio,
            "audio continued far past the end of the video and was dropped"
        );
    }
    let decoded_secs = frames_sent as f64 * f64::from(fr.den) / f64::from(fr.num);
    let expected = probe.duration_secs;
    let short = expected > 0.0 && decoded_secs < expected * 0.95 - 0.5;
    if frames_sent == 0 || short || (read_error.is_some() && decoded_secs < expected - 1.0) {
        let detail = match read_error {
            Some(e) => format!("read error after {decoded_secs:.2} s of {expected:.2} s: {e}"),
            None if frames_sent == 0 => "no video frame could be decoded".into(),
            None => format!("only {decoded_secs:.2} s of {expected:.2} s could be decoded"),
        };
        return Err(PackageError::Truncated {
            path: path.clone(),
            detail,
        });
    }
    if let Some(e) = read_error {
        tracing::warn!("read error near the end of {}: {e}", path.display());
    }
    Ok(frames_sent)
}
