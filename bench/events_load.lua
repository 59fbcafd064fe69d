-- wrk script for bench/events.py: POST /api/v1/events with batch bodies generated up front, paced.
--
-- Arguments (after wrk's `--`): BODIES ANSWERS THREADS RATE
--   BODIES   a file with one JSON body (a list of events, unique ids) per line; thread t of THREADS
--            sends lines t, t + THREADS, t + 2 * THREADS, ... in order (each body at most once
--            until the file is exhausted, then from the start again: the server answers duplicates)
--   ANSWERS  each thread appends "<status> <response body>" per answer to ANSWERS.<t>, so the bench
--            counts accepted ids exactly and retries the bodies sent but never answered
--   RATE     requests/s per thread: delay() holds each next request until its slot on a fixed
--            schedule (start + k / RATE), so the offered rate does not drift with latency
-- done() prints one line `WRKJSON {...}`: wrk's latency percentiles (microseconds, from the moment
-- a request is written to its answer) and per-status counts; `sent` lists requests per thread.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } pw_timespec;
  int clock_gettime(int clk_id, pw_timespec *tp);
]]
local clock = ffi.new("pw_timespec")

local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000.0 + tonumber(clock.tv_nsec) / 1e6
end

local threads = {}

function setup(thread) -- each thread numbers itself (1, 2, ...) to pick its share of the bodies
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  local n_threads = tonumber(args[3])
  interval_ms = 1000.0 / tonumber(args[4])
  bodies = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % n_threads == tid - 1 then bodies[#bodies + 1] = line end
    i = i + 1
  end
  out = io.open(args[2] .. "." .. tid, "w")
  wrk.method = "POST"
  wrk.path = "/api/v1/events"
  wrk.headers["Content-Type"] = "application/json"
  sent, slots, s2xx, s422, s503, s5xx, other = 0, 0, 0, 0, 0, 0, 0
  start_ms = nil
end

function delay()
  local t = now_ms()
  if start_ms == nil then start_ms = t end
  local due = start_ms + slots * interval_ms
  slots = slots + 1
  if due <= t then return 0 end
  return math.floor(due - t)
end

function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[(sent - 1) % #bodies + 1])
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    s2xx = s2xx + 1
  elseif status == 422 then
    s422 = s422 + 1
  elseif status == 503 then
    s503 = s503 + 1
  elseif status >= 500 then
    s5xx = s5xx + 1
  else
    other = other + 1
  end
  out:write(status, " ", body, "\n")
  out:flush()
end

function done(summary, latency, requests)
  local t = {s2xx = 0, s422 = 0, s503 = 0, s5xx = 0, other = 0}
  local sent_per_thread = {}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
    sent_per_thread[#sent_per_thread + 1] = tostring(th:get("sent") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"non2xx":%d,' ..
    '"s2xx":%d,"s422":%d,"s503":%d,"s5xx":%d,"other":%d,"sent":[%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect, e.read, e.write, e.timeout, e.status,
    t.s2xx, t.s422, t.s503, t.s5xx, t.other, table.concat(sent_per_thread, ",")))
end
