//! Durable job queue: a job is a list of tasks that workers claim with a lease, renew while
//! they make progress, and complete or fail. One semantics, several backends ([`sqlite`] for one
//! box, [`redis`] for clusters), the same behaviour suite (`service/tests/queue.rs`).
//!
//! - **Stages.** A task is claimable once every task of its job with a lower stage is done
//!   (plan → shards → assemble). A completing task may add tasks to its job in the same step
//!   (the plan knows how many shards there are).
//! - **Leases and fencing.** Each claim is a new attempt of the task with a deadline; renewing
//!   moves the deadline. A task whose lease passed is reclaimed (next claim, or
//!   [`Queue::expire_leases`]). Renewing, completing or failing with an attempt that is no
//!   longer the task's current lease is refused ([`QueueError::Stale`]): a worker presumed dead
//!   cannot overwrite its successor's result.
//! - **Retries.** A failed or expired attempt makes the task claimable again after a delay,
//!   until `max_attempts` attempts ran; then the task fails and its job fails with the reason.
//!   A permanent failure ([`Queue::fail_permanently`]: bad input) fails the job at once.
//! - **Cancel.** A cancelled job's tasks are never claimed again; its leased workers learn it at
//!   their next renew ([`QueueError::Finished`]).
//! - **Retry.** A failed or cancelled job can be queued again ([`Queue::retry`]): its unfinished
//!   tasks get a fresh budget of attempts, its done tasks are kept.
//! - **Events.** Every transition is an [`Event`] with a sequence number, for status pages,
//!   server-sent events and `abr monitor`.
//!
//! Calls block (SQLite does I/O and fsyncs, Redis is a round trip): from async code, call them
//! on a blocking thread.

pub mod redis;
pub mod sqlite;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::redis::RedisQueue;
pub use sqlite::SqliteQueue;

/// Longest job id accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest payload (job or task) accepted, bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest failure reason kept, bytes (longer ones are cut).
pub const MAX_REASON: usize = 4096;

/// Queue behaviour settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a claim or a renewal holds a task.
    pub lease: Duration,
    /// Attempts of a task (claims) before it fails its job.
    pub max_attempts: u32,
    /// Delay before a failed attempt's task is claimable again; doubles with each attempt.
    pub retry_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease: Duration::from_secs(30),
            max_attempts: 3,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Caller-chosen id (e.g. the video's): enqueueing it again is a no-op.
    pub id: String,
    /// What the job is about (opaque to the queue; JSON by convention).
    pub payload: String,
    /// Its first tasks.
    pub tasks: Vec<NewTask>,
}

/// A task to add to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// Claimable once every task of a lower stage is done.
    pub stage: u32,
    /// What to do (opaque to the queue).
    pub payload: String,
}

/// The outcome of [`Queue::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job.
    Created,
    /// A job with this id existed; nothing changed.
    Existing,
}

/// A claimed task: the worker's right to run this attempt until `until_ms` (renewable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Job id.
    pub job: String,
    /// Task index within the job.
    pub task: u32,
    /// Attempt number (1 for the first claim); fences out older attempts.
    pub attempt: u32,
    /// Worker that claimed it.
    pub worker: String,
    /// Stage of the task.
    pub stage: u32,
    /// The task's payload.
    pub payload: String,
    /// The job's payload.
    pub job_payload: String,
    /// Lease deadline (queue clock, Unix ms).
    pub until_ms: u64,
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// No task claimed yet.
    Queued,
    /// Some task was claimed.
    Running,
    /// Every task is done.
    Succeeded,
    /// A task failed `max_attempts` times.
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

impl JobState {
    /// Whether the job is over (succeeded, failed or cancelled).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// State of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a claim (first time, or after a failed or expired attempt).
    Pending,
    /// Claimed by a worker.
    Leased,
    /// Completed.
    Done,
    /// Failed its last attempt.
    Failed,
    /// Its job ended before it ran (cancelled, or failed by another task).
    Cancelled,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInfo {
    /// Index within the job.
    pub index: u32,
    /// Stage.
    pub stage: u32,
    /// State.
    pub state: TaskState,
    /// Attempts so far (claims) since the job was enqueued or last retried.
    pub attempt: u32,
    /// Worker of the current or last attempt.
    pub worker: Option<String>,
    /// Progress reported by the current attempt (0–1).
    pub progress: f64,
    /// The last attempt's failure reason.
    pub error: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// Its payload.
    pub payload: String,
    /// State.
    pub state: JobState,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Its tasks by index.
    pub tasks: Vec<TaskInfo>,
    /// When it was enqueued (Unix ms).
    pub created_ms: u64,
    /// Its last transition (Unix ms).
    pub updated_ms: u64,
}

impl JobInfo {
    /// Tasks done out of all tasks.
    pub fn done(&self) -> (usize, usize) {
        let done = self
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Done)
            .count();
        (done, self.tasks.len())
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The job was enqueued.
    Enqueued,
    /// A task was claimed (a new attempt).
    Claimed,
    /// A task completed.
    Completed,
    /// A completing task added tasks to its job.
    TasksAdded,
    /// An attempt failed; the task will be retried.
    Retrying,
    /// A lease passed without renewal; the task will be retried (or fails its job).
    LeaseExpired,
    /// A task failed its last attempt.
    TaskFailed,
    /// Every task of the job is done.
    JobSucceeded,
    /// The job failed.
    JobFailed,
    /// The job was cancelled.
    Cancelled,
    /// A failed or cancelled job was queued again (detail: how many tasks went back).
    Retried,
}

/// One transition, in queue order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Sequence number (increasing; pass the last one seen to [`Queue::events`]).
    pub seq: u64,
    /// Job id.
    pub job: String,
    /// Task index, for task events.
    pub task: Option<u32>,
    /// Attempt, for task events.
    pub attempt: Option<u32>,
    /// What happened.
    pub kind: EventKind,
    /// Reason, worker or count, as the kind calls for.
    pub detail: Option<String>,
    /// When (queue clock, Unix ms).
    pub at_ms: u64,
}

/// Why a queue call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request itself is unusable (bad id, no tasks, payload too large).
    #[error("job {job}: {reason}")]
    Invalid {
        /// Job id as given.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// No such job.
    #[error("job {0}: not found")]
    NotFound(String),
    /// The attempt is not the task's current lease (a newer attempt exists, or it expired and
    /// was reclaimed, or it already completed or failed).
    #[error("job {job} task {task}: attempt {attempt} is stale (the task is {state:?} at attempt {current})")]
    Stale {
        /// Job id.
        job: String,
        /// Task index.
        task: u32,
        /// The refused attempt.
        attempt: u32,
        /// The task's current attempt.
        current: u32,
        /// The task's state.
        state: TaskState,
    },
    /// The job is over (cancelled, failed or succeeded): stop working on it.
    #[error("job {job}: {state:?}, task {task} attempt {attempt} is no longer wanted")]
    Finished {
        /// Job id.
        job: String,
        /// Task index.
        task: u32,
        /// The attempt.
        attempt: u32,
        /// The job's state.
        state: JobState,
    },
    /// The storage failed.
    #[error("queue storage ({context}): {source}")]
    Storage {
        /// The call and the job it was about.
        context: String,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The queue operations every backend provides with the same behaviour.
pub trait Queue: Send + Sync {
    /// Adds a job with its first tasks, atomically; an existing id is left as it is.
    fn enqueue(&self, job: &NewJob) -> Result<Enqueued, QueueError>;

    /// The next claimable task for `worker`, leased to it (oldest job first, then stage,
    /// then index); reclaims expired leases first. `None` when nothing is claimable.
    fn claim(&self, worker: &str) -> Result<Option<Lease>, QueueError>;

    /// Extends `lease` by the lease duration and records its progress (0–1); returns the new
    /// deadline. Refused when the attempt is stale or the job is over.
    fn renew(&self, lease: &Lease, progress: f64) -> Result<u64, QueueError>;

    /// Marks `lease`'s task done and adds `then` to its job, atomically; the job succeeds
    /// when no task is left. Refused when the attempt is stale or the job is over.
    fn complete(&self, lease: &Lease, then: &[NewTask]) -> Result<JobState, QueueError>;

    /// Records a failed attempt: the task is retried, or, at its last attempt, fails and
    /// fails its job with `reason`. Refused when the attempt is stale or the job is over.
    fn fail(&self, lease: &Lease, reason: &str) -> Result<JobState, QueueError>;

    /// Records a failed attempt that no retry can fix (e.g. the input is not media): the task
    /// fails at once, whatever attempt it is, and fails its job with `reason`. Refused as
    /// [`Queue::fail`] is.
    fn fail_permanently(&self, lease: &Lease, reason: &str) -> Result<JobState, QueueError>;

    /// Cancels a job that is not over; its tasks are never claimed again. Returns whether it
    /// was cancelled now (false when it was already over).
    fn cancel(&self, job: &str, reason: &str) -> Result<bool, QueueError>;

    /// Queues a failed or cancelled job again: its failed and cancelled tasks are pending
    /// with their attempts counted from zero (attempt numbers go on, so a worker of the old
    /// round stays fenced out), its done tasks stay done. Returns whether it was retried
    /// (false when it is not failed or cancelled).
    fn retry(&self, job: &str) -> Result<bool, QueueError>;

    /// A job and its tasks.
    fn job(&self, job: &str) -> Result<Option<JobInfo>, QueueError>;

    /// Events with a sequence number above `after`, oldest first, at most `limit`.
    fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>, QueueError>;

    /// Reclaims every task whose lease passed (as a claim does); returns how many.
    fn expire_leases(&self) -> Result<usize, QueueError>;

    /// The sequence number of the newest event (0 when there is none): where a follower of
    /// [`Queue::events`] that wants only what comes next starts.
    fn last_event_seq(&self) -> Result<u64, QueueError>;
}

/// File of the embedded queue in a data directory.
pub const SQLITE_FILE: &str = "queue.sqlite3";

/// The queue of a node: in the Redis at `redis` (shared by a cluster, keys under
/// [`redis::DEFAULT_PREFIX`]) when given, else the SQLite file [`SQLITE_FILE`] in `data_dir`.
pub fn open(
    data_dir: &Path,
    redis: Option<&str>,
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Queue>, QueueError> {
    Ok(match redis {
        Some(url) => Arc::new(RedisQueue::open(
            url,
            self::redis::DEFAULT_PREFIX,
            settings,
            clock,
        )?),
        None => Arc::new(SqliteQueue::open(
            &data_dir.join(SQLITE_FILE),
            settings,
            clock,
        )?),
    })
}

/// The queue's clock (Unix ms): the system's, or one a test moves.
pub trait Clock: Send + Sync {
    /// Now.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::store::now_ms()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Starts at `ms`.
    pub fn new(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms))
    }

    /// Moves it forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Checks what a caller may send: the job id, payload sizes.
fn validate_id(id: &str) -> Result<(), QueueError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(QueueError::Invalid {
            job: id.chars().take(MAX_ID_LEN).collect(),
            reason: format!(
                "a job id is 1–{MAX_ID_LEN} characters of A–Z, a–z, 0–9, '-', '_', '.', ':'"
            ),
        })
    }
}

/// Checks a job to enqueue: its id, at least one task, payload sizes.
fn validate_job(job: &NewJob) -> Result<(), QueueError> {
    validate_id(&job.id)?;
    validate_tasks(&job.id, &job.tasks)?;
    if job.tasks.is_empty() {
        return Err(QueueError::Invalid {
            job: job.id.clone(),
            reason: "a job needs at least one task".into(),
        });
    }
    if job.payload.len() > MAX_PAYLOAD {
        return Err(QueueError::Invalid {
            job: job.id.clone(),
            reason: format!(
                "a job payload of {} bytes exceeds {MAX_PAYLOAD}",
                job.payload.len()
            ),
        });
    }
    Ok(())
}

/// Checks a worker name.
fn check_worker(worker: &str) -> Result<(), QueueError> {
    if worker.is_empty() || worker.len() > 128 || worker.chars().any(char::is_control) {
        return Err(QueueError::Invalid {
            job: "-".into(),
            reason: format!("worker name {worker:?} must be 1–128 printable characters"),
        });
    }
    Ok(())
}

fn validate_tasks(job: &str, tasks: &[NewTask]) -> Result<(), QueueError> {
    if let Some(t) = tasks.iter().find(|t| t.payload.len() > MAX_PAYLOAD) {
        return Err(QueueError::Invalid {
            job: job.into(),
            reason: format!(
                "a task payload of {} bytes exceeds {MAX_PAYLOAD}",
                t.payload.len()
            ),
        });
    }
    Ok(())
}

/// `reason` cut to [`MAX_REASON`] bytes at a character boundary.
fn clip(reason: &str) -> &str {
    if reason.len() <= MAX_REASON {
        return reason;
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A reported progress as stored: within 0–1, 0 when not a number.
fn clamp_progress(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Delay before attempt `attempt + 1` after attempt `attempt` failed: doubles, at most 64×.
fn backoff(settings: &Settings, attempt: u32) -> Duration {
    settings
        .retry_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reasons_and_backoff() {
        assert!(validate_id("video-01:plan").is_ok());
        for bad in ["", "a/b", "../x", "sp ace", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        let long = "é".repeat(MAX_REASON);
        assert!(clip(&long).len() <= MAX_REASON);
        assert_eq!(clip("short"), "short");
        let s = Settings {
            retry_delay: Duration::from_millis(100),
            ..Settings::default()
        };
        assert_eq!(backoff(&s, 1), Duration::from_millis(100));
        assert_eq!(backoff(&s, 2), Duration::from_millis(200));
        assert_eq!(backoff(&s, 50), Duration::from_millis(6400));
    }
}
