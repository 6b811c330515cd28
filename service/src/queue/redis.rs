//! Shared backend for clusters: the queue in Redis, with the same behaviour as [`super::sqlite`].
//!
//! Design. Each call is one Lua script (`redis.lua` + the operation), so every transition is
//! atomic. The hashes are the source of truth: `<prefix>job:<id>` (payload, state, reason,
//! times, `seq` = enqueue order, `n` = task count) and `<prefix>task:<id>:<index>` (stage,
//! payload, state, attempt, base, worker, lease deadline, retry time, progress, error, stream
//! entry). The claimable work is the stream `<prefix>tasks` with the consumer group `workers`:
//! an entry is added when a task becomes claimable (enqueued, added, retried job), a claim
//! delivers the new entries (XREADGROUP), picks from the group's pending entries list (PEL) the
//! first claimable task (job order, stage, index; stages gated, retry delays honoured) and
//! moves its entry to the claiming worker (XCLAIM, delivery count = attempt); completion, the
//! last failure and the job's end acknowledge and delete it (XACK, XDEL). Expired leases are
//! found in the PEL, but a lease's deadline is the hash's, on the queue's [`Clock`], not Redis's
//! idle time. Events: `<prefix>events` (sorted set by sequence number, from `<prefix>evseq`).
//! A claim reads every unfinished task's entry (fine for packaging jobs: tens of tasks each)
//! and drops the group's consumers (worker names) that hold no entry.
//!
//! Durability is Redis's (run it with `appendonly yes`). Connection failures are
//! [`QueueError::Storage`]; a failed connection is dropped and the next call reconnects.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{
    backoff, check_worker, clamp_progress, clip, validate_job, validate_tasks, Clock, Enqueued,
    Event, EventKind, JobInfo, JobState, Lease, NewJob, NewTask, Queue, QueueError, Settings,
    TaskInfo, TaskState,
};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "abr:q:";

/// Longest a connection attempt or a reply may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept for the next calls.
const POOL: usize = 4;

const COMMON: &str = include_str!("redis.lua");

const ENQUEUE: &str = r#"
local job = ARGV[3]
local jk = jkey(job)
if redis.call('EXISTS', jk) == 1 then return reply({ok = 'existing'}) end
local tasks = cjson.decode(ARGV[5])
local seq = redis.call('INCR', P .. 'jobseq')
redis.call('HSET', jk, 'payload', ARGV[4], 'state', 'queued', 'created', ms(NOW),
  'updated', ms(NOW), 'seq', ms(seq), 'n', '0')
add_tasks(job, tasks)
event(job, nil, nil, 'enqueued', ms(#tasks))
return reply({ok = 'created'})
"#;

const CLAIM: &str = r#"
local worker = ARGV[3]
ensure_group()
redis.call('XREADGROUP', 'GROUP', GROUP, worker, 'STREAMS', STREAM, '>')
local entries = pel()
local expired = reap(entries, tonumber(ARGV[5]))
local gates = {}
local best, bk
for _, e in ipairs(entries) do
  local t = redis.call('HMGET', tkey(e.job, e.idx), 'state', 'avail', 'stage')
  if t[1] == 'pending' and tonumber(t[2]) <= NOW then
    local j = redis.call('HMGET', jkey(e.job), 'state', 'seq', 'n')
    if j[1] == 'queued' or j[1] == 'running' then
      local gate = gates[e.job]
      if gate == nil then
        gate = math.huge
        for i = 0, tonumber(j[3]) - 1 do
          local s = redis.call('HMGET', tkey(e.job, i), 'state', 'stage')
          if s[1] ~= 'done' and tonumber(s[2]) < gate then gate = tonumber(s[2]) end
        end
        gates[e.job] = gate
      end
      local k = {tonumber(j[2]), tonumber(t[3]), e.idx}
      if k[2] <= gate and (best == nil or k[1] < bk[1] or (k[1] == bk[1] and
          (k[2] < bk[2] or (k[2] == bk[2] and k[3] < bk[3])))) then
        best, bk = e, k
      end
    end
  end
end
if best == nil then return reply({expired = expired}) end
local tk = tkey(best.job, best.idx)
local jk = jkey(best.job)
local attempt = tonumber(redis.call('HGET', tk, 'attempt')) + 1
local untl = NOW + tonumber(ARGV[4])
redis.call('HSET', tk, 'state', 'leased', 'attempt', ms(attempt), 'worker', worker,
  'until', ms(untl), 'progress', '0')
redis.call('XCLAIM', STREAM, GROUP, worker, 0, best.id, 'RETRYCOUNT', attempt, 'JUSTID')
if redis.call('HGET', jk, 'state') == 'queued' then
  redis.call('HSET', jk, 'state', 'running', 'updated', ms(NOW))
end
event(best.job, best.idx, attempt, 'claimed', worker)
-- Consumers (worker names) that hold no entry any more are dropped: workers come and go.
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', STREAM, GROUP)) do
  local h = {}
  for k = 1, #c, 2 do h[c[k]] = c[k + 1] end
  if h.pending == 0 and h.name ~= worker then
    redis.call('XGROUP', 'DELCONSUMER', STREAM, GROUP, h.name)
  end
end
local t = redis.call('HMGET', tk, 'stage', 'payload')
return reply({expired = expired, lease = {job = best.job, task = best.idx, attempt = attempt,
  stage = tonumber(t[1]), payload = t[2], job_payload = redis.call('HGET', jk, 'payload'),
  until_ms = ms(untl)}})
"#;

const RENEW: &str = r#"
local r = fence(ARGV[3], ARGV[4], tonumber(ARGV[5]))
if r then return reply(r) end
local untl = NOW + tonumber(ARGV[6])
redis.call('HSET', tkey(ARGV[3], ARGV[4]), 'until', ms(untl), 'progress', ARGV[7])
return reply({ok = ms(untl)})
"#;

const COMPLETE: &str = r#"
local job, idx = ARGV[3], ARGV[4]
local r, cur = fence(job, idx, tonumber(ARGV[5]))
if r then return reply(r) end
local more = cjson.decode(ARGV[7])
for _, t in ipairs(more) do
  if t.stage < cur.stage then
    return reply({err = 'invalid', reason = 'task ' .. idx .. ' (stage ' .. ms(cur.stage) ..
      ') cannot add a task of the earlier stage ' .. ms(t.stage)})
  end
end
local tk = tkey(job, idx)
redis.call('HSET', tk, 'state', 'done', 'progress', '1')
redis.call('HDEL', tk, 'error')
ack(tk)
event(job, idx, ARGV[5], 'completed', ARGV[6])
if #more > 0 then
  add_tasks(job, more)
  event(job, idx, ARGV[5], 'tasks_added', ms(#more))
end
local n = tonumber(redis.call('HGET', jkey(job), 'n'))
for i = 0, n - 1 do
  if redis.call('HGET', tkey(job, i), 'state') ~= 'done' then return reply({ok = 'running'}) end
end
end_job(job, 'succeeded', nil)
return reply({ok = 'succeeded'})
"#;

const FAIL: &str = r#"
local job, idx, attempt = ARGV[3], ARGV[4], tonumber(ARGV[5])
local r, cur = fence(job, idx, attempt)
if r then return reply(r) end
local why, max = ARGV[6], tonumber(ARGV[7])
if ARGV[9] ~= '' then
  fail_task_and_job(job, idx, attempt, why, ARGV[9])
  return reply({ok = 'failed'})
end
local round = attempt - cur.base
if round >= max then
  last_failure(job, idx, attempt, cur.base, max, why)
  return reply({ok = 'failed'})
end
local delay = tonumber(ARGV[8]) * 2 ^ math.min(math.max(round - 1, 0), 6)
redis.call('HSET', tkey(job, idx), 'state', 'pending', 'avail', ms(NOW + delay), 'error', why)
event(job, idx, attempt, 'retrying', why)
return reply({ok = redis.call('HGET', jkey(job), 'state')})
"#;

const CANCEL: &str = r#"
local js = redis.call('HGET', jkey(ARGV[3]), 'state')
if not js then return reply({err = 'not_found'}) end
if is_final(js) then return reply({ok = false}) end
end_job(ARGV[3], 'cancelled', ARGV[4])
return reply({ok = true})
"#;

const RETRY: &str = r#"
local job = ARGV[3]
local jk = jkey(job)
local js = redis.call('HGET', jk, 'state')
if not js then return reply({err = 'not_found'}) end
if js ~= 'failed' and js ~= 'cancelled' then return reply({ok = false}) end
ensure_group()
local back = 0
for i = 0, tonumber(redis.call('HGET', jk, 'n')) - 1 do
  local tk = tkey(job, i)
  local t = redis.call('HMGET', tk, 'state', 'attempt')
  if t[1] == 'failed' or t[1] == 'cancelled' then
    ack(tk)
    local id = redis.call('XADD', STREAM, '*', 'job', job, 'idx', ms(i))
    redis.call('HSET', tk, 'state', 'pending', 'base', t[2], 'avail', ms(NOW),
      'progress', '0', 'entry', id)
    redis.call('HDEL', tk, 'error', 'until')
    back = back + 1
  end
end
redis.call('HSET', jk, 'state', 'queued', 'updated', ms(NOW))
redis.call('HDEL', jk, 'reason')
event(job, nil, nil, 'retried', ms(back))
return reply({ok = true})
"#;

const JOB: &str = r#"
local j = redis.call('HMGET', jkey(ARGV[3]), 'payload', 'state', 'reason', 'created', 'updated', 'n')
if not j[1] then return reply({found = false}) end
local tasks = {}
for i = 0, tonumber(j[6]) - 1 do
  local t = redis.call('HMGET', tkey(ARGV[3], i), 'stage', 'state', 'attempt', 'base', 'worker',
    'progress', 'error')
  tasks[#tasks + 1] = {index = i, stage = tonumber(t[1]), state = t[2],
    attempt = tonumber(t[3]) - tonumber(t[4]), worker = t[5] or nil, progress = t[6],
    error = t[7] or nil}
end
return reply({found = true, job = {payload = j[1], state = j[2], reason = j[3] or nil,
  created = j[4], updated = j[5], tasks = tasks}})
"#;

const EXPIRE: &str = r#"
ensure_group()
return reply({expired = reap(pel(), tonumber(ARGV[3]))})
"#;

/// The scripts, each the shared part followed by one operation.
struct Scripts {
    enqueue: redis::Script,
    claim: redis::Script,
    renew: redis::Script,
    complete: redis::Script,
    fail: redis::Script,
    cancel: redis::Script,
    retry: redis::Script,
    job: redis::Script,
    expire: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        let s = |op: &str| redis::Script::new(&format!("{COMMON}\n{op}"));
        Scripts {
            enqueue: s(ENQUEUE),
            claim: s(CLAIM),
            renew: s(RENEW),
            complete: s(COMPLETE),
            fail: s(FAIL),
            cancel: s(CANCEL),
            retry: s(RETRY),
            job: s(JOB),
            expire: s(EXPIRE),
        }
    }
}

/// The Redis queue.
pub struct RedisQueue {
    client: redis::Client,
    pool: Mutex<Vec<redis::Connection>>,
    prefix: String,
    settings: Settings,
    clock: Arc<dyn Clock>,
    scripts: Scripts,
}

/// A number sent as a JSON number or (for Unix ms, beyond what Lua prints exactly) a string.
fn de_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(u64),
        Float(f64),
        Text(String),
    }
    match Num::deserialize(d)? {
        Num::Int(n) => Ok(n),
        Num::Float(f) if f >= 0.0 => Ok(f as u64),
        Num::Text(s) => s.parse().map_err(serde::de::Error::custom),
        Num::Float(f) => Err(serde::de::Error::custom(format!("negative number {f}"))),
    }
}

/// A list that Lua's cjson sends as `{}` when empty.
fn de_list<'de, D: serde::Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Array(_) => serde_json::from_value(v).map_err(serde::de::Error::custom),
        _ => Ok(Vec::new()),
    }
}

/// A refusal or the outcome of a script.
#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    err: Option<String>,
    #[serde(default)]
    ok: Option<serde_json::Value>,
    #[serde(default)]
    current: Option<u32>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, deserialize_with = "de_list")]
    expired: Vec<Expired>,
    #[serde(default)]
    lease: Option<RawLease>,
    #[serde(default)]
    job: Option<RawJob>,
    #[serde(default)]
    found: bool,
}

#[derive(Deserialize)]
struct Expired {
    job: String,
    task: u32,
    attempt: u32,
    worker: String,
}

#[derive(Deserialize)]
struct RawLease {
    job: String,
    task: u32,
    attempt: u32,
    stage: u32,
    payload: String,
    job_payload: String,
    #[serde(deserialize_with = "de_u64")]
    until_ms: u64,
}

#[derive(Deserialize)]
struct RawJob {
    payload: String,
    state: JobState,
    #[serde(default)]
    reason: Option<String>,
    #[serde(deserialize_with = "de_u64")]
    created: u64,
    #[serde(deserialize_with = "de_u64")]
    updated: u64,
    #[serde(deserialize_with = "de_list")]
    tasks: Vec<RawTask>,
}

#[derive(Deserialize)]
struct RawTask {
    index: u32,
    stage: u32,
    state: TaskState,
    attempt: u32,
    #[serde(default)]
    worker: Option<String>,
    progress: String,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(deserialize_with = "de_u64")]
    seq: u64,
    job: String,
    #[serde(default)]
    task: Option<u32>,
    #[serde(default)]
    attempt: Option<u32>,
    kind: EventKind,
    #[serde(default)]
    detail: Option<String>,
    #[serde(deserialize_with = "de_u64")]
    at_ms: u64,
}

#[derive(serde::Serialize)]
struct TaskArg<'a> {
    stage: u32,
    payload: &'a str,
}

fn storage(context: String, e: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError::Storage {
        context,
        source: Box::new(e),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn tasks_json(tasks: &[NewTask]) -> String {
    let v: Vec<TaskArg> = tasks
        .iter()
        .map(|t| TaskArg {
            stage: t.stage,
            payload: &t.payload,
        })
        .collect();
    // Serializing strings and numbers cannot fail.
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

impl RedisQueue {
    /// A queue in the Redis at `url` under `prefix` (e.g. [`DEFAULT_PREFIX`]); connects
    /// lazily (a bad URL is an error, an unreachable server only fails the calls).
    pub fn open(
        url: &str,
        prefix: &str,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url)
            .map_err(|e| storage(format!("redis URL {}", redact(url)), e))?;
        Ok(RedisQueue {
            client,
            pool: Mutex::new(Vec::new()),
            prefix: prefix.to_string(),
            settings,
            clock,
            scripts: Scripts::new(),
        })
    }

    /// A new connection with the call timeouts.
    fn connect(&self, what: &dyn Fn() -> String) -> Result<redis::Connection, QueueError> {
        let c = self
            .client
            .get_connection_with_timeout(CALL_TIMEOUT)
            .map_err(|e| storage(format!("{} (connect to redis)", what()), e))?;
        c.set_read_timeout(Some(CALL_TIMEOUT))
            .and_then(|_| c.set_write_timeout(Some(CALL_TIMEOUT)))
            .map_err(|e| storage(what(), e))?;
        Ok(c)
    }

    /// Runs `f` on a pooled connection (a new one when none is idle). A link that broke drops
    /// every idle connection (Redis restarted: they are all dead); when it was an idle one
    /// that broke, `f` runs once more on a new connection (it had not reached the server that
    /// runs now; in the narrow case that the old one ran it and died before answering, the
    /// attempt fencing refuses the repeat).
    fn with_conn<T>(
        &self,
        what: &dyn Fn() -> String,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, QueueError> {
        let idle = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let pooled = idle.is_some();
        let mut conn = match idle {
            Some(c) => c,
            None => self.connect(what)?,
        };
        let mut r = f(&mut conn);
        if let Err(e) = &r {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                if pooled && !e.is_timeout() {
                    tracing::debug!(target: "service", "job queue: idle redis connection broken ({e}), reconnecting");
                    conn = self.connect(what)?;
                    r = f(&mut conn);
                }
            }
        }
        match r {
            Ok(v) => {
                let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < POOL {
                    pool.push(conn);
                }
                Ok(v)
            }
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
                }
                tracing::warn!(target: "service", "job queue: redis call failed ({}): {e}", what());
                Err(storage(format!("{} (redis)", what()), e))
            }
        }
    }

    /// Runs `script` with the prefix, the queue clock's now and `args`; decodes its reply.
    fn run(
        &self,
        what: &dyn Fn() -> String,
        script: &redis::Script,
        args: &[String],
    ) -> Result<Reply, QueueError> {
        let now = self.clock.now_ms();
        let json: String = self.with_conn(what, |c| {
            let mut inv = script.prepare_invoke();
            inv.arg(&self.prefix).arg(now);
            for a in args {
                inv.arg(a);
            }
            inv.invoke(c)
        })?;
        let r: Reply = serde_json::from_str(&json).map_err(|e| storage(what(), e))?;
        for x in &r.expired {
            tracing::warn!(target: "service", job = %x.job, task = x.task, attempt = x.attempt, worker = %x.worker, "lease expired: task reclaimed");
        }
        Ok(r)
    }

    /// `r`'s refusal as the error of a call on `lease`'s attempt.
    fn refusal(&self, lease: &Lease, r: &Reply, what: &dyn Fn() -> String) -> Option<QueueError> {
        let state = r.state.as_deref().unwrap_or("");
        Some(match r.err.as_deref()? {
            "not_found" => QueueError::NotFound(lease.job.clone()),
            "finished" => QueueError::Finished {
                job: lease.job.clone(),
                task: lease.task,
                attempt: lease.attempt,
                state: parse_state(state).unwrap_or(JobState::Cancelled),
            },
            "stale" => QueueError::Stale {
                job: lease.job.clone(),
                task: lease.task,
                attempt: lease.attempt,
                current: r.current.unwrap_or(0),
                state: parse_task_state(state).unwrap_or(TaskState::Pending),
            },
            "invalid" => QueueError::Invalid {
                job: lease.job.clone(),
                reason: r.reason.clone().unwrap_or_default(),
            },
            other => storage(what(), Unexpected(format!("refusal {other:?}"))),
        })
    }

    fn lease_args(lease: &Lease) -> Vec<String> {
        vec![
            lease.job.clone(),
            lease.task.to_string(),
            lease.attempt.to_string(),
        ]
    }

    /// The job state a script answered with.
    fn answered_state(r: &Reply, what: &dyn Fn() -> String) -> Result<JobState, QueueError> {
        r.ok.as_ref()
            .and_then(|v| v.as_str())
            .and_then(parse_state)
            .ok_or_else(|| storage(what(), Unexpected("no job state in the reply".into())))
    }

    /// Records a failed attempt; `permanent` is the job's reason when no retry can fix it.
    fn fail_attempt(
        &self,
        lease: &Lease,
        why: &str,
        permanent: Option<&str>,
    ) -> Result<JobState, QueueError> {
        let what = || format!("fail job {} task {}", lease.job, lease.task);
        let mut args = Self::lease_args(lease);
        args.extend([
            why.to_string(),
            self.settings.max_attempts.to_string(),
            ms(backoff(&self.settings, 1)).to_string(),
            permanent.unwrap_or("").to_string(),
        ]);
        let r = self.run(&what, &self.scripts.fail, &args)?;
        if let Some(e) = self.refusal(lease, &r, &what) {
            return Err(e);
        }
        let state = Self::answered_state(&r, &what)?;
        match state {
            JobState::Failed => {
                tracing::warn!(target: "service", job = %lease.job, task = lease.task, attempt = lease.attempt, "job failed: {why}")
            }
            _ => {
                tracing::info!(target: "service", job = %lease.job, task = lease.task, attempt = lease.attempt, "attempt failed, task will be retried: {why}")
            }
        }
        Ok(state)
    }

    /// The job-level refusal of `r` (`not_found`) for `job`.
    fn job_refusal(job: &str, r: &Reply) -> Result<(), QueueError> {
        match r.err.as_deref() {
            Some("not_found") => Err(QueueError::NotFound(job.to_string())),
            _ => Ok(()),
        }
    }
}

/// A reply the scripts never give.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from the queue scripts: {0}")]
struct Unexpected(String);

fn parse_state(s: &str) -> Option<JobState> {
    serde_json::from_value(serde_json::Value::String(s.into())).ok()
}

fn parse_task_state(s: &str) -> Option<TaskState> {
    serde_json::from_value(serde_json::Value::String(s.into())).ok()
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Queue for RedisQueue {
    fn enqueue(&self, job: &NewJob) -> Result<Enqueued, QueueError> {
        validate_job(job)?;
        let what = || format!("enqueue job {}", job.id);
        let args = [job.id.clone(), job.payload.clone(), tasks_json(&job.tasks)];
        let r = self.run(&what, &self.scripts.enqueue, &args)?;
        match r.ok.as_ref().and_then(|v| v.as_str()) {
            Some("created") => {
                tracing::info!(target: "service", job = %job.id, tasks = job.tasks.len(), "job enqueued");
                Ok(Enqueued::Created)
            }
            Some("existing") => Ok(Enqueued::Existing),
            _ => Err(storage(what(), Unexpected("enqueue".into()))),
        }
    }

    fn claim(&self, worker: &str) -> Result<Option<Lease>, QueueError> {
        check_worker(worker)?;
        let what = || format!("claim for worker {worker}");
        let args = [
            worker.to_string(),
            ms(self.settings.lease).to_string(),
            self.settings.max_attempts.to_string(),
        ];
        let r = self.run(&what, &self.scripts.claim, &args)?;
        Ok(r.lease.map(|l| {
            tracing::debug!(target: "service", job = %l.job, task = l.task, attempt = l.attempt, worker, "task claimed");
            Lease {
                job: l.job,
                task: l.task,
                attempt: l.attempt,
                worker: worker.to_string(),
                stage: l.stage,
                payload: l.payload,
                job_payload: l.job_payload,
                until_ms: l.until_ms,
            }
        }))
    }

    fn renew(&self, lease: &Lease, progress: f64) -> Result<u64, QueueError> {
        let progress = clamp_progress(progress);
        let what = || format!("renew job {} task {}", lease.job, lease.task);
        let mut args = Self::lease_args(lease);
        args.extend([ms(self.settings.lease).to_string(), progress.to_string()]);
        let r = self.run(&what, &self.scripts.renew, &args)?;
        if let Some(e) = self.refusal(lease, &r, &what) {
            return Err(e);
        }
        r.ok.as_ref()
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| storage(what(), Unexpected("no deadline in the reply".into())))
    }

    fn complete(&self, lease: &Lease, then: &[NewTask]) -> Result<JobState, QueueError> {
        validate_tasks(&lease.job, then)?;
        let what = || format!("complete job {} task {}", lease.job, lease.task);
        let mut args = Self::lease_args(lease);
        args.extend([lease.worker.clone(), tasks_json(then)]);
        let r = self.run(&what, &self.scripts.complete, &args)?;
        if let Some(e) = self.refusal(lease, &r, &what) {
            return Err(e);
        }
        let state = Self::answered_state(&r, &what)?;
        if state == JobState::Succeeded {
            tracing::info!(target: "service", job = %lease.job, "job succeeded");
        }
        Ok(state)
    }

    fn fail(&self, lease: &Lease, reason: &str) -> Result<JobState, QueueError> {
        self.fail_attempt(lease, clip(reason), None)
    }

    fn fail_permanently(&self, lease: &Lease, reason: &str) -> Result<JobState, QueueError> {
        let why = clip(reason);
        let reason = format!(
            "task {} failed permanently at attempt {}: {why}",
            lease.task, lease.attempt
        );
        self.fail_attempt(lease, why, Some(clip(&reason)))
    }

    fn cancel(&self, job: &str, reason: &str) -> Result<bool, QueueError> {
        let reason = clip(reason);
        let what = || format!("cancel job {job}");
        let r = self.run(
            &what,
            &self.scripts.cancel,
            &[job.to_string(), reason.to_string()],
        )?;
        Self::job_refusal(job, &r)?;
        let done = r.ok.as_ref().and_then(|v| v.as_bool()).unwrap_or(false);
        if done {
            tracing::info!(target: "service", job, "job cancelled: {reason}");
        }
        Ok(done)
    }

    fn retry(&self, job: &str) -> Result<bool, QueueError> {
        let what = || format!("retry job {job}");
        let r = self.run(&what, &self.scripts.retry, &[job.to_string()])?;
        Self::job_refusal(job, &r)?;
        let done = r.ok.as_ref().and_then(|v| v.as_bool()).unwrap_or(false);
        if done {
            tracing::info!(target: "service", job, "job retried");
        }
        Ok(done)
    }

    fn job(&self, job: &str) -> Result<Option<JobInfo>, QueueError> {
        let what = || format!("read job {job}");
        let r = self.run(&what, &self.scripts.job, &[job.to_string()])?;
        let Some(j) = r.job.filter(|_| r.found) else {
            return Ok(None);
        };
        let mut tasks = Vec::with_capacity(j.tasks.len());
        for t in j.tasks {
            let progress = t.progress.parse().map_err(|e| storage(what(), e))?;
            tasks.push(TaskInfo {
                index: t.index,
                stage: t.stage,
                state: t.state,
                attempt: t.attempt,
                worker: t.worker,
                progress,
                error: t.error,
            });
        }
        Ok(Some(JobInfo {
            id: job.to_string(),
            payload: j.payload,
            state: j.state,
            reason: j.reason,
            tasks,
            created_ms: j.created,
            updated_ms: j.updated,
        }))
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>, QueueError> {
        let what = || format!("events after {after}");
        let key = format!("{}events", self.prefix);
        let members: Vec<String> = self.with_conn(&what, |c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(format!("({after}"))
                .arg("+inf")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query(c)
        })?;
        members
            .iter()
            .map(|m| {
                let e: RawEvent = serde_json::from_str(m).map_err(|e| storage(what(), e))?;
                Ok(Event {
                    seq: e.seq,
                    job: e.job,
                    task: e.task,
                    attempt: e.attempt,
                    kind: e.kind,
                    detail: e.detail,
                    at_ms: e.at_ms,
                })
            })
            .collect()
    }

    fn last_event_seq(&self) -> Result<u64, QueueError> {
        let what = || "newest event".to_string();
        let key = format!("{}evseq", self.prefix);
        let seq: Option<u64> = self.with_conn(&what, |c| redis::cmd("GET").arg(&key).query(c))?;
        Ok(seq.unwrap_or(0))
    }

    fn expire_leases(&self) -> Result<usize, QueueError> {
        let what = || "expire leases".to_string();
        let r = self.run(
            &what,
            &self.scripts.expire,
            &[self.settings.max_attempts.to_string()],
        )?;
        Ok(r.expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://:secret@h:6379/0"), "redis://…@h:6379/0");
        assert_eq!(redact("redis://h:6379/"), "redis://h:6379/");
    }
}
