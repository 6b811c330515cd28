//! Packaging workers: each claims a task of a [`crate::jobs`] job from the [`Queue`], runs it
//! with the packager while a renewer keeps its lease, and completes or fails it.
//!
//! - **Plan** (stage 0): `packager::plan::prepare` for (source, out) with the worker's
//!   [`PlanOptions`] (as `abr plan`), in the packager's default work area beside `out`; completes
//!   with one task per plan task and the assembly, in one [`Queue::complete`].
//! - **Task i** (stage 1): `packager::shard::run_task` (a video shard or the audio task). A task
//!   already in the work area and intact (an earlier attempt renamed it into place) is reused.
//! - **Assemble** (stage 2): `packager::assemble::assemble`, which publishes `out` atomically.
//!
//! While a task runs, a renewer thread renews the lease every [`renew_interval`] (a third of
//! the lease, at most [`MAX_RENEW`]) with the task's progress. A renewal refused as
//! [`QueueError::Stale`] (the lease was reclaimed by another worker) or
//! [`QueueError::Finished`] (the job was cancelled or failed) sets the packager's abort flag:
//! the encoder stops, its temporary directory is removed, and nothing is completed. A late
//! `complete` of a stale worker is refused by the queue and dropped with a warning; task
//! directories are pure functions of (plan, index), renamed into place, so a late identical
//! write is harmless.
//!
//! A packager error fails the attempt with its one-line message (retried up to the queue's
//! `max_attempts`); errors no retry can fix ([`WorkerError::is_permanent`]: not media, bad
//! input or options) fail the job at once ([`Queue::fail_permanently`]).
//!
//! Stopping a worker (`stop` flag, [`Pool::stop`]) aborts a running shard or audio task and
//! fails its attempt with "worker stopped", so that another worker may claim it after the
//! queue's retry delay instead of waiting out the lease; a plan or an assembly (no abort
//! point in the packager, and short) is finished and completed first.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use packager::assemble::{assemble, AssembleOptions};
use packager::plan::{Plan, Task};
use packager::shard::{run_task, Outcome, RunOptions};
use packager::work::WorkArea;
use packager::{Formats, LadderSpec, Spec};

use crate::error::WorkerError;
use crate::jobs::{plan_tasks, TaskPayload, VideoJob};
use crate::queue::{Lease, NewTask, Queue, QueueError};

/// Longest interval between two renewals of a running task, whatever the lease. Each renewal
/// also tells the worker whether its job was cancelled (the queue answers
/// [`QueueError::Finished`]), so this bounds how long a cancelled job's encoder runs on: half a
/// second, plus the packager's reaction (it checks its abort flag every frame), keeps it under
/// 2 s. A renewal is one small SQLite transaction; two a second per running task is nothing
/// next to the encoding it guards. A separate `Queue::job` poll would cost the same
/// transaction and read every task of the job.
pub const MAX_RENEW: Duration = Duration::from_millis(500);

/// The interval between renewals of a lease of `lease`: a third of it (two renewals may fail
/// before it expires), at most [`MAX_RENEW`], at least 10 ms.
pub fn renew_interval(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(10), MAX_RENEW)
}

/// What the plan task asks the packager for (the options of `abr plan` other than the paths).
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Ladder.
    pub ladder: LadderSpec,
    /// Nominal segment duration, seconds.
    pub segment_duration: f64,
    /// Shard length, seconds (0 = one shard).
    pub shard_seconds: f64,
    /// Formats.
    pub formats: Formats,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            ladder: LadderSpec::default(),
            segment_duration: 4.0,
            shard_seconds: packager::spec::DEFAULT_SHARD_SECONDS,
            formats: Formats {
                hls: true,
                dash: true,
            },
        }
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The queue's lease duration (the queue's `Settings::lease`): renewals every
    /// [`renew_interval`] of it.
    pub lease: Duration,
    /// Longest wait between two claims while nothing is claimable (workers of one pool also
    /// wake each other when a task ends, which may make tasks claimable).
    pub idle_poll: Duration,
    /// Options of the plans this worker makes.
    pub plan: PlanOptions,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease: crate::queue::Settings::default().lease,
            idle_poll: Duration::from_millis(250),
            plan: PlanOptions::default(),
        }
    }
}

/// Wakes idle workers of one process (a task ended, or stop).
#[derive(Debug, Default)]
struct Wake {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Wake {
    fn notify(&self) {
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for a notification.
    fn wait(&self, timeout: Duration) {
        let g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        let seen = *g;
        let _ = self
            .cv
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .map_err(|e| e.into_inner());
    }
}

/// Why a task run did not end with a result to complete.
enum Lost {
    /// The queue refused the renewal: stale attempt or finished job.
    Queue(QueueError),
    /// The worker was told to stop.
    Stopped,
}

/// How a task run ended.
enum Ran {
    /// Complete with these tasks added.
    Done(Vec<NewTask>),
    /// The attempt failed.
    Failed(WorkerError),
    /// The lease was lost or the worker stopped; the packager was aborted.
    Lost(Lost),
}

/// One packaging worker.
pub struct Worker {
    queue: Arc<dyn Queue>,
    id: String,
    settings: Settings,
    wake: Arc<Wake>,
}

/// A worker id: `host:pid:n`.
pub fn worker_id(n: usize) -> String {
    format!("{}:{}:{n}", packager::work::host_name(), std::process::id())
}

impl Worker {
    /// A worker named `id` (see [`worker_id`]) on `queue`.
    pub fn new(queue: Arc<dyn Queue>, id: String, settings: Settings) -> Self {
        Worker {
            queue,
            id,
            settings,
            wake: Arc::default(),
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Claims and runs tasks until `stop` is set: claim → run → complete or fail; waits up to
    /// `idle_poll` between claims while nothing is claimable.
    pub fn run(&self, stop: &AtomicBool) {
        tracing::info!(target: "service", worker = %self.id, "worker started");
        while !stop.load(Ordering::Relaxed) {
            match self.queue.claim(&self.id) {
                Ok(Some(lease)) => {
                    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.run_lease(&lease, stop)
                    }));
                    if let Err(p) = run {
                        // A bug, not the input's fault: retried like any failure, and this
                        // worker goes on.
                        let what = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic".into());
                        let reason = format!("worker panicked: {what}");
                        tracing::error!(target: "service", video = %lease.job, job = %lease.job, task = lease.task, attempt = lease.attempt, "{reason}");
                        if let Err(e) = self.queue.fail(&lease, &reason) {
                            self.refused("fail", &lease, &e);
                        }
                    }
                    self.wake.notify();
                }
                Ok(None) => self.wake.wait(self.settings.idle_poll),
                Err(e) => {
                    tracing::warn!(target: "service", worker = %self.id, "cannot claim: {e}");
                    self.wake.wait(self.settings.idle_poll);
                }
            }
        }
        tracing::info!(target: "service", worker = %self.id, "worker stopped");
    }

    /// Runs one claimed task and reports its end to the queue.
    pub fn run_lease(&self, lease: &Lease, stop: &AtomicBool) {
        let span = tracing::info_span!(
            target: "service",
            "task",
            video = %lease.job,
            job = %lease.job,
            task = lease.task,
            attempt = lease.attempt,
            worker = %self.id
        );
        let _g = span.enter();
        let (job, task) = (lease.job.as_str(), lease.task);
        tracing::info!(target: "service", video = %job, job = %job, task, attempt = lease.attempt, payload = %lease.payload, "task claimed");
        let started = Instant::now();
        match self.execute(lease, stop) {
            Ran::Done(then) => match self.queue.complete(lease, &then) {
                Ok(state) => tracing::info!(
                    target: "service",
                    video = %job, job = %job, task, attempt = lease.attempt, added = then.len(), job_state = ?state,
                    elapsed_s = started.elapsed().as_secs_f64(),
                    "task completed"
                ),
                Err(e) => self.refused("complete", lease, &e),
            },
            Ran::Failed(err) => {
                let reason = err.to_string();
                let permanent = err.is_permanent();
                let r = if permanent {
                    self.queue.fail_permanently(lease, &reason)
                } else {
                    self.queue.fail(lease, &reason)
                };
                match r {
                    Ok(state) => tracing::warn!(
                        target: "service",
                        video = %job, job = %job, task, attempt = lease.attempt, permanent, job_state = ?state,
                        "task failed: {reason}"
                    ),
                    Err(e) => self.refused("fail", lease, &e),
                }
            }
            Ran::Lost(Lost::Queue(e)) => match e {
                QueueError::Finished { state, .. } => tracing::info!(
                    target: "service",
                    video = %job, job = %job, task, attempt = lease.attempt, job_state = ?state,
                    "task aborted: the job is {state:?}"
                ),
                e => tracing::warn!(
                    target: "service",
                    video = %job, job = %job, task, attempt = lease.attempt,
                    "task aborted, lease lost (reclaimed by another worker, or unrenewable past its deadline): {e}"
                ),
            },
            Ran::Lost(Lost::Stopped) => match self.queue.fail(lease, "worker stopped") {
                Ok(_) => {
                    tracing::info!(target: "service", video = %job, job = %job, task, attempt = lease.attempt, "task aborted: worker stopped")
                }
                Err(e) => self.refused("fail", lease, &e),
            },
        }
    }

    /// A completion or failure the queue refused: a stale attempt's result is dropped.
    fn refused(&self, call: &str, lease: &Lease, e: &QueueError) {
        let (job, task) = (lease.job.as_str(), lease.task);
        match e {
            QueueError::Stale { .. } => tracing::warn!(
                target: "service",
                video = %job, job = %job, task, attempt = lease.attempt,
                "{call} refused, result dropped (a newer attempt owns the task): {e}"
            ),
            QueueError::Finished { .. } => {
                tracing::info!(target: "service", video = %job, job = %job, task, attempt = lease.attempt, "{call} refused, result dropped: {e}")
            }
            e => tracing::error!(
                target: "service",
                video = %job, job = %job, task, attempt = lease.attempt,
                "{call} failed (the lease will expire and the task be retried): {e}"
            ),
        }
    }

    fn execute(&self, lease: &Lease, stop: &AtomicBool) -> Ran {
        let job: VideoJob = match serde_json::from_str(&lease.job_payload) {
            Ok(j) => j,
            Err(e) => {
                return Ran::Failed(WorkerError::BadJob {
                    job: lease.job.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let task = match serde_json::from_str::<TaskPayload>(&lease.payload) {
            Ok(t) if t.stage() == lease.stage => t,
            Ok(t) => {
                return Ran::Failed(WorkerError::BadTask {
                    job: lease.job.clone(),
                    task: lease.task,
                    reason: format!("{t:?} belongs to stage {}, not {}", t.stage(), lease.stage),
                })
            }
            Err(e) => {
                return Ran::Failed(WorkerError::BadTask {
                    job: lease.job.clone(),
                    task: lease.task,
                    reason: e.to_string(),
                })
            }
        };
        match task {
            TaskPayload::Plan => self.leased(lease, stop, None, 1, |_, _| self.plan(&job)),
            // Abortable: a job cancelled during its assembly publishes nothing.
            TaskPayload::Assemble => {
                let abort = AtomicBool::new(false);
                self.leased(lease, stop, Some(&abort), 1, |abort, _| {
                    assemble_job(&job, abort)
                })
            }
            TaskPayload::Task { index } => {
                let loaded = WorkArea::for_output(&job.out).and_then(|work| {
                    let plan = Plan::load(&work)?;
                    let frames = match plan.task(index)? {
                        Task::Shard(s) => s.end_frame - s.start_frame,
                        Task::Audio => plan.frames,
                    };
                    Ok((work, plan, frames))
                });
                let (work, plan, frames) = match loaded {
                    Ok(l) => l,
                    Err(e) => return Ran::Failed(e.into()),
                };
                let abort = AtomicBool::new(false);
                self.leased(lease, stop, Some(&abort), frames, |abort, progress| {
                    let opts = RunOptions {
                        abort,
                        progress,
                        alone: false,
                    };
                    match run_task(&work, &plan, index, &opts)? {
                        Outcome::Done(r) => tracing::info!(
                            target: "service",
                            video = %lease.job, job = %lease.job, task = lease.task, attempt = lease.attempt, index, kind = %r.kind,
                            encode_s = r.elapsed_s, "task encoded"
                        ),
                        Outcome::Reused(r) => tracing::info!(
                            target: "service",
                            video = %lease.job, job = %lease.job, task = lease.task, attempt = lease.attempt, index, kind = %r.kind,
                            "task already in the work area and intact: reused"
                        ),
                    }
                    Ok(Vec::new())
                })
            }
        }
    }

    /// Runs `work` while a renewer thread keeps `lease`. With `abort` (an abortable task), a
    /// lost lease or `stop` sets it; otherwise the work runs to its end and a lost lease only
    /// drops its result.
    fn leased(
        &self,
        lease: &Lease,
        stop: &AtomicBool,
        abort: Option<&AtomicBool>,
        total: u64,
        work: impl FnOnce(&AtomicBool, &AtomicU64) -> Result<Vec<NewTask>, WorkerError>,
    ) -> Ran {
        let unused = AtomicBool::new(false);
        let abort_flag = abort.unwrap_or(&unused);
        let progress = AtomicU64::new(0);
        let lost: Mutex<Option<Lost>> = Mutex::new(None);
        let tick = renew_interval(self.settings.lease);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let result = thread::scope(|s| {
            let (lost, progress) = (&lost, &progress);
            let renewer = thread::Builder::new()
                .name(format!("renew-{}-{}", lease.job, lease.task))
                .spawn_scoped(s, move || {
                    let span = tracing::info_span!(
                        target: "service",
                        "renew",
                        video = %lease.job,
                        job = %lease.job,
                        task = lease.task,
                        attempt = lease.attempt
                    );
                    let _g = span.enter();
                    let mut until = lease.until_ms;
                    let mut stopped = false;
                    loop {
                        match done_rx.recv_timeout(tick) {
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            _ => return,
                        }
                        if abort.is_some() && !stopped && stop.load(Ordering::Relaxed) {
                            stopped = true;
                            set_lost(lost, Lost::Stopped);
                            abort_flag.store(true, Ordering::Relaxed);
                        }
                        let p = progress.load(Ordering::Relaxed) as f64 / total.max(1) as f64;
                        match self.queue.renew(lease, p) {
                            Ok(u) => until = u,
                            Err(e @ (QueueError::Stale { .. } | QueueError::Finished { .. })) => {
                                tracing::info!(
                                    target: "service",
                                    video = %lease.job, job = %lease.job, task = lease.task, attempt = lease.attempt,
                                    "renewal refused, aborting the task: {e}"
                                );
                                set_lost(lost, Lost::Queue(e));
                                abort_flag.store(true, Ordering::Relaxed);
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(
                                    target: "service",
                                    video = %lease.job, job = %lease.job, task = lease.task, attempt = lease.attempt,
                                    "cannot renew the lease: {e}"
                                );
                                if crate::store::now_ms() > until {
                                    // Another worker may have it by now.
                                    set_lost(lost, Lost::Queue(e));
                                    abort_flag.store(true, Ordering::Relaxed);
                                    return;
                                }
                            }
                        }
                    }
                });
            let r = match renewer {
                Ok(_) => work(abort_flag, progress),
                Err(source) => Err(WorkerError::Spawn {
                    what: "the lease renewer".into(),
                    source,
                }),
            };
            drop(done_tx);
            r
        });
        if let Some(l) = lost.into_inner().unwrap_or_else(|e| e.into_inner()) {
            // A result that raced the loss is in the work area, where the next attempt
            // reuses it; it is not ours to complete.
            return Ran::Lost(l);
        }
        match result {
            Ok(then) => Ran::Done(then),
            Err(e) => Ran::Failed(e),
        }
    }

    /// The plan task: the plan, and the tasks it adds.
    fn plan(&self, job: &VideoJob) -> Result<Vec<NewTask>, WorkerError> {
        let o = &self.settings.plan;
        let spec = Spec {
            input: job.source.clone(),
            out: job.out.clone(),
            ladder: o.ladder.clone(),
            segment_duration: o.segment_duration,
            shard_seconds: o.shard_seconds,
            formats: o.formats,
            force: false,
        };
        let (work, plan, kept) = packager::plan::prepare(&spec)?;
        tracing::info!(
            target: "service",
            video = %job.video,
            job = %job.video,
            plan = %plan.plan_hash,
            tasks = plan.tasks,
            shards = plan.shards.len(),
            reused_plan = kept,
            work = %work.dir().display(),
            "planned"
        );
        Ok(plan_tasks(plan.tasks))
    }
}

fn set_lost(lost: &Mutex<Option<Lost>>, l: Lost) {
    let mut g = lost.lock().unwrap_or_else(|e| e.into_inner());
    if !matches!(*g, Some(Lost::Queue(_))) {
        *g = Some(l);
    }
}

/// The assembly task: checks every task and publishes `out`.
fn assemble_job(job: &VideoJob, abort: &AtomicBool) -> Result<Vec<NewTask>, WorkerError> {
    let work = WorkArea::for_output(&job.out)?;
    // The plan task refused an existing `out`, so a package there now was published by an
    // earlier attempt of this assembly that stopped before completing.
    if job.out.is_dir() {
        tracing::warn!(
            target: "service",
            video = %job.video,
            job = %job.video,
            out = %job.out.display(),
            "the package is already published (an earlier attempt): completing"
        );
        work.remove();
        return Ok(Vec::new());
    }
    let plan = Plan::load(&work)?;
    let assembled = assemble(
        &work,
        &plan,
        AssembleOptions {
            keep_work: false,
            force: false,
            abort: Some(abort),
        },
    );
    let (out, info) = match assembled {
        Ok(a) => a,
        // Another attempt (whose lease expired while it assembled) published first: not an
        // input error, and the package is there.
        Err(packager::PackageError::OutputExists(out)) => {
            tracing::warn!(
                target: "service",
                video = %job.video,
                job = %job.video,
                out = %out.display(),
                "another attempt published the package first: completing"
            );
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(
        target: "service",
        video = %job.video,
            job = %job.video,
        out = %out.display(),
        duration_s = info.duration_secs,
        "package published"
    );
    Ok(Vec::new())
}

/// Stops a pool's workers (cloneable, for signal handlers).
#[derive(Clone)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
}

impl Stopper {
    /// Tells every worker to stop (running shard tasks are aborted, see the module docs).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify();
    }

    /// Whether stop was asked.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Workers running on their own threads ([`spawn_pool`]).
pub struct Pool {
    stopper: Stopper,
    ids: Vec<String>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Its workers' ids.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// A handle that stops it.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Tells every worker to stop.
    pub fn stop(&self) {
        self.stopper.stop();
    }

    /// Waits for every worker to end (after [`Pool::stop`]).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Worker numbers of this process (`host:pid:n`), unique across pools.
static NEXT_WORKER: AtomicUsize = AtomicUsize::new(0);

/// Starts `n` workers on `queue`, each on its own thread, until [`Pool::stop`].
pub fn spawn_pool(
    queue: Arc<dyn Queue>,
    n: usize,
    settings: Settings,
) -> Result<Pool, WorkerError> {
    let stopper = Stopper {
        stop: Arc::new(AtomicBool::new(false)),
        wake: Arc::default(),
    };
    let mut pool = Pool {
        stopper: stopper.clone(),
        ids: Vec::new(),
        threads: Vec::new(),
    };
    for _ in 0..n {
        let id = worker_id(NEXT_WORKER.fetch_add(1, Ordering::Relaxed));
        let w = Worker {
            queue: queue.clone(),
            id: id.clone(),
            settings: settings.clone(),
            wake: stopper.wake.clone(),
        };
        let stop = stopper.stop.clone();
        let t = thread::Builder::new()
            .name(format!("worker-{}", pool.threads.len()))
            .spawn(move || w.run(&stop));
        match t {
            Ok(t) => {
                pool.ids.push(id);
                pool.threads.push(t);
            }
            Err(source) => {
                pool.stop();
                pool.join();
                return Err(WorkerError::Spawn {
                    what: "a worker thread".into(),
                    source,
                });
            }
        }
    }
    Ok(pool)
}

/// Stops `stopper`'s pool at the first SIGTERM or SIGINT (running tasks end as the module docs
/// say); a second one exits the process at once (status 130; leases then expire).
pub fn stop_on_signals(stopper: Stopper) -> Result<(), WorkerError> {
    let spawn_err = |source| WorkerError::Spawn {
        what: "the signal watcher".into(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(spawn_err)?;
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .map_err(spawn_err)?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                for n in 0.. {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    if n == 0 {
                        tracing::info!(target: "service", "stopping: running tasks are aborted (their attempts fail as \"worker stopped\")");
                        stopper.stop();
                    } else {
                        tracing::warn!(target: "service", "second signal: exiting now");
                        std::process::exit(130);
                    }
                }
            })
        })
        .map(|_| ())
        .map_err(spawn_err)
}
