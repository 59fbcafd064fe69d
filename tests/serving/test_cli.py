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
