"""Run the lake consumer, or print consumer lag: ``python -m features.stream {lake,lag} [--config F]``.

``lake`` reads titles and profiles from ``<data_dir>/raw/world`` (the catalog the events are
checked against), recovers an unfinished batch, then flushes the stream into the lake until
SIGTERM or Ctrl-C (what is buffered is flushed first; a SIGKILL loses nothing either: the
entries are read again from the last commit). ``lag`` prints each group's lag as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

import pyarrow.parquet as pq

from features.stream import open_stream
from features.stream.lake import LakeConsumer
from pathways.config import load_config, parse_override


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m features.stream", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["lake", "lag"])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--consumer", default="lake-1", help="consumer name within the group")
    args = parser.parse_args(argv)
    config = load_config(args.config, **dict(parse_override(o) for o in args.set))
    stream = open_stream(config)
    cfg = config.stream
    if args.command == "lag":
        print(json.dumps({g: stream.lag(g) for g in (cfg.lake_group, cfg.realtime_group)}))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    world = config.raw_dir / "world"
    consumer = LakeConsumer(
        stream, config.lake_dir, pq.read_table(world / "titles.parquet"), pq.read_table(world / "profiles.parquet"),
        group=cfg.lake_group, consumer=args.consumer, flush_events=cfg.flush_events,
        flush_interval_s=cfg.flush_interval_s, dedupe_days=cfg.dedupe_days,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        consumer.run(stop)
    except KeyboardInterrupt:
        consumer.flush()
    finally:
        stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
