"""The nightly job promotes a better candidate and keeps the champion against a worse one."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bandits.nightly import split_log, train_and_maybe_promote
from bandits.serving import ArtworkSelector
from pathways import tracking
from pathways.cli import main
from pathways.config import BanditConfig, ConfigError, load_config


def test_promotion_rule_both_ways(world, uniform_log, mlflow_uri, tmp_path, capsys):
    name = "artwork_policy_test"
    cfg = BanditConfig(kind="logistic", n_bootstrap=100, name=name, experiment="tests")
    first = train_and_maybe_promote(uniform_log, mlflow_uri, world.featurizer, cfg)
    assert first.promoted and first.baseline == "logged behaviour"
    assert first.candidate.lo > first.baseline_value == pytest.approx(uniform_log.take(np.arange(14_000, 20_000)).reward.mean())
    assert tracking.alias_version(name) == first.candidate_version

    worse = BanditConfig(kind="uniform", n_bootstrap=100, name=name, experiment="tests")
    second = train_and_maybe_promote(uniform_log, mlflow_uri, world.featurizer, worse)
    assert not second.promoted and second.baseline == f"champion v{first.candidate_version}"
    assert second.candidate.lo <= second.baseline_value
    assert tracking.alias_version(name) == first.candidate_version  # champion unchanged
    assert tracking.alias_version(name, tracking.CHALLENGER) == second.candidate_version

    served = ArtworkSelector.load(mlflow_uri, name=name, context_fn=world.truth.context)
    arms, props = served.select_page(3, world.title_ids[:20], np.arange(20), "req")
    assert served.version.startswith("logistic-") and np.all(props > 0)
    import mlflow.pyfunc
    import pandas as pd

    frame = pd.DataFrame(world.truth.context(np.array([3, 3])), columns=list(world.featurizer.context_names))
    frame["title_id"] = world.title_ids[:2]
    probs = mlflow.pyfunc.load_model(tracking.alias_uri(name)).predict(frame)  # the MLflow form agrees
    np.testing.assert_allclose(np.asarray(probs).sum(axis=1), 1.0)

    log_path = uniform_log.write_parquet(tmp_path / "log.parquet")
    world.featurizer.save(tmp_path / "featurizer.npz")
    assert main(["bandits", "evaluate", "--logs", str(log_path), "--policies", "uniform", "--bootstrap", "20", "--tracking-uri", mlflow_uri, "--name", name]) == 0
    assert any(line.startswith(f"champion:{served.version}") for line in capsys.readouterr().out.splitlines())

    average = ArtworkSelector.load(mlflow_uri, name=name)  # no context source: the average member
    assert average.context_fn(np.array([1, 2])).shape == (2, world.featurizer.n_context)


def test_load_without_champion_raises(mlflow_uri, world):
    with pytest.raises(FileNotFoundError, match="no artwork policy"):
        ArtworkSelector.load(mlflow_uri, name="never_registered", context_fn=world.truth.context)


def test_split_needs_enough_rounds(uniform_log):
    with pytest.raises(ValueError, match="too few"):
        split_log(uniform_log.take(np.arange(1)), 0.3)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"bandits.holdout_fraction": 1.0}, "bandits.holdout_fraction: Input should be less than 1"),
        ({"bandits.holdout_fraction": 0.0}, "bandits.holdout_fraction: Input should be greater than 0"),
        ({"bandits.kind": "svm"}, "bandits.kind: Input should be 'uniform', 'epsilon_greedy'"),
        ({"bandits.n_bootstrap": 5}, "bandits.n_bootstrap: Input should be greater than or equal to 10"),
        ({"bandits.alpha": 1.5}, "bandits.alpha: Input should be less than 1"),
        ({"bandits.min_impressions": 0}, "bandits.min_impressions: Input should be greater than or equal to 1"),
        ({"bandits.holdout": 0.3}, "unknown config key 'bandits.holdout'"),
    ],
)
def test_bandit_settings_are_validated_in_the_config(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(**override)


def test_bandit_defaults_are_the_nightly_jobs() -> None:
    cfg = load_config().bandits
    assert (cfg.kind, cfg.params, cfg.holdout_fraction, cfg.name, cfg.experiment) == ("logistic", {}, 0.3, "artwork_policy", "artwork")
    assert (cfg.n_bootstrap, cfg.alpha, cfg.bootstrap_seed, cfg.min_impressions) == (200, 0.05, 0, 200)
    assert load_config(**{"bandits.params": {"C": 0.5}}).bandits.params == {"C": 0.5}
