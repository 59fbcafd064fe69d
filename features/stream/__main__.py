"""Run the lake consumers, or print consumer lag: ``python -m features.stream {lake,lag} [--config F]``.

``lake`` reads titles and profiles from ``<data_dir>/raw/world`` (the catalog the events are
checked against), recovers an unfinished batch, then flushes the streams into the lake until
SIGTERM or Ctrl-C (what is buffered is flushed first; a SIGKILL loses nothing either: the
entries are read again from the last commit). It runs one consumer per stream, both streams in
one process by default (``--stream events`` or ``--stream impressions``: one of them).
``lag`` prints each group's lag as JSON (the impressions stream's as ``impressions/<group>``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path
from typing import cast

import pyarrow.parquet as pq

from features.lake_index import EventIdIndex
from features.stream import STREAM_NAMES, StreamName, open_stream
from features.stream.lake import LakeConsumer, run_consumers
from pathways.config import load_config, parse_override


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m features.stream", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["lake", "lag"])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--consumer", default="lake-1", help="consumer name within the group")
    parser.add_argument("--stream", choices=[*STREAM_NAMES, "all"], default="all", help="which stream to land")
    args = parser.parse_args(argv)
    config = load_config(args.config, **dict(parse_override(o) for o in args.set))
    cfg = config.stream
    names = STREAM_NAMES if args.stream == "all" else (cast(StreamName, args.stream),)
    streams = {name: open_stream(config, name) for name in names}
    if args.command == "lag":
        lags = {g: streams["events"].lag(g) for g in (cfg.lake_group, cfg.realtime_group)} if "events" in streams else {}
        if "impressions" in streams:
            lags[f"impressions/{cfg.lake_group}"] = streams["impressions"].lag(cfg.lake_group)
        print(json.dumps(lags))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    world = config.raw_dir / "world"
    titles, profiles = pq.read_table(world / "titles.parquet"), pq.read_table(world / "profiles.parquet")
    index = EventIdIndex(config.lake_dir, dedupe_days=cfg.dedupe_days)  # one, so each sees the other's ids
    consumers = [
        LakeConsumer(stream, config.lake_dir, titles, profiles, group=cfg.lake_group, consumer=args.consumer,
                     flush_events=cfg.flush_events, flush_interval_s=cfg.flush_interval_s,
                     stream_name=name, index=index)
        for name, stream in streams.items()
    ]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_consumers(consumers, stop)
    except KeyboardInterrupt:
        for consumer in consumers:
            consumer.flush()
    finally:
        for stream in streams.values():
            stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
