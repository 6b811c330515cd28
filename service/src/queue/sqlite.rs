//! Embedded backend: one SQLite file (WAL, `synchronous=FULL`: a call that returned is on disk,
//! through kill -9 or power loss). Every call is one `BEGIN IMMEDIATE` transaction, so
//! concurrent workers (threads, or processes opening the same file) never interleave.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    backoff, check_worker, clamp_progress, clip, validate_job, validate_tasks, Clock, Enqueued,
    Event, EventKind, JobInfo, JobState, Lease, NewJob, NewTask, Queue, QueueError, Settings,
    TaskInfo, TaskState,
};

/// Schema version (`PRAGMA user_version`): 2 added `tasks.base` (the attempt a retry of the
/// job started from; version 1 files are upgraded in place).
const SCHEMA_VERSION: i64 = 2;

/// From version 1 to 2.
const UPGRADE_1_TO_2: &str = "ALTER TABLE tasks ADD COLUMN base INTEGER NOT NULL DEFAULT 0;";

const SCHEMA: &str = "
CREATE TABLE jobs (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    payload    TEXT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE tasks (
    job            TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,
    stage          INTEGER NOT NULL,
    payload        TEXT NOT NULL,
    state          TEXT NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    worker         TEXT,
    lease_until_ms INTEGER,
    available_ms   INTEGER NOT NULL,
    progress       REAL NOT NULL DEFAULT 0,
    error          TEXT,
    base           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, idx)
);
CREATE INDEX tasks_by_state ON tasks(state, available_ms);
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    job     TEXT NOT NULL,
    task    INTEGER,
    attempt INTEGER,
    kind    TEXT NOT NULL,
    detail  TEXT,
    at_ms   INTEGER NOT NULL
);
";

/// Longest a call waits for another process's transaction on the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite queue.
pub struct SqliteQueue {
    conn: Mutex<Connection>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    path: PathBuf,
}

/// Storage errors with what was being done.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, QueueError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, QueueError> {
        self.map_err(|e| QueueError::Storage {
            context: what(),
            source: Box::new(e),
        })
    }
}

fn corrupt(what: String) -> QueueError {
    QueueError::Storage {
        context: what,
        source: "unexpected value in the queue database".into(),
    }
}

fn job_state(s: &str) -> Option<JobState> {
    Some(match s {
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "succeeded" => JobState::Succeeded,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        _ => return None,
    })
}

fn task_state(s: &str) -> Option<TaskState> {
    Some(match s {
        "pending" => TaskState::Pending,
        "leased" => TaskState::Leased,
        "done" => TaskState::Done,
        "failed" => TaskState::Failed,
        "cancelled" => TaskState::Cancelled,
        _ => return None,
    })
}

fn kind_str(k: EventKind) -> &'static str {
    match k {
        EventKind::Enqueued => "enqueued",
        EventKind::Claimed => "claimed",
        EventKind::Completed => "completed",
        EventKind::TasksAdded => "tasks_added",
        EventKind::Retrying => "retrying",
        EventKind::LeaseExpired => "lease_expired",
        EventKind::TaskFailed => "task_failed",
        EventKind::JobSucceeded => "job_succeeded",
        EventKind::JobFailed => "job_failed",
        EventKind::Cancelled => "cancelled",
        EventKind::Retried => "retried",
    }
}

fn kind(s: &str) -> Option<EventKind> {
    Some(match s {
        "enqueued" => EventKind::Enqueued,
        "claimed" => EventKind::Claimed,
        "completed" => EventKind::Completed,
        "tasks_added" => EventKind::TasksAdded,
        "retrying" => EventKind::Retrying,
        "lease_expired" => EventKind::LeaseExpired,
        "task_failed" => EventKind::TaskFailed,
        "job_succeeded" => EventKind::JobSucceeded,
        "job_failed" => EventKind::JobFailed,
        "cancelled" => EventKind::Cancelled,
        "retried" => EventKind::Retried,
        _ => return None,
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// SQLite integers are signed: Unix ms fit for the next 290 million years.
fn sql_ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql_ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// One transition's event, inside the caller's transaction.
struct Ev<'a> {
    job: &'a str,
    task: Option<u32>,
    attempt: Option<u32>,
    kind: EventKind,
    detail: Option<&'a str>,
}

impl<'a> Ev<'a> {
    /// An event of the whole job.
    fn job(job: &'a str, kind: EventKind, detail: Option<&'a str>) -> Self {
        Ev {
            job,
            task: None,
            attempt: None,
            kind,
            detail,
        }
    }

    /// An event of `lease`'s attempt.
    fn lease(lease: &'a Lease, kind: EventKind, detail: &'a str) -> Self {
        Self::task(&lease.job, lease.task, lease.attempt, kind, detail)
    }

    /// An event of one attempt of a task.
    fn task(job: &'a str, task: u32, attempt: u32, kind: EventKind, detail: &'a str) -> Self {
        Ev {
            job,
            task: Some(task),
            attempt: Some(attempt),
            kind,
            detail: Some(detail),
        }
    }
}

fn record(tx: &Transaction, e: Ev, now: u64) -> Result<(), QueueError> {
    tx.execute(
        "INSERT INTO events (job, task, attempt, kind, detail, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.job, e.task, e.attempt, kind_str(e.kind), e.detail, sql_ms(now)],
    )
    .map(|_| ())
    .context(|| format!("event {} of job {}", kind_str(e.kind), e.job))
}

/// Ends `job` as `state` (failed, cancelled or succeeded) with `reason`: its unfinished tasks
/// are cancelled, and the matching event recorded.
fn end_job(
    tx: &Transaction,
    job: &str,
    state: JobState,
    reason: Option<&str>,
    now: u64,
) -> Result<(), QueueError> {
    let (sql_state, kind) = match state {
        JobState::Failed => ("failed", EventKind::JobFailed),
        JobState::Cancelled => ("cancelled", EventKind::Cancelled),
        _ => ("succeeded", EventKind::JobSucceeded),
    };
    let what = || format!("end job {job} as {sql_state}");
    tx.execute(
        "UPDATE jobs SET state = ?2, reason = ?3, updated_ms = ?4 WHERE id = ?1",
        params![job, sql_state, reason, sql_ms(now)],
    )
    .context(what)?;
    tx.execute(
        "UPDATE tasks SET state = 'cancelled' WHERE job = ?1 AND state IN ('pending', 'leased')",
        params![job],
    )
    .context(what)?;
    record(tx, Ev::job(job, kind, reason), now)
}

/// What a lease's task and job are now.
struct Current {
    task: TaskState,
    attempt: u32,
    job: JobState,
    stage: u32,
    /// Attempts before the job's last retry (not counted against `max_attempts`).
    base: u32,
}

impl SqliteQueue {
    /// Opens (or creates) the queue in `path`.
    pub fn open(
        path: &Path,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let what = || format!("open {}", path.display());
        let conn = Connection::open(path).context(what)?;
        conn.busy_timeout(BUSY_TIMEOUT).context(what)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .context(what)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(QueueError::Storage {
                context: what(),
                source: format!("journal_mode is {mode}, WAL is needed").into(),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .context(what)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .context(what)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .context(what)?;
        match version {
            0 => {
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .context(what)?;
                tracing::info!(target: "service", path = %path.display(), "job queue created");
            }
            1 => {
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {UPGRADE_1_TO_2} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .context(what)?;
                tracing::info!(target: "service", path = %path.display(), "job queue upgraded to schema 2");
            }
            SCHEMA_VERSION => {}
            v => {
                return Err(QueueError::Storage {
                    context: what(),
                    source: format!(
                        "schema version {v} is not {SCHEMA_VERSION} (a newer abr wrote it)"
                    )
                    .into(),
                })
            }
        }
        Ok(SqliteQueue {
            conn: Mutex::new(conn),
            settings,
            clock,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one immediate transaction, committed when it returns Ok.
    fn tx<T>(
        &self,
        what: impl Fn() -> String,
        f: impl FnOnce(&Transaction, u64) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        // A panic inside a transaction rolled it back (the Transaction was dropped): the
        // connection is still usable.
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(&what)?;
        let now = self.clock.now_ms();
        let out = f(&tx, now)?;
        tx.commit().context(&what)?;
        Ok(out)
    }

    /// The task and job state of `lease`, refused unless it is the task's current attempt
    /// and the job goes on.
    fn fence(&self, tx: &Transaction, l: &Lease) -> Result<Current, QueueError> {
        let what = || format!("job {} task {}", l.job, l.task);
        let row: Option<(String, u32, String, u32, u32)> = tx
            .query_row(
                "SELECT t.state, t.attempt, j.state, t.stage, t.base FROM tasks t JOIN jobs j ON j.id = t.job
                 WHERE t.job = ?1 AND t.idx = ?2",
                params![l.job, l.task],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .context(what)?;
        let Some((task, attempt, job, stage, base)) = row else {
            return Err(QueueError::NotFound(l.job.clone()));
        };
        let cur = Current {
            task: task_state(&task).ok_or_else(|| corrupt(what()))?,
            attempt,
            job: job_state(&job).ok_or_else(|| corrupt(what()))?,
            stage,
            base,
        };
        if cur.attempt == l.attempt && cur.job.is_final() {
            return Err(QueueError::Finished {
                job: l.job.clone(),
                task: l.task,
                attempt: l.attempt,
                state: cur.job,
            });
        }
        if cur.attempt != l.attempt || cur.task != TaskState::Leased {
            return Err(QueueError::Stale {
                job: l.job.clone(),
                task: l.task,
                attempt: l.attempt,
                current: cur.attempt,
                state: cur.task,
            });
        }
        Ok(cur)
    }

    /// Reclaims the tasks whose lease passed: retried, or failing their job at the last attempt.
    fn reap(&self, tx: &Transaction, now: u64) -> Result<usize, QueueError> {
        let what = || "expire leases".to_string();
        let expired: Vec<(String, u32, u32, Option<String>, u32)> = {
            let mut st = tx
                .prepare(
                    "SELECT t.job, t.idx, t.attempt, t.worker, t.base FROM tasks t JOIN jobs j ON j.id = t.job
                     WHERE t.state = 'leased' AND t.lease_until_ms <= ?1
                       AND j.state IN ('queued', 'running')
                     ORDER BY j.seq, t.idx",
                )
                .context(what)?;
            let rows = st
                .query_map(params![sql_ms(now)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .context(what)?;
            rows.collect::<rusqlite::Result<_>>().context(what)?
        };
        for (job, idx, attempt, worker, base) in &expired {
            let worker = worker.as_deref().unwrap_or("?");
            let why = format!("lease expired (worker {worker})");
            record(
                tx,
                Ev::task(job, *idx, *attempt, EventKind::LeaseExpired, worker),
                now,
            )?;
            tracing::warn!(target: "service", job, task = idx, attempt, worker, "lease expired: task reclaimed");
            if attempt.saturating_sub(*base) >= self.settings.max_attempts {
                self.last_failure(tx, job, *idx, (*attempt, *base), &why, now)?;
            } else {
                tx.execute(
                    "UPDATE tasks SET state = 'pending', available_ms = ?3, error = ?4
                     WHERE job = ?1 AND idx = ?2",
                    params![job, idx, sql_ms(now), why],
                )
                .context(|| format!("reclaim job {job} task {idx}"))?;
            }
        }
        Ok(expired.len())
    }

    /// Task `idx`'s last attempt failed: the task fails, and its job with it.
    fn last_failure(
        &self,
        tx: &Transaction,
        job: &str,
        idx: u32,
        (attempt, base): (u32, u32),
        why: &str,
        now: u64,
    ) -> Result<(), QueueError> {
        let reason = format!(
            "task {idx} failed {} of {} attempts: {why}",
            attempt.saturating_sub(base),
            self.settings.max_attempts
        );
        self.fail_task_and_job(tx, job, idx, attempt, why, &reason, now)
    }

    /// Task `idx` fails at `attempt` with `why`, and its job with `reason`.
    #[allow(clippy::too_many_arguments)]
    fn fail_task_and_job(
        &self,
        tx: &Transaction,
        job: &str,
        idx: u32,
        attempt: u32,
        why: &str,
        reason: &str,
        now: u64,
    ) -> Result<(), QueueError> {
        tx.execute(
            "UPDATE tasks SET state = 'failed', error = ?3 WHERE job = ?1 AND idx = ?2",
            params![job, idx, why],
        )
        .context(|| format!("fail job {job} task {idx}"))?;
        record(
            tx,
            Ev::task(job, idx, attempt, EventKind::TaskFailed, why),
            now,
        )?;
        tracing::warn!(target: "service", job, task = idx, attempt, "job failed: {why}");
        end_job(tx, job, JobState::Failed, Some(reason), now)
    }

    fn add_tasks(
        tx: &Transaction,
        job: &str,
        tasks: &[NewTask],
        now: u64,
    ) -> Result<(), QueueError> {
        let what = || format!("add tasks to job {job}");
        let next: u32 = tx
            .query_row(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM tasks WHERE job = ?1",
                params![job],
                |r| r.get(0),
            )
            .context(what)?;
        let mut st = tx
            .prepare(
                "INSERT INTO tasks (job, idx, stage, payload, state, available_ms)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
            )
            .context(what)?;
        for (i, t) in tasks.iter().enumerate() {
            let idx = u32::try_from(i)
                .ok()
                .and_then(|i| next.checked_add(i))
                .ok_or_else(|| QueueError::Invalid {
                    job: job.into(),
                    reason: "too many tasks".into(),
                })?;
            st.execute(params![job, idx, t.stage, t.payload, sql_ms(now)])
                .context(what)?;
        }
        Ok(())
    }

    /// The state of `job` ([`QueueError::NotFound`] when there is no such job).
    fn job_state_of(tx: &Transaction, job: &str) -> Result<JobState, QueueError> {
        let s: Option<String> = tx
            .query_row("SELECT state FROM jobs WHERE id = ?1", params![job], |r| {
                r.get(0)
            })
            .optional()
            .context(|| format!("state of job {job}"))?;
        let s = s.ok_or_else(|| QueueError::NotFound(job.to_string()))?;
        job_state(&s).ok_or_else(|| corrupt(format!("state of job {job}")))
    }
}

impl Queue for SqliteQueue {
    fn enqueue(&self, job: &NewJob) -> Result<Enqueued, QueueError> {
        validate_job(job)?;
        let what = || format!("enqueue job {}", job.id);
        self.tx(what, |tx, now| {
            let inserted = tx
                .execute(
                    "INSERT INTO jobs (id, payload, state, created_ms, updated_ms)
                     VALUES (?1, ?2, 'queued', ?3, ?3) ON CONFLICT (id) DO NOTHING",
                    params![job.id, job.payload, sql_ms(now)],
                )
                .context(what)?;
            if inserted == 0 {
                return Ok(Enqueued::Existing);
            }
            Self::add_tasks(tx, &job.id, &job.tasks, now)?;
            let n = job.tasks.len().to_string();
            record(
                tx,
                Ev::job(&job.id, EventKind::Enqueued, Some(&n)),
                now,
            )?;
            tracing::info!(target: "service", job = %job.id, tasks = job.tasks.len(), "job enqueued");
            Ok(Enqueued::Created)
        })
    }

    fn claim(&self, worker: &str) -> Result<Option<Lease>, QueueError> {
        check_worker(worker)?;
        let what = || format!("claim for worker {worker}");
        self.tx(what, |tx, now| {
            self.reap(tx, now)?;
            let row: Option<(String, u32, u32, u32, String, String)> = tx
                .query_row(
                    "SELECT t.job, t.idx, t.stage, t.attempt, t.payload, j.payload
                     FROM tasks t JOIN jobs j ON j.id = t.job
                     WHERE t.state = 'pending' AND t.available_ms <= ?1
                       AND j.state IN ('queued', 'running')
                       AND NOT EXISTS (SELECT 1 FROM tasks p WHERE p.job = t.job
                                       AND p.stage < t.stage AND p.state != 'done')
                     ORDER BY j.seq, t.stage, t.idx LIMIT 1",
                    params![sql_ms(now)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()
                .context(what)?;
            let Some((job, task, stage, attempt, payload, job_payload)) = row else {
                return Ok(None);
            };
            let attempt = attempt + 1;
            let until = now.saturating_add(ms(self.settings.lease));
            tx.execute(
                "UPDATE tasks SET state = 'leased', attempt = ?3, worker = ?4, lease_until_ms = ?5,
                                  progress = 0
                 WHERE job = ?1 AND idx = ?2",
                params![job, task, attempt, worker, sql_ms(until)],
            )
            .context(|| format!("lease job {job} task {task}"))?;
            tx.execute(
                "UPDATE jobs SET state = 'running', updated_ms = ?2 WHERE id = ?1 AND state = 'queued'",
                params![job, sql_ms(now)],
            )
            .context(|| format!("start job {job}"))?;
            record(
                tx,
                Ev::task(&job, task, attempt, EventKind::Claimed, worker),
                now,
            )?;
            tracing::debug!(target: "service", job, task, attempt, worker, "task claimed");
            Ok(Some(Lease {
                job,
                task,
                attempt,
                worker: worker.to_string(),
                stage,
                payload,
                job_payload,
                until_ms: until,
            }))
        })
    }

    fn renew(&self, lease: &Lease, progress: f64) -> Result<u64, QueueError> {
        let progress = clamp_progress(progress);
        let what = || format!("renew job {} task {}", lease.job, lease.task);
        self.tx(what, |tx, now| {
            self.fence(tx, lease)?;
            let until = now.saturating_add(ms(self.settings.lease));
            tx.execute(
                "UPDATE tasks SET lease_until_ms = ?3, progress = ?4 WHERE job = ?1 AND idx = ?2",
                params![lease.job, lease.task, sql_ms(until), progress],
            )
            .context(what)?;
            Ok(until)
        })
    }

    fn complete(&self, lease: &Lease, then: &[NewTask]) -> Result<JobState, QueueError> {
        validate_tasks(&lease.job, then)?;
        let what = || format!("complete job {} task {}", lease.job, lease.task);
        self.tx(what, |tx, now| {
            let cur = self.fence(tx, lease)?;
            tx.execute(
                "UPDATE tasks SET state = 'done', progress = 1, error = NULL
                 WHERE job = ?1 AND idx = ?2",
                params![lease.job, lease.task],
            )
            .context(what)?;
            record(
                tx,
                Ev::lease(lease, EventKind::Completed, &lease.worker),
                now,
            )?;
            if !then.is_empty() {
                if let Some(t) = then.iter().find(|t| t.stage < cur.stage) {
                    return Err(QueueError::Invalid {
                        job: lease.job.clone(),
                        reason: format!(
                            "task {} (stage {}) cannot add a task of the earlier stage {}",
                            lease.task, cur.stage, t.stage
                        ),
                    });
                }
                Self::add_tasks(tx, &lease.job, then, now)?;
                let n = then.len().to_string();
                record(tx, Ev::lease(lease, EventKind::TasksAdded, &n), now)?;
            }
            let left: u32 = tx
                .query_row(
                    "SELECT COUNT(*) FROM tasks WHERE job = ?1 AND state != 'done'",
                    params![lease.job],
                    |r| r.get(0),
                )
                .context(what)?;
            if left > 0 {
                return Ok(JobState::Running);
            }
            end_job(tx, &lease.job, JobState::Succeeded, None, now)?;
            tracing::info!(target: "service", job = %lease.job, "job succeeded");
            Ok(JobState::Succeeded)
        })
    }

    fn fail(&self, lease: &Lease, reason: &str) -> Result<JobState, QueueError> {
        let reason = clip(reason);
        let what = || format!("fail job {} task {}", lease.job, lease.task);
        self.tx(what, |tx, now| {
            let cur = self.fence(tx, lease)?;
            let round = lease.attempt.saturating_sub(cur.base);
            if round >= self.settings.max_attempts {
                self.last_failure(tx, &lease.job, lease.task, (lease.attempt, cur.base), reason, now)?;
                return Ok(JobState::Failed);
            }
            let at = now.saturating_add(ms(backoff(&self.settings, round)));
            tx.execute(
                "UPDATE tasks SET state = 'pending', available_ms = ?3, error = ?4
                 WHERE job = ?1 AND idx = ?2",
                params![lease.job, lease.task, sql_ms(at), reason],
            )
            .context(what)?;
            record(
                tx,
                Ev::lease(lease, EventKind::Retrying, reason),
                now,
            )?;
            tracing::info!(target: "service", job = %lease.job, task = lease.task, attempt = lease.attempt, "attempt failed, task will be retried: {reason}");
            Self::job_state_of(tx, &lease.job)
        })
    }

    fn fail_permanently(&self, lease: &Lease, reason: &str) -> Result<JobState, QueueError> {
        let why = clip(reason);
        let what = || format!("fail job {} task {}", lease.job, lease.task);
        self.tx(what, |tx, now| {
            self.fence(tx, lease)?;
            let reason = format!(
                "task {} failed permanently at attempt {}: {why}",
                lease.task, lease.attempt
            );
            self.fail_task_and_job(
                tx,
                &lease.job,
                lease.task,
                lease.attempt,
                why,
                clip(&reason),
                now,
            )?;
            Ok(JobState::Failed)
        })
    }

    fn cancel(&self, job: &str, reason: &str) -> Result<bool, QueueError> {
        let reason = clip(reason);
        let what = || format!("cancel job {job}");
        self.tx(what, |tx, now| {
            if Self::job_state_of(tx, job)?.is_final() {
                return Ok(false);
            }
            end_job(tx, job, JobState::Cancelled, Some(reason), now)?;
            tracing::info!(target: "service", job, "job cancelled: {reason}");
            Ok(true)
        })
    }

    fn retry(&self, job: &str) -> Result<bool, QueueError> {
        let what = || format!("retry job {job}");
        self.tx(what, |tx, now| {
            let state = Self::job_state_of(tx, job)?;
            if !matches!(state, JobState::Failed | JobState::Cancelled) {
                return Ok(false);
            }
            // The attempt numbers go on (a worker of the old round stays fenced out); only the
            // count against `max_attempts` starts again, from `base`.
            let n = tx
                .execute(
                    "UPDATE tasks SET state = 'pending', base = attempt, available_ms = ?2,
                                      progress = 0, error = NULL, lease_until_ms = NULL
                     WHERE job = ?1 AND state IN ('failed', 'cancelled')",
                    params![job, sql_ms(now)],
                )
                .context(what)?;
            tx.execute(
                "UPDATE jobs SET state = 'queued', reason = NULL, updated_ms = ?2 WHERE id = ?1",
                params![job, sql_ms(now)],
            )
            .context(what)?;
            let n = n.to_string();
            record(tx, Ev::job(job, EventKind::Retried, Some(&n)), now)?;
            tracing::info!(target: "service", job, tasks = %n, "job retried");
            Ok(true)
        })
    }

    fn job(&self, job: &str) -> Result<Option<JobInfo>, QueueError> {
        let what = || format!("read job {job}");
        self.tx(what, |tx, _| {
            let row: Option<(String, String, Option<String>, i64, i64)> = tx
                .query_row(
                    "SELECT payload, state, reason, created_ms, updated_ms FROM jobs WHERE id = ?1",
                    params![job],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .context(what)?;
            let Some((payload, state, reason, created, updated)) = row else {
                return Ok(None);
            };
            let mut st = tx
                .prepare(
                    "SELECT idx, stage, state, attempt - base, worker, progress, error FROM tasks
                     WHERE job = ?1 ORDER BY idx",
                )
                .context(what)?;
            let rows = st
                .query_map(params![job], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, f64>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                })
                .context(what)?;
            let mut tasks = Vec::new();
            for row in rows {
                let (index, stage, state, attempt, worker, progress, error) = row.context(what)?;
                tasks.push(TaskInfo {
                    index,
                    stage,
                    state: task_state(&state).ok_or_else(|| corrupt(what()))?,
                    attempt,
                    worker,
                    progress,
                    error,
                });
            }
            Ok(Some(JobInfo {
                id: job.to_string(),
                payload,
                state: job_state(&state).ok_or_else(|| corrupt(what()))?,
                reason,
                tasks,
                created_ms: from_sql_ms(created),
                updated_ms: from_sql_ms(updated),
            }))
        })
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>, QueueError> {
        let what = || format!("events after {after}");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.tx(what, |tx, _| {
            let mut st = tx
                .prepare(
                    "SELECT seq, job, task, attempt, kind, detail, at_ms FROM events
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .context(what)?;
            let rows = st
                .query_map(params![sql_ms(after), limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<u32>>(2)?,
                        r.get::<_, Option<u32>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .context(what)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, job, task, attempt, k, detail, at) = row.context(what)?;
                out.push(Event {
                    seq: from_sql_ms(seq),
                    job,
                    task,
                    attempt,
                    kind: kind(&k).ok_or_else(|| corrupt(what()))?,
                    detail,
                    at_ms: from_sql_ms(at),
                });
            }
            Ok(out)
        })
    }

    fn expire_leases(&self) -> Result<usize, QueueError> {
        self.tx(|| "expire leases".into(), |tx, now| self.reap(tx, now))
    }

    fn last_event_seq(&self) -> Result<u64, QueueError> {
        let what = || "newest event".to_string();
        self.tx(what, |tx, _| {
            let seq: i64 = tx
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                .context(what)?;
            Ok(from_sql_ms(seq))
        })
    }
}
