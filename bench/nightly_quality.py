"""Quality at scale for ``bench/nightly.py --quality-check``: the top row trained on a sample vs on everything.

``quality_check(data, sample)``: the lake of a finished world is cut at its last day; the top row
(``PathwaysFinal``, the nightly's settings and seed) is trained twice on the days before, once on
every profile and once on the ``sample`` profiles the nightly's salted hash picks
(the top row's configured sample, ``schedule``'s ``sample_size(..., "train_top_row")``, else a
fifth of the profiles), and both are scored by NDCG@20 against the next-day plays (titles
new to the profile) of the same test profiles: every profile with a training history and a new
play on the last day. The sample-trained model ranks the profiles outside its sample as the
nightly job does, by folding their histories in (``PathwaysFinal.fold_in``); the NDCG is also
given for the sampled and the folded-in profiles apart. ``ndcg_loss`` is ``1 - sample / full``
over all test profiles; the issue's bar is at most 0.05.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pathways.catalog import Catalog
from pathways.config import PathwaysConfig

K = 20


def _fit(events: pa.Table, catalog: Catalog, config: PathwaysConfig) -> tuple[Any, Any, float]:
    from training.data import interactions_from_events
    from training.models import PathwaysFinal
    from training.top_row import genre_features

    inter = interactions_from_events(events, item_ids=catalog.title_ids)
    t0 = time.perf_counter()
    model = PathwaysFinal(config.models, seed=config.training.seed).fit(
        inter, item_features=genre_features(catalog, inter.item_ids))
    return model, inter, time.perf_counter() - t0


def _tops(model: Any, inter: Any, pids: np.ndarray, block: int) -> dict[int, list[int]]:
    """The top ``K`` title ids of each profile of ``pids`` (all in ``inter``), ``block`` at a time."""
    dense = np.searchsorted(inter.user_ids, pids)
    out: dict[int, list[int]] = {}
    for lo in range(0, len(pids), block):
        items, _ = model.candidates(dense[lo:lo + block])
        for pid, row in zip(pids[lo:lo + block], items):
            out[int(pid)] = [int(inter.item_ids[i]) for i in row[:K] if i >= 0]
    return out


def _ndcg(tops: dict[int, list[int]], pids: np.ndarray, truth: dict[int, set[int]]) -> float:
    return _ndcg_and_se(tops, pids, truth)[0]


def _ndcg_and_se(tops: dict[int, list[int]], pids: np.ndarray, truth: dict[int, set[int]]) -> tuple[float, float]:
    """Mean NDCG@K over ``pids`` and its standard error (sample std / sqrt(n)); NaN for no profile."""
    from training.evaluation.metrics import ndcg_per_user

    if not len(pids):
        return float("nan"), float("nan")
    hits = [[t in truth[int(p)] for t in tops[int(p)] + [-1] * (K - len(tops[int(p)]))] for p in pids]
    per = ndcg_per_user(np.array(hits, bool), np.array([len(truth[int(p)]) for p in pids]), K)
    return float(per.mean()), float(per.std(ddof=1) / np.sqrt(len(per))) if len(per) > 1 else float("nan")


def _world_profiles(config: PathwaysConfig) -> int:
    """The world's profile count: what the nightly sizes its samples by (``pipelines.schedule``)."""
    return pq.ParquetFile(config.raw_dir / "world" / "profiles.parquet").metadata.num_rows


def _split(data: Path) -> tuple[PathwaysConfig, Catalog, pa.Table, pa.Table]:
    """(config, catalog, the lake before its last day, the plays of the last day)."""
    from features.lake_scan import read_lake

    config = PathwaysConfig(data_dir=data)
    catalog = Catalog.from_table(pq.read_table(config.raw_dir / "world" / "titles.parquet"))
    # what the top row, its sample and its fold-in read: 4 of the lake's columns (all 15 took 23 GB at 1M)
    events = read_lake(config.lake_dir, ["event_type", "ts", "profile_id", "title_id"])
    cut = pa.scalar(pc.max(events["ts"]).as_py() - timedelta(days=1), events.schema.field("ts").type)
    train = events.filter(pc.less(events["ts"], cut))
    test = events.filter(pc.and_(pc.greater_equal(events["ts"], cut), pc.equal(events["event_type"], "play")))
    return config, catalog, train, test


def _truth(train: pa.Table, test: pa.Table) -> dict[int, set[int]]:
    """Each profile's last-day plays of titles new to it (no positive event in ``train``: what the
    top row trains on), for the profiles with a positive history and at least one such play."""
    from training.data import POSITIVE_TYPES

    plays = test.select(["profile_id", "title_id"]).to_pandas().dropna().astype(np.int64).drop_duplicates()
    mine = train.filter(pc.and_(pc.is_in(train["profile_id"], pa.array(plays["profile_id"].unique(), pa.int64())),
                                pc.is_in(train["event_type"], pa.array(list(POSITIVE_TYPES), pa.string()))))
    known = mine.select(["profile_id", "title_id"]).to_pandas().dropna().astype(np.int64).drop_duplicates()
    new = plays.merge(known, how="left", on=["profile_id", "title_id"], indicator=True)
    new = new[(new["_merge"] == "left_only") & new["profile_id"].isin(known["profile_id"])]
    return {int(p): set(map(int, g)) for p, g in new.groupby("profile_id")["title_id"]}


def _sample_tops(part_model: Any, part_inter: Any, train: pa.Table, pids: np.ndarray, block: int) -> tuple[dict[int, list[int]], np.ndarray]:
    """The sample-trained model's top ``K`` for ``pids``: its own profiles directly, the others
    folded in from their training histories as the nightly job does. Returns (tops, inside)."""
    from training.data import fold_in_blocks

    inside = np.isin(pids, part_inter.user_ids)
    tops = _tops(part_model, part_inter, pids[inside], block)
    history = train.filter(pc.is_in(train["profile_id"], pa.array(pids[~inside], pa.int64())))
    for folded in fold_in_blocks([history], part_inter.item_ids):
        tops.update(_tops(part_model.fold_in(folded), folded, folded.user_ids, block))
    return tops, inside


def quality_check(data: Path, sample: int) -> dict[str, Any]:
    """Train on everything and on ``sample`` profiles (0: the top row's configured sample, else a
    fifth of the profiles) before the last day; NDCG@20 on its plays."""
    from pipelines.schedule import sample_events, sample_size

    config, catalog, train, test = _split(data)
    profiles = pc.count_distinct(train["profile_id"]).as_py()
    sample = sample or sample_size(config.schedule, _world_profiles(config), "train_top_row") or profiles // 5
    part = sample_events(train, None, sample, config.schedule.sample_seed)
    full_model, full_inter, full_s = _fit(train, catalog, config)
    part_model, part_inter, part_s = _fit(part, catalog, config)
    truth = _truth(train, test)
    pids = np.array(sorted(set(truth) & set(full_inter.user_ids.tolist())), np.int64)
    block = config.models.final.user_chunk
    full_tops = _tops(full_model, full_inter, pids, block)
    part_tops, inside = _sample_tops(part_model, part_inter, train, pids, block)
    outside = pids[~inside]
    full, part_ndcg = _ndcg(full_tops, pids, truth), _ndcg(part_tops, pids, truth)
    return {"quality": {"sample_profiles": sample, "train_profiles": int(full_inter.n_users), "test_profiles": len(pids),
                        "folded_in_profiles": int(len(outside)),
                        "ndcg20_full": round(full, 4), "ndcg20_sample": round(part_ndcg, 4),
                        "ndcg_loss": round(1 - part_ndcg / full, 4) if full > 0 else None,
                        "ndcg20_sample_sampled": round(_ndcg(part_tops, pids[inside], truth), 4),
                        "ndcg20_sample_folded_in": round(_ndcg(part_tops, outside, truth), 4),
                        "ndcg20_full_folded_in": round(_ndcg(full_tops, outside, truth), 4),
                        "fit_s_full": round(full_s, 1), "fit_s_sample": round(part_s, 1)}}


def sample_quality(data: Path, sample: int) -> dict[str, Any]:
    """The nightly's own top row at one world size: trained on ``sample`` profiles (0: the configured
    sample, else a fifth) before the last day, every other profile folded in; NDCG@20 on the last
    day's plays of every profile with a history. No model on everything (at 1M that fit alone
    would take hours): this is the figure the sizes are compared by."""
    from pipelines.schedule import sample_events, sample_size

    config, catalog, train, test = _split(data)
    profiles = pc.count_distinct(train["profile_id"]).as_py()
    sample = sample or sample_size(config.schedule, _world_profiles(config), "train_top_row") or profiles // 5
    part_model, part_inter, part_s = _fit(sample_events(train, None, sample, config.schedule.sample_seed), catalog, config)
    truth = _truth(train, test)
    pids = np.array(sorted(truth), np.int64)
    t0 = time.perf_counter()
    tops, inside = _sample_tops(part_model, part_inter, train, pids, config.models.final.user_chunk)

    def ndcg(of: np.ndarray) -> float | None:  # None (JSON null) where no profile is tested
        value = _ndcg(tops, of, truth)
        return None if np.isnan(value) else round(value, 4)

    return {"profiles": int(profiles), "sample_profiles": int(min(sample, profiles)), "test_profiles": len(pids),
            "folded_in_profiles": int((~inside).sum()), "ndcg20": ndcg(pids),
            "ndcg20_se": round(_ndcg_and_se(tops, pids, truth)[1], 4) if len(pids) > 1 else None,
            "ndcg20_sampled": ndcg(pids[inside]), "ndcg20_folded_in": ndcg(pids[~inside]),
            "fit_s": round(part_s, 1), "rank_s": round(time.perf_counter() - t0, 1)}


def compare_sizes(by_size: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The bar's comparison of ``sample_quality`` results (in size order): ``quality_holds_at_scale``
    (the largest world scores at least the smallest; None where either tested no profile), and how
    far apart they are: ``quality_difference`` (largest - smallest) with its standard error (the two
    worlds' standard errors in quadrature: independent test profiles) and ``quality_difference_z``
    (the difference in standard errors: within +-2, the two worlds are a tie, whichever way the bar's
    "at least" reads)."""
    sizes = list(by_size)
    first, last = by_size[sizes[0]], by_size[sizes[-1]]
    if first["ndcg20"] is None or last["ndcg20"] is None:
        return {"quality_holds_at_scale": None, "quality_difference": None, "quality_difference_se": None,
                "quality_difference_z": None}
    diff = last["ndcg20"] - first["ndcg20"]
    ses = [q.get("ndcg20_se") for q in (first, last)]
    se = float(np.hypot(*ses)) if None not in ses else None
    return {"quality_holds_at_scale": last["ndcg20"] >= first["ndcg20"], "quality_difference": round(diff, 4),
            "quality_difference_se": None if se is None else round(se, 4),
            "quality_difference_z": None if not se else round(diff / se, 2)}


def comparison_line(c: dict[str, Any]) -> str:
    """The printed line of ``compare_sizes``."""
    line = f"the largest world scores at least the smallest: {c['quality_holds_at_scale']}"
    if c.get("quality_difference") is not None:
        line += (f" (largest - smallest {c['quality_difference']:+.4f}, standard error {c['quality_difference_se']}, "
                 f"z {c['quality_difference_z']})")
    return line


def sizes_line(by_size: dict[str, dict[str, Any]]) -> str:
    """The printed lines of ``sample_quality`` per size (the bar: the largest scores at least the smallest)."""
    lines = ["top row NDCG@20, trained on the configured sample, on each world's next-day plays"]
    lines += [f"{size:<6}{q['profiles']:>11,} profiles, {q['test_profiles']:>9,} tested: {q['ndcg20']} "
              f"(standard error {q.get('ndcg20_se')}; sampled {q['ndcg20_sampled']}, folded in {q['ndcg20_folded_in']})"
              for size, q in by_size.items()]
    return "\n".join(lines)


def quality_line(q: dict[str, Any]) -> str:
    """The printed line of ``quality_check``'s result."""
    return (f"top row NDCG@20 on {q['test_profiles']:,} profiles' next-day plays: trained on all {q['ndcg20_full']}, "
            f"on {q['sample_profiles']:,} sampled {q['ndcg20_sample']} (loss {q['ndcg_loss']}; bar <= 0.05); "
            f"the {q['folded_in_profiles']:,} folded in: {q['ndcg20_sample_folded_in']} vs {q['ndcg20_full_folded_in']} trained on")
