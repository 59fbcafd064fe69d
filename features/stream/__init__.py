"""The durable event stream from the API to the lake and the real-time state.

- ``base``: the ``EventStream`` protocol (append, consumer groups: read / commit / lag), entries,
  errors (``StreamFull``, ``StreamUnavailable``) and the event codec;
- ``segment_log``: the embedded default, an fsynced append-only segment log (no server);
- ``redis_stream``: Redis Streams (production, the online store's Redis);
- ``lake``: the consumer group that compacts a stream into the lake's day partitions;
- ``impressions``: the impressions stream's entries (one per served page) and their lake rows;
- ``realtime``: the consumer group that folds events into playback state and the
  "Because you watched" seed.

``open_stream(config, name)`` builds the backend ``config.stream`` names, for one of two streams:
``events`` (what the API takes: read by the lake and real-time groups) and ``impressions`` (the
artwork serving showed, one entry per page: read by the lake group only, so the real-time consumer
never reads past them). The segment log keeps ``impressions`` in ``<stream dir>/impressions``,
Redis in the key ``<stream.redis_key>:impressions``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from features.stream.base import Appended, EventStream, StreamEntry, StreamFull, StreamUnavailable
from pathways.config import PathwaysConfig

__all__ = ["Appended", "EventStream", "StreamEntry", "StreamFull", "StreamUnavailable", "open_stream", "stream_dir",
           "StreamName", "STREAM_NAMES"]

StreamName = Literal["events", "impressions"]
STREAM_NAMES: tuple[StreamName, ...] = ("events", "impressions")


def stream_dir(config: PathwaysConfig) -> Path:
    """Where the segment log lives: ``stream.log_dir`` or ``<data_dir>/stream``."""
    return Path(config.stream.log_dir) if config.stream.log_dir is not None else Path(config.data_dir) / "stream"


def open_stream(config: PathwaysConfig, name: StreamName = "events") -> EventStream:
    """The stream ``name`` on the backend of ``config.stream`` (see the module docstring)."""
    if name not in STREAM_NAMES:
        raise ValueError(f"unknown stream {name!r} (one of {', '.join(STREAM_NAMES)})")
    cfg = config.stream
    events = name == "events"
    if cfg.backend == "redis":
        from features.stream.redis_stream import RedisEventStream

        return RedisEventStream(
            cfg.redis_url, cfg.redis_key if events else f"{cfg.redis_key}:{name}",
            max_backlog_events=cfg.max_backlog_events, retention_hours=cfg.retention_hours,
            claim_idle_s=cfg.claim_idle_s,
        )
    from features.stream.segment_log import SegmentLog

    return SegmentLog(
        stream_dir(config) if events else stream_dir(config) / name, segment_bytes=cfg.segment_bytes,
        max_backlog_events=cfg.max_backlog_events, dedupe_window_events=cfg.dedupe_window_events,
        retention_hours=cfg.retention_hours,
        groups=(cfg.lake_group, cfg.realtime_group) if events else (cfg.lake_group,),
    )
