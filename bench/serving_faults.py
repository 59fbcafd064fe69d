"""Fault windows, the hostile-input table over HTTP and the world's artwork policy, for bench/serving.py.

Each fault window runs wrk for ``window`` seconds at a fixed rate; the fault starts 2 s in and is
undone when the window ends (then the server must be healthy again before the next one). The
replica kill is followed by a clean window of the same length: no error may appear there.
``register_artwork_policy`` trains a small LinUCB policy on a random log over the synthetic
catalog and registers it as the champion, so pages run the artwork stage and the "artwork policy
removed" window (the champion alias deleted, then restored) has something to remove.
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
                  replica_pids: Callable[[], list[int]], window: float,
                  artwork: tuple[Callable[[], None], Callable[[], None]] | None = None) -> dict[str, dict[str, Any]]:
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
    if artwork is None:
        out["artwork_policy_removed"] = {"skipped": "no artwork policy is registered in this world"}
        return out
    # The champion alias deleted from the registry: serving notices within serving.artwork_poll_s and
    # serves default artwork (marked degraded) on personalized pages; the alias restored afterwards.
    withdraw, restore = artwork
    result = _during(lambda: load(window), withdraw)
    restore()
    record("artwork_policy_removed", result)
    return out


def register_artwork_policy(config: Any, titles: Any, rounds: int = 5000, seed: int = 0) -> tuple[Callable[[], None], Callable[[], None]]:
    """A LinUCB policy fitted on ``rounds`` random rounds over ``titles`` (TITLE_SCHEMA), registered
    as ``artwork_policy@champion`` in ``config.mlflow_uri``; ``genres.json`` written for its
    context. Returns (withdraw, restore): delete the champion alias, and point it back."""
    import json
    import warnings

    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    from bandits.artifact import policy_probabilities, to_artifact
    from bandits.features import ArmFeaturizer, artwork_context_names
    from bandits.log import BanditLog
    from bandits.policies import make_policy
    from pathways import tracking
    from pathways.artifacts.registry import log_artifact_model

    genres = sorted({g for gs in titles.column("genres").to_pylist() for g in gs})
    data = config.feature_repo_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "genres.json").is_file():
        (data / "genres.json").write_text(json.dumps(genres))
    else:
        genres = json.loads((data / "genres.json").read_text())
    ids = titles.column("title_id").to_numpy()
    fz = ArmFeaturizer.build(artwork_context_names(genres), ids, titles.column("artwork_themes").to_pylist())
    rng = np.random.default_rng(seed)
    title = rng.choice(ids, rounds)
    n_arms = fz.n_arms(title)
    log_ = BanditLog(context=rng.random((rounds, fz.n_context)).astype(np.float32), profile_id=rng.integers(1, 1000, rounds),
                     title_id=title, arm=(rng.random(rounds) * n_arms).astype(np.int32), n_arms=n_arms,
                     propensity=1.0 / n_arms, position=np.zeros(rounds, np.int32),
                     policy_version=np.full(rounds, "uniform"), reward=(rng.random(rounds) < 0.1).astype(np.float32),
                     context_names=fz.context_names)
    policy = make_policy("linucb", fz).fit(log_)
    tracking.configure(config.mlflow_uri, "bench-serving")
    with mlflow.start_run(run_name="bench-artwork"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        info = log_artifact_model("artwork_policy", to_artifact(policy, "linucb-bench"), "artwork_policy",
                                  tracking.PIP_REQUIREMENTS, predictor=policy_probabilities)
    version = tracking.register(info.model_uri, "artwork_policy", alias=tracking.CHAMPION, tags={"kind": "linucb"})
    return (lambda: MlflowClient().delete_registered_model_alias("artwork_policy", tracking.CHAMPION),
            lambda: tracking.set_alias("artwork_policy", tracking.CHAMPION, version))


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
