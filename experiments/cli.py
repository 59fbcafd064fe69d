"""``pathways experiments analyze``: the A/B report from an event log, as text, JSON and PNGs.

Heavy imports (pandas, scipy, matplotlib) happen inside the handler so ``pathways --help``
stays fast.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


def _iso_time(text: str) -> datetime:
    """argparse type: an ISO 8601 time (``2026-10-01``, ``2026-10-01T12:00:00Z``); naive = UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-10-01T00:00:00Z)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be in (0, 0.5), got {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``experiments analyze`` to the pathways command line."""
    exp = subparsers.add_parser("experiments", help="A/B test analysis")
    esub = exp.add_subparsers(dest="experiments_command", metavar="ACTION")
    esub.required = True
    p = esub.add_parser(
        "analyze",
        help="sample-ratio check and lifts (Welch/delta, CUPED) per metric from an event log",
        description="Per-profile metrics from events in [start, end), cells from the experiment "
        "config's allocation; with --pre-start, [pre-start, start) supplies CUPED covariates.",
    )
    p.add_argument("--events", type=Path, required=True,
                   help="events: a Parquet file (EVENT_SCHEMA), a lake folder (events/part-*.parquet) "
                   "or a folder of Parquet files")
    p.add_argument("--profiles", type=Path, required=True,
                   help="profiles: a Parquet file (PROFILE_SCHEMA) or a world folder with profiles.parquet")
    p.add_argument("--start", type=_iso_time, help="test start, ISO 8601 (default: first event)")
    p.add_argument("--end", type=_iso_time, help="test end, exclusive (default: just after the last event)")
    p.add_argument("--pre-start", type=_iso_time, help="pre-period start for CUPED (needs --start)")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--plots", type=Path, help="also write PNG figures into this folder")
    p.add_argument("--config", type=Path, help="Pathways TOML/JSON config (its [experiment] section)")
    p.add_argument("--alpha", type=_alpha, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--control", default="control", help="the control cell's name (default: control)")
    p.add_argument("--no-daily", action="store_true", help="skip the day-by-day cumulative lifts")
    p.set_defaults(handler=run_analyze)


def _check_args(args: argparse.Namespace) -> None:
    """Every flag problem as one clear ValueError/FileNotFoundError before any work is done."""
    if not args.events.exists():
        raise FileNotFoundError(f"--events: not found: {args.events}")
    if not args.profiles.exists():
        raise FileNotFoundError(f"--profiles: not found: {args.profiles}")
    if args.pre_start is not None and args.start is None:
        raise ValueError("--pre-start needs --start (the pre-period ends where the test starts)")
    if args.start is not None and args.end is not None and args.start >= args.end:
        raise ValueError(f"--start ({args.start.isoformat()}) must be before --end ({args.end.isoformat()})")
    if args.pre_start is not None and args.pre_start >= args.start:
        raise ValueError(
            f"--pre-start ({args.pre_start.isoformat()}) must be before --start ({args.start.isoformat()})"
        )
    if args.json is not None and args.json.is_dir():
        raise ValueError(f"--json {args.json} is a folder; give a file path")
    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise ValueError(f"--plots {args.plots} exists and is not a folder")
    if args.config is not None and not args.config.is_file():
        raise FileNotFoundError(f"--config: not found: {args.config}")


def read_events(path: Path) -> pa.Table:
    """Events from a Parquet file, a lake folder (``events/part-*.parquet``) or a Parquet folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_file():
        return pq.read_table(path)
    if (path / "events").is_dir():
        from features.ingest import read_events as read_lake

        return read_lake(path)
    parts = sorted(path.glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"--events: no Parquet files in {path} (nor a lake's events/ folder)")
    return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")


def read_profiles(path: Path) -> pa.Table:
    """Profiles from a Parquet file or a world folder's ``profiles.parquet``."""
    import pyarrow.parquet as pq

    file = path / "profiles.parquet" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"--profiles: {path} is a folder without profiles.parquet")
    return pq.read_table(file)


def run_analyze(args: argparse.Namespace) -> int:
    """Print the report; write JSON/PNGs when asked. Exit 0 (a sample-ratio mismatch is warned)."""
    _check_args(args)
    from experiments.event_metrics import analyze_events
    from pathways.config import load_config

    config = load_config(args.config).experiment
    report = analyze_events(
        read_events(args.events), read_profiles(args.profiles), config,
        args.start, args.end, args.pre_start,
        alpha=args.alpha, control=args.control, daily=not args.no_daily,
    )
    print(report.table())
    if report.srm.flagged:
        print(f"WARNING: sample-ratio mismatch (p < {report.srm.threshold:g}): check allocation and logging first",
              file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.to_json())
        print(f"wrote {args.json}")
    if args.plots is not None:
        from experiments.plots import save_report_plots

        for path in save_report_plots(report, args.plots):
            print(f"wrote {path}")
    return 0
