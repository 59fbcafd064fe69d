"""``pathways world generate``: writes a world, prints its counts, rejects bad arguments."""

from __future__ import annotations

import pytest

from pathways.cli import main
from world.generator import load_world


def test_generate_tiny_writes_a_loadable_world(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["world", "generate", "--size", "tiny", "--seed", "4", "--out", str(out)]) == 0
    world = load_world(out)
    printed = capsys.readouterr().out
    assert world.config.seed == 4 and world.titles.num_rows == 30
    assert f"{world.events.num_rows:,} events" in printed and "30 titles" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--chunk-profiles", "0"], "--chunk-profiles must be >= 1"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path, capsys, args, message):
    assert main(["world", "generate", "--size", "tiny", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_out_must_be_a_folder(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["world", "generate", "--size", "tiny", "--out", str(f)]) == 2
    assert "--out must be a folder" in capsys.readouterr().err


def test_unknown_size_is_rejected_by_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["world", "generate", "--size", "huge", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
