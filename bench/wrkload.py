"""Load from wrk (C, its own process: it does not share the server's interpreter) for bench/serving.py.

``run_wrk(base, token, n_profiles, seconds, connections, rate)`` runs ``wrk`` with a Lua script
that asks for random profiles (``unknown_share`` of them never seen, so fallbacks are in the mix),
``row_count=40``, with a bearer token, and paces each connection with ``delay()`` so the offered
rate is about ``rate`` requests/s (0: as fast as possible). The script's ``response()`` counts 5xx,
personalized pages among known profiles, degraded and empty pages; ``done()`` prints one JSON line
with wrk's latency percentiles (microseconds, corrected by wrk for the whole run) and the counts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

LUA = r"""
local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  n_profiles = tonumber(args[1])
  unknown_share = tonumber(args[2])
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  delay_ms = tonumber(args[4])
  math.randomseed(tonumber(args[5]) + tid * 7919)
  ok, s5xx, s503, s4xx, personalized, unknown, degraded, empty, overloaded = 0, 0, 0, 0, 0, 0, 0, 0, 0
end

function request()
  local pid
  if math.random() < unknown_share then
    pid = 1000000000 + math.random(1, 1000000)
  else
    pid = math.random(1, n_profiles)
  end
  return wrk.format("GET", "/api/v1/pathways?profile_id=" .. pid .. "&row_count=40")
end

function delay()
  if delay_ms <= 0 then return 0 end
  return math.floor(math.random() * 2 * delay_ms)
end

function response(status, headers, body)
  if status == 503 then
    s503 = s503 + 1
  elseif status >= 500 then
    s5xx = s5xx + 1
  elseif status >= 400 then
    s4xx = s4xx + 1
  elseif status == 200 then
    ok = ok + 1
    -- Only the envelope before "rows" is searched: a search that finds nothing would otherwise
    -- scan the whole ~200 KB page, several times per response, on the machine under test.
    local rows_at = string.find(body, '"rows":[', 1, true) or #body
    local head = string.sub(body, 1, rows_at + 8)
    if string.find(head, '"reason":"unknown profile"', 1, true) then
      unknown = unknown + 1
    elseif string.find(head, '"personalized":true', 1, true) then
      personalized = personalized + 1
    end
    if not string.find(head, '"degraded":[]', 1, true) then degraded = degraded + 1 end
    if string.find(head, '"rows":[]', 1, true) then empty = empty + 1 end
    if string.find(head, '"reason":"overloaded"', 1, true) then overloaded = overloaded + 1 end
  end
end

function done(summary, latency, requests)
  local t = {ok = 0, s5xx = 0, s503 = 0, s4xx = 0, personalized = 0, unknown = 0, degraded = 0, empty = 0, overloaded = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"non2xx":%d,' ..
    '"ok":%d,"status_5xx":%d,"status_503":%d,"status_4xx":%d,"personalized":%d,"unknown":%d,"degraded":%d,' ..
    '"empty":%d,"overloaded":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status,
    t.ok, t.s5xx, t.s503, t.s4xx, t.personalized, t.unknown, t.degraded, t.empty, t.overloaded))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_script(script: Path, base: str, seconds: float, connections: int, timeout_s: float,
               args: list[str]) -> dict[str, Any]:
    """``wrk`` (2 threads at most) with a Lua ``script`` whose ``done()`` prints one ``WRKJSON {...}``
    line; returns that object. ``args`` go to the script's ``init``."""
    cmd = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds:g}s",
           "--timeout", f"{timeout_s:g}s", "-s", str(script), base, "--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out[-2000:]}")
    result: dict[str, Any] = json.loads(line[len("WRKJSON "):])
    return result


def run_wrk(base: str, token: str, n_profiles: int, seconds: float, connections: int, rate: float,
            unknown_share: float = 0.05, seed: int = 0, timeout_s: float = 2.0) -> dict[str, float]:
    """One wrk run; returns rps, p50/p99 (ms), errors (5xx + socket errors + timeouts), shares."""
    delay_ms = connections * 1000.0 / rate if rate > 0 else 0.0
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA)
        script = Path(f.name)
    try:
        r = run_script(script, base, seconds, connections, timeout_s,
                       [str(n_profiles), str(unknown_share), token, f"{delay_ms:.3f}", str(seed)])
    finally:
        script.unlink(missing_ok=True)
    known = max(1, r["ok"] - r["unknown"])
    socket_errors = r["connect_errors"] + r["read_errors"] + r["write_errors"]
    return {
        "offered_rps": rate, "rps": r["requests"] / max(r["duration_us"] / 1e6, 1e-9),
        "p50_ms": r["p50_us"] / 1000.0, "p99_ms": r["p99_us"] / 1000.0, "max_ms": r["max_us"] / 1000.0,
        "requests": r["requests"], "errors": r["status_5xx"] + r["status_503"] + socket_errors + r["timeouts"],
        "errors_5xx": r["status_5xx"] + r["status_503"], "status_503": r["status_503"], "status_4xx": r["status_4xx"],
        "socket_errors": socket_errors, "overloaded_share": r["overloaded"] / max(1, r["ok"]),
        "timeouts": r["timeouts"], "personalized_share": r["personalized"] / known,
        "degraded_share": r["degraded"] / max(1, r["ok"]), "empty_pages": r["empty"],
    }
