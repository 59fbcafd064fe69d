"""Load for bench/events.py: batches of events, a paced httpx client (retries, exact accepted ids)
and ``wrk`` (``bench/events_load.lua``, its own process) for latency.

``make_batches`` builds bodies with unique ids (``<tag>-<batch>-<event>``); ``run_load`` posts them
from this interpreter, retrying refused batches with the same ids (warm-up, the kill -9 phase,
re-posts); ``wrk_load`` has wrk post them paced, with wrk's latency percentiles, then re-posts
what wrk sent but saw no answer for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


EXTRA: dict[str, dict[str, Any]] = {"play": {"fraction_watched": 0.3}, "pause": {"fraction_watched": 0.5},
                                    "heartbeat": {"position_s": 600.0}, "impression": {"row_index": 1, "position": 2}}


def make_batches(n: int, batch: int, tag: str, n_profiles: int, n_titles: int, seed: int) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    kinds = np.array(["play", "heartbeat", "impression", "pause"])
    out = []
    for b in range(n):
        events = []
        profile = int(rng.integers(1, n_profiles + 1))  # one device's batch: one profile (the API allows 10)
        for j in range(batch):
            kind = str(kinds[rng.integers(0, 4)])
            e: dict[str, Any] = {"event_id": f"{tag}-{b}-{j}", "event_type": kind, "profile_id": profile,
                 "title_id": int(rng.integers(1, n_titles + 1)), "device": "tv"}
            e.update(EXTRA[kind])
            if rng.random() < 0.01:
                e["ts"] = "2999-01-01T00:00:00Z"
            events.append(e)
        out.append(events)
    return out


async def run_load(base: str, batches: list[list[dict]], rate_rps: float, chaos=None) -> dict:
    """``batches`` from an httpx client paced at ``rate_rps`` (warm-up, faults, re-posts): retried with
    the same ids until answered; accepted ids are exact, latencies only indicative (same interpreter)."""
    import httpx

    latencies: list[float] = []
    accepted: set[str] = set()
    refused = 0
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        gate = asyncio.Semaphore(16)  # a client keeps a bounded number of requests in flight

        async def send(body: bytes) -> None:
            nonlocal refused
            backoff = 0.05
            while True:
                async with gate:
                    t0 = time.perf_counter()
                    try:
                        r = await client.post("/api/v1/events", content=body, headers={"content-type": "application/json"})
                    except httpx.TransportError:
                        r = None
                    latency = time.perf_counter() - t0
                if r is not None and r.status_code in (202, 422):
                    latencies.append(latency)
                    accepted.update(e["event_id"] for e in r.json().get("events", []) if e["status"] != "rejected")
                    return
                refused += 1  # server down or 503: back off (Retry-After, exponential, jittered), same ids
                wait = float(r.headers.get("retry-after", backoff)) if r is not None else backoff
                await asyncio.sleep(min(wait, backoff) * (0.5 + np.random.random()))
                backoff = min(2.0, backoff * 2)

        async def pace() -> float:
            start = time.perf_counter()
            tasks = []
            for k, events in enumerate(batches):
                delay = start + k / rate_rps - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(json.dumps(events).encode())))
            sent = time.perf_counter() - start
            await asyncio.gather(*tasks)
            return sent

        jobs = [pace()] + ([chaos()] if chaos else [])
        got = await asyncio.gather(*jobs)
    lat = np.array(latencies) * 1000.0
    events = sum(len(b) for b in batches)
    return {"events_per_s": events / got[0], "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "accepted_ids": accepted, "refused_attempts": refused}


def wrk_load(run_script: Callable[..., dict], base: str, batches: list[list[dict]], rate_rps: float,
             seconds: float, work: Path, connections: int = 16) -> dict:
    """``batches`` posted by wrk (``bench/events_load.lua`` through ``run_script``: bench/wrkload.py's)
    paced at ``rate_rps`` for ``seconds``; latency percentiles are wrk's. Bodies sent but not answered
    (in flight at the end, or refused) are posted again with the same ids: accepted ids are exact."""
    work.mkdir(parents=True, exist_ok=True)
    bodies_file, answers = work / "bodies.jsonl", work / "answers"
    bodies_file.write_text("".join(json.dumps(b) + "\n" for b in batches))
    threads = min(2, connections)
    r = run_script(HERE / "events_load.lua", base, seconds, connections, 5.0,
                   [str(bodies_file), str(answers), str(threads), f"{rate_rps / threads:.6f}"])
    accepted: set[str] = set()
    answered: set[int] = set()
    for path in sorted(work.glob("answers.*")):
        for line in path.read_text().splitlines():
            status, _, body = line.partition(" ")
            if int(status) in (202, 422):
                events = json.loads(body).get("events", [])
                accepted.update(e["event_id"] for e in events if e["status"] != "rejected")
                answered.add(int(events[0]["event_id"].split("-")[1]))
    sent = {k for t, n in enumerate(r["sent"]) for k in range(t, len(batches), threads)[:n]}
    again = [batches[k] for k in sorted(sent - answered)]
    if again:
        accepted |= asyncio.run(run_load(base, again, 50.0))["accepted_ids"]
    done = r["s2xx"] + r["s422"]
    return {"events_per_s": done * len(batches[0]) / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000.0,
            "p99_ms": r["p99_us"] / 1000.0, "p999_ms": r["p999_us"] / 1000.0, "max_ms": r["max_us"] / 1000.0,
            "accepted_ids": accepted, "reposted": len(again), "wrk": r}
