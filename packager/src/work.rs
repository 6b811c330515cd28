//! The work area beside a package directory: the plan, finished tasks (each renamed into place
//! with its sidecar `task.json`) and temporaries of running tasks. Hidden (a leading dot), so
//! the origin never serves it; beside the target so renames stay on one file system.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, PackageError, Result};
use crate::packets::{digest_file, FileDigest};

/// Name of a task's sidecar.
pub const SIDECAR: &str = "task.json";

/// The work area of one package directory.
#[derive(Debug, Clone)]
pub struct WorkArea {
    dir: PathBuf,
}

impl WorkArea {
    /// `<parent>/.<name>.abr-work` for package directory `out`.
    pub fn for_output(out: &Path) -> Result<Self> {
        let (parent, name) = crate::publish::parent_and_name(out)?;
        Ok(WorkArea {
            dir: parent.join(format!(".{name}.abr-work")),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `plan.json`.
    pub fn plan_path(&self) -> PathBuf {
        self.dir.join("plan.json")
    }

    /// Directory of finished tasks.
    pub fn tasks_dir(&self) -> PathBuf {
        self.dir.join("tasks")
    }

    /// Final directory of task `index`.
    pub fn task_dir(&self, index: usize) -> PathBuf {
        self.tasks_dir().join(format!("{index:05}"))
    }

    /// Removes every task and the plan (a new plan never mixes with old work), then recreates
    /// the empty area.
    pub fn reset(&self) -> Result<()> {
        if self.dir.exists() {
            tracing::info!(
                "discarding the work area {} (another plan)",
                self.dir.display()
            );
            fs::remove_dir_all(&self.dir).write_ctx(&self.dir)?;
        }
        fs::create_dir_all(self.tasks_dir()).write_ctx(&self.dir)
    }

    /// Removes the whole work area (after publication).
    pub fn remove(&self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("could not remove the work area {}: {e}", self.dir.display());
            }
        }
    }

    /// A fresh temporary directory for task `index`, after removing this host's temporaries of
    /// the same task whose process is gone.
    pub fn temp_dir(&self, index: usize) -> Result<PathBuf> {
        let tasks = self.tasks_dir();
        fs::create_dir_all(&tasks).write_ctx(&tasks)?;
        let host = host_name();
        let prefix = format!(".tmp-{index:05}-{host}-");
        if let Ok(entries) = fs::read_dir(&tasks) {
            for e in entries.flatten() {
                let n = e.file_name();
                let Some(pid) = n.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                    continue;
                };
                if pid
                    .parse::<i32>()
                    .is_ok_and(|p| !crate::publish::pid_alive(p))
                {
                    tracing::info!("removing stale temporary {}", e.path().display());
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tasks.join(format!("{prefix}{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).write_ctx(&dir)?;
        }
        fs::create_dir(&dir).write_ctx(&dir)?;
        Ok(dir)
    }
}

/// This machine's host name (temporaries are named by host and pid).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    let name = if r == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

/// One media segment a task wrote (DASH) or will have muxed (TS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Global 1-based segment number.
    pub number: u32,
    /// Presentation start in the track's timescale (video: before the encoder delay shift).
    pub pts: u64,
    /// Duration in the track's timescale.
    pub duration: u64,
    /// Frames (video) or AAC frames (audio).
    pub frames: u64,
    /// fMP4 file size (0 without DASH).
    pub bytes: u64,
    /// fMP4 sha256 (empty without DASH).
    pub sha256: String,
}

/// What a shard wrote for one rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungRecord {
    /// Rung name.
    pub name: String,
    /// `avc1.*` codec string.
    pub codec: String,
    /// Encoder delay in frames (DASH media time runs this far ahead).
    pub delay_frames: u64,
    /// Segments in order.
    pub segments: Vec<SegmentRecord>,
}

/// What the audio task wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioRecord {
    /// AudioSpecificConfig, hex.
    pub asc: String,
    /// `mp4a.*` codec string.
    pub codec: String,
    /// DASH segments in order (timescale: the sample rate).
    pub segments: Vec<SegmentRecord>,
}

/// A finished task's sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Plan it belongs to.
    pub plan_hash: String,
    /// Task index.
    pub index: usize,
    /// `shard` or `audio`.
    pub kind: String,
    /// First and one-past-last output frame (shards).
    pub frames: Option<(u64, u64)>,
    /// Per rung (shards).
    pub rungs: Vec<RungRecord>,
    /// The audio track (audio task).
    pub audio: Option<AudioRecord>,
    /// Every file of the task (relative path → size and sha256).
    pub files: BTreeMap<String, FileDigest>,
    /// Host that ran it.
    pub host: String,
    /// Wall time of the task, seconds.
    pub elapsed_s: f64,
    /// CPU time of the task (user + system), seconds, when the process ran it alone.
    pub cpu_s: Option<f64>,
}

impl TaskRecord {
    /// Reads the sidecar in `dir`.
    pub fn read(dir: &Path) -> std::result::Result<TaskRecord, String> {
        let p = dir.join(SIDECAR);
        let text = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not a task sidecar: {e}", p.display()))
    }

    /// Writes the sidecar into `dir` durably.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let p = dir.join(SIDECAR);
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| PackageError::Manifest(e.to_string()))?;
        crate::packets::write_durable(&p, &text).write_ctx(&p)?;
        Ok(())
    }
}

/// Checks finished task `index` of plan `hash` completely (every file's size and sha256);
/// the reason when it is missing or not intact.
pub fn verify_task(
    work: &WorkArea,
    hash: &str,
    index: usize,
) -> std::result::Result<TaskRecord, String> {
    let dir = work.task_dir(index);
    if !dir.is_dir() {
        return Err("missing".into());
    }
    let rec = TaskRecord::read(&dir)?;
    if rec.plan_hash != hash || rec.index != index {
        return Err(format!(
            "made for another plan or task ({} #{})",
            rec.plan_hash, rec.index
        ));
    }
    for (name, want) in &rec.files {
        let p = dir.join(name);
        match digest_file(&p) {
            Ok(got) if got == *want => {}
            Ok(got) if got.bytes != want.bytes => {
                return Err(format!(
                    "{}: {} bytes, expected {}",
                    p.display(),
                    got.bytes,
                    want.bytes
                ))
            }
            Ok(_) => return Err(format!("{}: sha256 mismatch", p.display())),
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    Ok(rec)
}
