//! The plan: everything that decides a package's bytes, computed once from the source and the
//! options and written to the work area as JSON. Shards and the assembler read it; its sha256
//! (`plan_hash`) ties every task's result to it. Boundaries depend only on the source's
//! timestamps and the options, never on how many workers run the plan.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ff::Rescale;
use ffmpeg_next as ff;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cfr::nearest_frame;
use crate::error::{IoContext, PackageError, Result};
use crate::ladder::{fit, LadderSpec, Rung};
use crate::package::Ratio;
use crate::packets::hex;
use crate::probe::{self, Probe};
use crate::scan;
use crate::segment::Boundaries;
use crate::spec::{Formats, Spec};
use crate::transcode::encode::X264Settings;
use crate::work::WorkArea;

/// Version of the plan's layout and of the rules that turn a plan into bytes.
pub const PLAN_FORMAT: u32 = 1;
/// This build's version, recorded in and required of every plan.
pub const ABR_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Bytes of the source hashed for its identity.
pub const HEAD_BYTES: u64 = 4 << 20;
/// libx264 threads per rung: one, because the same plan must give the same bytes. libx264 0.164
/// with VBV is not deterministic with more: with *frame* threads every md5 differs from run to run
/// (`-threads 2 -maxrate …`), and with *sliced* threads the row-level VBV of each slice reads the
/// other slices' live size estimates (`size_of_other_slices` in x264's `ratecontrol.c`), so the
/// bytes depend on thread timing: 47f7d7a tried two sliced threads, passed 8 runs on an idle box,
/// and gave different 720p segments under CI load. Parallelism comes from the rungs of a shard
/// encoding at once and from running several shards at once. Fixed here, never from the machine.
pub const X264_THREADS: u32 = 1;
/// Constant added to TS timestamps (B-frame decode times and AAC priming stay positive).
pub const TS_OFFSET_SECS: i64 = crate::mux::ts::TS_OFFSET_SECS;

/// Identity of the source file: a changed file makes a new plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    /// Absolute path (the same on every machine: shared storage).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// sha256 of the first [`HEAD_BYTES`].
    pub head_sha256: String,
}

impl SourceId {
    /// Reads the identity of `path`.
    pub fn of(path: &Path) -> Result<Self> {
        let unreadable = |source| PackageError::InputUnreadable {
            path: path.to_path_buf(),
            source,
        };
        let abs = fs::canonicalize(path).map_err(unreadable)?;
        let meta = fs::metadata(&abs).map_err(unreadable)?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        let mut head = Vec::new();
        fs::File::open(&abs)
            .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
            .map_err(unreadable)?;
        Ok(SourceId {
            path: abs,
            size: meta.len(),
            mtime_ns,
            head_sha256: hex(&Sha256::digest(&head)),
        })
    }
}

/// FFmpeg library versions (`LIBAVxxx_VERSION_INT`): other libraries may give other bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Libs {
    /// libavcodec.
    pub avcodec: u32,
    /// libavformat.
    pub avformat: u32,
    /// libavfilter.
    pub avfilter: u32,
    /// libswscale.
    pub swscale: u32,
    /// libswresample.
    pub swresample: u32,
}

impl Libs {
    /// The libraries this process runs with.
    pub fn current() -> Self {
        // SAFETY: version getters without arguments.
        unsafe {
            Libs {
                avcodec: ff::ffi::avcodec_version(),
                avformat: ff::ffi::avformat_version(),
                avfilter: ff::ffi::avfilter_version(),
                swscale: ff::ffi::swscale_version(),
                swresample: ff::ffi::swresample_version(),
            }
        }
    }
}

/// A stream time base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBase {
    /// Numerator.
    pub num: i32,
    /// Denominator.
    pub den: i32,
}

impl TimeBase {
    /// As an FFmpeg rational.
    pub fn rational(self) -> ff::Rational {
        ff::Rational::new(self.num, self.den)
    }
}

/// The source's video stream as the shards read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoInput {
    /// Stream index.
    pub index: usize,
    /// Codec name.
    pub codec: String,
    /// Coded size.
    pub width: u32,
    /// Coded height.
    pub height: u32,
    /// Clockwise rotation applied (0, 90, 180, 270).
    pub rotation: u32,
    /// Stream time base.
    pub time_base: TimeBase,
    /// Stream time of output time zero.
    pub origin: i64,
}

/// The source's audio stream as the audio task reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioInput {
    /// Stream index.
    pub index: usize,
    /// Codec name.
    pub codec: String,
    /// Sample rate of the source.
    pub sample_rate: u32,
    /// Channels of the source.
    pub channels: u32,
    /// Stream time base.
    pub time_base: TimeBase,
    /// Stream time of output time zero (the video's start).
    pub origin: i64,
}

/// The encoded audio track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioOutput {
    /// DASH representation id and directory, e.g. `audio_128k`.
    pub name: String,
    /// Output sample rate.
    pub sample_rate: u32,
    /// Output channels.
    pub channels: u32,
    /// AAC bitrate, bit/s.
    pub bitrate: u64,
}

/// One video shard: a contiguous range of segments of every rung.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// Task index.
    pub index: usize,
    /// Global 1-based number of its first segment.
    pub first_segment: u32,
    /// Segments in the shard.
    pub segments: u32,
    /// First output frame.
    pub start_frame: u64,
    /// One past the last output frame.
    pub end_frame: u64,
    /// Source keyframe (video stream time) to seek to; `None`: decode from the start.
    pub seek_pts: Option<i64>,
}

/// What the user asked for, as far as it decides the output: an existing plan made from the
/// same request is reused as it is (no second scan of the source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The source.
    pub source: SourceId,
    /// Ladder as configured.
    pub ladder: LadderSpec,
    /// Segment duration, ms.
    pub segment_ms: u64,
    /// Segments per shard asked for (0 = one shard).
    pub shard_segments: u64,
    /// Formats.
    pub formats: Formats,
}

/// The plan of one packaging job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`] of the abr that made it.
    pub format: u32,
    /// abr version that made it.
    pub abr_version: String,
    /// FFmpeg libraries that made it.
    pub libs: Libs,
    /// The request it answers.
    pub request: Request,
    /// Container format name.
    pub container: String,
    /// Declared duration of the source, seconds.
    pub source_duration_secs: f64,
    /// Video input.
    pub video: VideoInput,
    /// Audio input, if the source has audio.
    pub audio_input: Option<AudioInput>,
    /// Output frame rate (constant).
    pub frame_rate: Ratio,
    /// Nominal segment duration, ms.
    pub segment_ms: u64,
    /// Output frames in total.
    pub frames: u64,
    /// Segments in total.
    pub segments: u32,
    /// Segments per shard.
    pub shard_segments: u64,
    /// Formats to write.
    pub formats: Formats,
    /// Video rungs, highest first.
    pub rungs: Vec<Rung>,
    /// libx264 settings of every rung.
    pub x264: X264Settings,
    /// Audio output, if the source has audio.
    pub audio: Option<AudioOutput>,
    /// TS timestamp offset, seconds.
    pub ts_offset_secs: i64,
    /// Video shards, in order; shard `i` is task `i`.
    pub shards: Vec<ShardPlan>,
    /// Task index of the audio task (the last one), if any.
    pub audio_task: Option<usize>,
    /// Number of tasks: every index `0..tasks` is one.
    pub tasks: usize,
    /// Package directory (not hashed: the same plan gives the same bytes anywhere).
    pub out: PathBuf,
    /// Replace an existing package at assembly (not hashed).
    pub force: bool,
    /// sha256 of the plan with this field empty and `out`/`force` cleared.
    pub plan_hash: String,
}

impl Plan {
    /// Cut rule of this plan.
    pub fn boundaries(&self) -> Boundaries {
        Boundaries {
            segment_ms: self.segment_ms,
            frame_rate: self.frame_rate,
        }
    }

    /// The hash this plan should carry.
    pub fn compute_hash(&self) -> String {
        let mut c = self.clone();
        c.plan_hash.clear();
        c.out = PathBuf::new();
        c.force = false;
        let bytes = serde_json::to_vec(&c).unwrap_or_default();
        hex(&Sha256::digest(&bytes))
    }

    /// What task `index` is.
    pub fn task(&self, index: usize) -> Result<Task<'_>> {
        if let Some(s) = self.shards.get(index) {
            return Ok(Task::Shard(s));
        }
        if self.audio_task == Some(index) {
            return Ok(Task::Audio);
        }
        Err(PackageError::Option(format!(
            "task index {index} is out of range: the plan has {} tasks (0..={})",
            self.tasks,
            self.tasks.saturating_sub(1)
        )))
    }

    /// Refuses a plan this build cannot run faithfully.
    pub fn check_compatible(&self, path: &Path) -> Result<()> {
        if self.format != PLAN_FORMAT || self.abr_version != ABR_VERSION {
            return Err(PackageError::Plan {
                path: path.to_path_buf(),
                reason: format!(
                    "made by abr {} (plan format {}), this is abr {ABR_VERSION} (format {PLAN_FORMAT}): plan again",
                    self.abr_version, self.format
                ),
            });
        }
        if self.plan_hash != self.compute_hash() {
            return Err(PackageError::Plan {
                path: path.to_path_buf(),
                reason: "its content does not match its plan_hash (edited or corrupt): plan again"
                    .into(),
            });
        }
        let libs = Libs::current();
        if self.libs != libs {
            return Err(PackageError::Plan {
                path: path.to_path_buf(),
                reason: format!(
                    "made with other FFmpeg libraries ({:?}) than this machine's ({libs:?}): the bytes would differ",
                    self.libs
                ),
            });
        }
        Ok(())
    }

    /// Checks that the source is still the one planned.
    pub fn check_source(&self) -> Result<()> {
        let now = SourceId::of(&self.request.source.path)?;
        if now != self.request.source {
            return Err(PackageError::SourceChanged(
                self.request.source.path.clone(),
            ));
        }
        Ok(())
    }

    /// Loads and checks the plan of a work area.
    pub fn load(work: &WorkArea) -> Result<Plan> {
        let path = work.plan_path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PackageError::Plan {
                    path,
                    reason: "not found: run `abr plan SRC --out DIR` first".into(),
                })
            }
            Err(e) => {
                return Err(PackageError::Plan {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        let plan: Plan = serde_json::from_slice(&text).map_err(|e| PackageError::Plan {
            path: path.clone(),
            reason: format!("not a plan: {e}"),
        })?;
        plan.check_compatible(&path)?;
        Ok(plan)
    }

    /// Writes the plan atomically (temporary file, fsync, rename).
    pub fn save(&self, work: &WorkArea) -> Result<()> {
        let path = work.plan_path();
        let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(self).map_err(|e| PackageError::Plan {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::packets::write_durable(&tmp, &text).write_ctx(&tmp)?;
        fs::rename(&tmp, &path).write_ctx(&path)?;
        crate::publish::sync_dir(work.dir());
        Ok(())
    }

    /// One-line summary and `tasks: N`, as `abr plan` prints them.
    pub fn describe(&self) -> String {
        format!(
            "plan {}: {} frames at {}/{} fps, {} segments of {} ms, {} rungs, {} shards of {} segments{}\ntasks: {}",
            &self.plan_hash[..12.min(self.plan_hash.len())],
            self.frames,
            self.frame_rate.num,
            self.frame_rate.den,
            self.segments,
            self.segment_ms,
            self.rungs.len(),
            self.shards.len(),
            self.shard_segments,
            match self.audio_task {
                Some(i) => format!(", audio task {i}"),
                None => String::new(),
            },
            self.tasks
        )
    }
}

/// One task of a plan.
#[derive(Debug, Clone, Copy)]
pub enum Task<'a> {
    /// A video shard.
    Shard(&'a ShardPlan),
    /// The audio task.
    Audio,
}

/// The request `spec` makes (reads the source's identity).
pub fn request(spec: &Spec) -> Result<Request> {
    Ok(Request {
        source: SourceId::of(&spec.input)?,
        ladder: spec.ladder.clone(),
        segment_ms: spec.segment_ms(),
        shard_segments: spec.shard_segments(),
        formats: spec.formats,
    })
}

/// Probes and scans the source and computes the plan of `spec`.
pub fn make(spec: &Spec, request: Request) -> Result<Plan> {
    spec.validate()?;
    let probe = probe::probe(&spec.input)?;
    let scan = scan::scan(&probe)?;
    from_scan(spec, request, &probe, &scan)
}

fn from_scan(spec: &Spec, request: Request, probe: &Probe, scan: &scan::Scan) -> Result<Plan> {
    let v = &probe.video;
    let fr = v.frame_rate;
    let vtb = v.time_base;
    let frame_of = |t: i64| nearest_frame(t - scan.origin, vtb.numerator(), vtb.denominator(), fr);
    let frames = frame_of(scan.end).max(1) as u64;
    let boundaries = Boundaries {
        segment_ms: spec.segment_ms(),
        frame_rate: fr,
    };
    let segments = boundaries.segment_of(frames - 1) + 1;
    let per_shard = match spec.shard_segments() {
        0 => segments,
        n => n,
    };
    let mut shards = Vec::new();
    let mut k = 0u64;
    while k < segments {
        let n = per_shard.min(segments - k);
        let start_frame = boundaries.start_frame(k);
        let seek_pts = if k == 0 {
            None
        } else {
            // The latest keyframe that maps to or before the shard's first frame.
            scan.keyframes
                .iter()
                .rev()
                .find(|&&t| frame_of(t) <= start_frame as i64)
                .copied()
        };
        shards.push(ShardPlan {
            index: shards.len(),
            first_segment: u32::try_from(k + 1).map_err(|_| too_long())?,
            segments: u32::try_from(n).map_err(|_| too_long())?,
            start_frame,
            end_frame: boundaries.start_frame(k + n).min(frames),
            seek_pts,
        });
        k += n;
    }
    let audio_input = probe.audio.as_ref().map(|a| {
        let atb = a.time_base;
        AudioInput {
            index: a.index,
            codec: a.codec.clone(),
            sample_rate: a.sample_rate,
            channels: a.channels,
            time_base: TimeBase {
                num: atb.numerator(),
                den: atb.denominator(),
            },
            origin: scan.origin.rescale(vtb, atb),
        }
    });
    let a = &spec.ladder.audio;
    let audio = audio_input.as_ref().map(|_| AudioOutput {
        name: format!("audio_{}k", a.bitrate_kbps),
        sample_rate: a.sample_rate,
        channels: a.channels,
        bitrate: u64::from(a.bitrate_kbps) * 1000,
    });
    let audio_task = audio.as_ref().map(|_| shards.len());
    let tasks = shards.len() + usize::from(audio_task.is_some());
    let mut plan = Plan {
        format: PLAN_FORMAT,
        abr_version: ABR_VERSION.to_string(),
        libs: Libs::current(),
        request,
        container: probe.format.clone(),
        source_duration_secs: probe.duration_secs,
        video: VideoInput {
            index: v.index,
            codec: v.codec.clone(),
            width: v.width,
            height: v.height,
            rotation: v.rotation,
            time_base: TimeBase {
                num: vtb.numerator(),
                den: vtb.denominator(),
            },
            origin: scan.origin,
        },
        audio_input,
        frame_rate: fr,
        segment_ms: spec.segment_ms(),
        frames,
        segments: u32::try_from(segments).map_err(|_| too_long())?,
        shard_segments: per_shard,
        formats: spec.formats,
        rungs: fit(&spec.ladder, v.display_size()),
        x264: X264Settings {
            preset: spec.ladder.preset.clone(),
            keyint: boundaries.max_segment_frames() + 1,
            threads: X264_THREADS,
        },
        audio,
        ts_offset_secs: TS_OFFSET_SECS,
        shards,
        audio_task,
        tasks,
        out: spec.out.clone(),
        force: spec.force,
        plan_hash: String::new(),
    };
    plan.plan_hash = plan.compute_hash();
    Ok(plan)
}

fn too_long() -> PackageError {
    PackageError::Option("source too long: more than 2^32 segments".into())
}

/// Makes the plan of `spec` in its work area, or reuses the plan already there when it answers
/// the same request. A different plan replaces the old one and discards its tasks (never mixed
/// in). Returns the plan and whether the existing one was kept.
pub fn prepare(spec: &Spec) -> Result<(WorkArea, Plan, bool)> {
    spec.validate()?;
    // The input is checked before the output, as `abr package` always did.
    let req = request(spec).or_else(|e| {
        // Report unreadable inputs the way the probe does (missing, directory, empty).
        probe::probe(&spec.input)?;
        Err(e)
    })?;
    if spec.out.exists() && !spec.force {
        probe::probe(&spec.input)?;
        return Err(PackageError::OutputExists(spec.out.clone()));
    }
    crate::publish::check_parent(&spec.out)?;
    let work = WorkArea::for_output(&spec.out)?;
    let old = Plan::load(&work).ok();
    if let Some(mut old) = old.clone().filter(|o| o.request == req) {
        if old.force != spec.force {
            old.force = spec.force;
            old.save(&work)?;
        }
        return Ok((work, old, true));
    }
    let plan = make(spec, req)?;
    let same = old.is_some_and(|o| o.plan_hash == plan.plan_hash);
    if !same {
        work.reset()?;
    }
    plan.save(&work)?;
    Ok((work, plan, same))
}
