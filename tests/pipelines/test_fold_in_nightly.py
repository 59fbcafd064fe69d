"""Training on a sample of profiles, inference on every profile: the nightly job's training stages
fold the profiles the sample left out into the trained models (ALS factors, retrieval vectors, the
top row's lists), each equal to what the model's own inference gives for that profile alone."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features.lake_scan import read_lake
from pathways.artifacts.factors import FactorArtifacts
from pathways.artifacts.top_lists import TopLists
from pathways.config import PathwaysConfig
from pipelines.nightly import run_nightly
from pipelines.schedule import UNSAMPLED_DIR, training_sample
from training.als import interaction_matrix, nightly_als
from training.data import POSITIVE_TYPES, fold_in_blocks
from training.recommender import Interactions

pytestmark = pytest.mark.e2e
SAMPLE = 45


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, mlflow_uri):
    from world.generator import generate_to_dir
    from world.sizes import preset

    data = tmp_path_factory.mktemp("sampled")
    config = PathwaysConfig(data_dir=data).with_overrides(
        {"training.mlflow_tracking_uri": mlflow_uri, "schedule.sample_profiles": SAMPLE,
         "pipeline.history_shard_profiles": 7})  # several profile ranges of left-out profiles
    world = preset("tiny", base=config.world).model_copy(update={"n_accounts": 30, "days": 21, "n_titles": 80})
    generate_to_dir(world, config.raw_dir / "world")
    ctx, _ = run_nightly(config, progress=False, until="train_top_row")
    return config, ctx


def _positives(config: PathwaysConfig) -> pa.Table:
    events = read_lake(config.lake_dir, ("event_type", "profile_id", "title_id", "ts", "fraction_watched"))
    return events.filter(pc.is_in(events["event_type"], pa.array(list(POSITIVE_TYPES))))


def test_left_out_profiles_get_factors_and_a_top_row_equal_to_the_models_own_inference(sampled):
    config, ctx = sampled
    events = _positives(config)
    als = FactorArtifacts.load(ctx.outputs["train_als"]["path"])
    lists = TopLists.load(ctx.outputs["train_top_row"]["path"]).lists
    trained = ctx.outputs["train_top_row"]["profiles"]
    assert trained <= SAMPLE and ctx.outputs["train_top_row"]["lists"] == len(lists) > trained
    assert ctx.outputs["train_als"]["folded_in"] > 0
    every = set(events["profile_id"].to_pylist())
    assert set(lists) == every  # every profile with a positive gets a top row, sampled or not
    played = set(events.filter(pc.equal(events["event_type"], "play"))["profile_id"].to_pylist())
    assert set(als.profile_ids.tolist()) == played
    assert list(als.profile_ids) == sorted(als.profile_ids)
    for name in config.candidates.retrieval_rows:
        vectors = FactorArtifacts.load(Path(ctx.outputs["train_retrieval"]["dir"]) / name)
        assert set(vectors.profile_ids.tolist()) == every
    top_row = mlflow.pyfunc.load_model("models:/top_row@champion").unwrap_python_model().model
    item_ids = np.unique(pq.read_table(config.raw_dir / "world" / "titles.parquet")["title_id"].to_numpy())
    sample = training_sample(config.lake_dir, None, SAMPLE, config.schedule.sample_seed)
    left_out = sorted(set(sample.left_out.tolist()) & every)
    assert left_out
    for pid in (left_out[0], left_out[-1]):
        mine = events.filter(pc.equal(events["profile_id"], pid))
        # ALS: one least-squares solve against the registered item factors.
        model = nightly_als(config.training)
        model.item_factors_ = als.item_factors
        summed, _, tids = interaction_matrix(mine)
        coo = summed.tocoo()
        alone = model.fold_in(Interactions(coo.row.astype(np.int64), np.searchsorted(als.title_ids, tids)[coo.col],
                                           np.zeros(coo.nnz, np.int64), 1, len(als.title_ids), weights=coo.data))
        np.testing.assert_allclose(als.user_factors[als.profile_row[pid]], alone.user_factors_[0], rtol=1e-4, atol=1e-5)
        # Top row: the registered model folded in on this profile's history alone.
        (block,) = fold_in_blocks([mine], item_ids)
        items, scores = top_row.fold_in(block).candidates(np.array([0]))
        ok = items[0] >= 0
        np.testing.assert_array_equal(lists[pid][0], item_ids[items[0][ok]])
        np.testing.assert_allclose(lists[pid][1], scores[0][ok], rtol=1e-5, atol=1e-6)
    assert (ctx.run_dir / UNSAMPLED_DIR / "done").is_file()  # split once, shared by the training stages


def test_the_top_row_takes_the_retrieval_stages_sasrec_and_two_tower_instead_of_fitting_them_again(sampled):
    _, ctx = sampled  # both stages train on the same sample with the same settings, seed and genres
    assert Path(ctx.outputs["train_retrieval"]["sasrec_shared"]).is_file()
    assert Path(ctx.outputs["train_retrieval"]["two_tower_shared"]).is_file()
    assert ctx.outputs["train_top_row"]["reused_generators"] == "sasrec,two_tower"
