//! Helpers for the sharded-packaging tests (`tests/shard.rs`): running `abr plan / shard /
//! assemble` with their CPU time, reading the work area, comparing packages byte for byte, and
//! independent seam checks — an MPEG-TS reader of our own (188-byte packets, PSI, PES, ADTS,
//! H.264 NAL types) and fMP4 timing through mp4-atom.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

use super::verify::decode_atoms;
use super::*;

// ---------------------------------------------------------------------------------------------
// Running abr
// ---------------------------------------------------------------------------------------------

/// A `Command` for the abr binary, with the array-engine index variables removed so that only
/// what a test sets is seen.
pub fn abr_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_abr"));
    c.args(args)
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX");
    c
}

/// A finished child process with the CPU time it used.
pub struct Measured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// user + system CPU seconds of the child (and its waited-for descendants), from wait4.
    pub cpu: f64,
    /// Peak RSS in KiB of the child (or of its largest waited-for descendant): wait4's
    /// ru_maxrss, what `/usr/bin/time -f %M` prints.
    pub maxrss_kb: u64,
}

impl Measured {
    pub fn output(&self) -> Output {
        Output {
            status: self.status,
            stdout: self.stdout.clone().into_bytes(),
            stderr: self.stderr.clone().into_bytes(),
        }
    }
}

/// Runs `cmd` to completion and measures its CPU time with wait4 on its own pid (not
/// RUSAGE_CHILDREN, which other tests' children in this process would pollute).
pub fn run_measured(mut cmd: Command) -> Measured {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn abr");
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; rusage is a plain C struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    // The child is reaped: `child` must not be waited for or killed again (dropping it is fine).
    drop(child);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        status: ExitStatus::from_raw(status),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss as u64,
    }
}

/// Runs abr with `args`, asserts success, returns it measured.
pub fn abr_ok(args: &[&str]) -> Measured {
    let m = run_measured(abr_cmd(args));
    assert!(
        m.status.success(),
        "abr {} failed ({:?}): {}",
        args.join(" "),
        m.status,
        m.stderr
    );
    m
}

/// Asserts the way abr refuses: exit status 1, exactly one non-empty stderr line starting with
/// `abr: error:`, no panic. Returns that line.
pub fn one_error_line(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{what}: expected exit 1, got {:?}; stderr: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one line on stderr, got: {err}"
    );
    assert!(lines[0].starts_with("abr: error:"), "{what}: {err}");
    lines[0].to_string()
}

/// Whether `line` names task `index` (as a number on its own, or zero-padded to 5 digits).
pub fn names_index(line: &str, index: usize) -> bool {
    line.split(|c: char| !c.is_ascii_digit())
        .any(|tok| !tok.is_empty() && tok.parse::<usize>().ok() == Some(index))
}

/// The work area of package directory `out`: `<parent>/.<name>.abr-work`.
pub fn work_area(out: &Path) -> PathBuf {
    out.with_file_name(format!(
        ".{}.abr-work",
        out.file_name().unwrap().to_string_lossy()
    ))
}

/// Directory of finished task `index` in work area `work`.
pub fn task_dir(work: &Path, index: usize) -> PathBuf {
    work.join("tasks").join(format!("{index:05}"))
}

/// Names in `work/tasks` (finished tasks and temporaries).
pub fn task_entries(work: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(work.join("tasks"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Staging directories (`.abr-staging.`) left beside `out`.
pub fn staging_beside(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out.parent().unwrap())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .contains(".abr-staging.")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What `abr plan --json` printed.
#[derive(Debug, Clone)]
pub struct PlanOut {
    pub tasks: usize,
    pub shards: usize,
    pub plan_hash: String,
    pub work: PathBuf,
}

/// Parses the JSON object `abr plan --json` prints (the whole stdout, or its last line).
pub fn parse_plan_json(stdout: &str) -> PlanOut {
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .or_else(|_| serde_json::from_str(stdout.trim().lines().last().unwrap_or("")))
        .unwrap_or_else(|e| panic!("abr plan --json printed no JSON object ({e}): {stdout}"));
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("plan --json: no integer {k:?}: {v}")) as usize
    };
    PlanOut {
        tasks: n("tasks"),
        shards: n("shards"),
        plan_hash: v["plan_hash"]
            .as_str()
            .unwrap_or_else(|| panic!("plan --json: no plan_hash: {v}"))
            .to_string(),
        work: PathBuf::from(
            v["work"]
                .as_str()
                .unwrap_or_else(|| panic!("plan --json: no work: {v}")),
        ),
    }
}

/// Runs `abr plan SRC --out OUT --json EXTRA…`, asserts success, returns what it printed.
pub fn plan(src: &Path, out: &Path, extra: &[&str]) -> PlanOut {
    let mut args = vec![
        "plan",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    parse_plan_json(&abr_ok(&args).stdout)
}

/// `plan.json` of work area `work`.
pub fn read_plan(work: &Path) -> serde_json::Value {
    let p = work.join("plan.json");
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `abr shard OUT --index I`, asserts success.
pub fn shard(out: &Path, index: usize) -> Measured {
    abr_ok(&[
        "shard",
        out.to_str().unwrap(),
        "--index",
        &index.to_string(),
        "--progress",
        "none",
    ])
}

/// The JSON events of a `--progress json` stdout.
pub fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The events named `name`.
pub fn events_named<'a>(ev: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    ev.iter().filter(|e| e["event"] == name).collect()
}

// ---------------------------------------------------------------------------------------------
// Comparing packages
// ---------------------------------------------------------------------------------------------

/// Every regular file under `dir` (relative path → sha256 hex), hashed with coreutils sha256sum.
pub fn tree_digest(dir: &Path) -> BTreeMap<String, String> {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let files: Vec<PathBuf> = super::cdn::package_files(dir.parent().unwrap(), name)
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert!(!files.is_empty(), "{} holds no files", dir.display());
    let mut map = BTreeMap::new();
    for chunk in files.chunks(200) {
        let o = Command::new("sha256sum")
            .args(chunk)
            .output()
            .expect("sha256sum");
        assert!(o.status.success(), "sha256sum failed");
        for (line, f) in String::from_utf8_lossy(&o.stdout).lines().zip(chunk) {
            let (hash, _) = line.split_once(' ').unwrap();
            let rel = f.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            map.insert(rel, hash.to_string());
        }
    }
    map
}

/// Asserts that packages `a` and `b` hold the same files with the same bytes.
pub fn assert_same_package(a: &Path, b: &Path, what: &str) {
    let (da, db) = (tree_digest(a), tree_digest(b));
    let only_a: Vec<_> = da.keys().filter(|k| !db.contains_key(*k)).collect();
    let only_b: Vec<_> = db.keys().filter(|k| !da.contains_key(*k)).collect();
    let differ: Vec<_> = da
        .iter()
        .filter(|(k, v)| db.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && differ.is_empty(),
        "{what}: packages {} and {} differ: {} files differ (first: {:?}), only in the first: {:?}, \
         only in the second: {:?}",
        a.display(),
        b.display(),
        differ.len(),
        differ.iter().take(8).collect::<Vec<_>>(),
        only_a.iter().take(8).collect::<Vec<_>>(),
        only_b.iter().take(8).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// The plan's timeline
// ---------------------------------------------------------------------------------------------

/// Frame and segment arithmetic of a plan, recomputed here from the contract.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Output frame rate num/den.
    pub num: u64,
    pub den: u64,
    pub segment_ms: u64,
    /// Total output frames.
    pub frames: u64,
    /// Global segment numbers (1-based) at which a shard starts, the first shard excluded.
    pub seams: Vec<usize>,
}

impl Timeline {
    /// Reads a plan.json, checking its shard table against the contract on the way.
    pub fn from_plan(plan: &serde_json::Value) -> Timeline {
        let u = |v: &serde_json::Value, k: &str| {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("plan.json: no integer {k:?} in {v}"))
        };
        let fr = &plan["frame_rate"];
        let t = Timeline {
            num: u(fr, "num"),
            den: u(fr, "den"),
            segment_ms: u(plan, "segment_ms"),
            frames: u(plan, "frames"),
            seams: Vec::new(),
        };
        let shards = plan["shards"].as_array().expect("plan.json: shards[]");
        assert!(!shards.is_empty(), "plan.json: no shards");
        let per = u(plan, "shard_segments");
        let mut seams = Vec::new();
        let mut next_segment = 1;
        for (i, s) in shards.iter().enumerate() {
            assert_eq!(u(s, "index"), i as u64, "plan.json shard {i}: index");
            let first = u(s, "first_segment");
            let n = u(s, "segments");
            assert_eq!(first, next_segment, "plan.json shard {i}: first_segment");
            assert!(n >= 1, "plan.json shard {i}: no segments");
            if i + 1 < shards.len() {
                assert_eq!(n, per, "plan.json shard {i}: shard_segments");
            } else {
                assert!(n <= per, "plan.json last shard: {n} > shard_segments {per}");
            }
            assert_eq!(
                u(s, "start_frame"),
                t.start_frame(first as usize - 1),
                "plan.json shard {i}: start_frame vs ceil(k·D·fps)"
            );
            let end = u(s, "end_frame");
            if i + 1 < shards.len() {
                assert_eq!(
                    end,
                    t.start_frame((first + n) as usize - 1),
                    "plan.json shard {i}: end_frame"
                );
            } else {
                assert_eq!(end, t.frames, "plan.json last shard ends at frames");
            }
            if i > 0 {
                seams.push(first as usize);
            }
            next_segment = first + n;
        }
        Timeline { seams, ..t }
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        let mut k = 0;
        while self.start_frame(k) < self.frames {
            k += 1;
        }
        k
    }

    /// First frame of segment `k` (0-based): ceil(k · segment_ms · fps / 1000).
    pub fn start_frame(&self, k: usize) -> u64 {
        (k as u64 * self.segment_ms * self.num).div_ceil(1000 * self.den)
    }

    /// Frames of segment `k`.
    pub fn frames_of(&self, k: usize) -> u64 {
        self.start_frame(k + 1).min(self.frames) - self.start_frame(k)
    }

    /// "segment 5 (shard seam)" / "segment 4", for messages; `n` is 1-based.
    pub fn name(&self, n: usize) -> String {
        if self.seams.contains(&n) {
            format!("segment {n} (a shard seam)")
        } else {
            format!("segment {n}")
        }
    }

    /// Whether |lhs − rhs| ≤ tol (both sides scaled to integers by the caller).
    fn close(lhs: i128, rhs: i128, tol: i128) -> bool {
        (lhs - rhs).abs() <= tol
    }
}

// ---------------------------------------------------------------------------------------------
// MPEG-TS, read by hand
// ---------------------------------------------------------------------------------------------

/// One PES packet as reassembled from TS packets.
#[derive(Debug, Clone)]
pub struct Pes {
    /// 0-based index of the segment file it starts in.
    pub segment: usize,
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    /// Elementary-stream bytes (after the PES header).
    pub data: Vec<u8>,
}

/// What one rendition's TS segments hold, read in playlist order as one stream.
#[derive(Debug, Default)]
pub struct TsRendition {
    pub video_pid: u16,
    pub audio_pid: Option<u16>,
    pub video: Vec<Pes>,
    pub audio: Vec<Pes>,
    /// Continuity-counter and structure problems found, in order.
    pub problems: Vec<String>,
}

fn pes_timestamp(b: &[u8]) -> i64 {
    (i64::from((b[0] >> 1) & 7) << 30)
        | (i64::from(b[1]) << 22)
        | (i64::from(b[2] >> 1) << 15)
        | (i64::from(b[3]) << 7)
        | i64::from(b[4] >> 1)
}

fn parse_pes(segment: usize, buf: &[u8]) -> Result<Pes, String> {
    if buf.len() < 9 || buf[..3] != [0, 0, 1] {
        return Err("PES without start code".into());
    }
    let flags = buf[7] >> 6;
    let hlen = buf[8] as usize;
    if buf.len() < 9 + hlen {
        return Err("short PES header".into());
    }
    let pts = (flags & 2 != 0).then(|| pes_timestamp(&buf[9..14]));
    let dts = (flags == 3).then(|| pes_timestamp(&buf[14..19]));
    Ok(Pes {
        segment,
        pts,
        dts,
        data: buf[9 + hlen..].to_vec(),
    })
}

/// PSI section of a payload that starts one (pointer field skipped).
fn psi_section(payload: &[u8]) -> &[u8] {
    let ptr = payload[0] as usize;
    let s = &payload[1 + ptr..];
    let len = ((usize::from(s[1]) & 0x0f) << 8) | usize::from(s[2]);
    &s[..(3 + len).min(s.len())]
}

/// Reads the segments of one rendition (`files`, in playlist order) as one continuous stream:
/// PAT/PMT, per-PID continuity counters across every file boundary, PES reassembly. `name` is
/// for messages; `tl` names seams.
pub fn read_ts_rendition(name: &str, files: &[PathBuf], tl: &Timeline) -> TsRendition {
    let mut r = TsRendition::default();
    let mut pmt_pid = None;
    let mut last_cc: HashMap<u16, (u8, Vec<u8>)> = HashMap::new();
    let mut open: HashMap<u16, (usize, Vec<u8>)> = HashMap::new();
    let finish =
        |r: &mut TsRendition, pid: u16, seg: usize, buf: Vec<u8>| match parse_pes(seg, &buf) {
            Ok(p) if pid == r.video_pid => r.video.push(p),
            Ok(p) => r.audio.push(p),
            Err(e) => r.problems.push(format!("{name} {}: {e}", tl.name(seg + 1))),
        };
    for (seg, f) in files.iter().enumerate() {
        let bytes = verify::read(f);
        let here = tl.name(seg + 1);
        if bytes.len() % 188 != 0 {
            r.problems.push(format!(
                "{name} {here}: {} bytes is not a whole number of 188-byte packets",
                bytes.len()
            ));
        }
        let mut seen_in_file: Vec<u16> = Vec::new();
        let mut started_in_segment: Vec<u16> = Vec::new();
        for (i, p) in bytes.chunks_exact(188).enumerate() {
            if p[0] != 0x47 {
                r.problems
                    .push(format!("{name} {here} packet {i}: sync byte {:#04x}", p[0]));
                continue;
            }
            let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            let pusi = p[1] & 0x40 != 0;
            let afc = (p[3] >> 4) & 3;
            let cc = p[3] & 0x0f;
            if pid == 0x1fff {
                continue; // null packets carry no counter
            }
            let first_in_file = !seen_in_file.contains(&pid);
            if first_in_file {
                seen_in_file.push(pid);
            }
            if afc == 0 {
                r.problems.push(format!(
                    "{name} {here} packet {i}: reserved adaptation_field_control 0"
                ));
                continue;
            }
            let mut off = 4;
            let mut discontinuity = false;
            if afc & 2 != 0 {
                let len = p[4] as usize;
                if len > 0 {
                    discontinuity = p[5] & 0x80 != 0;
                }
                off = 5 + len;
            }
            if discontinuity {
                r.problems.push(format!(
                    "{name} {here} packet {i}: PID {pid:#x} sets discontinuity_indicator (the \
                     timeline must run on)"
                ));
            }
            let has_payload = afc & 1 != 0 && off < 188;
            // Continuity: +1 (mod 16) per payload-carrying packet, unchanged on
            // adaptation-field-only packets; one duplicate of a payload packet is legal.
            if let Some((prev, prev_pkt)) = last_cc.get(&pid) {
                let ok = if has_payload {
                    cc == (prev + 1) & 0x0f || (cc == *prev && prev_pkt.as_slice() == p)
                } else {
                    cc == *prev
                };
                if !ok && !discontinuity {
                    r.problems.push(format!(
                        "{name} {here} packet {i}: PID {pid:#x} continuity counter {cc} after \
                         {prev}{}",
                        if first_in_file {
                            " (first packet of this PID in the file: across the file boundary)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            last_cc.insert(pid, (cc, p.to_vec()));
            if !has_payload {
                continue;
            }
            let payload = &p[off..];
            if pid == 0 && pusi {
                let s = psi_section(payload);
                let mut j = 8;
                while j + 4 <= s.len().saturating_sub(4) {
                    let program = u16::from_be_bytes([s[j], s[j + 1]]);
                    if program != 0 {
                        pmt_pid = Some((u16::from(s[j + 2] & 0x1f) << 8) | u16::from(s[j + 3]));
                    }
                    j += 4;
                }
                continue;
            }
            if Some(pid) == pmt_pid && pusi {
                let s = psi_section(payload);
                let pil = ((usize::from(s[10]) & 0x0f) << 8) | usize::from(s[11]);
                let mut j = 12 + pil;
                while j + 5 <= s.len().saturating_sub(4) {
                    let st = s[j];
                    let es = (u16::from(s[j + 1] & 0x1f) << 8) | u16::from(s[j + 2]);
                    match st {
                        0x1b => r.video_pid = es,
                        0x0f => r.audio_pid = Some(es),
                        other => r.problems.push(format!(
                            "{name}: unexpected stream_type {other:#x} on PID {es:#x}"
                        )),
                    }
                    let es_len = ((usize::from(s[j + 3]) & 0x0f) << 8) | usize::from(s[j + 4]);
                    j += 5 + es_len;
                }
                continue;
            }
            if pid != r.video_pid && Some(pid) != r.audio_pid {
                continue; // SDT and other PSI
            }
            if !started_in_segment.contains(&pid) {
                started_in_segment.push(pid);
                // Independent segments: PAT and PMT come before the first media packet.
                if started_in_segment.len() == 1
                    && !(seen_in_file.contains(&0)
                        && pmt_pid.is_some_and(|m| seen_in_file.contains(&m)))
                {
                    r.problems.push(format!(
                        "{name} {here}: media before PAT and PMT (PIDs so far {seen_in_file:x?})"
                    ));
                }
                if !pusi {
                    r.problems.push(format!(
                        "{name} {here}: PID {pid:#x} continues a PES of the previous file (a \
                         segment must start a new PES)"
                    ));
                }
            }
            if pusi {
                if let Some((s0, buf)) = open.remove(&pid) {
                    finish(&mut r, pid, s0, buf);
                }
                open.insert(pid, (seg, payload.to_vec()));
            } else if let Some((_, buf)) = open.get_mut(&pid) {
                buf.extend_from_slice(payload);
            }
        }
    }
    let mut rest: Vec<_> = open.into_iter().collect();
    rest.sort_by_key(|(pid, _)| *pid);
    for (pid, (s0, buf)) in rest {
        finish(&mut r, pid, s0, buf);
    }
    r.video.sort_by_key(|p| p.segment); // already in order; keeps a stable order by file
    r
}

/// NAL unit types of an Annex B access unit.
pub fn nal_types(au: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            v.push(au[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    v
}

/// ADTS frames of an AAC PES payload: (sample rate, raw frames with headers). Errors when the
/// payload is not a whole number of frames.
pub fn adts_frames(data: &[u8]) -> Result<(u32, Vec<&[u8]>), String> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let mut frames = Vec::new();
    let mut rate = 0;
    let mut i = 0;
    while i < data.len() {
        let h = &data[i..];
        if h.len() < 7 || h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(format!("no ADTS sync word at byte {i} of a PES"));
        }
        if h[6] & 3 != 0 {
            return Err("ADTS frame with several raw data blocks".into());
        }
        rate = *RATES
            .get(usize::from((h[2] >> 2) & 0x0f))
            .ok_or("ADTS sampling_frequency_index out of range")?;
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if len < 7 || len > h.len() {
            return Err(format!("ADTS frame of {len} bytes overruns its PES"));
        }
        frames.push(&h[..len]);
        i += len;
    }
    Ok((rate, frames))
}

/// The audio of one TS rendition as one timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TsAudioTrack {
    pub rate: u32,
    /// PTS (90 kHz) of the first AAC frame.
    pub first_pts: i64,
    /// Every AAC frame in order (ADTS header included).
    pub frames: Vec<Vec<u8>>,
}

impl TsAudioTrack {
    /// End of the last frame (90 kHz).
    pub fn end_pts(&self) -> f64 {
        self.first_pts as f64 + self.frames.len() as f64 * 1024.0 * 90_000.0 / f64::from(self.rate)
    }
}

/// Seam checks of one TS rendition against the plan's timeline; returns the audio track and the
/// PTS of each segment's first (IDR) picture. Panics listing every problem found.
pub fn check_ts_rendition(
    name: &str,
    files: &[PathBuf],
    tl: &Timeline,
) -> (Option<TsAudioTrack>, Vec<i64>) {
    let mut r = read_ts_rendition(name, files, tl);
    let mut problems = std::mem::take(&mut r.problems);
    let nseg = files.len();
    if nseg != tl.segments() {
        problems.push(format!(
            "{name}: {nseg} TS segments, the plan has {}",
            tl.segments()
        ));
    }
    // Ticks per frame = 90000·den/num: compare `x·num` with `y·90000·den` in integers.
    let (num, den) = (i128::from(tl.num), i128::from(tl.den));
    let ft = 90_000 * den;
    let video = &r.video;
    let mut seg_first_pts = Vec::new();
    if video.is_empty() {
        problems.push(format!("{name}: no video PES"));
    } else {
        let d0 = i128::from(video[0].dts.or(video[0].pts).unwrap_or(0));
        // DTS: one frame apart, in decode order, across every segment and seam (no drift).
        for (i, p) in video.iter().enumerate() {
            let Some(pts) = p.pts else {
                problems.push(format!(
                    "{name} {}: video PES without PTS",
                    tl.name(p.segment + 1)
                ));
                continue;
            };
            let d = i128::from(p.dts.unwrap_or(pts));
            if !Timeline::close(d * num - d0 * num, i as i128 * ft, num) {
                problems.push(format!(
                    "{name} {}: picture {i} has DTS {} ticks after the first, expected {:.1} (one \
                     frame per picture)",
                    tl.name(p.segment + 1),
                    d - d0,
                    (i as i128 * ft) as f64 / num as f64
                ));
                break;
            }
            if i128::from(pts) < d {
                problems.push(format!("{name}: picture {i} PTS < DTS"));
            }
        }
        // PTS: every frame presented once, one frame apart, segment k entirely before k+1.
        let mut all: Vec<(i64, usize)> = video
            .iter()
            .filter_map(|p| p.pts.map(|t| (t, p.segment)))
            .collect();
        all.sort();
        let p0 = i128::from(all[0].0);
        for (j, (t, seg)) in all.iter().enumerate() {
            if !Timeline::close(i128::from(*t) * num - p0 * num, j as i128 * ft, num) {
                problems.push(format!(
                    "{name} {}: the {j}-th presented picture is at {} ticks, expected {:.1} (gap, \
                     overlap or duplicate)",
                    tl.name(seg + 1),
                    i128::from(*t) - p0,
                    (j as i128 * ft) as f64 / num as f64
                ));
                break;
            }
        }
        for w in all.windows(2) {
            if w[1].1 < w[0].1 {
                problems.push(format!(
                    "{name}: a picture of {} is presented after one of {} (open GOP across the \
                     cut)",
                    tl.name(w[0].1 + 1),
                    tl.name(w[1].1 + 1)
                ));
                break;
            }
        }
        for k in 0..nseg {
            let pes: Vec<&Pes> = video.iter().filter(|p| p.segment == k).collect();
            let here = tl.name(k + 1);
            let Some(first) = pes.first() else {
                problems.push(format!("{name} {here}: no video"));
                continue;
            };
            let types = nal_types(&first.data);
            for (t, what) in [(5u8, "an IDR slice"), (7, "an SPS"), (8, "a PPS")] {
                if !types.contains(&t) {
                    problems.push(format!(
                        "{name} {here}: first access unit has no {what} (NAL types {types:?})"
                    ));
                }
            }
            let first_pts = first.pts.unwrap_or(0);
            if pes.iter().any(|p| p.pts.is_some_and(|t| t < first_pts)) {
                problems.push(format!(
                    "{name} {here}: a picture is presented before the segment's IDR"
                ));
            }
            // Segment k starts at frame start_frame(k) of the plan.
            let want = i128::from(tl.start_frame(k)) * ft;
            if !Timeline::close(i128::from(first_pts) * num - p0 * num, want, num) {
                problems.push(format!(
                    "{name} {here}: starts {} ticks after the first picture, the plan says frame \
                     {} ({:.1} ticks)",
                    i128::from(first_pts) - p0,
                    tl.start_frame(k),
                    want as f64 / num as f64
                ));
            }
            if pes.len() as u64 != tl.frames_of(k) {
                problems.push(format!(
                    "{name} {here}: {} pictures, the plan says {}",
                    pes.len(),
                    tl.frames_of(k)
                ));
            }
            seg_first_pts.push(first_pts);
        }
    }
    // Audio: whole ADTS frames, each PES at the time its predecessors' samples add up to.
    let audio = if r.audio_pid.is_some() {
        let mut frames = Vec::new();
        let mut rate = 0u32;
        let mut samples: i128 = 0;
        let first_pts = r.audio.first().and_then(|p| p.pts).unwrap_or(0);
        for p in &r.audio {
            let here = tl.name(p.segment + 1);
            let (rt, fs) = match adts_frames(&p.data) {
                Ok(x) => x,
                Err(e) => {
                    problems.push(format!("{name} {here}: audio: {e}"));
                    break;
                }
            };
            if rate != 0 && rt != rate {
                problems.push(format!("{name} {here}: audio rate {rt} after {rate}"));
            }
            rate = rt;
            let Some(pts) = p.pts else {
                problems.push(format!("{name} {here}: audio PES without PTS"));
                break;
            };
            // pts − first == samples · 90000 / rate, within one tick.
            let lhs = (i128::from(pts) - i128::from(first_pts)) * i128::from(rate);
            if !Timeline::close(lhs, samples * 90_000, i128::from(rate)) {
                problems.push(format!(
                    "{name} {here}: audio PES at {} ticks after the first, but the {} AAC frames \
                     before it last {:.1} ticks (gap or overlap)",
                    i128::from(pts) - i128::from(first_pts),
                    samples / 1024,
                    (samples * 90_000) as f64 / f64::from(rate)
                ));
                break;
            }
            samples += fs.len() as i128 * 1024;
            frames.extend(fs.into_iter().map(<[u8]>::to_vec));
        }
        Some(TsAudioTrack {
            rate,
            first_pts,
            frames,
        })
    } else {
        None
    };
    assert!(
        problems.is_empty(),
        "{name}: {} seam problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    (audio, seg_first_pts)
}

// ---------------------------------------------------------------------------------------------
// fMP4 timing
// ---------------------------------------------------------------------------------------------

/// Timing of one DASH representation: the track timescale and, per media segment, its tfdt and
/// sample durations (trun, else tfhd, else trex defaults).
#[derive(Debug)]
pub struct Fmp4Timing {
    pub timescale: u64,
    pub segments: Vec<(u64, Vec<u32>)>,
}

/// Reads `dir/init.mp4` and `dir/seg_00001.m4s`… (consecutive numbers until one is missing).
pub fn read_fmp4_timing(dir: &Path) -> Fmp4Timing {
    let init_path = dir.join("init.mp4");
    let init = decode_atoms(&verify::read(&init_path), &init_path.display().to_string());
    let moov = init
        .iter()
        .find_map(|a| match a {
            mp4_atom::Any::Moov(m) => Some(m.clone()),
            _ => None,
        })
        .expect("moov");
    let timescale = u64::from(moov.trak[0].mdia.mdhd.timescale);
    let trex = moov
        .mvex
        .as_ref()
        .and_then(|m| m.trex.first())
        .map(|t| t.default_sample_duration)
        .unwrap_or(0);
    let mut segments = Vec::new();
    for n in 1.. {
        let p = dir.join(format!("seg_{n:05}.m4s"));
        if !p.is_file() {
            break;
        }
        let atoms = decode_atoms(&verify::read(&p), &p.display().to_string());
        let mut durations = Vec::new();
        let mut tfdt = None;
        for a in &atoms {
            if let mp4_atom::Any::Moof(m) = a {
                for traf in &m.traf {
                    tfdt.get_or_insert(traf.tfdt.as_ref().expect("tfdt").base_media_decode_time);
                    let dflt = traf.tfhd.default_sample_duration.unwrap_or(trex);
                    for run in &traf.trun {
                        durations.extend(run.samples.iter().map(|s| s.duration.unwrap_or(dflt)));
                    }
                }
            }
        }
        segments.push((tfdt.expect("moof with tfdt"), durations));
    }
    Fmp4Timing {
        timescale,
        segments,
    }
}

/// The part of the DASH checks shared by video and audio: each segment's tfdt is where the
/// previous one ended (tfdt + its sample durations); panics listing `problems` and those found.
fn dash_continuity(name: &str, t: &Fmp4Timing, tl: &Timeline, mut problems: Vec<String>) {
    for (k, w) in t.segments.windows(2).enumerate() {
        let ((tfdt, durs), (next, _)) = (&w[0], &w[1]);
        let end = tfdt + durs.iter().map(|d| u64::from(*d)).sum::<u64>();
        if *next != end {
            problems.push(format!(
                "{}: tfdt {next} but {} ends at {end} (gap or overlap)",
                tl.name(k + 2),
                tl.name(k + 1)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "DASH {name}: {} seam problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// DASH seam checks of a video representation: every sample lasts one frame, each segment holds
/// the plan's frames and starts where the previous one ended.
pub fn check_dash_video(name: &str, dir: &Path, tl: &Timeline) {
    let t = read_fmp4_timing(dir);
    let mut problems = Vec::new();
    if t.segments.len() != tl.segments() {
        problems.push(format!(
            "{} segments, the plan has {}",
            t.segments.len(),
            tl.segments()
        ));
    }
    // One frame in ticks must be whole: timescale·den/num.
    let tick = t.timescale * tl.den / tl.num;
    if tick * tl.num != t.timescale * tl.den {
        problems.push(format!(
            "timescale {} is not a whole number of ticks per frame",
            t.timescale
        ));
    }
    let base = t.segments.first().map_or(0, |s| s.0);
    for (k, (tfdt, durs)) in t.segments.iter().enumerate() {
        let here = tl.name(k + 1);
        if durs.len() as u64 != tl.frames_of(k) {
            problems.push(format!(
                "{here}: {} samples, the plan says {} frames",
                durs.len(),
                tl.frames_of(k)
            ));
        }
        if let Some(d) = durs.iter().find(|d| u64::from(**d) != tick) {
            problems.push(format!(
                "{here}: a sample lasts {d} ticks, one frame is {tick}"
            ));
        }
        if tfdt - base != tl.start_frame(k) * tick {
            problems.push(format!(
                "{here}: tfdt {} after the first segment's, the plan's frame {} is at {}",
                tfdt - base,
                tl.start_frame(k),
                tl.start_frame(k) * tick
            ));
        }
    }
    dash_continuity(name, &t, tl, problems);
}

/// DASH seam checks of the audio representation: 1024-sample AAC frames (the very last may be
/// shorter), each segment starting where the previous ended and within one AAC frame after the
/// video segment's start. Returns (start, end) in seconds and the sample rate.
pub fn check_dash_audio(name: &str, dir: &Path, tl: &Timeline) -> (f64, f64, u64) {
    let t = read_fmp4_timing(dir);
    let mut problems = Vec::new();
    if t.segments.len() != tl.segments() {
        problems.push(format!(
            "{} segments, the video has {}",
            t.segments.len(),
            tl.segments()
        ));
    }
    let rate = i128::from(t.timescale);
    let last = t.segments.len().saturating_sub(1);
    for (k, (tfdt, durs)) in t.segments.iter().enumerate() {
        let here = tl.name(k + 1);
        for (i, d) in durs.iter().enumerate() {
            let final_sample = k == last && i + 1 == durs.len();
            if *d != 1024 && !(final_sample && *d < 1024) {
                problems.push(format!(
                    "{here}: AAC sample {i} lasts {d} samples, not 1024"
                ));
                break;
            }
        }
        // Video segment start in audio samples: start_frame·den·rate/num; the audio segment
        // starts at the first AAC frame at or after it.
        let v = i128::from(tl.start_frame(k)) * i128::from(tl.den) * rate;
        let a = i128::from(*tfdt) * i128::from(tl.num);
        if a < v || a >= v + 1024 * i128::from(tl.num) {
            problems.push(format!(
                "{here}: audio starts at sample {tfdt}, the video segment at {:.1} (must be within \
                 the AAC frame after it)",
                v as f64 / tl.num as f64
            ));
        }
    }
    dash_continuity(name, &t, tl, problems);
    let start = t.segments.first().map_or(0, |s| s.0) as f64 / t.timescale as f64;
    let end = t
        .segments
        .last()
        .map_or(0, |(s, d)| s + d.iter().map(|x| u64::from(*x)).sum::<u64>()) as f64
        / t.timescale as f64;
    (start, end, t.timescale)
}

/// Every seam check on package `pkg` with the plan's timeline `tl`: per TS rendition (counters,
/// PTS/DTS, IDR + SPS/PPS at every segment start, audio continuity), the same cut times and
/// the same audio frames in every rendition, and per DASH representation (video and audio).
pub fn check_seams(pkg: &Path, tl: &Timeline) {
    let hls = pkg.join("hls");
    let mut rungs: Vec<String> = std::fs::read_dir(&hls)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    rungs.sort();
    assert!(!rungs.is_empty(), "no HLS renditions in {}", hls.display());
    let video_secs = tl.frames as f64 * tl.den as f64 / tl.num as f64;
    let mut first: Option<(String, Option<TsAudioTrack>, Vec<i64>)> = None;
    for rung in &rungs {
        let playlist = verify::read(&hls.join(rung).join("index.m3u8"));
        let media = match m3u8_rs::parse_playlist_res(&playlist) {
            Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
            other => panic!("{rung}/index.m3u8: {other:?}"),
        };
        let files: Vec<PathBuf> = media
            .segments
            .iter()
            .map(|s| hls.join(rung).join(&s.uri))
            .collect();
        let (audio, starts) = check_ts_rendition(&format!("HLS {rung}"), &files, tl);
        if let Some(a) = &audio {
            // The audio spans the video (within two AAC frames at each end).
            let v0 = starts[0] as f64 / 90_000.0;
            let frame = 1024.0 / f64::from(a.rate);
            let (a0, a1) = (a.first_pts as f64 / 90_000.0, a.end_pts() / 90_000.0);
            assert!(
                (a0 - v0).abs() <= 2.0 * frame + 1e-6,
                "HLS {rung}: audio starts at {a0:.4} s, video at {v0:.4} s"
            );
            assert!(
                ((a1 - v0) - video_secs).abs() <= 2.0 * frame + 1e-6,
                "HLS {rung}: audio ends {:.4} s after the video's start, the video lasts {video_secs:.4} s",
                a1 - v0
            );
        }
        match &first {
            None => first = Some((rung.clone(), audio, starts)),
            Some((r0, a0, s0)) => {
                assert_eq!(
                    &starts, s0,
                    "HLS {rung} and {r0}: segments start at different PTS"
                );
                assert!(
                    &audio == a0,
                    "HLS {rung} and {r0}: the audio differs (one audio stream in every TS rendition)"
                );
            }
        }
    }
    let dash = pkg.join("dash");
    if !dash.is_dir() {
        return;
    }
    let mut reps: Vec<PathBuf> = std::fs::read_dir(&dash)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    reps.sort();
    for rep in reps {
        let id = rep.file_name().unwrap().to_string_lossy().into_owned();
        if id.starts_with("audio") {
            let (a0, a1, rate) = check_dash_audio(&id, &rep, tl);
            assert!(a0.abs() < 1e-9, "DASH {id}: audio starts at {a0} s, not 0");
            assert!(
                (a1 - video_secs).abs() <= 2.0 * 1024.0 / rate as f64,
                "DASH {id}: audio ends at {a1:.4} s, the video at {video_secs:.4} s"
            );
        } else {
            check_dash_video(&id, &rep, tl);
        }
    }
}
