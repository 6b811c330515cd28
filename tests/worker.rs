//! Packaging jobs run by leased workers (`abr worker`), driven through the real binary; the
//! test enqueues, watches and cancels through the same SQLite queue file
//! (`service::queue::SqliteQueue`, WAL: several processes on one box), or the same Redis
//! (`abr worker --redis`).
//!
//! - End to end: a job enqueued with `service::jobs::new_job` is planned, encoded (one task per
//!   shard and the audio task) and assembled by `abr worker`; the package is published at `out`
//!   and passes the structural checks of `tests/package.rs` (`verify`).
//! - Crash: two workers with a 3 s lease; the one encoding a shard is SIGKILLed mid-encode (its
//!   pid from the queue's worker id `host:pid:n`); the other finishes the job, tasks done before
//!   the kill are not claimed again, the killed attempt is fenced (renew/complete → Stale).
//! - Cancel: cancelling a job stops its running encoder within 2 s (until its temporary
//!   directory is gone), nothing is published, the worker goes on; SIGTERM stops it cleanly.
//! - Bad input: a non-media source fails the job at the first attempt with the packager's one
//!   line, which names the file; nothing is published.
//! - SIGTERM: the worker aborts its running shard, fails the attempt as "worker stopped" (the
//!   task is claimable at once, not after its lease) and exits 0; another worker finishes.
//! - A paused worker (SIGSTOP past its lease) whose task was reclaimed aborts when resumed (its
//!   renewal is refused as stale) and completes nothing; the task completes once.
//!
//! - Redis: `abr worker --redis URL` runs a job from the Redis queue; Redis SIGTERMed and
//!   restarted (AOF) while shards encode: the job completes, published once.
//!
//! Plans use 2 s segments and 4 s shards; the crash, cancel, SIGTERM and pause tests use a slow
//! x264 preset so that a shard encodes for a few seconds.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::shard::{staging_beside, work_area};
use common::slurm::poll;
use common::verify::verify;
use common::*;
use service::jobs::{new_job, VideoJob};
use service::queue::{
    EventKind, JobInfo, JobState, Lease, Queue, QueueError, RedisQueue, Settings, SqliteQueue,
    SystemClock, TaskState,
};

fn workdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("abr-worker-{name}-"))
        .tempdir_in(fixture_dir())
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A ladder of two rungs for a 360p source (fast) or with a slow preset (`preset`), so that a
/// shard runs long enough to be killed or cancelled mid-encode.
fn ladder(dir: &Path, preset: &str) -> PathBuf {
    let p = dir.join(format!("ladder-{preset}.toml"));
    std::fs::write(
        &p,
        format!(
            "preset = \"{preset}\"\n\
             [[video]]\nheight = 360\nbitrate_kbps = 500\n\
             [[video]]\nheight = 240\nbitrate_kbps = 300\n\
             [audio]\nbitrate_kbps = 96\n"
        ),
    )
    .unwrap();
    p
}

/// One test's queue, package root and workers (dropped in this order: workers killed first).
struct Setup {
    workers: Vec<WorkerProc>,
    queue: Box<dyn Queue>,
    dir: tempfile::TempDir,
}

/// An `abr worker` process, killed by pid when dropped.
struct WorkerProc {
    child: Child,
    log: PathBuf,
}

impl WorkerProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Setup {
    fn new(name: &str) -> Setup {
        Self::open(name, None)
    }

    /// Like [`Setup::new`] with the queue in the Redis at `url` (workers need `--redis`).
    fn with_redis(name: &str, url: &str) -> Setup {
        Self::open(name, Some(url))
    }

    fn open(name: &str, redis: Option<&str>) -> Setup {
        let dir = workdir(name);
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("packages")).unwrap();
        let clock = Arc::new(SystemClock);
        let queue: Box<dyn Queue> = match redis {
            Some(url) => Box::new(
                RedisQueue::open(
                    url,
                    service::queue::redis::DEFAULT_PREFIX,
                    Settings::default(),
                    clock,
                )
                .unwrap(),
            ),
            None => Box::new(
                SqliteQueue::open(
                    &dir.path().join("data/queue.sqlite3"),
                    Settings::default(),
                    clock,
                )
                .unwrap(),
            ),
        };
        Setup {
            workers: Vec::new(),
            queue,
            dir,
        }
    }

    fn out(&self, video: &str) -> PathBuf {
        self.dir.path().join("packages").join(video)
    }

    fn enqueue(&self, video: &str, source: &Path) -> PathBuf {
        let out = self.out(video);
        let job = VideoJob {
            video: video.into(),
            principal: "tester".into(),
            name: format!("{video}.mp4"),
            source: source.to_path_buf(),
            out: out.clone(),
        };
        self.queue.enqueue(&new_job(&job)).unwrap();
        out
    }

    /// Starts `abr worker` with `extra` options (plans of 2 s segments, 4 s shards).
    fn start_worker(&mut self, ladder: &Path, extra: &[&str]) -> &WorkerProc {
        let n = self.workers.len();
        let log = self.dir.path().join(format!("worker-{n}.log"));
        let data = self.dir.path().join("data");
        let mut args = vec![
            "worker",
            "--data-dir",
            s(&data),
            "--ladder",
            s(ladder),
            "--segment-duration",
            "2",
            "--shard-seconds",
            "4",
            "--log",
            "info",
        ];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_abr"))
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn abr worker");
        self.workers.push(WorkerProc { child, log });
        self.workers.last().unwrap()
    }

    fn job(&self, id: &str) -> JobInfo {
        self.queue.job(id).unwrap().expect("job exists")
    }

    fn logs(&self) -> String {
        self.workers
            .iter()
            .map(|w| format!("--- worker pid {} ---\n{}", w.pid(), w.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until job `id` is over; returns it.
    fn wait_final(&self, id: &str, secs: u64) -> JobInfo {
        poll(
            secs,
            &format!("job {id} did not end"),
            || self.job(id).state.is_final(),
            || format!("{:#?}\n{}", self.job(id), self.logs()),
        );
        self.job(id)
    }

    /// Claimed events per task of job `id`.
    fn claims(&self, id: &str, task: u32) -> usize {
        self.queue
            .events(0, 100_000)
            .unwrap()
            .iter()
            .filter(|e| e.job == id && e.task == Some(task) && e.kind == EventKind::Claimed)
            .count()
    }
}

/// `host:pid:n` → pid.
fn pid_of(worker: &str) -> u32 {
    let mut parts = worker.rsplitn(3, ':');
    let _n = parts.next();
    parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("worker id {worker} is not host:pid:n"))
}

/// Temporary task directories (`.tmp-*`) in the work area of `out`.
fn temporaries(out: &Path) -> Vec<String> {
    std::fs::read_dir(work_area(out).join("tasks"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// A video shard of `job` (stage 1, not the audio task) leased to a worker whose temporary
/// directory exists, less than half done: the task is encoding, and will be for a while. Returns (queue task index, plan index, worker id).
fn encoding_shard(st: &Setup, id: &str, audio_plan_index: usize) -> Option<(u32, usize, String)> {
    let job = st.job(id);
    let out = st.out(id);
    let tmps = temporaries(&out);
    job.tasks.iter().find_map(|t| {
        // Queue task 1 + i is plan task i (the plan task is queue task 0).
        let plan_index = (t.index as usize).checked_sub(1)?;
        // Less than half done as last renewed (every 500 ms): well before its end.
        if t.stage != 1
            || t.state != TaskState::Leased
            || plan_index == audio_plan_index
            || t.progress >= 0.5
        {
            return None;
        }
        let worker = t.worker.clone()?;
        let tmp = format!(".tmp-{plan_index:05}-");
        let pid = pid_of(&worker);
        tmps.iter()
            .any(|n| n.starts_with(&tmp) && n.ends_with(&format!("-{pid}")))
            .then_some((t.index, plan_index, worker))
    })
}

/// The plan's audio task index, once the plan task has completed.
fn audio_index(st: &Setup, id: &str) -> usize {
    poll(
        600,
        "the plan task did not complete",
        || st.job(id).tasks.len() > 1,
        || format!("{:#?}\n{}", st.job(id), st.logs()),
    );
    let plan = common::shard::read_plan(&work_area(&st.out(id)));
    plan["audio_task"].as_u64().expect("the source has audio") as usize
}

fn assert_published_once(st: &Setup, id: &str, src: &Path) {
    let out = st.out(id);
    let report = verify(&out, src);
    assert!(report.has_audio);
    assert!(report.segments >= 10, "{report:?}");
    let entries: Vec<String> = std::fs::read_dir(st.dir.path().join("packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, [id], "the package root holds exactly the package");
    assert!(staging_beside(&out).is_empty());
    assert!(
        !work_area(&out).exists(),
        "work area left after publication"
    );
}

#[test]
fn end_to_end_job_is_planned_encoded_assembled_and_published() {
    let src = fixture("360p25-mono", 20);
    let mut st = Setup::new("e2e");
    let out = st.enqueue("v1", &src);
    let started = Instant::now();
    let l = ladder(st.dir.path(), "superfast");
    st.start_worker(&l, &["--workers", "2"]);
    let job = st.wait_final("v1", 600);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", st.logs());
    // plan + 5 shards (20 s / 4 s) + audio + assemble, every one done at its first attempt.
    assert_eq!(job.tasks.len(), 8, "{job:#?}");
    for t in &job.tasks {
        assert_eq!(
            (t.state, t.attempt),
            (TaskState::Done, 1),
            "task {}: {job:#?}",
            t.index
        );
        assert_eq!(t.progress, 1.0);
    }
    let stages: Vec<u32> = job.tasks.iter().map(|t| t.stage).collect();
    assert_eq!(stages, [0, 1, 1, 1, 1, 1, 1, 2]);
    assert_published_once(&st, "v1", &src);
    assert!(out.join("hls/master.m3u8").is_file() && out.join("dash/manifest.mpd").is_file());
    // The worker logs with the job and task as fields.
    let log = st.logs();
    assert!(log.contains("package published"), "{log}");
    assert!(log.contains("job=v1") && log.contains("task=7"), "{log}");
    eprintln!("end to end: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn killed_worker_loses_its_shard_to_the_other_and_is_fenced() {
    let src = fixture("360p25-mono", 24);
    let mut st = Setup::new("crash");
    let started = Instant::now();
    let l = ladder(st.dir.path(), "slow");
    // Plan task 1 is already in the work area, intact, as a worker killed after renaming it
    // into place (before completing) leaves it: the job's plan (the same request) and that
    // task are reused, not redone.
    let out = st.out("v2");
    let planned = common::shard::plan(
        &src,
        &out,
        &[
            "--ladder",
            s(&l),
            "--segment-duration",
            "2",
            "--shard-seconds",
            "4",
        ],
    );
    common::shard::shard(&out, 1);
    st.enqueue("v2", &src);
    st.start_worker(&l, &["--lease-seconds", "3"]);
    st.start_worker(&l, &["--lease-seconds", "3"]);
    let audio = audio_index(&st, "v2");
    // Once some shards are done, find a worker in the middle of encoding another one, and
    // SIGKILL it.
    let mut found = None;
    poll(
        300,
        "no shard was seen encoding after two were done",
        || {
            let done = st
                .job("v2")
                .tasks
                .iter()
                .filter(|t| t.stage == 1 && t.state == TaskState::Done)
                .count();
            found = encoding_shard(&st, "v2", audio).filter(|_| done >= 2);
            found.is_some()
        },
        || format!("{:#?}\n{}", st.job("v2"), st.logs()),
    );
    let (task, plan_index, worker) = found.unwrap();
    let pid = pid_of(&worker);
    let victim = st
        .workers
        .iter()
        .position(|w| w.pid() == pid)
        .expect("the worker id names one of our processes");
    st.workers[victim].signal(libc::SIGKILL);
    let killed_at = st.job("v2");
    let killed_attempt = killed_at.tasks[task as usize].attempt;
    let done_before: Vec<u32> = killed_at
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .map(|t| t.index)
        .collect();
    eprintln!(
        "killed {worker} in task {task} (plan task {plan_index}) attempt {killed_attempt}; done before: {done_before:?}"
    );
    let job = st.wait_final("v2", 900);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", st.logs());
    assert_eq!(job.tasks.len(), planned.tasks + 2, "{job:#?}");
    let t = &job.tasks[task as usize];
    assert!(
        t.attempt > killed_attempt && t.worker.as_deref() != Some(worker.as_str()),
        "task {task} was finished by another attempt of another worker: {t:?}"
    );
    // The killed attempt's lease expired (the queue says whose it was).
    let ev = st.queue.events(0, 100_000).unwrap();
    assert!(
        ev.iter().any(|e| e.job == "v2"
            && e.task == Some(task)
            && e.attempt == Some(killed_attempt)
            && e.kind == EventKind::LeaseExpired
            && e.detail.as_deref() == Some(worker.as_str())),
        "no lease_expired event of the killed attempt: {ev:#?}"
    );
    // Finished tasks were not run again: claimed once, at attempt 1.
    for i in &done_before {
        assert_eq!(st.claims("v2", *i), 1, "task {i} was claimed again");
        assert_eq!(job.tasks[*i as usize].attempt, 1);
    }
    // The plan and the task found in the work area were reused, not redone.
    let log = st.logs();
    assert!(log.contains("reused_plan=true"), "{log}");
    let reused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reused") && l.contains("index=1 "))
        .collect();
    assert_eq!(reused.len(), 1, "plan task 1 was not reused: {log}");
    // Every task but the killed one ran once.
    for t in job.tasks.iter().filter(|t| t.index != task) {
        assert_eq!(t.attempt, 1, "task {}: {job:#?}", t.index);
    }
    // The killed attempt is fenced: its renewal and completion are refused as stale.
    let old = Lease {
        job: "v2".into(),
        task,
        attempt: killed_attempt,
        worker: worker.clone(),
        stage: 1,
        payload: format!("{{\"kind\":\"task\",\"index\":{plan_index}}}"),
        job_payload: job.payload.clone(),
        until_ms: 0,
    };
    assert!(
        matches!(st.queue.renew(&old, 0.5), Err(QueueError::Stale { .. })),
        "renew of the killed attempt"
    );
    assert!(
        matches!(st.queue.complete(&old, &[]), Err(QueueError::Stale { .. })),
        "complete of the killed attempt"
    );
    assert_published_once(&st, "v2", &src);
    eprintln!("crash: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn cancel_stops_the_encoder_within_two_seconds() {
    let src = fixture("360p25-mono", 24);
    let mut st = Setup::new("cancel");
    let out = st.enqueue("v3", &src);
    let l = ladder(st.dir.path(), "slow");
    st.start_worker(&l, &[]);
    let audio = audio_index(&st, "v3");
    let mut found = None;
    poll(
        300,
        "no shard was seen encoding",
        || {
            found = encoding_shard(&st, "v3", audio);
            found.is_some()
        },
        || format!("{:#?}\n{}", st.job("v3"), st.logs()),
    );
    let (task, _, _) = found.unwrap();
    let t0 = Instant::now();
    assert!(st.queue.cancel("v3", "test cancels").unwrap());
    poll(
        10,
        "the cancelled task's temporary directory is still there",
        || temporaries(&out).is_empty(),
        || format!("{:?}\n{}", temporaries(&out), st.logs()),
    );
    let stopped = t0.elapsed();
    eprintln!("cancel → encoder stopped and temporaries removed in {stopped:?}");
    if std::env::var_os("WORKER_TEST_LOGS").is_some() {
        eprintln!("{}", st.logs());
    }
    assert!(
        stopped < Duration::from_secs(2),
        "took {stopped:?}\n{}",
        st.logs()
    );
    poll(
        5,
        "the worker did not log the abort",
        || st.logs().contains("task aborted: the job is Cancelled"),
        || st.logs(),
    );
    let job = st.job("v3");
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(job.tasks[task as usize].state, TaskState::Cancelled);
    assert!(!out.exists(), "a cancelled job published {}", out.display());
    assert!(staging_beside(&out).is_empty());
    // The worker goes on (claims nothing: the job is over) and stops cleanly on SIGTERM.
    let w = &mut st.workers[0];
    assert!(w.child.try_wait().unwrap().is_none(), "the worker exited");
    w.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "abr worker ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", w.log());
}

#[test]
fn non_media_source_fails_the_job_at_once_with_the_packagers_reason() {
    let src = fixture("notmedia", 1);
    let mut st = Setup::new("bad");
    let out = st.enqueue("v4", &src);
    let l = ladder(st.dir.path(), "superfast");
    st.start_worker(&l, &["--max-attempts", "3"]);
    let job = st.wait_final("v4", 600);
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let reason = job.reason.clone().unwrap();
    assert!(!reason.contains('\n'), "{reason}");
    assert!(
        reason.contains(s(&src)) && reason.contains("not a media file"),
        "{reason}"
    );
    assert_eq!(job.tasks.len(), 1, "{job:#?}");
    let t = &job.tasks[0];
    assert_eq!((t.state, t.attempt), (TaskState::Failed, 1), "{t:?}");
    assert_eq!(st.claims("v4", 0), 1);
    assert!(!out.exists());
    assert!(staging_beside(&out).is_empty());
}

/// Waits up to `secs` for `w` to exit; its status.
fn wait_exit(w: &mut WorkerProc, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "abr worker did not exit within {secs} s\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_aborts_the_running_shard_and_fails_its_attempt_for_another_worker() {
    let src = fixture("360p25-mono", 24);
    let mut st = Setup::new("sigterm");
    let out = st.enqueue("v5", &src);
    let l = ladder(st.dir.path(), "slow");
    st.start_worker(&l, &[]);
    let audio = audio_index(&st, "v5");
    let mut found = None;
    poll(
        300,
        "no shard was seen encoding",
        || {
            found = encoding_shard(&st, "v5", audio);
            found.is_some()
        },
        || format!("{:#?}\n{}", st.job("v5"), st.logs()),
    );
    let (task, _, _) = found.unwrap();
    let t0 = Instant::now();
    st.workers[0].signal(libc::SIGTERM);
    // Generous: under a loaded CI machine a niced process may wait long for the CPU.
    let status = wait_exit(&mut st.workers[0], 60);
    eprintln!("SIGTERM → worker exited in {:?}", t0.elapsed());
    assert!(status.success(), "{status:?}\n{}", st.logs());
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
    // The attempt failed as "worker stopped" (not left to its 30 s lease): claimable again.
    let t = st.job("v5").tasks[task as usize].clone();
    assert_eq!(
        (t.state, t.attempt, t.error.as_deref()),
        (TaskState::Pending, 1, Some("worker stopped")),
        "{t:?}"
    );
    assert!(!out.exists());
    // Another worker finishes the job.
    st.start_worker(&l, &["--workers", "2"]);
    let job = st.wait_final("v5", 600);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", st.logs());
    assert_eq!(job.tasks[task as usize].attempt, 2);
    assert_published_once(&st, "v5", &src);
}

#[test]
fn a_paused_worker_whose_lease_was_reclaimed_aborts_and_drops_its_result() {
    let src = fixture("360p25-mono", 24);
    let mut st = Setup::new("paused");
    st.enqueue("v6", &src);
    let l = ladder(st.dir.path(), "slow");
    st.start_worker(&l, &["--lease-seconds", "3"]);
    st.start_worker(&l, &["--lease-seconds", "3"]);
    let audio = audio_index(&st, "v6");
    let mut found = None;
    poll(
        300,
        "no shard was seen encoding",
        || {
            found = encoding_shard(&st, "v6", audio);
            found.is_some()
        },
        || format!("{:#?}\n{}", st.job("v6"), st.logs()),
    );
    let (task, _, worker) = found.unwrap();
    let pid = pid_of(&worker);
    let paused = st.workers.iter().position(|w| w.pid() == pid).unwrap();
    let attempt = st.job("v6").tasks[task as usize].attempt;
    // Paused past its lease (a hung NFS mount, a stopped VM): the other worker reclaims it.
    st.workers[paused].signal(libc::SIGSTOP);
    poll(
        300,
        "the paused worker's task was not reclaimed",
        || st.job("v6").tasks[task as usize].attempt > attempt,
        || format!("{:#?}\n{}", st.job("v6"), st.logs()),
    );
    st.workers[paused].signal(libc::SIGCONT);
    // Its next renewal is refused as stale: it aborts and completes nothing.
    poll(
        10,
        "the resumed worker did not abort on its stale lease",
        || st.workers[paused].log().contains("lease lost"),
        || st.logs(),
    );
    let job = st.wait_final("v6", 600);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", st.logs());
    let ev = st.queue.events(0, 100_000).unwrap();
    let completions: Vec<_> = ev
        .iter()
        .filter(|e| e.job == "v6" && e.task == Some(task) && e.kind == EventKind::Completed)
        .collect();
    assert_eq!(completions.len(), 1, "{completions:#?}");
    assert!(completions[0].attempt > Some(attempt));
    assert_ne!(completions[0].detail.as_deref(), Some(worker.as_str()));
    assert_published_once(&st, "v6", &src);
}

/// `abr worker --redis`: the job runs from the Redis queue; Redis is SIGTERMed while shards
/// encode (the workers' renewals fail, they keep encoding) and restarted on the same port and
/// AOF before the leases pass: nothing is lost, the job completes and is published once.
#[test]
fn redis_restart_during_a_job_the_job_completes() {
    let src = fixture("360p25-mono", 20);
    let redis_dir = workdir("redis-aof");
    let port = common::origin::free_port();
    let mut redis = common::redis::Redis::start_durable(port, redis_dir.path());
    let url = redis.url();
    let mut st = Setup::with_redis("redis", &url);
    st.enqueue("v7", &src);
    let l = ladder(st.dir.path(), "slow");
    st.start_worker(&l, &["--workers", "2", "--redis", &url]);
    assert!(!st.dir.path().join("data/queue.sqlite3").exists());
    let audio = audio_index(&st, "v7");
    poll(
        300,
        "no shard started encoding",
        || encoding_shard(&st, "v7", audio).is_some(),
        || format!("{:#?}\n{}", st.job("v7"), st.logs()),
    );
    redis.terminate();
    poll(
        60,
        "the workers did not notice the outage",
        || st.logs().contains("cannot renew the lease"),
        || st.logs(),
    );
    let _back = common::redis::Redis::start_durable(port, redis_dir.path());
    let job = st.wait_final("v7", 600);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}\n{}", st.logs());
    assert_published_once(&st, "v7", &src);
    let ev = st.queue.events(0, 100_000).unwrap();
    assert_eq!(
        ev.iter()
            .filter(|e| e.job == "v7" && e.kind == EventKind::Enqueued)
            .count(),
        1
    );
    assert!(ev.iter().any(|e| e.kind == EventKind::JobSucceeded));
}
