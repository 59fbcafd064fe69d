"""Artwork bandit bench: learning, off-policy evaluation accuracy and serving speed (one core).

Usage: python bench/bandits.py [--runs 3] [--sets 50] [--rounds 100000] [--train-rounds 200000]
                               [--bootstrap 200] [--json PATH]

1. Learning: each policy is fitted on ``--train-rounds`` impressions logged by the uniform policy
   (one log per run) and its true CTR is computed from the world's truth on 200,000 fresh rounds;
   ``gap_closed = (V(best) - V(uniform)) / (V(oracle) - V(uniform))``, median over runs.
2. Evaluation: over ``--sets`` uniform logs of ``--rounds`` rounds, every estimator estimates the
   best learned policy's value; mean |relative error| and 95% interval coverage of the truth.
3. Speed: artwork for a 40 x 40 page (1,600 titles) by ``ArtworkSelector.select_page``; median
   ms over repeats, with the default-artwork fallback and a per-title Python loop as baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and "bandits" would name this file.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from threadpoolctl import threadpool_limits

from bandits.estimators import BootstrapConfig, standard_estimators
from bandits.policies import UniformRandom, make_policy
from bandits.reward_model import LogisticRewardModel
from bandits.serving import ArtworkSelector, DefaultArtwork
from bandits.simulate import make_world, simulate_log, true_value

LEARNED = ("epsilon_greedy", "linucb", "thompson", "logistic")
PAGE = (40, 40)


def bench_learning(world, runs: int, train_rounds: int) -> tuple[dict, dict]:
    uniform = true_value(world, UniformRandom(featurizer=world.featurizer))
    oracle = true_value(world, None)
    values: dict[str, list[float]] = {k: [] for k in LEARNED}
    fit_s: dict[str, list[float]] = {k: [] for k in LEARNED}
    policies = {}
    for run in range(runs):
        log = simulate_log(world, UniformRandom(featurizer=world.featurizer), train_rounds, seed=1000 + run)
        for kind in LEARNED:
            t0 = time.perf_counter()
            policy = make_policy(kind, world.featurizer).fit(log)
            fit_s[kind].append(time.perf_counter() - t0)
            values[kind].append(true_value(world, policy))
            if run == 0:
                policies[kind] = policy
    med = {k: float(np.median(v)) for k, v in values.items()}
    best = max(med, key=med.get)
    gaps = [(max(values[k][r] for k in LEARNED) - uniform) / (oracle - uniform) for r in range(runs)]
    print(f"\n== Learning: {train_rounds:,} uniform-logged impressions, median of {runs} runs ==")
    print(f"{'policy':<16}{'true CTR':>10}{'x uniform':>11}{'gap closed':>12}{'fit s':>8}")
    print(f"{'uniform':<16}{uniform:>10.5f}{1.0:>11.3f}{0.0:>12.3f}{'-':>8}")
    for k in LEARNED:
        print(f"{k:<16}{med[k]:>10.5f}{med[k] / uniform:>11.3f}{(med[k] - uniform) / (oracle - uniform):>12.3f}{np.median(fit_s[k]):>8.2f}")
    print(f"{'oracle':<16}{oracle:>10.5f}{oracle / uniform:>11.3f}{1.0:>12.3f}{'-':>8}")
    result = {
        "uniform_ctr": uniform,
        "oracle_ctr": oracle,
        "policy_ctr": med,
        "best_policy": best,
        "gap_closed": float(np.median(gaps)),
        "gap_closed_runs": gaps,
    }
    return result, policies[best]


def bench_evaluation(world, target, sets: int, rounds: int, n_boot: int) -> dict:
    truth = true_value(world, target, n=1_000_000, seed=777)
    rel: dict[str, list[float]] = {}
    cover: dict[str, list[bool]] = {}
    ess: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for s in range(sets):
        log = simulate_log(world, UniformRandom(featurizer=world.featurizer), rounds, seed=50_000 + s)
        pi = target.action_probabilities(log)
        q_hat = LogisticRewardModel(world.featurizer, seed=s).fit_predict(log)
        for est in standard_estimators(None, BootstrapConfig(n_boot, seed=s)):
            e = est.estimate(log, pi, q_hat=q_hat)
            rel.setdefault(e.estimator, []).append(abs(e.value - truth) / truth)
            cover.setdefault(e.estimator, []).append(e.lo <= truth <= e.hi)
            ess.setdefault(e.estimator, []).append(e.ess)
    seconds = time.perf_counter() - t0
    print(f"\n== Evaluation: {sets} uniform logs x {rounds:,} rounds, target = learned policy, true value {truth:.5f} ==")
    print(f"{'estimator':<10}{'mean rel err':>14}{'x IPS':>8}{'coverage 95%':>14}{'mean ESS':>11}")
    ips = float(np.mean(rel["IPS"]))
    for name in rel:
        m = float(np.mean(rel[name]))
        print(f"{name:<10}{m:>14.4f}{m / ips:>8.2f}{np.mean(cover[name]):>14.2f}{np.mean(ess[name]):>11.0f}")
    print(f"({seconds:.0f} s for {sets} sets: simulate, cross-fit reward model, 6 estimators x {n_boot} bootstraps)")
    return {
        "target_true_value": truth,
        "mean_rel_error": {k: float(np.mean(v)) for k, v in rel.items()},
        "coverage": {k: float(np.mean(v)) for k, v in cover.items()},
        "dr_mean_rel_error": float(np.mean(rel["DR"])),
        "ips_mean_rel_error": ips,
        "dr_coverage": float(np.mean(cover["DR"])),
        "seconds": seconds,
    }


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def bench_speed(world, policies: dict, repeats: int = 200) -> dict:
    rng = np.random.default_rng(0)
    n = PAGE[0] * PAGE[1]
    titles = rng.choice(world.title_ids, n, replace=len(world.title_ids) < n)
    positions = np.tile(np.arange(PAGE[1]), PAGE[0])
    default = DefaultArtwork()
    rows = {"default artwork": _median_ms(lambda: default.select_page(1, titles, positions, "r"), repeats)}
    for name, policy in policies.items():
        sel = ArtworkSelector(policy, world.truth.context, version=name)
        rows[name] = _median_ms(lambda sel=sel: sel.select_page(7, titles, positions, "req-1"), repeats)
    best = policies[next(iter(policies))]

    def per_title_loop() -> None:
        ctx = world.truth.context(np.array([7]))[0]
        r = np.random.default_rng(0)
        for t in titles:
            feats = world.featurizer.transform(ctx, np.array([t]))[0]
            best.select(feats, int(world.featurizer.n_arms(np.array([t]))[0]), r)

    loop_ms = _median_ms(per_title_loop, 3)
    first = next(iter(policies))
    print(f"\n== Speed: artwork for a {PAGE[0]} x {PAGE[1]} page, one core, median of {repeats} ==")
    print(f"{'selector':<22}{'ms p50':>9}")
    for k, v in rows.items():
        print(f"{k:<22}{v:>9.3f}")
    print(f"{first + ' per-title loop':<22}{loop_ms:>9.1f}   (vectorized is {loop_ms / rows[first]:.0f}x faster)")
    return {"select_page_ms_p50": rows[first], "select_page_ms_by_policy": rows, "per_title_loop_ms_p50": loop_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sets", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=100_000)
    ap.add_argument("--train-rounds", type=int, default=200_000)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--profiles", type=int, default=5000)
    ap.add_argument("--titles", type=int, default=1600)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    with threadpool_limits(1):
        world = make_world(n_profiles=args.profiles, n_titles=args.titles, seed=0)
        learning, best = bench_learning(world, args.runs, args.train_rounds)
        evaluation = bench_evaluation(world, best, args.sets, args.rounds, args.bootstrap)
        speed_policies = {learning["best_policy"]: best}
        speed_policies.update({k: make_policy(k, world.featurizer).fit(simulate_log(world, UniformRandom(featurizer=world.featurizer), 20_000, seed=9)) for k in LEARNED if k != learning["best_policy"]})
        speed = bench_speed(world, speed_policies)
    bar = {
        "gap_closed >= 0.80": learning["gap_closed"] >= 0.80,
        "DR rel err <= 0.05 and < IPS": evaluation["dr_mean_rel_error"] <= 0.05 and evaluation["dr_mean_rel_error"] < evaluation["ips_mean_rel_error"],
        "DR coverage >= 0.90": evaluation["dr_coverage"] >= 0.90,
        "select page p50 < 5 ms": speed["select_page_ms_p50"] < 5.0,
    }
    print("\n== The bar ==")
    for k, ok in bar.items():
        print(f"{k:<32}{'PASS' if ok else 'FAIL'}")
    print(f"(total {time.perf_counter() - t0:.0f} s)")
    result = {
        "gap_closed": learning["gap_closed"],
        "dr_mean_rel_error": evaluation["dr_mean_rel_error"],
        "ips_mean_rel_error": evaluation["ips_mean_rel_error"],
        "dr_coverage": evaluation["dr_coverage"],
        "select_page_ms_p50": speed["select_page_ms_p50"],
        "learning": learning,
        "evaluation": evaluation,
        "speed": speed,
        "bar": bar,
        "args": vars(args) | {"json": str(args.json) if args.json else None},
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
