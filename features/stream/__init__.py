"""The durable event stream from the API to the lake and the real-time state.

- ``base``: the ``EventStream`` protocol (append, consumer groups: read / commit / lag), entries,
  errors (``StreamFull``, ``StreamUnavailable``) and the event codec;
- ``segment_log``: the embedded default, an fsynced append-only segment log (no server);
- ``redis_stream``: Redis Streams (production, the online store's Redis);
- ``lake``: the consumer group that compacts the stream into the lake's day partitions;
- ``realtime``: the consumer group that folds events into playback state and the
  "Because you watched" seed.

``open_stream(config)`` builds the backend ``config.stream`` names.
"""

from __future__ import annotations

from pathlib import Path

from features.stream.base import Appended, EventStream, StreamEntry, StreamFull, StreamUnavailable
from pathways.config import PathwaysConfig

__all__ = ["Appended", "EventStream", "StreamEntry", "StreamFull", "StreamUnavailable", "open_stream", "stream_dir"]


def stream_dir(config: PathwaysConfig) -> Path:
    """Where the segment log lives: ``stream.log_dir`` or ``<data_dir>/stream``."""
    return Path(config.stream.log_dir) if config.stream.log_dir is not None else Path(config.data_dir) / "stream"


def open_stream(config: PathwaysConfig) -> EventStream:
    """The event stream of ``config.stream.backend``."""
    cfg = config.stream
    if cfg.backend == "redis":
        from features.stream.redis_stream import RedisEventStream

        return RedisEventStream(
            cfg.redis_url, cfg.redis_key, max_backlog_events=cfg.max_backlog_events,
            retention_hours=cfg.retention_hours, claim_idle_s=cfg.claim_idle_s,
        )
    from features.stream.segment_log import SegmentLog

    return SegmentLog(
        stream_dir(config), segment_bytes=cfg.segment_bytes, max_backlog_events=cfg.max_backlog_events,
        dedupe_window_events=cfg.dedupe_window_events, retention_hours=cfg.retention_hours,
        groups=(cfg.lake_group, cfg.realtime_group),
    )
