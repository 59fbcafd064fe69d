"""``pathways serve`` argument parsing (the server itself is covered by test_e2e)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from serving import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pathways")
    cli.register(p.add_subparsers(dest="command"))
    return p


def test_serve_parses_its_options():
    args = parser().parse_args(["serve", "--data-dir", "d", "--port", "8123", "--memory-playback"])
    assert args.handler is cli._serve
    assert args.data_dir == Path("d") and args.port == 8123 and args.memory_playback and not args.access_log


def test_serve_rejects_a_bad_port(monkeypatch):
    args = parser().parse_args(["serve", "--port", "70000"])
    with pytest.raises(ValueError, match="--port"):
        cli._serve(args)


def test_serve_dev_token_prints_a_token_and_a_missing_key_fails_fast(tmp_path, monkeypatch, capsys):
    from serving import deployment

    started: list = []
    monkeypatch.setattr(deployment, "run", lambda config, **kw: started.append(config))
    monkeypatch.delenv("PATHWAYS_JWT_SECRET", raising=False)
    cli._serve(parser().parse_args(["serve", "--data-dir", str(tmp_path), "--dev-token"]))
    out = capsys.readouterr().out
    assert "export TOKEN='" in out and (tmp_path / "secrets" / "jwt_secret").stat().st_mode & 0o777 == 0o600
    assert started and "pathways-dev" in started[0].auth.service_subjects
    (tmp_path / "secrets" / "jwt_secret").unlink()
    with pytest.raises(ValueError, match="no signing key of at least 32 characters"):
        deployment.start(started[0])
