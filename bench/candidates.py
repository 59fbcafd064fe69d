"""Candidate generation bench: ALS training time and generate_all time per profile.

Usage: python bench/candidates.py [--world default|synthetic|DIR] [--titles 400] [--profiles 1500]
                                  [--runs 3] [--sample 300] [--json PATH]

World: ``default`` generates the default world (``world.generator.generate_world(WorldConfig())``:
400 titles, ~1,500 profiles, 28 days); a folder reads a generated world (``titles.parquet``,
``profiles.parquet`` and every other ``*.parquet`` under it as events); ``synthetic`` builds a
seeded world of ``--titles`` titles and ``--profiles`` profiles (latent tastes, ~25 plays each).

1. ALS fit (TrainingConfig defaults: 64 factors, 15 iterations), median seconds over ``--runs``,
   implicit on 2 threads vs 1 thread (baseline).
2. ``generate_all`` per profile, median ms over ``--sample`` profiles x ``--runs``; the batch
   path (``generate_all_batch``, amortized per profile) against it (baseline = single path);
   plus each source's own median.
3. ALS retrieval for one profile: faiss ``IndexFlatIP`` search vs numpy matmul + argsort (baseline).
4. ALS quality: trained on all but the last 7 days, recall@20 of the titles each profile first
   plays in those 7 days (titles played before are excluded), against most-popular (baseline),
   with the configured regularization and with ``--tuned-regularization``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and "candidates" would name this file.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from candidates.registry import build_sources, generate_all, generate_all_batch
from features.history import playback_states, profile_histories
from features.schema import EVENT_SCHEMA, PROFILE_SCHEMA, REGIONS, TITLE_SCHEMA
from pathways.artifacts.factor_index import FactorIndex
from pathways.catalog import Catalog
from pathways.config import CandidateConfig, TrainingConfig
from pathways.types import ProfileContext
from training.als import fit_als

GENRES = ("Action", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Family", "Horror", "Romance", "Sci-Fi")
START = datetime(2026, 10, 1, tzinfo=UTC)


def synthetic_world(n_titles: int, n_profiles: int, seed: int = 7) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(titles, profiles, events): tastes and traits in 8 dims, plays drawn by softmax affinity."""
    rng = np.random.default_rng(seed)
    regions = sorted(REGIONS)
    traits = rng.normal(size=(n_titles, 8))
    genre_of = np.argmax(traits[:, :len(GENRES)] if traits.shape[1] >= len(GENRES) else
                         np.hstack([traits, rng.normal(size=(n_titles, len(GENRES) - 8))]), axis=1)
    titles = pa.Table.from_pylist([
        {"title_id": 1000 + i, "name": f"Title {i}", "genres": [GENRES[genre_of[i]]], "cast": [],
         "release_date": date(2026, 10, 29) - timedelta(days=int(rng.integers(0, 1500))), "runtime_min": 100,
         "maturity_level": int(rng.integers(0, 5)),
         "regions": [r for r in regions if rng.random() < 0.8] or ["US"],
         "artwork_ids": [0], "artwork_themes": ["genre"]} for i in range(n_titles)
    ], schema=TITLE_SCHEMA)
    kids = rng.random(n_profiles) < 0.15
    profiles = pa.Table.from_pylist([
        {"profile_id": p, "account_id": p // 3, "is_kids": bool(kids[p]), "region": regions[int(rng.integers(len(regions)))],
         "max_maturity_level": 1 if kids[p] else 4, "devices": ["tv"], "created_at": START - timedelta(days=90)}
        for p in range(n_profiles)
    ], schema=PROFILE_SCHEMA)
    tastes = rng.normal(size=(n_profiles, 8))
    rows = []
    for p in range(n_profiles):
        logits = traits @ tastes[p]
        prob = np.exp(logits - logits.max())
        for t in rng.choice(n_titles, size=int(rng.integers(5, 45)), p=prob / prob.sum()):
            ts = START + timedelta(seconds=float(rng.uniform(0, 28 * 86_400)))
            rows.append({"event_id": f"e{len(rows)}", "event_type": "play", "ts": ts, "profile_id": p,
                         "title_id": 1000 + int(t), "fraction_watched": float(rng.uniform(0.02, 1.0))})
    events = pa.Table.from_pylist([{f.name: r.get(f.name) for f in EVENT_SCHEMA} for r in rows], schema=EVENT_SCHEMA)
    return titles, profiles, events


def read_world(folder: Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    others = [f for f in sorted(folder.rglob("*.parquet")) if f.name not in ("titles.parquet", "profiles.parquet")]
    events = pa.concat_tables([pq.read_table(f).select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA) for f in others])
    return pq.read_table(folder / "titles.parquet"), pq.read_table(folder / "profiles.parquet"), events


def load(world: str, n_titles: int, n_profiles: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    if world == "synthetic":
        return synthetic_world(n_titles, n_profiles)
    if world == "default":
        from pathways.config import WorldConfig
        from world.generator import generate_world

        w = generate_world(WorldConfig())
        return w.titles, w.profiles, w.events
    return read_world(Path(world))


def holdout_recall(events: pa.Table, catalog: Catalog, config: TrainingConfig, k: int = 20, days: int = 7) -> dict[str, float]:
    """recall@k of first plays in the last ``days`` days, ALS vs most popular (seen titles excluded)."""
    import pyarrow.compute as pc

    from training.als import interaction_matrix

    end = max(events.column("ts").to_pylist())
    cut = end - timedelta(days=days)
    train = events.filter(pc.less_equal(events.column("ts"), pa.scalar(cut, events.schema.field("ts").type)))
    als = fit_als(train, config)
    summed, pids, tids = interaction_matrix(train)
    full, fp, ft = interaction_matrix(events)
    seen = {(int(pids[r]), int(tids[c])) for r, c in zip(*summed.nonzero())}
    coo = full.tocoo()
    truth: dict[int, set[int]] = {}
    for r, c in zip(coo.row, coo.col):
        pair = (int(fp[r]), int(ft[c]))
        if pair not in seen and pair[0] in als.profile_row and pair[1] in als.title_row:
            truth.setdefault(pair[0], set()).add(pair[1])
    popularity = np.asarray(summed.sum(axis=0)).ravel()
    scores = {"als": als.user_factors @ als.item_factors.T, "popular": np.broadcast_to(popularity, (len(pids), len(tids)))}
    out = {}
    for name, matrix in scores.items():
        hits = total = 0
        for pid, titles in truth.items():
            row = matrix[als.profile_row[pid]].astype(np.float64).copy()
            row[summed[als.profile_row[pid]].indices] = -np.inf
            top = set(tids[np.argsort(-row, kind="stable")[:k]].tolist())
            hits += len(top & titles)
            total += len(titles)
        out[name] = hits / max(total, 1)
    out["profiles"] = len(truth)
    return out


def contexts(titles: pa.Table, profiles: pa.Table, events: pa.Table, config: CandidateConfig) -> list[ProfileContext]:
    states = playback_states(events, titles, config.finished_fraction, config.continue_min_fraction)
    histories = profile_histories(events)
    out = []
    for row in profiles.to_pylist():
        pid, state = int(row["profile_id"]), states.get(int(row["profile_id"]))
        out.append(ProfileContext(
            pid, row["region"], int(row["max_maturity_level"]), is_kids=bool(row["is_kids"]),
            history=histories.get(pid, ()), finished=state.finished if state else frozenset(),
            in_progress={t: f for t, (f, _) in state.in_progress.items()} if state else {},
            in_progress_ts={t: ts for t, (_, ts) in state.in_progress.items()} if state else {},
        ))
    return out


def median_ms(fn, items, runs: int) -> float:
    times = []
    for _ in range(runs):
        for item in items:
            start = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def per_profile_ms(fn, n: int, runs: int) -> float:
    """Median over ``runs`` of (wall time of ``fn()``) / n, in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3 / n)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="default", help="default | synthetic | a world folder")
    ap.add_argument("--titles", type=int, default=400)
    ap.add_argument("--profiles", type=int, default=1500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--tuned-regularization", type=float, default=100.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    titles, profiles, events = load(args.world, args.titles, args.profiles)
    catalog, cand_cfg, train_cfg = Catalog.from_table(titles), CandidateConfig(), TrainingConfig()
    as_of = max(events.column("ts").to_pylist())
    print(f"world: {len(catalog)} titles, {profiles.num_rows} profiles, {events.num_rows} events; as of {as_of}")

    fits: dict[str, list[float]] = {"2 threads": [], "1 thread": []}
    for _ in range(args.runs):
        for label, threads in (("2 threads", 2), ("1 thread", 1)):
            start = time.perf_counter()
            als = fit_als(events, train_cfg, num_threads=threads)
            fits[label].append(time.perf_counter() - start)
    fit = {k: statistics.median(v) for k, v in fits.items()}

    start = time.perf_counter()
    sources = build_sources(als, catalog, cand_cfg, as_of, events, profiles)
    build_s = time.perf_counter() - start
    ctx = contexts(titles, profiles, events, cand_cfg)
    rng = np.random.default_rng(0)
    sample = [ctx[i] for i in rng.choice(len(ctx), size=min(args.sample, len(ctx)), replace=False)]
    single_median = median_ms(lambda p: generate_all(sources, p), sample, args.runs)
    # Mean per profile (total / n), median over runs: the same measure for both paths.
    single = per_profile_ms(lambda: [generate_all(sources, p) for p in sample], len(sample), args.runs)
    batch = per_profile_ms(lambda: generate_all_batch(sources, sample), len(sample), args.runs)
    per_source = {s.name: median_ms(s.generate, sample, args.runs) for s in sources}
    rows_per_profile = statistics.median(len(generate_all(sources, p)) for p in sample)

    index = FactorIndex(als.item_factors)
    users = als.user_factors[: len(sample)]
    faiss_ms = median_ms(lambda u: index.search(u, cand_cfg.per_source), users, args.runs)
    numpy_ms = median_ms(lambda u: np.argsort(-(als.item_factors @ u))[: cand_cfg.per_source], users, args.runs)
    faiss_batch = median_ms(lambda u: index.search(u, cand_cfg.per_source), [users] * args.runs, 1) / len(users)
    numpy_batch = median_ms(lambda u: np.argsort(-(u @ als.item_factors.T), axis=1)[:, : cand_cfg.per_source],
                            [users] * args.runs, 1) / len(users)

    print(f"\nALS fit ({train_cfg.als_factors} factors, {train_cfg.als_iterations} iterations), median of {args.runs}")
    print(f"{'variant':<28}{'seconds':>10}{'ratio':>8}")
    for label in ("1 thread", "2 threads"):
        print(f"{label:<28}{fit[label]:>10.3f}{fit[label] / fit['1 thread']:>8.2f}")
    print(f"\ngenerate_all per profile ({len(sample)} profiles x {args.runs}; {rows_per_profile:.0f} rows median; "
          f"build_sources {build_s:.2f} s)")
    print(f"{'path':<28}{'ms/profile':>12}{'ratio':>8}")
    print(f"{'single, mean (baseline)':<28}{single:>12.3f}{1.0:>8.2f}")
    print(f"{'batch, mean':<28}{batch:>12.3f}{batch / single:>8.2f}")
    print(f"{'single, median profile':<28}{single_median:>12.3f}{single_median / single:>8.2f}")
    for name, ms in per_source.items():
        print(f"{'  ' + name + ' (median)':<28}{ms:>12.3f}{ms / single:>8.2f}")
    print(f"\nALS top-{cand_cfg.per_source} retrieval for one profile over {len(catalog)} titles")
    print(f"{'numpy matmul+argsort (base)':<28}{numpy_ms:>12.4f}{1.0:>8.2f}")
    print(f"{'faiss IndexFlatIP':<28}{faiss_ms:>12.4f}{faiss_ms / numpy_ms:>8.2f}")
    print(f"{'numpy, batch of ' + str(len(users)):<28}{numpy_batch:>12.4f}{numpy_batch / numpy_ms:>8.2f}")
    print(f"{'faiss, batch of ' + str(len(users)):<28}{faiss_batch:>12.4f}{faiss_batch / numpy_ms:>8.2f}")

    tuned_cfg = train_cfg.model_copy(update={"als_regularization": args.tuned_regularization})
    quality = holdout_recall(events, catalog, train_cfg)
    quality["als_tuned"] = holdout_recall(events, catalog, tuned_cfg)["als"]
    print(f"\nALS quality: recall@20 of new plays in the last 7 days ({quality['profiles']} profiles)")
    print(f"{'model':<36}{'recall@20':>12}{'ratio':>8}")
    for name, label in (("popular", "most popular (baseline)"),
                        ("als", f"ALS regularization {train_cfg.als_regularization}"),
                        ("als_tuned", f"ALS regularization {args.tuned_regularization}")):
        print(f"{label:<36}{quality[name]:>12.4f}{quality[name] / max(quality['popular'], 1e-12):>8.2f}")

    result = {
        "world": {"titles": len(catalog), "profiles": profiles.num_rows, "events": events.num_rows, "source": args.world},
        "als_recall_at_20": quality,
        "als_fit_s": fit, "build_sources_s": build_s,
        "generate_all_ms": {"single_mean": single, "single_median": single_median, "batch_mean": batch,
                            "per_source_median": per_source},
        "retrieval_ms": {"numpy": numpy_ms, "faiss": faiss_ms, "numpy_batch": numpy_batch, "faiss_batch": faiss_batch},
        "args": vars(args) | {"json": str(args.json) if args.json else None},
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
