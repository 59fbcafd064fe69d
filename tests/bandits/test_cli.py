"""``pathways bandits simulate`` then ``pathways bandits evaluate`` print the OPE table."""

from __future__ import annotations

from pathways.cli import main


def test_simulate_then_evaluate(tmp_path, capsys):
    assert main(["bandits", "simulate", "--out", str(tmp_path), "--rounds", "6000", "--profiles", "200", "--titles", "40"]) == 0
    assert (tmp_path / "log.parquet").is_file() and (tmp_path / "featurizer.npz").is_file()
    capsys.readouterr()
    code = main(["bandits", "evaluate", "--logs", str(tmp_path / "log.parquet"), "--policies", "uniform,linucb", "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "estimator" in out and "interval" in out and "ess" in out
    for policy in ("uniform", "linucb"):
        for est in ("IPS", "SNIPS", "DM", "DR", "SwitchDR", "Replay"):
            assert any(line.split()[:2] == [policy, est] for line in out.splitlines())


def test_evaluate_missing_log_is_a_clear_error(tmp_path, capsys):
    assert main(["bandits", "evaluate", "--logs", str(tmp_path / "nope.parquet")]) == 2
    assert "log file not found" in capsys.readouterr().err
