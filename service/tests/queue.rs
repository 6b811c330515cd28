//! The job queue's behaviour, one suite for every backend: each backend gives a [`Harness`]
//! (a way to open its storage again, on a clock the test moves) and [`behaviour_suite!`] runs
//! every behaviour against it. Backend-specific durability tests follow.
//!
//! The Redis variants start their own `redis-server` (apt package; `scripts/setup.sh` installs
//! it) on a free loopback port, AOF in a temporary directory, one per test.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use service::queue::{
    Clock, Enqueued, EventKind, JobState, Lease, ManualClock, NewJob, NewTask, Queue, QueueError,
    RedisQueue, Settings, SqliteQueue, TaskState,
};

/// Settings of every behaviour test.
const SETTINGS: Settings = Settings {
    lease: Duration::from_secs(10),
    max_attempts: 3,
    retry_delay: Duration::from_secs(1),
};

/// A backend under test: its storage, reopened as often as a test wants, on a manual clock.
pub struct Harness {
    /// The queue clock.
    pub clock: Arc<ManualClock>,
    open: Box<dyn Fn(Arc<ManualClock>) -> Box<dyn Queue>>,
    _keep: Box<dyn std::any::Any>,
}

impl Harness {
    /// A new handle on the same storage (a restart of the process, for a durable backend).
    pub fn open(&self) -> Box<dyn Queue> {
        (self.open)(self.clock.clone())
    }
}

fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    Harness {
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        open: Box::new(move |clock| Box::new(SqliteQueue::open(&path, SETTINGS, clock).unwrap())),
        _keep: Box::new(dir),
    }
}

/// A redis-server of one test: loopback, a free port, append-only file in its own directory;
/// stopped (SIGKILL) by pid on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers PING.
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut r = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        r.restart();
        r
    }

    /// Starts it (again) on the same port and directory: the AOF is replayed.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "yes", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server; scripts/setup.sh does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pong() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (Redis flushes its AOF and exits), waiting for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let st = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(st.success());
            let code = c.wait().expect("wait for redis-server");
            assert!(code.success(), "redis-server exited with {code}");
        }
    }

    fn pong(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok_and(|mut s| {
            use std::io::{Read, Write};
            let mut b = [0u8; 7];
            s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"+PONG\r\n"
        })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn redis() -> Harness {
    let server = RedisServer::start();
    let url = server.url();
    Harness {
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        open: Box::new(move |clock| {
            Box::new(RedisQueue::open(&url, "abr:q:test:", SETTINGS, clock).unwrap())
        }),
        _keep: Box::new(server),
    }
}

/// Runs each behaviour of [`behaviour`] against every backend.
macro_rules! behaviour_suite {
    ([$($backend:ident),*], $names:tt) => {
        $( behaviour_suite!(@one $backend, $names); )*
    };
    (@one $backend:ident, [$($name:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[test]
                fn $name() {
                    super::behaviour::$name(&super::$backend());
                }
            )*
        }
    };
}

behaviour_suite!(
    [sqlite, redis],
    [
        claim_lease_complete,
        enqueue_is_idempotent_and_validated,
        stages_gate_claims_and_completions_add_tasks,
        expired_lease_is_reclaimed_and_the_stale_attempt_fenced,
        renewal_keeps_the_lease_and_records_progress,
        failures_retry_with_backoff_then_fail_the_job,
        permanent_failure_fails_the_job_at_once,
        expired_last_attempt_fails_the_job,
        cancel_stops_claims_and_tells_workers,
        retry_requeues_failed_and_cancelled_jobs,
        completion_is_accepted_once,
        state_survives_reopening,
        events_page_in_order,
        concurrent_workers_claim_each_task_once,
    ]
);

fn tasks(n: usize, stage: u32) -> Vec<NewTask> {
    (0..n)
        .map(|i| NewTask {
            stage,
            payload: format!("{{\"shard\":{i}}}"),
        })
        .collect()
}

fn job(id: &str, n: usize) -> NewJob {
    NewJob {
        id: id.into(),
        payload: "{\"video\":\"v\"}".into(),
        tasks: tasks(n, 0),
    }
}

fn kinds(q: &dyn Queue, job: &str) -> Vec<EventKind> {
    q.events(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.job == job)
        .map(|e| e.kind)
        .collect()
}

fn claim(q: &dyn Queue, worker: &str) -> Lease {
    q.claim(worker)
        .unwrap()
        .unwrap_or_else(|| panic!("{worker}: nothing to claim"))
}

fn assert_stale(r: Result<impl std::fmt::Debug, QueueError>, current: u32) {
    match r {
        Err(QueueError::Stale { current: c, .. }) => assert_eq!(c, current),
        other => panic!("expected a stale attempt refused, got {other:?}"),
    }
}

fn assert_finished(r: Result<impl std::fmt::Debug, QueueError>, state: JobState) {
    match r {
        Err(QueueError::Finished { state: s, .. }) => assert_eq!(s, state),
        other => panic!("expected the job's end reported, got {other:?}"),
    }
}

mod behaviour {
    use super::*;

    /// Tasks are claimed in order, each once, and the job succeeds when all completed.
    pub fn claim_lease_complete(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        assert_eq!(q.enqueue(&job("j1", 2)).unwrap(), Enqueued::Created);
        let info = q.job("j1").unwrap().unwrap();
        assert_eq!(info.state, JobState::Queued);
        assert_eq!(info.done(), (0, 2));
        let a = claim(q, "w1");
        assert_eq!((a.job.as_str(), a.task, a.attempt), ("j1", 0, 1));
        assert_eq!(a.payload, "{\"shard\":0}");
        assert_eq!(a.job_payload, "{\"video\":\"v\"}");
        assert_eq!(a.until_ms, h.clock.now_ms() + 10_000);
        let b = claim(q, "w2");
        assert_eq!((b.task, b.attempt), (1, 1));
        assert!(q.claim("w3").unwrap().is_none());
        assert_eq!(q.job("j1").unwrap().unwrap().state, JobState::Running);
        assert_eq!(q.complete(&b, &[]).unwrap(), JobState::Running);
        assert_eq!(q.complete(&a, &[]).unwrap(), JobState::Succeeded);
        let info = q.job("j1").unwrap().unwrap();
        assert_eq!(info.state, JobState::Succeeded);
        assert_eq!(info.done(), (2, 2));
        assert!(info.tasks.iter().all(|t| t.progress == 1.0));
        assert_eq!(
            kinds(q, "j1"),
            [
                EventKind::Enqueued,
                EventKind::Claimed,
                EventKind::Claimed,
                EventKind::Completed,
                EventKind::Completed,
                EventKind::JobSucceeded
            ]
        );
        assert!(q.job("nope").unwrap().is_none());
    }

    /// The same id enqueued again (a retried request after a crash) changes nothing; unusable
    /// requests are refused with the job named.
    pub fn enqueue_is_idempotent_and_validated(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        assert_eq!(q.enqueue(&job("j1", 2)).unwrap(), Enqueued::Created);
        assert_eq!(q.enqueue(&job("j1", 5)).unwrap(), Enqueued::Existing);
        assert_eq!(q.job("j1").unwrap().unwrap().tasks.len(), 2);
        assert_eq!(kinds(q, "j1"), [EventKind::Enqueued]);
        for bad in ["", "a/b", "../x", "with space"] {
            let e = q.enqueue(&job(bad, 1)).unwrap_err();
            assert!(matches!(e, QueueError::Invalid { .. }), "{bad}: {e}");
        }
        let e = q.enqueue(&job("empty", 0)).unwrap_err();
        assert!(e.to_string().contains("job empty"), "{e}");
        let big = NewJob {
            tasks: vec![NewTask {
                stage: 0,
                payload: "x".repeat(service::queue::MAX_PAYLOAD + 1),
            }],
            ..job("big", 0)
        };
        assert!(matches!(
            q.enqueue(&big).unwrap_err(),
            QueueError::Invalid { .. }
        ));
        assert!(q.job("big").unwrap().is_none());
        assert!(matches!(
            q.claim("").unwrap_err(),
            QueueError::Invalid { .. }
        ));
    }

    /// plan → shards → assemble: a later stage waits for every earlier task, and a completing
    /// task adds the next stages in the same step.
    pub fn stages_gate_claims_and_completions_add_tasks(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&NewJob {
            id: "v".into(),
            payload: String::new(),
            tasks: vec![NewTask {
                stage: 0,
                payload: "plan".into(),
            }],
        })
        .unwrap();
        let plan = claim(q, "w1");
        assert_eq!(plan.payload, "plan");
        assert!(q.claim("w2").unwrap().is_none());
        let mut then = tasks(2, 1);
        then.push(NewTask {
            stage: 2,
            payload: "assemble".into(),
        });
        assert_eq!(q.complete(&plan, &then).unwrap(), JobState::Running);
        let s0 = claim(q, "w1");
        let s1 = claim(q, "w2");
        assert_eq!((s0.task, s0.stage, s1.task, s1.stage), (1, 1, 2, 1));
        assert!(
            q.claim("w3").unwrap().is_none(),
            "assemble waits for shards"
        );
        // A task may not add work to a stage before its own, and a refused completion changes
        // nothing.
        let earlier = [NewTask {
            stage: 0,
            payload: "x".into(),
        }];
        let bad = q.complete(&s1, &earlier);
        assert!(matches!(bad, Err(QueueError::Invalid { .. })), "{bad:?}");
        let info = q.job("v").unwrap().unwrap();
        assert_eq!(
            (info.tasks.len(), info.tasks[2].state),
            (4, TaskState::Leased)
        );
        q.complete(&s1, &[]).unwrap();
        assert!(
            q.claim("w3").unwrap().is_none(),
            "assemble waits for shards"
        );
        q.complete(&s0, &[]).unwrap();
        let asm = claim(q, "w3");
        assert_eq!(
            (asm.task, asm.stage, asm.payload.as_str()),
            (3, 2, "assemble")
        );
        assert_eq!(q.complete(&asm, &[]).unwrap(), JobState::Succeeded);
        assert!(kinds(q, "v").contains(&EventKind::TasksAdded));
    }

    /// A lease that passed is reclaimed by the next claim as a new attempt; the old attempt's
    /// renew, complete and fail are refused, the new one's accepted.
    pub fn expired_lease_is_reclaimed_and_the_stale_attempt_fenced(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 1)).unwrap();
        let old = claim(q, "w1");
        h.clock.advance(Duration::from_millis(9_999));
        assert!(q.claim("w2").unwrap().is_none(), "still leased");
        h.clock.advance(Duration::from_millis(1));
        let new = claim(q, "w2");
        assert_eq!((new.task, new.attempt, new.worker.as_str()), (0, 2, "w2"));
        assert_stale(q.renew(&old, 0.5), 2);
        assert_stale(q.complete(&old, &[]), 2);
        assert_stale(q.fail(&old, "late"), 2);
        assert_eq!(q.complete(&new, &[]).unwrap(), JobState::Succeeded);
        let ev = q.events(0, 100).unwrap();
        let expired = ev
            .iter()
            .find(|e| e.kind == EventKind::LeaseExpired)
            .unwrap();
        assert_eq!(
            (expired.task, expired.attempt, expired.detail.as_deref()),
            (Some(0), Some(1), Some("w1"))
        );
        // A lease past its deadline stays valid until it is reclaimed; expire_leases reclaims
        // without claiming.
        q.enqueue(&job("k", 1)).unwrap();
        let late = claim(q, "w1");
        h.clock.advance(Duration::from_secs(11));
        q.renew(&late, 0.1).unwrap();
        h.clock.advance(Duration::from_secs(11));
        assert_eq!(q.expire_leases().unwrap(), 1);
        assert_stale(q.complete(&late, &[]), 1);
        let t = &q.job("k").unwrap().unwrap().tasks[0];
        assert_eq!((t.state, t.attempt), (TaskState::Pending, 1));
        assert!(t.error.as_deref().unwrap().contains("lease expired"));
    }

    /// Renewing moves the deadline from now; progress is kept with the task.
    pub fn renewal_keeps_the_lease_and_records_progress(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 1)).unwrap();
        let l = claim(q, "w1");
        for p in [0.25, 0.5, 0.75] {
            h.clock.advance(Duration::from_secs(8));
            let until = q.renew(&l, p).unwrap();
            assert_eq!(until, h.clock.now_ms() + 10_000);
            assert!(q.claim("w2").unwrap().is_none());
            assert_eq!(q.job("j").unwrap().unwrap().tasks[0].progress, p);
        }
        // Out-of-range progress is clamped, not stored as given.
        q.renew(&l, f64::NAN).unwrap();
        q.renew(&l, 7.0).unwrap();
        assert_eq!(q.job("j").unwrap().unwrap().tasks[0].progress, 1.0);
        assert_eq!(q.complete(&l, &[]).unwrap(), JobState::Succeeded);
    }

    /// A failed attempt is retried after a doubling delay; the last one fails the task and the
    /// job with the reason, and the job's other tasks are never claimed.
    pub fn failures_retry_with_backoff_then_fail_the_job(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 2)).unwrap();
        let other = claim(q, "w2");
        assert_eq!(other.task, 0);
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=3u32 {
            let l = claim(q, "w1");
            assert_eq!((l.task, l.attempt), (1, attempt));
            let state = q.fail(&l, &format!("x264 exploded #{attempt}")).unwrap();
            if attempt < 3 {
                assert_eq!(state, JobState::Running);
                let t = &q.job("j").unwrap().unwrap().tasks[1];
                assert_eq!(t.state, TaskState::Pending);
                assert_eq!(
                    t.error.as_deref(),
                    Some(&*format!("x264 exploded #{attempt}"))
                );
                h.clock.advance(delay - Duration::from_millis(1));
                assert!(q.claim("w1").unwrap().is_none(), "retried before its delay");
                h.clock.advance(Duration::from_millis(1));
                delay *= 2;
            } else {
                assert_eq!(state, JobState::Failed);
            }
        }
        let info = q.job("j").unwrap().unwrap();
        assert_eq!(info.state, JobState::Failed);
        let reason = info.reason.unwrap();
        assert!(
            reason.contains("task 1") && reason.contains("x264 exploded #3"),
            "{reason}"
        );
        assert_eq!(info.tasks[1].state, TaskState::Failed);
        assert_eq!(info.tasks[0].state, TaskState::Cancelled);
        assert_finished(q.complete(&other, &[]), JobState::Failed);
        assert!(q.claim("w1").unwrap().is_none());
        let k = kinds(q, "j");
        assert_eq!(k.iter().filter(|k| **k == EventKind::Retrying).count(), 2);
        assert!(k.ends_with(&[EventKind::TaskFailed, EventKind::JobFailed]));
    }

    /// A failure no retry can fix fails the task and its job at the first attempt; a stale
    /// attempt cannot fail the job that way.
    pub fn permanent_failure_fails_the_job_at_once(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 2)).unwrap();
        let other = claim(q, "w2");
        let l = claim(q, "w1");
        assert_eq!((l.task, l.attempt), (1, 1));
        h.clock.advance(Duration::from_secs(11));
        q.expire_leases().unwrap();
        let again = claim(q, "w3");
        assert_eq!((again.task, again.attempt), (0, 2));
        assert_stale(q.fail_permanently(&other, "late"), 2);
        let l = claim(q, "w1");
        assert_eq!((l.task, l.attempt), (1, 2));
        let state = q
            .fail_permanently(&l, "input /x.mp4 is not a media file")
            .unwrap();
        assert_eq!(state, JobState::Failed);
        let info = q.job("j").unwrap().unwrap();
        assert_eq!(info.state, JobState::Failed);
        let reason = info.reason.unwrap();
        assert!(
            reason.contains("task 1") && reason.contains("input /x.mp4 is not a media file"),
            "{reason}"
        );
        assert_eq!(info.tasks[1].state, TaskState::Failed);
        assert_eq!(info.tasks[0].state, TaskState::Cancelled);
        assert_finished(q.complete(&again, &[]), JobState::Failed);
        let k = kinds(q, "j");
        assert!(k.ends_with(&[EventKind::TaskFailed, EventKind::JobFailed]));
        assert!(!k.contains(&EventKind::Retrying));
    }

    /// A worker that dies at every attempt uses them up as well: the job fails, naming it.
    pub fn expired_last_attempt_fails_the_job(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 1)).unwrap();
        for attempt in 1..=3 {
            let l = claim(q, &format!("w{attempt}"));
            assert_eq!(l.attempt, attempt);
            h.clock.advance(Duration::from_secs(10));
        }
        assert!(q.claim("w4").unwrap().is_none());
        let info = q.job("j").unwrap().unwrap();
        assert_eq!(info.state, JobState::Failed);
        let reason = info.reason.unwrap();
        assert!(reason.contains("lease expired (worker w3)"), "{reason}");
    }

    /// A cancelled job is never claimed again; its workers are told at their next call.
    pub fn cancel_stops_claims_and_tells_workers(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 3)).unwrap();
        let l = claim(q, "w1");
        assert!(q.cancel("j", "deleted by its owner").unwrap());
        assert!(q.claim("w2").unwrap().is_none());
        assert_finished(q.renew(&l, 0.5), JobState::Cancelled);
        assert_finished(q.complete(&l, &[]), JobState::Cancelled);
        assert_finished(q.fail(&l, "x"), JobState::Cancelled);
        let info = q.job("j").unwrap().unwrap();
        assert_eq!(info.state, JobState::Cancelled);
        assert_eq!(info.reason.as_deref(), Some("deleted by its owner"));
        assert!(info.tasks.iter().all(|t| t.state == TaskState::Cancelled));
        assert!(!q.cancel("j", "again").unwrap());
        assert!(matches!(
            q.cancel("nope", "x").unwrap_err(),
            QueueError::NotFound(j) if j == "nope"
        ));
        // A finished job is not cancelled either.
        q.enqueue(&job("done", 1)).unwrap();
        let d = claim(q, "w1");
        q.complete(&d, &[]).unwrap();
        assert!(!q.cancel("done", "late").unwrap());
        assert_eq!(q.job("done").unwrap().unwrap().state, JobState::Succeeded);
        assert_eq!(kinds(q, "j").last(), Some(&EventKind::Cancelled));
    }

    /// A failed job is retried: its failed and cancelled tasks are pending again with a fresh
    /// budget of attempts, its done tasks stay done, the job is queued (event `Retried`); a
    /// worker of the old round stays fenced out. A cancelled job is retried the same way; a
    /// queued, running or succeeded one is not.
    pub fn retry_requeues_failed_and_cancelled_jobs(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 2)).unwrap();
        let first = claim(q, "w1");
        assert_eq!(first.task, 0);
        q.complete(&first, &[]).unwrap();
        assert!(!q.retry("j").unwrap(), "a running job is not retried");
        let mut last = None;
        for _ in 0..3 {
            let l = claim(q, "w1");
            q.fail(&l, "boom").unwrap();
            h.clock.advance(Duration::from_secs(60));
            last = Some(l);
        }
        let last = last.unwrap();
        assert_eq!(q.job("j").unwrap().unwrap().state, JobState::Failed);
        assert!(q.retry("j").unwrap());
        let info = q.job("j").unwrap().unwrap();
        assert_eq!(info.state, JobState::Queued);
        assert_eq!(info.reason, None);
        assert_eq!(info.tasks[0].state, TaskState::Done);
        assert_eq!(
            (
                info.tasks[1].state,
                info.tasks[1].attempt,
                info.tasks[1].error.as_deref()
            ),
            (TaskState::Pending, 0, None)
        );
        assert_eq!(kinds(q, "j").last(), Some(&EventKind::Retried));
        assert!(!q.retry("j").unwrap(), "a queued job is not retried");
        // A fresh budget: three more attempts before the job fails again.
        for round in 1..=3u32 {
            let l = claim(q, "w2");
            assert_eq!(l.task, 1);
            assert!(l.attempt > last.attempt, "attempt numbers go on");
            assert_eq!(q.job("j").unwrap().unwrap().tasks[1].attempt, round);
            // The old round's attempt is fenced out.
            assert!(q.renew(&last, 0.5).is_err());
            if round < 3 {
                assert_eq!(q.fail(&l, "again").unwrap(), JobState::Running);
                h.clock.advance(Duration::from_secs(60));
            } else {
                assert_eq!(q.complete(&l, &[]).unwrap(), JobState::Succeeded);
            }
        }
        assert!(!q.retry("j").unwrap(), "a succeeded job is not retried");
        // Cancelled: every task back, claimable again.
        q.enqueue(&job("c", 2)).unwrap();
        let l = claim(q, "w1");
        assert!(q.cancel("c", "by its owner").unwrap());
        assert!(q.retry("c").unwrap());
        assert_stale(q.renew(&l, 0.1), 1);
        let info = q.job("c").unwrap().unwrap();
        assert_eq!(info.state, JobState::Queued);
        assert!(info.tasks.iter().all(|t| t.state == TaskState::Pending));
        let again = claim(q, "w3");
        assert_eq!((again.job.as_str(), again.task, again.attempt), ("c", 0, 2));
        assert!(matches!(
            q.retry("nope").unwrap_err(),
            QueueError::NotFound(j) if j == "nope"
        ));
    }

    /// Completing (or failing) an attempt a second time is refused.
    pub fn completion_is_accepted_once(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        q.enqueue(&job("j", 2)).unwrap();
        let l = claim(q, "w1");
        q.complete(&l, &[]).unwrap();
        assert_stale(q.complete(&l, &[]), 1);
        assert_stale(q.fail(&l, "x"), 1);
        assert_stale(q.renew(&l, 0.1), 1);
        let forged = Lease {
            attempt: 7,
            ..claim(q, "w2")
        };
        assert_stale(q.complete(&forged, &[]), 1);
        let missing = Lease {
            job: "nope".into(),
            ..forged
        };
        assert!(matches!(
            q.complete(&missing, &[]),
            Err(QueueError::NotFound(_))
        ));
    }

    /// Everything committed is there after reopening (a restart), leases included.
    pub fn state_survives_reopening(h: &Harness) {
        let l = {
            let q = h.open();
            q.enqueue(&job("j", 2)).unwrap();
            let first = claim(q.as_ref(), "w1");
            q.complete(&first, &[]).unwrap();
            claim(q.as_ref(), "w1")
        };
        let q = h.open();
        let info = q.job("j").unwrap().unwrap();
        assert_eq!(info.state, JobState::Running);
        assert_eq!(info.done(), (1, 2));
        assert_eq!(info.tasks[1].state, TaskState::Leased);
        assert!(q.claim("w2").unwrap().is_none());
        assert_eq!(q.complete(&l, &[]).unwrap(), JobState::Succeeded);
        assert_eq!(kinds(q.as_ref(), "j").len(), 6);
    }

    /// Events come in sequence order, paged by the last sequence number seen.
    pub fn events_page_in_order(h: &Harness) {
        let q = h.open();
        let q = q.as_ref();
        for i in 0..5 {
            q.enqueue(&job(&format!("j{i}"), 1)).unwrap();
        }
        let all = q.events(0, 100).unwrap();
        assert_eq!(all.len(), 5);
        let first = q.events(0, 2).unwrap();
        let rest = q.events(first[1].seq, 100).unwrap();
        assert_eq!(first.len() + rest.len(), 5);
        let seqs: Vec<u64> = first.iter().chain(&rest).map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert_eq!(rest.last().map(|e| e.job.as_str()), Some("j4"));
        assert!(all.iter().all(|e| e.at_ms == h.clock.now_ms()));
        assert!(q.events(all[4].seq, 10).unwrap().is_empty());
        assert_eq!(q.last_event_seq().unwrap(), all[4].seq);
    }

    /// Workers racing on one queue claim every task exactly once.
    pub fn concurrent_workers_claim_each_task_once(h: &Harness) {
        let q: Arc<dyn Queue> = Arc::from(h.open());
        q.enqueue(&job("j", 40)).unwrap();
        let claimed: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|w| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        while let Some(l) = q.claim(&format!("w{w}")).unwrap() {
                            mine.push(l.task);
                            q.complete(&l, &[]).unwrap();
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<u32> = claimed.iter().flatten().copied().collect();
        let unique: BTreeSet<u32> = all.iter().copied().collect();
        assert_eq!(all.len(), 40, "{claimed:?}");
        assert_eq!(unique.len(), 40);
        assert_eq!(q.job("j").unwrap().unwrap().state, JobState::Succeeded);
    }
}

/// Redis SIGTERMed and restarted (same port and directory: the AOF is replayed) between a claim
/// and its completion: calls during the outage fail as `Storage` naming the job (no panic), the
/// queue reconnects by itself, the job's state is intact and it completes.
#[test]
fn redis_restart_between_claim_and_complete() {
    let mut server = RedisServer::start();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let q = RedisQueue::open(&server.url(), "abr:q:", SETTINGS, clock).unwrap();
    q.enqueue(&job("j", 2)).unwrap();
    let first = claim(&q, "w1");
    q.complete(&first, &[]).unwrap();
    let l = claim(&q, "w1");
    q.renew(&l, 0.5).unwrap();
    server.terminate();
    match q.renew(&l, 0.6) {
        Err(QueueError::Storage { context, .. }) => {
            assert!(context.contains("job j task 1"), "{context}")
        }
        other => panic!("expected a storage error during the outage, got {other:?}"),
    }
    assert!(matches!(q.claim("w2"), Err(QueueError::Storage { .. })));
    assert!(matches!(q.job("j"), Err(QueueError::Storage { .. })));
    server.restart();
    assert!(server.dir().join("appendonlydir").is_dir());
    let info = q.job("j").unwrap().unwrap();
    assert_eq!(info.state, JobState::Running);
    assert_eq!(info.done(), (1, 2));
    assert_eq!(
        (info.tasks[1].state, info.tasks[1].progress),
        (TaskState::Leased, 0.5)
    );
    assert!(q.claim("w2").unwrap().is_none(), "the lease survived");
    assert_eq!(q.complete(&l, &[]).unwrap(), JobState::Succeeded);
    assert_eq!(
        kinds(&q, "j"),
        [
            EventKind::Enqueued,
            EventKind::Claimed,
            EventKind::Completed,
            EventKind::Claimed,
            EventKind::Completed,
            EventKind::JobSucceeded
        ]
    );
    assert_eq!(q.last_event_seq().unwrap(), 6);
    // A claim drops the stream group's consumers that hold nothing (w1, whose tasks are done).
    q.enqueue(&job("k", 1)).unwrap();
    claim(&q, "w3");
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &server.port.to_string(),
            "XINFO",
            "CONSUMERS",
            "abr:q:tasks",
            "workers",
        ])
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("w3"), "{text}");
    assert!(!text.contains("w1"), "{text}");
}

/// SQLite: a process killed with SIGKILL in the middle of a stream of transactions loses none
/// that returned, and the file opens cleanly (WAL recovery) with everything consistent.
#[test]
fn sqlite_survives_kill_9() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    // The child is this test binary running `kill_9_child`, which commits job after job and
    // prints each id once its enqueue returned.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_9_child", "--nocapture", "--test-threads=1"])
        .env("QUEUE_KILL_CHILD_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 200 {
        let line = lines.next().expect("child output").unwrap();
        if let Some(id) = line.strip_prefix("committed ") {
            acknowledged.push(id.to_string());
        }
    }
    // Mid-stream: the child is inside its next transactions.
    child.kill().unwrap();
    child.wait().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let q = SqliteQueue::open(&path, SETTINGS, clock).unwrap();
    for id in &acknowledged {
        let info = q.job(id).unwrap().unwrap_or_else(|| panic!("{id} lost"));
        // Each job was enqueued, then its task claimed and completed in later transactions:
        // whatever the last one reached, the job is consistent.
        match info.state {
            JobState::Queued => assert_eq!(info.tasks[0].state, TaskState::Pending),
            JobState::Running => assert_eq!(info.tasks[0].state, TaskState::Leased),
            JobState::Succeeded => assert_eq!(info.tasks[0].state, TaskState::Done),
            s => panic!("{id}: {s:?}"),
        }
    }
    let ok: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

/// The child of [`sqlite_survives_kill_9`]; does nothing when run on its own.
#[test]
fn kill_9_child() {
    let Some(path) = std::env::var_os("QUEUE_KILL_CHILD_DB") else {
        return;
    };
    let q = SqliteQueue::open(
        std::path::Path::new(&path),
        SETTINGS,
        Arc::new(service::queue::SystemClock),
    )
    .unwrap();
    for i in 0.. {
        let id = format!("job{i}");
        q.enqueue(&job(&id, 1)).unwrap();
        println!("committed {id}");
        let l = q.claim("child").unwrap().unwrap();
        q.complete(&l, &[]).unwrap();
    }
}

/// SQLite: a schema-1 file (before `Queue::retry`) is upgraded in place when opened: its jobs
/// are kept and can be claimed, failed, retried.
#[test]
fn sqlite_upgrades_schema_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 payload TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
                 created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
             CREATE TABLE tasks (job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                 idx INTEGER NOT NULL, stage INTEGER NOT NULL, payload TEXT NOT NULL,
                 state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, worker TEXT,
                 lease_until_ms INTEGER, available_ms INTEGER NOT NULL,
                 progress REAL NOT NULL DEFAULT 0, error TEXT, PRIMARY KEY (job, idx));
             CREATE INDEX tasks_by_state ON tasks(state, available_ms);
             CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL,
                 task INTEGER, attempt INTEGER, kind TEXT NOT NULL, detail TEXT,
                 at_ms INTEGER NOT NULL);
             INSERT INTO jobs (id, payload, state, created_ms, updated_ms)
                 VALUES ('old', '{}', 'queued', 1, 1);
             INSERT INTO tasks (job, idx, stage, payload, state, available_ms)
                 VALUES ('old', 0, 0, '{}', 'pending', 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let q = SqliteQueue::open(&path, SETTINGS, clock).unwrap();
    let l = claim(&q, "w1");
    assert_eq!((l.job.as_str(), l.attempt), ("old", 1));
    assert!(q.cancel("old", "x").unwrap());
    assert!(q.retry("old").unwrap());
    assert_eq!(claim(&q, "w1").attempt, 2);
    drop(q);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2);
}
