"""The command line: every sub-command registers, bad input exits 2 with a clear message."""

from __future__ import annotations

import pytest

from pathways.cli import build_parser, main


def test_all_subcommands_register():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"nightly", "demo", "serve", "world", "evaluate", "bandits", "ingest"} <= set(sub.choices)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nightly", "--set", "world.bogus=1"], "unknown config key 'world.bogus'"),
        (["nightly", "--set", "serving.port=0"], "serving.port"),
        (["nightly", "--set", "noequals"], "override must look like"),
    ],
)
def test_bad_config_exits_2_with_the_key(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_nightly_without_inputs_says_what_to_do(tmp_path, capsys):
    assert main(["nightly", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nightly inputs missing" in err and "pathways world generate" in err


def test_unknown_stage_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nightly", "--until", "nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_generate_corrupt_ingest_accounts_for_every_row(tmp_path, capsys):
    import pyarrow.parquet as pq

    world, bad, lake = tmp_path / "world", tmp_path / "bad.parquet", tmp_path / "lake"
    assert main(["world", "generate", "--size", "tiny", "--out", str(world)]) == 0
    assert main(["world", "corrupt", "--world", str(world), "--fraction", "0.1", "--out", str(bad)]) == 0
    out = capsys.readouterr().out
    injected = {k: int(v) for k, v in (kv.split("=") for kv in out.split("bad: ")[1].strip().split(", "))}
    assert main(["ingest", "--events", str(bad), "--world", str(world), "--lake", str(lake)]) == 0
    summary = capsys.readouterr().out
    clean = pq.read_metadata(world / "events.parquet").num_rows
    rows_in = pq.read_metadata(bad).num_rows
    assert f"{rows_in} rows in, {clean} accepted, {rows_in - clean} quarantined" in summary
    for reason, n in injected.items():
        assert f"{reason}={n}" in summary
    assert main(["world", "corrupt", "--world", str(tmp_path / "nope"), "--out", str(bad)]) == 2
