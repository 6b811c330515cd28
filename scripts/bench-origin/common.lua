-- Shared by the wrk mix scripts of scripts/bench-origin.sh (loaded with dofile; the directory
-- comes from $BENCH_LUA_DIR). A mix script defines, before loading this file:
--   mix_init(args)          per-thread set-up from the arguments after `--`
--   mix_request()           returns (path, headers-table or nil) of the next request
--   mix_check(status, headers, body)  returns true, or false and a short reason
--
-- Each wrk thread is seeded deterministically from its number, so every server receives the
-- same sequence of requests per thread.
--
-- With BENCH_CHECK=1 a `response` hook checks every response (status and body length for the
-- mix). wrk buffers each body to hand it to Lua, which costs the client CPU (a 2 MB copy per
-- segment), so the script turns it on for the warm-up runs and leaves the measured runs without
-- it; those are checked by wrk's own counters (socket errors, status > 399) and by bytes per
-- response (see report.py).
--
-- BENCH_DELAY_MS paces the requests (see below).
--
-- done() prints one machine-readable line:
--   BENCH requests=… bytes=… duration_us=… p50_us=… p99_us=… … checked=… bad=… first_bad=…

local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

checked = 0
bad = 0
first_bad = "-"

function init(args)
  math.randomseed(7919 * (tid or 1) + 17)
  -- LuaJIT's first values after seeding are poorly mixed: discard a few.
  for _ = 1, 8 do math.random() end
  local a = {}
  for i = 1, #args do a[i] = args[i] end
  mix_init(a)
end

function request()
  local path, headers = mix_request()
  return wrk.format("GET", path, headers)
end

-- Case-insensitive header lookup (nginx sends Content-Range, actix content-range).
function header(headers, name)
  name = string.lower(name)
  for k, v in pairs(headers) do
    if string.lower(k) == name then return v end
  end
  return nil
end

-- With BENCH_DELAY_MS > 0 every connection waits that long before each request (wrk's `delay`
-- hook): a paced load below both servers' capacity, so that latency is compared at the same
-- request rate rather than with the client saturated.
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if pace > 0 then
  function delay()
    return pace
  end
end

if os.getenv("BENCH_CHECK") == "1" then
  function response(status, headers, body)
    checked = checked + 1
    local ok, why = mix_check(status, headers, body)
    if not ok then
      bad = bad + 1
      if first_bad == "-" then
        first_bad = string.gsub(tostring(why), "%s", "_")
      end
    end
  end
end

function done(summary, latency, requests)
  local c, b, why = 0, 0, "-"
  for _, t in ipairs(threads) do
    c = c + (t:get("checked") or 0)
    b = b + (t:get("bad") or 0)
    local w = t:get("first_bad")
    if why == "-" and w and w ~= "-" then why = w end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.0f max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d checked=%d bad=%d first_bad=%s\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, c, b, why))
end
