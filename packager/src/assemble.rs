//! Assembly: checks that every task of a plan is present, intact and of this plan, then muxes
//! the MPEG-TS renditions (one muxer per rung over the whole timeline, so continuity counters and
//! timestamps run on across shard seams, with the one audio stream), places the fMP4 segments
//! (hard links into the staging directory), writes both manifests with measured bandwidths and
//! publishes atomically. Rerunnable: nothing of the work area is changed until publication.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use ff::Rational;
use ffmpeg_next as ff;

use crate::error::{IoContext, PackageError, Result};
use crate::manifest;
use crate::mux::ts::{TsAudio, TsWriter};
use crate::package::{
    segment_file_name, AudioInfo, DashRepresentation, HlsVariant, PackageInfo, Segment, VideoInfo,
};
use crate::packets::{PacketReader, StoredPacket};
use crate::plan::Plan;
use crate::publish::Staging;
use crate::rendition::{self, audio_before, video_timescale, AUDIO_PACKETS, VIDEO_PACKETS};
use crate::work::{verify_task, AudioRecord, RungRecord, TaskRecord, WorkArea};

/// Options of an assembly.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssembleOptions<'a> {
    /// Keep the work area after publishing.
    pub keep_work: bool,
    /// Replace an existing package (also when the plan did not say so).
    pub force: bool,
    /// Set by another thread to stop (e.g. the job was cancelled): checked per rendition and
    /// right before publishing; the staging directory is removed, nothing is published, and
    /// the assembly answers [`PackageError::Aborted`].
    pub abort: Option<&'a AtomicBool>,
}

impl AssembleOptions<'_> {
    fn check_abort(&self) -> Result<()> {
        match self.abort {
            Some(a) if a.load(Ordering::Relaxed) => Err(PackageError::Aborted),
            _ => Ok(()),
        }
    }
}

/// Checks every task; their records in task order, or which are missing or corrupt.
pub fn check_tasks(work: &WorkArea, plan: &Plan) -> Result<Vec<TaskRecord>> {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut bad = Vec::new();
    for i in 0..plan.tasks {
        match verify_task(work, &plan.plan_hash, i) {
            Ok(r) => records.push(r),
            Err(reason) if reason == "missing" => {
                problems.push(format!("task {i} is missing"));
                bad.push(i);
            }
            Err(reason) => {
                problems.push(format!("task {i} is corrupt ({reason})"));
                bad.push(i);
            }
        }
    }
    if !problems.is_empty() {
        let tasks: Vec<String> = bad.iter().map(|i| i.to_string()).collect();
        return Err(PackageError::Incomplete {
            out: plan.out.clone(),
            detail: format!(
                "{}; run `abr shard DIR --index I` for I in {}, then assemble again",
                problems.join("; "),
                tasks.join(" ")
            ),
            tasks: bad,
        });
    }
    Ok(records)
}

fn inconsistent(what: String) -> PackageError {
    PackageError::Manifest(format!("tasks do not fit together: {what}"))
}

/// The shards' records of rung `r` (plan order), checked for one codec and delay and for
/// contiguous segment numbers.
fn rung_records<'a>(
    plan: &Plan,
    records: &'a [TaskRecord],
    r: usize,
) -> Result<Vec<&'a RungRecord>> {
    let name = &plan.rungs[r].name;
    let mut out = Vec::new();
    let mut next = 1u32;
    for (s, shard) in plan.shards.iter().enumerate() {
        let rec = records[s]
            .rungs
            .get(r)
            .filter(|x| &x.name == name)
            .ok_or_else(|| inconsistent(format!("task {s} has no rendition {name}")))?;
        if let Some(first) = out.first() {
            let first: &&RungRecord = first;
            if rec.codec != first.codec || rec.delay_frames != first.delay_frames {
                return Err(inconsistent(format!(
                    "rendition {name} of task {s} was encoded differently"
                )));
            }
        }
        if rec.segments.len() != shard.segments as usize {
            return Err(inconsistent(format!(
                "task {s} rendition {name} has {} segments, the plan {}",
                rec.segments.len(),
                shard.segments
            )));
        }
        for seg in &rec.segments {
            if seg.number != next {
                return Err(inconsistent(format!(
                    "task {s} rendition {name}: segment {} out of order",
                    seg.number
                )));
            }
            next += 1;
        }
        out.push(rec);
    }
    Ok(out)
}

/// Hard-links `from` to `to`, copying when links are impossible (another file system).
fn place(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).write_ctx(to)?;
    }
    Ok(())
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| inconsistent("bad AudioSpecificConfig".into()))
}

fn to_packet(p: &StoredPacket) -> ff::Packet {
    let mut pkt = ff::Packet::copy(&p.data);
    pkt.set_pts(Some(p.pts));
    pkt.set_dts(Some(p.dts));
    pkt.set_duration(p.duration);
    if p.key {
        pkt.set_flags(ff::packet::Flags::KEY);
    }
    pkt
}

/// Muxes rung `r`'s TS segments into `dir` from every shard's packet file and the audio
/// task's; returns the size of each segment.
fn mux_ts(
    work: &WorkArea,
    plan: &Plan,
    r: usize,
    dir: &Path,
    audio: Option<&AudioRecord>,
) -> Result<Vec<u64>> {
    let rung = &plan.rungs[r];
    fs::create_dir_all(dir).write_ctx(dir)?;
    let fr = plan.frame_rate;
    let boundaries = plan.boundaries();
    let (track, mut audio_in) = match (audio, plan.audio.as_ref(), plan.audio_task) {
        (Some(a), Some(out), Some(t)) => {
            let p = work.task_dir(t).join(AUDIO_PACKETS);
            let reader = PacketReader::open(&p).write_ctx(&p)?;
            let track = TsAudio {
                sample_rate: out.sample_rate,
                channels: out.channels,
                asc: unhex(&a.asc)?,
                time_base: Rational::new(1, out.sample_rate as i32),
            };
            (Some(track), Some((reader, p, None::<StoredPacket>)))
        }
        _ => (None, None),
    };
    let rate = plan.audio.as_ref().map_or(1, |a| a.sample_rate);
    let tb = Rational::new(fr.den as i32, fr.num as i32);
    let mut ts = TsWriter::new(dir, rung.width, rung.height, tb, track.as_ref())?;
    // Writes queued audio earlier than video frame time `frame` into the current segment.
    let mut audio_before_frame = |ts: &mut TsWriter, frame: i64| -> Result<()> {
        let Some((reader, path, held)) = audio_in.as_mut() else {
            return Ok(());
        };
        loop {
            if held.is_none() {
                *held = reader.next_packet().write_ctx(path)?;
            }
            match held.as_ref() {
                Some(p) if audio_before(p.pts, rate, frame, fr) => {
                    ts.write_audio(&to_packet(p))?;
                    *held = None;
                }
                _ => return Ok(()),
            }
        }
    };
    let mut sizes = Vec::new();
    let mut open = false;
    for s in 0..plan.shards.len() {
        let p = work.task_dir(s).join(&rung.name).join(VIDEO_PACKETS);
        let mut reader = PacketReader::open(&p).write_ctx(&p)?;
        while let Some(pkt) = reader.next_packet().write_ctx(&p)? {
            if pkt.key && pkt.pts >= 0 && boundaries.is_start(pkt.pts as u64) {
                if open {
                    audio_before_frame(&mut ts, pkt.pts)?;
                    sizes.push(ts.finish_segment()?);
                }
                let n = boundaries.segment_of(pkt.pts as u64) + 1;
                ts.start_segment(n as u32)?;
                open = true;
            }
            if !open {
                return Err(inconsistent(format!(
                    "{}: task {s} does not start with a keyframe",
                    p.display()
                )));
            }
            audio_before_frame(&mut ts, pkt.dts)?;
            ts.write_video(&to_packet(&pkt))?;
        }
    }
    audio_before_frame(&mut ts, i64::MAX / 1_000_000)?;
    sizes.push(ts.finish()?);
    Ok(sizes)
}

/// Assembles and publishes the package of `plan` after checking every task (each file's size
/// and sha256); the manifests' data.
pub fn assemble(
    work: &WorkArea,
    plan: &Plan,
    opts: AssembleOptions<'_>,
) -> Result<(PathBuf, PackageInfo)> {
    let records = check_tasks(work, plan)?;
    assemble_checked(work, plan, &records, opts)
}

/// [`assemble`] with the records of tasks the caller has already checked or just wrote itself
/// (`abr package`: hashing every task again would read the whole package twice more).
pub fn assemble_checked(
    work: &WorkArea,
    plan: &Plan,
    records: &[TaskRecord],
    opts: AssembleOptions<'_>,
) -> Result<(PathBuf, PackageInfo)> {
    crate::init();
    if records.len() != plan.tasks || records.iter().enumerate().any(|(i, r)| r.index != i) {
        return Err(inconsistent("task records out of order".into()));
    }
    let audio = plan.audio_task.and_then(|t| records[t].audio.clone());
    if plan.audio_task.is_some() && audio.is_none() {
        return Err(inconsistent("the audio task has no audio record".into()));
    }
    let rungs: Vec<Vec<&RungRecord>> = (0..plan.rungs.len())
        .map(|r| rung_records(plan, records, r))
        .collect::<Result<_>>()?;
    let staging = Staging::create(&plan.out, plan.force || opts.force)?;
    let root = staging.path().to_path_buf();
    let fr = plan.frame_rate;
    let (timescale, tick) = video_timescale(fr);

    let mut dash_video = Vec::new();
    let mut dash_audio = None;
    if plan.formats.dash {
        for (r, recs) in rungs.iter().enumerate() {
            opts.check_abort()?;
            let rung = &plan.rungs[r];
            let dir = root.join("dash").join(&rung.name);
            fs::create_dir_all(&dir).write_ctx(&dir)?;
            let init = records[0].files.get(&format!("{}/init.mp4", rung.name));
            for (s, rec) in records.iter().enumerate().take(plan.shards.len()) {
                if rec.files.get(&format!("{}/init.mp4", rung.name)) != init {
                    return Err(inconsistent(format!(
                        "task {s} rendition {} has another init segment",
                        rung.name
                    )));
                }
            }
            place(
                &work.task_dir(0).join(&rung.name).join("init.mp4"),
                &dir.join("init.mp4"),
            )?;
            for (s, rec) in recs.iter().enumerate() {
                for seg in &rec.segments {
                    let name = segment_file_name(seg.number, "m4s");
                    place(
                        &work.task_dir(s).join(&rung.name).join(&name),
                        &dir.join(&name),
                    )?;
                }
            }
            let pto = recs[0].delay_frames * tick;
            let records: Vec<_> = recs
                .iter()
                .flat_map(|r| r.segments.iter().cloned())
                .collect();
            let segments = rendition::segments_of(&records, pto, |s| s.bytes);
            dash_video.push(DashRepresentation {
                id: rung.name.clone(),
                codecs: recs[0].codec.clone(),
                timescale,
                presentation_time_offset: pto,
                bandwidth: rendition::peak_bitrate(&segments, timescale),
                video: Some(VideoInfo {
                    width: rung.width,
                    height: rung.height,
                    frame_rate: fr,
                }),
                audio: None,
                segments,
            });
        }
        if let (Some(a), Some(out), Some(t)) = (&audio, &plan.audio, plan.audio_task) {
            let dir = root.join("dash").join(&out.name);
            fs::create_dir_all(&dir).write_ctx(&dir)?;
            place(&work.task_dir(t).join("init.mp4"), &dir.join("init.mp4"))?;
            for seg in &a.segments {
                let name = segment_file_name(seg.number, "m4s");
                place(&work.task_dir(t).join(&name), &dir.join(&name))?;
            }
            let segments = rendition::segments_of(&a.segments, 0, |s| s.bytes);
            dash_audio = Some(DashRepresentation {
                id: out.name.clone(),
                codecs: a.codec.clone(),
                timescale: out.sample_rate,
                presentation_time_offset: 0,
                bandwidth: rendition::peak_bitrate(&segments, out.sample_rate),
                video: None,
                audio: Some(AudioInfo {
                    sample_rate: out.sample_rate,
                    channels: out.channels,
                }),
                segments,
            });
        }
    }

    let mut hls = Vec::new();
    if plan.formats.hls {
        opts.check_abort()?;
        // One muxer per rung, in parallel: each reads its own packet files and the audio's.
        let sizes: Vec<Result<Vec<u64>>> = thread::scope(|s| {
            let hs: Vec<_> = (0..plan.rungs.len())
                .map(|r| {
                    let dir = root.join("hls").join(&plan.rungs[r].name);
                    let audio = audio.as_ref();
                    s.spawn(move || mux_ts(work, plan, r, &dir, audio))
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(PackageError::Option(
                            "internal error: TS muxer panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let audio_codec = audio.as_ref().map(|a| a.codec.clone());
        for (r, sizes) in sizes.into_iter().enumerate() {
            let sizes = sizes?;
            let rung = &plan.rungs[r];
            let recs: Vec<_> = rungs[r]
                .iter()
                .flat_map(|x| x.segments.iter().cloned())
                .collect();
            if sizes.len() != recs.len() {
                return Err(inconsistent(format!(
                    "rendition {}: {} TS segments for {} planned",
                    rung.name,
                    sizes.len(),
                    recs.len()
                )));
            }
            let segments: Vec<Segment> = recs
                .iter()
                .zip(&sizes)
                .map(|(s, &bytes)| Segment {
                    start: s.pts,
                    duration: s.duration,
                    bytes,
                })
                .collect();
            let codecs = match &audio_codec {
                Some(a) => format!("{},{a}", rungs[r][0].codec),
                None => rungs[r][0].codec.clone(),
            };
            // The peak leaves out a short final segment; a heavy one can lift the average above
            // it, and BANDWIDTH must never be below AVERAGE-BANDWIDTH (RFC 8216 §4.3.4.2).
            let average = rendition::average_bitrate(&segments, timescale);
            let peak = rendition::peak_bitrate(&segments, timescale).max(average);
            hls.push(HlsVariant {
                name: rung.name.clone(),
                codecs,
                video: VideoInfo {
                    width: rung.width,
                    height: rung.height,
                    frame_rate: fr,
                },
                peak_bandwidth: peak,
                average_bandwidth: average,
                timescale,
                segments,
            });
        }
    }
    let info = PackageInfo {
        duration_secs: plan.frames as f64 * f64::from(fr.den) / f64::from(fr.num),
        segment_duration_secs: plan.segment_ms as f64 / 1000.0,
        hls,
        dash_video,
        dash_audio,
    };
    write_manifests(&root, &info)?;
    opts.check_abort()?;
    let out = staging.publish()?;
    if !opts.keep_work {
        work.remove();
    }
    Ok((out, info))
}

fn write_manifests(root: &Path, info: &PackageInfo) -> Result<()> {
    let write = |p: PathBuf, data: &[u8]| fs::write(&p, data).write_ctx(&p);
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
