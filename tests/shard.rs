//! Sharded packaging end to end (issue 11, acceptance 2, 3, 4 and 6): `abr plan / shard /
//! assemble` and the sharded `abr package`, checked with independent tools.
//!
//! - Sharded packages pass the structural checks of `tests/package.rs` (shared `verify`) and play
//!   in hls.js and dash.js; seams are checked with our own MPEG-TS reader (continuity counters,
//!   PTS/DTS one frame apart, IDR + SPS/PPS at every segment start, AAC without gap or overlap)
//!   and fMP4 timing (tfdt + sample durations).
//! - Same plan ⇒ same bytes: `--jobs 1`, `--jobs 3` and separate `abr shard` processes (shuffled,
//!   some at once, some twice) + `abr assemble` give byte-identical packages.
//! - Resume after SIGKILL reuses finished shards (CPU time of the rerun vs a full run, from
//!   wait4); another ladder or a changed source never reuses old work.
//! - Bad input: what `abr package` refuses, `abr plan` refuses; out-of-range index, another
//!   version's plan, missing and corrupt tasks: one line, exit 1, nothing published.
//!
//! Fixtures are short, the ladder small (`test_ladder`), segments 2 s and shards 2–4 s, so every
//! package has at least 4 shards; the 1080p package is built once and shared.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::shard::*;
use common::verify::{expand_timeline, verify};
use common::*;

fn workdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("abr-shard-{name}-"))
        .tempdir_in(fixture_dir())
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `f`, turning a panic into its message (for builders shared through a `OnceLock`: one
/// failure is reported by every test that needs the result instead of being retried by each).
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// The abr version as `abr --version` prints it ("abr 0.1.0" → "0.1.0").
fn abr_version() -> String {
    let o = abr(&["--version"]);
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .last()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The shared 1080p package: 17 s (not a multiple of the 2 s segment), audio, 4 s shards → five
// video shards (the last one a single 1 s segment) and the audio task.
// ---------------------------------------------------------------------------------------------

const HD_SECS: u32 = 17;
const HD_SHARD_SECS: &str = "4";

struct Hd {
    _dir: tempfile::TempDir,
    src: PathBuf,
    ladder: PathBuf,
    /// Built by `abr package --jobs 1 --keep-work --progress json`.
    pkg: PathBuf,
    plan: serde_json::Value,
    timeline: Timeline,
    /// CPU seconds (user + system) of that full run.
    cpu: f64,
    events: Vec<serde_json::Value>,
}

/// The arguments of the shared 1080p job, writing to `out` with `jobs` workers.
fn hd_args(src: &Path, out: &Path, ladder: &Path, jobs: &str) -> Vec<String> {
    [
        "package",
        s(src),
        "--out",
        s(out),
        "--ladder",
        s(ladder),
        "--segment-duration",
        "2",
        "--shard-seconds",
        HD_SHARD_SECS,
        "--jobs",
        jobs,
        "--keep-work",
        "--progress",
        "json",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect()
}

fn build_hd() -> Hd {
    let src = fixture("1080p30", HD_SECS);
    let dir = workdir("hd");
    let ladder = test_ladder(dir.path());
    let pkg = dir.path().join("jobs1");
    let args = hd_args(&src, &pkg, &ladder, "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = abr_ok(&args);
    let plan = read_plan(&work_area(&pkg));
    let timeline = Timeline::from_plan(&plan);
    Hd {
        src,
        ladder,
        pkg,
        timeline,
        plan,
        cpu: m.cpu,
        events: events(&m.stdout),
        _dir: dir,
    }
}

fn hd() -> &'static Hd {
    static HD: OnceLock<Result<Hd, String>> = OnceLock::new();
    HD.get_or_init(|| catch(build_hd))
        .as_ref()
        .unwrap_or_else(|e| panic!("the shared sharded 1080p package could not be built: {e}"))
}

fn plan_u64(plan: &serde_json::Value, k: &str) -> u64 {
    plan[k]
        .as_u64()
        .unwrap_or_else(|| panic!("plan.json: no integer {k:?}"))
}

#[test]
fn sharded_1080p_with_audio_passes_the_package_checks() {
    let hd = hd();
    let r = verify(&hd.pkg, &hd.src);
    assert_eq!(
        r.sizes.keys().cloned().collect::<Vec<_>>(),
        ["240p", "360p", "720p"]
    );
    assert_eq!(r.sizes["720p"], (1280, 720));
    assert!(r.has_audio);
    assert_eq!(r.segments, 9, "17 s at 2 s segments");
    assert!(
        (r.duration - f64::from(HD_SECS)).abs() < 1.0 / 30.0,
        "duration {}",
        r.duration
    );

    // The plan: whole segments per shard, frame-exact boundaries (checked by from_plan), the
    // audio task last, the ladder and the version recorded.
    let plan = &hd.plan;
    let shards = plan["shards"].as_array().unwrap().len();
    assert_eq!(shards, 5, "9 segments in shards of 2: {plan}");
    assert_eq!(plan_u64(plan, "shard_segments"), 2, "round(4 s / 2 s)");
    assert_eq!(plan_u64(plan, "segment_ms"), 2000);
    assert_eq!(plan_u64(plan, "frames"), u64::from(HD_SECS) * 30);
    assert_eq!(
        (
            plan_u64(&plan["frame_rate"], "num"),
            plan_u64(&plan["frame_rate"], "den")
        ),
        (30, 1)
    );
    assert_eq!(plan_u64(plan, "audio_task"), shards as u64);
    assert_eq!(plan_u64(plan, "tasks"), shards as u64 + 1);
    assert_eq!(plan["abr_version"].as_str(), Some(abr_version().as_str()));
    let hash = plan["plan_hash"].as_str().unwrap();
    assert!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "plan_hash {hash:?}"
    );
    let rungs: Vec<(String, u64, u64)> = plan["rungs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["width"].as_u64().unwrap(),
                r["height"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = rungs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("240p".to_string(), 426, 240),
            ("360p".to_string(), 640, 360),
            ("720p".to_string(), 1280, 720)
        ],
        "plan rungs"
    );
    // Every finished task is in place with its sidecar (the work area was kept).
    let work = work_area(&hd.pkg);
    for i in 0..=shards {
        let sidecar = task_dir(&work, i).join("task.json");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
        assert!(
            v.to_string().contains(hash),
            "{}: no plan hash {hash}",
            sidecar.display()
        );
    }
    assert!(
        !task_entries(&work).iter().any(|e| e.starts_with(".tmp-")),
        "temporaries left in {}: {:?}",
        work.display(),
        task_entries(&work)
    );

    // --progress json: one task_done per task, counting up to the total, then done.
    let n = shards + 1;
    let done = events_named(&hd.events, "task_done");
    assert_eq!(done.len(), n, "task_done events: {done:?}");
    let mut indices: Vec<u64> = done.iter().map(|e| e["index"].as_u64().unwrap()).collect();
    for (k, e) in done.iter().enumerate() {
        assert_eq!(e["done"].as_u64(), Some(k as u64 + 1), "{e}");
        assert_eq!(e["total"].as_u64(), Some(n as u64), "{e}");
        let want = if e["index"].as_u64() == Some(shards as u64) {
            "audio"
        } else {
            "shard"
        };
        assert_eq!(e["kind"], want, "{e}");
    }
    indices.sort();
    assert_eq!(indices, (0..n as u64).collect::<Vec<_>>());
    assert!(events_named(&hd.events, "resumed").is_empty());
    let last = hd.events.last().unwrap();
    assert_eq!(last["event"], "done", "{last}");
    assert!(
        last["output"]
            .as_str()
            .is_some_and(|o| Path::new(o).ends_with("jobs1")),
        "{last}"
    );
}

#[test]
fn sharded_1080p_seams_are_continuous() {
    let hd = hd();
    assert!(hd.timeline.seams.len() >= 4, "{:?}", hd.timeline);
    check_seams(&hd.pkg, &hd.timeline);
}

#[test]
fn sharded_package_plays_in_hls_js_and_dash_js() {
    let hd = hd();
    common::player::play(&hd.pkg, "hls");
    common::player::play(&hd.pkg, "dash");
}

// ---------------------------------------------------------------------------------------------
// Same plan ⇒ same bytes
// ---------------------------------------------------------------------------------------------

/// A permutation of 0..n from a seed (xorshift; Fisher–Yates).
fn shuffled(n: usize, mut seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    v
}

/// `abr shard OUT`, by `--index I` or through one of the array engines' variables.
fn shard_cmd(out: &Path, index: usize, via: Option<&str>) -> Command {
    let mut c = abr_cmd(&["shard", s(out), "--progress", "none"]);
    match via {
        Some(var) => {
            c.arg("--index-from-env").env(var, index.to_string());
        }
        None => {
            c.args(["--index", &index.to_string()]);
        }
    }
    c
}

/// Runs the commands at once; asserts each succeeded; returns them measured, in order.
fn run_together(cmds: Vec<(String, Command)>) -> Vec<Measured> {
    let handles: Vec<_> = cmds
        .into_iter()
        .map(|(what, c)| std::thread::spawn(move || (what, run_measured(c))))
        .collect();
    handles
        .into_iter()
        .map(|h| {
            let (what, m) = h.join().unwrap();
            assert!(m.status.success(), "{what} failed: {}", m.stderr);
            m
        })
        .collect()
}

#[test]
fn jobs_1_jobs_3_and_separate_processes_give_identical_bytes() {
    let hd = hd();
    let dir = workdir("determinism");

    // --jobs 3 in one process; without --keep-work the work area is gone after publishing.
    let j3 = dir.path().join("jobs3");
    let mut args = hd_args(&hd.src, &j3, &hd.ladder, "3");
    args.retain(|a| a != "--keep-work");
    abr_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !work_area(&j3).exists(),
        "abr package left its work area without --keep-work"
    );
    assert_same_package(&hd.pkg, &j3, "--jobs 1 vs --jobs 3");

    // An external engine: abr plan, then every task as its own process — in a shuffled order,
    // some at once, one index twice in a row and one twice at the same time — then assemble.
    let ext = dir.path().join("external");
    let p = plan(
        &hd.src,
        &ext,
        &[
            "--ladder",
            s(&hd.ladder),
            "--segment-duration",
            "2",
            "--shard-seconds",
            HD_SHARD_SECS,
        ],
    );
    let n = plan_u64(&hd.plan, "tasks") as usize;
    let nshards = hd.timeline.seams.len() + 1;
    assert_eq!((p.tasks, p.shards), (n, nshards), "{p:?}");
    assert_eq!(
        std::fs::canonicalize(&p.work).unwrap(),
        std::fs::canonicalize(work_area(&ext)).unwrap(),
        "plan --json work"
    );
    let ext_plan = read_plan(&p.work);
    assert_eq!(ext_plan["plan_hash"].as_str(), Some(p.plan_hash.as_str()));
    assert_eq!(
        (&ext_plan["shards"], &ext_plan["frames"]),
        (&hd.plan["shards"], &hd.plan["frames"]),
        "boundaries depend on the source and --shard-seconds only"
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let order = shuffled(n, seed);
    eprintln!("task order {order:?} (seed {seed})");
    let label = |i: usize| format!("abr shard --index {i}");
    // Wave 1: the first index twice at the same time, the second one alongside.
    let (a, b) = (order[0], order[1]);
    run_together(vec![
        (label(a), shard_cmd(&ext, a, None)),
        (label(a), shard_cmd(&ext, a, None)),
        (label(b), shard_cmd(&ext, b, None)),
    ]);
    // A video shard twice in a row, the second time through JOB_COMPLETION_INDEX: the task is in
    // place and intact, so it is not redone (same directory, a fraction of the work).
    let twice = *order[2..].iter().find(|&&i| i < nshards).unwrap();
    let first = shard(&ext, twice);
    let ino = |i: usize| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(task_dir(&p.work, i)).unwrap().ino()
    };
    let before = ino(twice);
    let again = run_together(vec![(
        format!("JOB_COMPLETION_INDEX={twice} abr shard --index-from-env"),
        shard_cmd(&ext, twice, Some("JOB_COMPLETION_INDEX")),
    )]);
    assert_eq!(
        before,
        ino(twice),
        "task {twice} was replaced by a rerun of a finished task"
    );
    assert!(
        again[0].cpu <= 0.5 * first.cpu,
        "rerunning finished task {twice} took {:.2} s CPU, the first run {:.2} s",
        again[0].cpu,
        first.cpu
    );
    // The rest two at a time, through the Slurm and AWS Batch variables.
    let rest: Vec<usize> = order[2..].iter().copied().filter(|&i| i != twice).collect();
    for pair in rest.chunks(2) {
        let mut cmds = vec![(
            format!("SLURM_ARRAY_TASK_ID={} abr shard --index-from-env", pair[0]),
            shard_cmd(&ext, pair[0], Some("SLURM_ARRAY_TASK_ID")),
        )];
        if let Some(&j) = pair.get(1) {
            cmds.push((
                format!("AWS_BATCH_JOB_ARRAY_INDEX={j} abr shard --index-from-env"),
                shard_cmd(&ext, j, Some("AWS_BATCH_JOB_ARRAY_INDEX")),
            ));
        }
        run_together(cmds);
    }
    // One result per task, no temporaries.
    assert_eq!(
        task_entries(&p.work),
        (0..n).map(|i| format!("{i:05}")).collect::<Vec<_>>(),
        "work area tasks"
    );
    abr_ok(&["assemble", s(&ext)]);
    assert!(!work_area(&ext).exists(), "assemble left its work area");
    assert_same_package(&hd.pkg, &ext, "--jobs 1 vs separate abr shard processes");
}

// ---------------------------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------------------------

#[test]
fn sigkill_after_half_the_shards_then_rerun_reuses_them() {
    let hd = hd();
    let dir = workdir("resume");
    let out = dir.path().join("pkg");
    let args = hd_args(&hd.src, &out, &hd.ladder, "1");
    let nshards = hd.timeline.seams.len() + 1;
    let n = plan_u64(&hd.plan, "tasks") as usize;

    let mut child = abr_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let mut finished = Vec::new();
    let mut shards_done = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        assert_ne!(
            v["event"], "done",
            "the job finished before it could be killed"
        );
        if v["event"] == "task_done" {
            finished.push(v["index"].as_u64().unwrap() as usize);
            if v["kind"] == "shard" {
                shards_done += 1;
            }
            if 2 * shards_done >= nshards {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let err = drain.join().unwrap();
    assert!(
        2 * shards_done >= nshards,
        "the job ended after {shards_done} of {nshards} shards: {err}"
    );
    assert!(!out.exists(), "a killed job published {}", out.display());
    let work = work_area(&out);
    for &i in &finished {
        assert!(
            task_dir(&work, i).join("task.json").is_file(),
            "task {i} was reported done but is not in {}",
            work.display()
        );
    }

    // The same command again: it reuses what is finished and encodes only the rest.
    let rerun = abr_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let ev = events(&rerun.stdout);
    let resumed = events_named(&ev, "resumed");
    assert_eq!(resumed.len(), 1, "one resumed event: {}", rerun.stdout);
    let reused = resumed[0]["reused"].as_u64().unwrap() as usize;
    assert_eq!(
        resumed[0]["total"].as_u64(),
        Some(n as u64),
        "{}",
        resumed[0]
    );
    assert!(
        reused >= finished.len() && reused < n,
        "reused {reused}: {} tasks were done at the kill, {n} in all",
        finished.len()
    );
    let redone: Vec<usize> = events_named(&ev, "task_done")
        .iter()
        .map(|e| e["index"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        redone.len(),
        n - reused,
        "tasks run by the rerun: {redone:?}"
    );
    assert!(
        redone.iter().all(|i| !finished.contains(i)),
        "the rerun redid finished tasks: {redone:?}, finished {finished:?}"
    );
    // A ratio of work done, both measured here: the full run is the shared --jobs 1 package.
    eprintln!(
        "CPU: full run {:.2} s, resumed run {:.2} s ({:.2}×), {reused} of {n} tasks reused",
        hd.cpu,
        rerun.cpu,
        rerun.cpu / hd.cpu
    );
    assert!(
        rerun.cpu <= 0.6 * hd.cpu,
        "the resumed run used {:.1} s CPU, a full run {:.1} s ({:.2}×; {reused} of {n} tasks reused)",
        rerun.cpu,
        hd.cpu,
        rerun.cpu / hd.cpu
    );
    // And it is the same package as the uninterrupted run.
    assert_same_package(&hd.pkg, &out, "uninterrupted vs killed and resumed");
}

/// The events of a package run that must have reused no earlier work (`what` says why).
fn assert_nothing_reused(m: &Measured, what: &str) -> Vec<serde_json::Value> {
    let ev = events(&m.stdout);
    assert!(
        events_named(&ev, "resumed")
            .iter()
            .all(|e| e["reused"].as_u64() == Some(0)),
        "{what}: {}",
        m.stdout
    );
    ev
}

/// The small video-only source of the work-area tests: 8 s of 720p 25 fps; with 2 s segments
/// and 2 s shards, four shards and no audio task.
fn small_source() -> PathBuf {
    fixture("720p-noaudio", 8)
}

const SMALL: [&str; 4] = ["--segment-duration", "2", "--shard-seconds", "2"];

fn small_args(ladder: &Path) -> Vec<&str> {
    let mut v = vec!["--ladder", s(ladder)];
    v.extend_from_slice(&SMALL);
    v
}

#[test]
fn another_ladder_does_not_reuse_old_shards() {
    let dir = workdir("ladder");
    let src = small_source();
    let out = dir.path().join("pkg");
    let ladder = test_ladder(dir.path());
    let p = plan(&src, &out, &small_args(&ladder));
    assert_eq!(p.tasks, 4, "{p:?}");
    shard(&out, 0);
    shard(&out, 1);
    // Another ladder: one 180p rung.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        "preset = \"superfast\"\n[[video]]\nheight = 180\nbitrate_kbps = 200\n",
    )
    .unwrap();
    let mut args = vec!["package", s(&src), "--out", s(&out), "--progress", "json"];
    args.extend(small_args(&other));
    let m = abr_ok(&args);
    let ev = assert_nothing_reused(&m, "shards of another ladder were reused");
    let done = events_named(&ev, "task_done");
    assert_eq!(
        done.len() as u64,
        done[0]["total"].as_u64().unwrap(),
        "every task of the new plan is run: {}",
        m.stdout
    );
    let r = verify(&out, &src);
    assert_eq!(
        r.sizes.into_iter().collect::<Vec<_>>(),
        [("180p".to_string(), (320, 180))],
        "the package reflects the new ladder"
    );
    assert!(!work_area(&out).exists());
}

#[test]
fn changed_source_is_refused_by_tasks_and_replanned_by_package() {
    let dir = workdir("changed");
    let orig = small_source();
    let src = dir.path().join("src.mp4");
    assert!(Command::new("cp")
        .arg("-p")
        .arg(&orig)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let out = dir.path().join("pkg");
    let ladder = test_ladder(dir.path());
    plan(&src, &out, &small_args(&ladder));
    shard(&out, 0);
    let work = work_area(&out);
    let refused = |what: &str| {
        let o = shard_cmd(&out, 1, None).output().unwrap();
        let line = one_error_line(&o, &format!("abr shard on {what}"));
        assert!(
            line.to_lowercase().contains("source") || line.contains(s(&src)),
            "{what}: {line}"
        );
        assert!(!task_dir(&work, 1).exists(), "{what}: task 1 was written");
        let o = abr_cmd(&["assemble", s(&out)]).output().unwrap();
        one_error_line(&o, &format!("abr assemble on {what}"));
        assert!(!out.exists(), "{what}: published");
        assert!(staging_beside(&out).is_empty(), "{what}: staging left");
    };
    // Same size and mtime, one byte of its head changed.
    let mut bytes = std::fs::read(&src).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&src, &bytes).unwrap();
    assert!(Command::new("touch")
        .arg("-r")
        .arg(&orig)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    refused("a source whose content changed");
    // The content back, but another mtime.
    bytes[mid] ^= 0x55;
    std::fs::write(&src, &bytes).unwrap();
    assert!(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(&src)
        .status()
        .unwrap()
        .success());
    refused("a source whose mtime changed");
    // abr package makes a new plan rather than mixing in the old task.
    let mut args = vec!["package", s(&src), "--out", s(&out), "--progress", "json"];
    args.extend(small_args(&ladder));
    let m = abr_ok(&args);
    let ev = assert_nothing_reused(&m, "work planned on the old source was reused");
    let done = events_named(&ev, "task_done");
    assert_eq!(
        done.len(),
        4,
        "every task of the new plan is run: {}",
        m.stdout
    );
    assert!(out.join("hls/master.m3u8").is_file() && out.join("dash/manifest.mpd").is_file());
}

// ---------------------------------------------------------------------------------------------
// More shapes
// ---------------------------------------------------------------------------------------------

/// Packages `shape` (`secs` long) sharded with 2 s segments and `shard_secs` shards, keeping the
/// work area; runs the package checks and the seam checks. Returns the dir, package and timeline.
fn sharded_shape(
    shape: &str,
    secs: u32,
    ladder_toml: Option<&str>,
    shard_secs: &str,
) -> (tempfile::TempDir, PathBuf, Timeline, common::verify::Report) {
    let src = fixture(shape, secs);
    let dir = workdir(shape);
    let ladder = match ladder_toml {
        Some(t) => {
            let p = dir.path().join("ladder.toml");
            std::fs::write(&p, t).unwrap();
            p
        }
        None => test_ladder(dir.path()),
    };
    let out = dir.path().join("pkg");
    package(
        &src,
        &out,
        &[
            "--ladder",
            s(&ladder),
            "--segment-duration",
            "2",
            "--shard-seconds",
            shard_secs,
            "--keep-work",
        ],
    );
    let tl = Timeline::from_plan(&read_plan(&work_area(&out)));
    let r = verify(&out, &src);
    check_seams(&out, &tl);
    (dir, out, tl, r)
}

#[test]
fn vfr_source_sharded() {
    let (_d, _out, tl, r) = sharded_shape("vfr", 10, None, "2");
    assert!(tl.seams.len() >= 4, "{tl:?}");
    assert!(r.has_audio && r.segments == 5, "{r:?}");
}

#[test]
fn video_only_25fps_sharded_with_a_short_last_segment() {
    // 11 s at 25 fps: five 2 s segments and a 1 s one, one shard each, no audio task.
    let (_d, out, tl, r) = sharded_shape("720p-noaudio", 11, None, "2");
    assert_eq!(tl.seams.len(), 5, "{tl:?}");
    assert!(!r.has_audio && r.segments == 6, "{r:?}");
    let plan = read_plan(&work_area(&out));
    assert!(plan["audio_task"].is_null(), "{}", plan["audio_task"]);
    assert_eq!(plan_u64(&plan, "tasks"), 6);
}

const MONO_LADDER: &str = "preset = \"superfast\"\n\
    [[video]]\nheight = 360\nbitrate_kbps = 500\n\
    [[video]]\nheight = 240\nbitrate_kbps = 300\n\
    [audio]\nbitrate_kbps = 64\nsample_rate = 44100\nchannels = 1\n";

/// Per rendition: EXTINF durations of the HLS playlist and the DASH timeline.
fn structure(pkg: &Path) -> Vec<(String, Vec<String>)> {
    let mut v = Vec::new();
    let master =
        match m3u8_rs::parse_playlist_res(&std::fs::read(pkg.join("hls/master.m3u8")).unwrap()) {
            Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
            other => panic!("{other:?}"),
        };
    for var in &master.variants {
        let media = match m3u8_rs::parse_playlist_res(
            &std::fs::read(pkg.join("hls").join(&var.uri)).unwrap(),
        ) {
            Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => m,
            other => panic!("{other:?}"),
        };
        v.push((
            format!("hls {} {:?}", var.uri, var.resolution),
            media
                .segments
                .iter()
                .map(|s| format!("{:.3}", s.duration))
                .collect(),
        ));
    }
    let mpd =
        dash_mpd_core::parse(&std::fs::read_to_string(pkg.join("dash/manifest.mpd")).unwrap())
            .unwrap();
    for a in &mpd.periods[0].adaptations {
        for rep in &a.representations {
            let tmpl = rep
                .SegmentTemplate
                .as_ref()
                .or(a.SegmentTemplate.as_ref())
                .unwrap();
            let tl = expand_timeline(tmpl.SegmentTimeline.as_ref().unwrap());
            v.push((
                format!("dash {:?} timescale {:?}", rep.id, tmpl.timescale),
                tl.iter().map(|(t, d)| format!("{t}+{d}")).collect(),
            ));
        }
    }
    v
}

#[test]
fn mono_44k_25fps_sharded_has_the_structure_of_one_shard() {
    // 9 s: four 2 s segments and a 1 s one; 44.1 kHz mono audio (1024 samples = 2089.8 ticks).
    let (dir, out, tl, r) = sharded_shape("360p25-mono", 9, Some(MONO_LADDER), "2");
    assert_eq!(tl.seams.len(), 4, "{tl:?}");
    assert!(r.has_audio && r.segments == 5, "{r:?}");
    assert!(out.join("dash/audio_64k/init.mp4").is_file());
    // The same job as one shard: the same segments, timelines and renditions.
    let src = fixture("360p25-mono", 9);
    let ladder = dir.path().join("ladder.toml");
    let one = package(
        &src,
        &dir.path().join("one"),
        &[
            "--ladder",
            s(&ladder),
            "--segment-duration",
            "2",
            "--shard-seconds",
            "0",
            "--keep-work",
        ],
    );
    let plan = read_plan(&work_area(&one));
    assert_eq!(
        plan["shards"].as_array().map(Vec::len),
        Some(1),
        "--shard-seconds 0 is one shard"
    );
    assert_eq!(structure(&one), structure(&out), "sharded vs one shard");
    check_seams(&one, &Timeline::from_plan(&plan));
}

// ---------------------------------------------------------------------------------------------
// Bad input (acceptance 6)
// ---------------------------------------------------------------------------------------------

#[test]
fn plan_refuses_what_package_refuses() {
    let w = workdir("refuse");
    let good = fixture("720p-noaudio", 2);
    let missing = w.path().join("nope.mp4");
    let a_dir = w.path().join("a-dir.mp4");
    std::fs::create_dir(&a_dir).unwrap();
    let empty = w.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = w.path().join("notes.mp4");
    std::fs::write(&text, "this is a text file, not a video\n".repeat(200)).unwrap();
    let blocker = w.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let exists = w.path().join("exists");
    std::fs::create_dir(&exists).unwrap();
    std::fs::write(exists.join("keep"), b"precious").unwrap();
    let warp = w.path().join("warp.toml");
    std::fs::write(&warp, "preset = \"warp\"\n").unwrap();
    let out = w.path().join("out");
    // (what, input, --out, extra arguments, any of these in the error line)
    type Case<'a> = (&'a str, PathBuf, PathBuf, Vec<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "missing file",
            missing,
            out.clone(),
            vec![],
            vec!["cannot read input"],
        ),
        (
            "directory",
            a_dir,
            out.clone(),
            vec![],
            vec!["cannot read input"],
        ),
        (
            "zero-length file",
            empty,
            out.clone(),
            vec![],
            vec!["is empty"],
        ),
        (
            "text file",
            text,
            out.clone(),
            vec![],
            vec!["not a media file"],
        ),
        (
            "truncated",
            fixture("truncated", 6),
            out.clone(),
            vec![],
            vec!["truncated", "not a media file"],
        ),
        (
            "truncated faststart",
            fixture("truncated-faststart", 6),
            out.clone(),
            vec![],
            vec!["truncated or corrupt"],
        ),
        (
            "audio only",
            fixture("audioonly", 3),
            out.clone(),
            vec![],
            vec!["no video stream"],
        ),
        (
            "unknown codec",
            fixture("unknowncodec", 3),
            out.clone(),
            vec![],
            vec!["no decoder", "no video stream"],
        ),
        (
            "output under a file",
            good.clone(),
            blocker.join("out"),
            vec![],
            vec!["is not a directory"],
        ),
        (
            "existing output",
            good.clone(),
            exists.clone(),
            vec![],
            vec!["already exists"],
        ),
        (
            "segment duration 0",
            good.clone(),
            out.clone(),
            vec!["--segment-duration", "0"],
            vec!["segment-duration"],
        ),
        (
            "unknown format",
            good.clone(),
            out.clone(),
            vec!["--formats", "flv"],
            vec!["unknown format"],
        ),
        (
            "missing ladder",
            good.clone(),
            out.clone(),
            vec!["--ladder", "/nonexistent/ladder.toml"],
            vec!["cannot read ladder file"],
        ),
        (
            "unknown preset",
            good.clone(),
            out.clone(),
            vec!["--ladder", s(&warp)],
            vec!["unknown x264 preset"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, input, dest, extra, needles) in &cases {
        for cmd in ["package", "plan"] {
            let mut args = vec![cmd, s(input), "--out", s(dest), "--progress", "none"];
            if cmd == "plan" {
                args.pop();
                args.pop();
            }
            args.extend(extra.iter().copied());
            let o = abr(&args);
            let line = match catch(|| one_error_line(&o, &format!("abr {cmd} ({what})"))) {
                Ok(l) => l,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            if !needles.iter().any(|n| line.contains(n)) {
                failures.push(format!(
                    "abr {cmd} ({what}): {line:?} lacks any of {needles:?}"
                ));
            }
            let published = if *what == "existing output" {
                std::fs::read(dest.join("keep")).ok().as_deref() != Some(b"precious".as_slice())
            } else {
                dest.exists()
            };
            if published {
                failures.push(format!(
                    "abr {cmd} ({what}): {} was written",
                    dest.display()
                ));
            }
            if dest.parent().is_some_and(Path::is_dir) {
                if work_area(dest).exists() {
                    failures.push(format!("abr {cmd} ({what}): a work area was left"));
                }
                if !staging_beside(dest).is_empty() {
                    failures.push(format!("abr {cmd} ({what}): a staging directory was left"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shard_refuses_an_index_out_of_range_and_another_versions_plan() {
    let dir = workdir("index");
    let src = fixture("720p-noaudio", 4);
    let ladder = test_ladder(dir.path());
    let out = dir.path().join("pkg");
    // The text form: its last line is `tasks: N`; the JSON form says the same.
    let mut args = vec!["plan", s(&src), "--out", s(&out)];
    args.extend(small_args(&ladder));
    let o = abr_ok(&args);
    assert_eq!(
        o.stdout.trim_end().lines().last(),
        Some("tasks: 2"),
        "{}",
        o.stdout
    );
    let json = plan(&src, &dir.path().join("other"), &small_args(&ladder));
    assert_eq!((json.tasks, json.shards), (2, 2), "{json:?}");
    let work = work_area(&out);
    let plan_json = read_plan(&work);
    assert_eq!(plan_u64(&plan_json, "tasks"), 2);
    assert!(plan_json["audio_task"].is_null());

    let refuse = |c: Command, what: &str, index: Option<usize>| {
        let mut c = c;
        let o = c.output().unwrap();
        let line = one_error_line(&o, what);
        if let Some(i) = index {
            assert!(
                names_index(&line, i),
                "{what}: {line:?} does not name index {i}"
            );
        }
        assert!(
            task_entries(&work).is_empty(),
            "{what}: wrote {:?}",
            task_entries(&work)
        );
        assert!(!out.exists(), "{what}: published");
        line
    };
    refuse(
        shard_cmd(&out, 2, None),
        "abr shard --index 2 of 2 tasks",
        Some(2),
    );
    refuse(
        shard_cmd(&out, 7, None),
        "abr shard --index 7 of 2 tasks",
        Some(7),
    );
    refuse(
        shard_cmd(&out, 2, Some("JOB_COMPLETION_INDEX")),
        "JOB_COMPLETION_INDEX=2 abr shard --index-from-env",
        Some(2),
    );
    refuse(
        abr_cmd(&["shard", s(&out), "--index-from-env"]),
        "abr shard --index-from-env without any index variable",
        None,
    );
    // Nothing done yet: assemble names both missing tasks.
    let line = refuse(
        abr_cmd(&["assemble", s(&out)]),
        "abr assemble with no task done",
        Some(0),
    );
    assert!(names_index(&line, 1), "{line:?} does not name task 1");

    // A plan written by another abr version.
    let mut v = plan_json.clone();
    v["abr_version"] = serde_json::json!("0.0.0-other");
    std::fs::write(
        work.join("plan.json"),
        serde_json::to_vec_pretty(&v).unwrap(),
    )
    .unwrap();
    for (c, what) in [
        (
            shard_cmd(&out, 0, None),
            "abr shard on another version's plan",
        ),
        (
            abr_cmd(&["assemble", s(&out)]),
            "abr assemble on another version's plan",
        ),
    ] {
        let line = refuse(c, what, None);
        assert!(
            line.contains("0.0.0-other"),
            "{what}: {line:?} does not name the plan's version"
        );
    }
}

#[test]
fn assemble_names_missing_and_corrupt_tasks_and_publishes_nothing() {
    let dir = workdir("corrupt");
    let src = small_source();
    let ladder = test_ladder(dir.path());
    let out = dir.path().join("pkg");
    let p = plan(&src, &out, &small_args(&ladder));
    assert_eq!(p.tasks, 4);
    let tl = Timeline::from_plan(&read_plan(&p.work));
    run_together(
        (0..p.tasks)
            .map(|i| (format!("abr shard --index {i}"), shard_cmd(&out, i, None)))
            .collect(),
    );
    // Task 3 missing, one byte of a media file of task 1 flipped.
    std::fs::remove_dir_all(task_dir(&p.work, 3)).unwrap();
    let mut files = Vec::new();
    let mut stack = vec![task_dir(&p.work, 1)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "task.json" {
                files.push((std::fs::metadata(&path).unwrap().len(), path));
            }
        }
    }
    let (len, victim) = files.into_iter().max().expect("task 1 holds files");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[(len / 2) as usize] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();

    let o = abr_cmd(&["assemble", s(&out)]).output().unwrap();
    let line = one_error_line(&o, "abr assemble with task 3 missing and task 1 corrupt");
    assert!(
        names_index(&line, 1) && names_index(&line, 3),
        "{line:?} must name tasks 1 (corrupt: {}) and 3 (missing)",
        victim.display()
    );
    assert!(!out.exists(), "published with a missing and a corrupt task");
    assert!(staging_beside(&out).is_empty(), "staging left");

    // Rerunning the two tasks repairs the work area (the corrupt one is redone); assemble then
    // publishes a correct package and removes the work area.
    shard(&out, 1);
    shard(&out, 3);
    abr_ok(&["assemble", s(&out)]);
    assert!(!p.work.exists(), "assemble left its work area");
    check_seams(&out, &tl);
}

/// An assembly whose abort flag is set (the worker sets it when the job is cancelled during the
/// assembly) publishes nothing and leaves no staging directory; the work area stays, and a later
/// assembly publishes the package.
#[test]
fn an_aborted_assembly_publishes_nothing() {
    use packager::assemble::{assemble, AssembleOptions};
    let dir = workdir("abort-assembly");
    let src = small_source();
    let out = dir.path().join("pkg");
    let ladder = test_ladder(dir.path());
    let p = plan(&src, &out, &small_args(&ladder));
    for i in 0..p.tasks {
        shard(&out, i);
    }
    let work = packager::work::WorkArea::for_output(&out).unwrap();
    let plan = packager::plan::Plan::load(&work).unwrap();
    let abort = std::sync::atomic::AtomicBool::new(true);
    let r = assemble(
        &work,
        &plan,
        AssembleOptions {
            abort: Some(&abort),
            ..AssembleOptions::default()
        },
    );
    assert!(
        matches!(r, Err(packager::PackageError::Aborted)),
        "{:?}",
        r.map(|(o, _)| o)
    );
    assert!(!out.exists(), "an aborted assembly published");
    assert!(
        staging_beside(&out).is_empty(),
        "{:?}",
        staging_beside(&out)
    );
    assert!(work_area(&out).exists(), "the finished tasks are kept");
    abr_ok(&["assemble", s(&out)]);
    verify(&out, &src);
}
