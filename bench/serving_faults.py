"""Fault windows and the hostile-input table over HTTP, for bench/serving.py.

Each fault window runs wrk for ``window`` seconds at a fixed rate; the fault starts 2 s in and is
undone when the window ends (then the server must be healthy again before the next one). The
replica kill is followed by a clean window of the same length: no error may appear there.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _during(run: Callable[[], dict[str, Any]], start: Callable[[], None], at_s: float = 2.0) -> dict[str, Any]:
    """``run()`` (a wrk run) in this thread while ``start()`` fires ``at_s`` seconds in, from another."""
    timer = threading.Timer(at_s, start)
    timer.start()
    try:
        return run()
    finally:
        timer.cancel()
        timer.join()


def wait_personalized(base: str, token: str, timeout_s: float = 60.0) -> float:
    """Seconds until profile 1 gets a personalized page with no degraded row (the overlay works)."""
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            r = httpx.get(f"{base}/api/v1/pathways", params={"profile_id": 1, "row_count": 2}, timeout=5.0,
                          headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json()["personalized"] and not r.json()["degraded"]:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return float("nan")


def fault_windows(load: Callable[[float], dict[str, Any]], base: str, token: str, online: Any, snapshot_dir: Path,
                  replica_pids: Callable[[], list[int]], window: float) -> dict[str, dict[str, Any]]:
    """Every fault window (see the module docstring); ``load(seconds)`` runs wrk and returns its result."""
    out: dict[str, dict[str, Any]] = {}

    def record(name: str, result: dict[str, Any], **extra: Any) -> None:
        out[name] = {k: result[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "errors", "errors_5xx", "timeouts",
                                            "socket_errors", "personalized_share", "degraded_share", "empty_pages")}
        out[name].update(extra)
        print(f"  {name:<22} errors={result['errors']} 5xx={result['errors_5xx']} timeouts={result['timeouts']} "
              f"personalized={result['personalized_share']:.1%} degraded={result['degraded_share']:.1%} "
              f"empty={result['empty_pages']} p99={result['p99_ms']:.1f} ms {extra or ''}")

    # The online store's Redis killed, then restarted: the overlay must come back without a Serve restart.
    result = _during(lambda: load(window), online.kill)
    online.start()
    record("online_store_killed", result, recovered_s=round(wait_personalized(base, token), 2))

    # The live snapshot removed (pointer and files), then put back.
    gone = snapshot_dir.with_name(snapshot_dir.name + ".gone")
    result = _during(lambda: load(window), lambda: snapshot_dir.rename(gone))
    gone.rename(snapshot_dir)
    record("snapshot_removed", result, recovered_s=round(wait_personalized(base, token), 2))

    # A slow stage: the online store stops answering (CLIENT PAUSE), reads wait until the overlay budget.
    pause_ms = int((window - 2.0) * 1000)
    result = _during(lambda: load(window), lambda: online.client().execute_command("CLIENT", "PAUSE", pause_ms, "ALL"))
    online.client().execute_command("CLIENT", "UNPAUSE")
    record("online_store_slow", result, recovered_s=round(wait_personalized(base, token), 2))

    # One replica killed (SIGKILL); then a clean window: no error once Serve has replaced it.
    pids = replica_pids()
    if len(pids) >= 2:
        result = _during(lambda: load(window), lambda: os.kill(pids[0], signal.SIGKILL), at_s=5.0)
        record("replica_killed", result, replicas=len(pids))
        time.sleep(2.0)
        record("after_replica_killed", load(window))
    else:
        out["replica_killed"] = {"skipped": f"{len(pids)} replica(s): nothing to fail over to"}
    out["artwork_policy_removed"] = {"skipped": "no artwork policy is registered in the synthetic world"}
    return out


def hostile_table(base: str, cfg: Any) -> dict[str, Any]:
    """Every case of ``tests/serving/test_hostile.CASES`` against ``base``: its exact status and message."""
    import httpx

    from tests.serving import test_hostile as table

    tokens = table._tokens(cfg)
    wrong: list[dict[str, Any]] = []
    five_xx = 0
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for name, method, path, auth, kwargs, status, (key, value) in table.CASES:
            headers = tokens[auth] if isinstance(auth, str) else (auth or {})
            kwargs = {**kwargs, "content": kwargs["content"]()} if callable(kwargs.get("content")) else kwargs
            r = client.request(method, path, headers=headers, **kwargs)
            five_xx += r.status_code >= 500
            try:
                got = table._value(r.json(), key)
            except (ValueError, KeyError, IndexError, TypeError):
                got = r.text[:200]
            if r.status_code != status or got != value:
                wrong.append({"case": name, "status": r.status_code, "expected": status, "got": got, "want": value})
    return {"cases": len(table.CASES), "wrong_status": len(wrong), "errors_5xx": five_xx, "wrong": wrong}


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
