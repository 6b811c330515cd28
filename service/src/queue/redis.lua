-- Shared part of every RedisQueue script (service/src/queue/redis.rs).
-- ARGV[1] = key prefix, ARGV[2] = now (queue clock, Unix ms); the operation's arguments follow.
-- Replies are JSON (cjson) so that strings, numbers and absent values survive as they are.
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local STREAM = P .. 'tasks'
local GROUP = 'workers'

local function ms(x) return string.format('%d', x) end
local function jkey(j) return P .. 'job:' .. j end
local function tkey(j, i) return P .. 'task:' .. j .. ':' .. i end
local function is_final(s) return s == 'succeeded' or s == 'failed' or s == 'cancelled' end
local function reply(t) return cjson.encode(t) end

local function ensure_group()
  if redis.call('EXISTS', STREAM) == 0 then
    redis.call('XGROUP', 'CREATE', STREAM, GROUP, '0', 'MKSTREAM')
  end
end

-- One transition's event: sequence number from a counter, JSON member of a sorted set.
local function event(job, task, attempt, kind, detail)
  local seq = redis.call('INCR', P .. 'evseq')
  local e = {seq = seq, job = job, kind = kind, at_ms = NOW}
  if task ~= nil then e.task = tonumber(task) end
  if attempt ~= nil then e.attempt = tonumber(attempt) end
  if detail ~= nil and detail ~= false then e.detail = detail end
  redis.call('ZADD', P .. 'events', seq, cjson.encode(e))
end

-- Adds tasks (a list of {stage, payload}) after the job's last one, each with a stream entry.
local function add_tasks(job, tasks)
  ensure_group()
  local jk = jkey(job)
  local n = tonumber(redis.call('HGET', jk, 'n') or '0')
  for _, t in ipairs(tasks) do
    local id = redis.call('XADD', STREAM, '*', 'job', job, 'idx', ms(n))
    redis.call('HSET', tkey(job, n), 'stage', ms(t.stage), 'payload', t.payload,
      'state', 'pending', 'attempt', '0', 'base', '0', 'avail', ms(NOW), 'progress', '0',
      'entry', id)
    n = n + 1
  end
  redis.call('HSET', jk, 'n', ms(n))
end

-- The task's stream entry is done with: acknowledged and deleted.
local function ack(tk)
  local id = redis.call('HGET', tk, 'entry')
  if id then
    redis.call('XACK', STREAM, GROUP, id)
    redis.call('XDEL', STREAM, id)
    redis.call('HDEL', tk, 'entry')
  end
end

-- Ends a job as failed, cancelled or succeeded: unfinished tasks cancelled, event recorded.
local function end_job(job, state, reason)
  local jk = jkey(job)
  redis.call('HSET', jk, 'state', state, 'updated', ms(NOW))
  if reason then redis.call('HSET', jk, 'reason', reason) else redis.call('HDEL', jk, 'reason') end
  local n = tonumber(redis.call('HGET', jk, 'n') or '0')
  for i = 0, n - 1 do
    local tk = tkey(job, i)
    local s = redis.call('HGET', tk, 'state')
    if s == 'pending' or s == 'leased' then
      redis.call('HSET', tk, 'state', 'cancelled')
      ack(tk)
    end
  end
  local kind = ({failed = 'job_failed', cancelled = 'cancelled', succeeded = 'job_succeeded'})[state]
  event(job, nil, nil, kind, reason)
end

-- The lease (job, idx, attempt) checked against the task: nil and the task's fields when it
-- is the current attempt of a job that goes on, else a refusal to reply with.
local function fence(job, idx, attempt)
  local tk = tkey(job, idx)
  local t = redis.call('HMGET', tk, 'state', 'attempt', 'stage', 'base')
  local js = redis.call('HGET', jkey(job), 'state')
  if not t[1] or not js then return {err = 'not_found'} end
  local cur = tonumber(t[2])
  if cur == attempt and is_final(js) then return {err = 'finished', state = js} end
  if cur ~= attempt or t[1] ~= 'leased' then
    return {err = 'stale', current = cur, state = t[1]}
  end
  return nil, {stage = tonumber(t[3]), base = tonumber(t[4])}
end

-- Task idx fails at attempt with why, and its job with reason.
local function fail_task_and_job(job, idx, attempt, why, reason)
  local tk = tkey(job, idx)
  redis.call('HSET', tk, 'state', 'failed', 'error', why)
  ack(tk)
  event(job, idx, attempt, 'task_failed', why)
  end_job(job, 'failed', reason)
end

local function last_failure(job, idx, attempt, base, max, why)
  local reason = 'task ' .. idx .. ' failed ' .. ms(attempt - base) .. ' of ' .. ms(max) ..
    ' attempts: ' .. why
  fail_task_and_job(job, idx, attempt, why, reason)
end

-- Every delivered, unacknowledged entry of the group (the tasks that were claimable or
-- claimed at least once and are not finished), as {entry id, job, idx}.
local function pel()
  local out = {}
  local start = '-'
  while true do
    local page = redis.call('XPENDING', STREAM, GROUP, start, '+', 1000)
    if #page == 0 then break end
    for _, p in ipairs(page) do
      local e = redis.call('XRANGE', STREAM, p[1], p[1])
      if #e == 1 then
        local f = e[1][2]
        local h = {}
        for k = 1, #f, 2 do h[f[k]] = f[k + 1] end
        out[#out + 1] = {id = p[1], job = h.job, idx = tonumber(h.idx)}
      end
    end
    if #page < 1000 then break end
    start = '(' .. page[#page][1]
  end
  return out
end

-- Reclaims the leases the queue clock says passed (the hash's deadline decides, not Redis's
-- idle time): retried, or failing their job at the last attempt. Returns them.
local function reap(entries, max)
  local expired = {}
  for _, e in ipairs(entries) do
    local tk = tkey(e.job, e.idx)
    local t = redis.call('HMGET', tk, 'state', 'until', 'attempt', 'worker', 'base')
    local js = redis.call('HGET', jkey(e.job), 'state')
    if t[1] == 'leased' and tonumber(t[2]) <= NOW and not is_final(js) then
      local attempt = tonumber(t[3])
      local base = tonumber(t[5])
      local worker = t[4] or '?'
      local why = 'lease expired (worker ' .. worker .. ')'
      event(e.job, e.idx, attempt, 'lease_expired', worker)
      if attempt - base >= max then
        last_failure(e.job, e.idx, attempt, base, max, why)
      else
        redis.call('HSET', tk, 'state', 'pending', 'avail', ms(NOW), 'error', why)
      end
      expired[#expired + 1] = {job = e.job, task = e.idx, attempt = attempt, worker = worker}
    end
  end
  return expired
end
