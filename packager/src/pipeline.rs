//! Encoding one shard: seek to the source keyframe at or before the shard's first frame, decode
//! once and drop up to it, map onto the constant-rate grid, and feed exactly the shard's frames
//! to one worker per rung over bounded channels (memory stays flat whatever the length).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Sender};
use ff::format;
use ffmpeg_next as ff;

use crate::cfr::{nearest_frame, CfrMapper};
use crate::demux::{self, Next};
use crate::error::{IoContext, PackageError, Result};
use crate::packets::FileDigest;
use crate::plan::{Plan, ShardPlan};
use crate::rendition::{self, FrameMsg, RungJob, RungOutput};
use crate::transcode::decode::VideoDecoder;
use crate::work::RungRecord;

/// Bounded queue depth (frames) between the decoder and each rendition worker.
const FRAME_QUEUE: usize = 8;

/// A source shorter than its plan by at most this many seconds has its last frame held to the
/// planned end (as the fps filter does); more is a truncated source.
const MAX_SHORTFALL_SECS: u64 = 1;

/// What a shard wrote: per rung, in plan order, and every file.
pub struct ShardOutput {
    /// Per rung.
    pub rungs: Vec<RungRecord>,
    /// Files (relative to the task directory).
    pub files: BTreeMap<String, FileDigest>,
}

/// Encodes `shard` of `plan` into `dir`. `progress` counts frames encoded by the slowest rung.
pub fn encode_shard(
    plan: &Plan,
    shard: &ShardPlan,
    dir: &Path,
    abort: &AtomicBool,
    progress: &AtomicU64,
) -> Result<ShardOutput> {
    let boundaries = plan.boundaries();
    let mut txs = Vec::new();
    let mut counters = Vec::new();
    let mut workers = Vec::new();
    let quit = Arc::new(AtomicBool::new(false));
    for rung in &plan.rungs {
        let (tx, rx) = bounded::<FrameMsg>(FRAME_QUEUE);
        let counter = Arc::new(AtomicU64::new(0));
        let job = RungJob {
            rung: rung.clone(),
            frame_rate: plan.frame_rate,
            boundaries,
            x264: plan.x264.clone(),
            dir: dir.join(&rung.name),
            packets: plan.formats.hls,
            dash: plan.formats.dash,
            frames: (shard.start_frame, shard.end_frame),
            progress: counter.clone(),
            quit: quit.clone(),
        };
        let h = thread::Builder::new()
            .name(format!("rung-{}", rung.name))
            .spawn(move || rendition::run_rung(job, rx))
            .write_ctx(Path::new("worker thread"))?;
        txs.push(tx);
        counters.push(counter);
        workers.push(h);
    }
    let stop = AtomicBool::new(false);
    let total = shard.end_frame - shard.start_frame;
    let (decoded, outputs) = thread::scope(|s| {
        s.spawn(|| {
            // Progress of the slowest rung, until the workers are done; an abort reaches the
            // rung workers from here at once (they stop at their next frame and drop their
            // queues, so a decoder blocked on a full queue stops too), not only when the
            // decoder next checks it.
            while !stop.load(Ordering::Relaxed) {
                if abort.load(Ordering::Relaxed) {
                    quit.store(true, Ordering::Relaxed);
                }
                let done = counters
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                progress.store(done.min(total), Ordering::Relaxed);
                thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let r = decode_range(plan, shard, &txs, abort);
        if r.is_err() {
            // Nobody will use the rungs' output: stop them without flushing their encoders.
            quit.store(true, Ordering::Relaxed);
        }
        drop(std::mem::take(&mut txs));
        let outputs: Vec<Result<RungOutput>> = workers
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PackageError::Option(
                        "internal error: worker thread panicked".into(),
                    ))
                })
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        (r, outputs)
    });
    // Report the root cause: a worker's own error rather than the decoder's "aborted".
    let mut first_err = None;
    if let Err(e) = decoded {
        first_err = Some(e);
    }
    let mut rungs = Vec::new();
    let mut files = BTreeMap::new();
    for o in outputs {
        match o {
            Ok(o) => {
                rungs.push(o.record);
                files.extend(o.files);
            }
            Err(e) => {
                if first_err.is_none() || matches!(first_err, Some(PackageError::Aborted)) {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    progress.store(shard.end_frame - shard.start_frame, Ordering::Relaxed);
    Ok(ShardOutput { rungs, files })
}

/// Positions `input` so that the next video packets start at a keyframe at or before `kf`
/// (video stream time). Returns the first video packet (a keyframe), or `None` when the seek
/// cannot land early enough (the caller then decodes from the start).
fn seek_to(
    input: &mut format::context::Input,
    vidx: usize,
    kf: i64,
    tb: ff::Rational,
) -> Option<ff::Packet> {
    let step = (10.0 / f64::from(tb)).max(1.0) as i64;
    for target in [kf, kf - step, kf - 6 * step] {
        // SAFETY: seeking a context we own; the stream index is valid.
        let r = unsafe {
            ff::ffi::avformat_seek_file(
                input.as_mut_ptr(),
                vidx as i32,
                i64::MIN,
                target,
                target,
                0,
            )
        };
        if r < 0 {
            continue;
        }
        while let Next::Packet(pkt) = demux::next_packet(input) {
            if pkt.stream() != vidx {
                continue;
            }
            if !pkt.is_key() {
                continue; // a seek into the middle of a GOP: wait for its next keyframe
            }
            match pkt.pts().or(pkt.dts()) {
                Some(t) if t <= kf => return Some(pkt),
                _ => break, // landed past the keyframe: seek earlier
            }
        }
    }
    None
}

/// Decodes the source over the shard's range and sends each of its frames to every rung.
fn decode_range(
    plan: &Plan,
    shard: &ShardPlan,
    txs: &[Sender<FrameMsg>],
    abort: &AtomicBool,
) -> Result<()> {
    let path: PathBuf = plan.request.source.path.clone();
    let mut input = demux::open(&path)?;
    let v = &plan.video;
    let vidx = v.index;
    let tb = v.time_base.rational();
    {
        let st = input
            .stream(vidx)
            .ok_or_else(|| PackageError::NoVideo(path.clone()))?;
        if st.time_base() != tb {
            return Err(PackageError::SourceChanged(path.clone()));
        }
    }
    // Only the video stream is read here (audio is its own task).
    demux::keep_only(&mut input, vidx);
    let boundaries = plan.boundaries();
    let fr = plan.frame_rate;
    let frame_of = |t: i64| nearest_frame(t, tb.numerator(), tb.denominator(), fr);
    // Frames before the keyframe decoding starts at (open-GOP leading pictures) are dropped.
    let (first_pkt, min_pts) = match shard.seek_pts {
        Some(kf) => match seek_to(&mut input, vidx, kf, tb) {
            Some(p) => (Some(p), Some(kf - v.origin)),
            None => {
                tracing::warn!(shard = shard.index, "seek failed; decoding from the start");
                input = demux::open(&path)?;
                demux::keep_only(&mut input, vidx);
                (None, None)
            }
        },
        None => (None, None),
    };
    let mut vdec = {
        let st = input
            .stream(vidx)
            .ok_or_else(|| PackageError::NoVideo(path.clone()))?;
        VideoDecoder::new(&st, v.rotation, v.origin)?
    };
    let mut mapper: CfrMapper<Arc<ff::frame::Video>> =
        CfrMapper::new(shard.start_frame, shard.end_frame);
    let mut send = |n: u64, f: Arc<ff::frame::Video>| -> Result<()> {
        let idr = boundaries.is_start(n);
        for tx in txs {
            tx.send(FrameMsg {
                frame: f.clone(),
                index: n,
                idr,
            })
            .map_err(|_| PackageError::Aborted)?;
        }
        Ok(())
    };
    let mut on_frame =
        |f: ff::frame::Video, mapper: &mut CfrMapper<Arc<ff::frame::Video>>| -> Result<()> {
            let Some(t) = f.pts() else { return Ok(()) };
            if min_pts.is_some_and(|m| t < m) {
                return Ok(());
            }
            mapper.push(frame_of(t), Arc::new(f), &mut send)
        };
    if let Some(p) = first_pkt {
        vdec.push(Some(&p), &mut |f| on_frame(f, &mut mapper))?;
    }
    let mut read_error = None;
    while !mapper.done() {
        if abort.load(Ordering::Relaxed) {
            return Err(PackageError::Aborted);
        }
        let pkt = match demux::next_packet(&mut input) {
            Next::Packet(p) => p,
            Next::End => break,
            Next::Error(e) => {
                read_error = Some(e);
                break;
            }
        };
        if pkt.stream() == vidx {
            vdec.push(Some(&pkt), &mut |f| on_frame(f, &mut mapper))?;
        }
    }
    if !mapper.done() {
        vdec.push(None, &mut |f| on_frame(f, &mut mapper))?;
        let end_at = vdec.end().map_or(0, frame_of);
        let reached = mapper.finish(end_at, &mut send)?;
        if reached < shard.end_frame {
            let short = shard.end_frame - reached;
            let limit = MAX_SHORTFALL_SECS * u64::from(fr.num) / u64::from(fr.den.max(1));
            if short > limit {
                let secs = |f: u64| f as f64 * f64::from(fr.den) / f64::from(fr.num);
                let cause = match read_error {
                    Some(e) => format!("read error at {:.2} s ({e})", secs(reached)),
                    None => format!("decoding ended at {:.2} s", secs(reached)),
                };
                let detail = format!(
                    "{cause}, shard {} needs up to {:.2} s",
                    shard.index,
                    secs(shard.end_frame)
                );
                return Err(PackageError::Truncated { path, detail });
            }
            tracing::warn!(
                shard = shard.index,
                frames = short,
                "source ends a little early: last frame held"
            );
            mapper.pad_to_end(&mut send)?;
        }
    }
    Ok(())
}
