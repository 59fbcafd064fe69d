"""``pathways experiments analyze`` end to end, its flag errors, and a cheap import."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from pathways.cli import main
from pathways.config import ExperimentConfig
from tests.experiments import sim


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    events, profiles = sim.world(70, n_profiles=150, days=2, pre_days=1, config=ExperimentConfig(),
                                 play_rate={"control": 0.2, "challenger": 0.3})
    pq.write_table(events, root / "events.parquet")
    (root / "world").mkdir()
    pq.write_table(profiles, root / "world" / "profiles.parquet")
    return root


def test_analyze_prints_and_writes_json_and_plots(files, tmp_path, capsys):
    rc = main([
        "experiments", "analyze", "--events", str(files / "events.parquet"), "--profiles", str(files / "world"),
        "--start", "2026-10-01T00:00:00Z", "--end", "2026-10-03", "--pre-start", "2026-09-30",
        "--json", str(tmp_path / "out" / "report.json"), "--plots", str(tmp_path / "plots"),
    ])
    out = capsys.readouterr().out
    assert rc == 0
    assert "sample ratio" in out and "plays_per_impression" in out and "CUPED(pre_plays" in out
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sum(data["cells"].values()) == 150 and {r["metric"] for r in data["results"]} >= {"plays", "impressions"}
    assert max(row["day"] for row in data["cumulative"]) == 2
    assert (tmp_path / "plots" / "lift.png").stat().st_size > 0


def test_defaults_cover_the_whole_log(files, capsys):
    assert main(["experiments", "analyze", "--events", str(files / "events.parquet"),
                 "--profiles", str(files / "world" / "profiles.parquet"), "--no-daily"]) == 0
    assert "experiment ranker_v1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pre-start", "2026-09-30"], "--pre-start needs --start"),
        (["--start", "2026-10-02", "--end", "2026-10-01"], "--start .* must be before --end"),
        (["--start", "2026-10-01", "--pre-start", "2026-10-01"], "--pre-start .* must be before --start"),
        (["--json", "."], "is a folder"),
        (["--config", "missing.toml"], "--config: not found"),
        (["--control", "base"], "control cell 'base' is not"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(files, extra, message, capsys):
    base = ["experiments", "analyze", "--events", str(files / "events.parquet"), "--profiles", str(files / "world")]
    assert main(base + extra) == 2
    assert __import__("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--start", "yesterday"], "--start: not an ISO 8601 time: 'yesterday'"),
        (["--alpha", "0.7"], r"--alpha: must be in \(0, 0.5\)"),
        (["--alpha", "x"], "--alpha: not a number"),
    ],
)
def test_unparseable_flags_are_argparse_errors(files, flags, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["experiments", "analyze", "--events", "e", "--profiles", "p", *flags])
    assert exc.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_missing_inputs(files, tmp_path, capsys):
    assert main(["experiments", "analyze", "--events", str(tmp_path / "nope.parquet"), "--profiles", "x"]) == 2
    assert "--events: not found" in capsys.readouterr().err
    assert main(["experiments", "analyze", "--events", str(tmp_path), "--profiles", str(files / "world")]) == 2
    assert "no Parquet files" in capsys.readouterr().err
    assert main(["experiments", "analyze", "--events", str(files / "events.parquet"), "--profiles", str(tmp_path)]) == 2
    assert "without profiles.parquet" in capsys.readouterr().err


def test_importing_the_cli_module_is_cheap():
    code = ("import sys, experiments.cli; heavy = [m for m in ('pandas', 'scipy', 'matplotlib', 'pyarrow') "
            "if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
