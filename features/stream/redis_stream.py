"""The event stream on Redis Streams (production: the same Redis as the online store).

One stream key holds the events (field ``e``: the event's JSON). ``append`` runs one Lua script
per call, atomic in Redis: per event ``SET <key>:id:<event id> <stream id> NX EX <ttl>`` and,
when the id is new, ``XADD``; so a retried event comes back as a duplicate and is never added
twice, and a stream over ``max_backlog_events`` refuses the whole call (``StreamFull``). With
``appendfsync always`` Redis has the events on disk before answering; the default (everysec)
may lose the last second on a crash of the Redis host, not of the API.

Consumer groups are Redis consumer groups (``XGROUP CREATE ... MKSTREAM``, catching BUSYGROUP).
``read`` returns first the consumer's own pending entries (delivered before a crash, never
acknowledged), then entries another consumer left pending longer than ``claim_idle_s``
(``XAUTOCLAIM``), then new ones (``XREADGROUP >``). ``commit`` is ``XACK``, after which entries
older than every group's oldest unacknowledged one, and than ``retention_hours``, are trimmed
(``XTRIM MINID``). ``lag`` is the group's ``lag`` plus its pending count (``XINFO GROUPS``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from features.stream.base import Appended, StreamEntry, StreamFull, StreamUnavailable, decode_event, encode_event

_APPEND = """
local stream, idprefix, ttl, maxlen = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = (#ARGV - 3) / 2
if redis.call('XLEN', stream) + n > maxlen then return {'FULL'} end
local out = {}
for i = 1, n do
  local eid, payload = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local key = idprefix .. eid
  local known = redis.call('GET', key)
  if known then
    out[i] = 'D' .. known
  else
    local sid = redis.call('XADD', stream, '*', 'e', payload)
    redis.call('SET', key, sid, 'EX', ttl)
    out[i] = sid
  end
end
return out
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError)


class RedisEventStream:
    """``EventStream`` over one Redis stream key (see the module docstring)."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        key: str = "pathways:events",
        max_backlog_events: int = 5_000_000,
        dedupe_ttl_s: int = 3 * 24 * 3600,
        retention_hours: float = 72.0,
        claim_idle_s: float = 30.0,
        client: Any = None,
    ) -> None:
        import redis

        self.key = key
        self.max_backlog_events = max_backlog_events
        self.dedupe_ttl_s = int(dedupe_ttl_s)
        self.retention_ms = int(retention_hours * 3600 * 1000)
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.client = client or redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=1.0)
        self._append = self.client.register_script(_APPEND)
        self._groups: set[str] = set()
        self._pending_after: dict[tuple[str, str], str | None] = {}
        self._errors = _redis_errors()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise StreamUnavailable(f"redis: {exc}") from exc

    def append(self, events: Sequence[Mapping[str, Any]]) -> list[Appended]:
        args: list[Any] = [f"{self.key}:id:", self.dedupe_ttl_s, self.max_backlog_events]
        ids = [str(e["event_id"]) for e in events]
        for eid, event in zip(ids, events):
            args += [eid, encode_event(event)]
        got = self._call(self._append, keys=[self.key], args=args)
        if got and got[0] in (b"FULL", "FULL"):
            raise StreamFull(f"stream {self.key} holds {self.max_backlog_events} events or more")
        out: list[Appended] = []
        for eid, raw in zip(ids, got):
            value = raw.decode() if isinstance(raw, bytes) else str(raw)
            dup = value.startswith("D")
            out.append(Appended(eid, value[1:] if dup else value, duplicate=dup))
        return out

    def _ensure_group(self, group: str) -> None:
        if group in self._groups:
            return
        import redis

        try:
            self._call(self.client.xgroup_create, self.key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(group)

    @staticmethod
    def _entries(items: Sequence[Any]) -> list[StreamEntry]:
        out = []
        for sid, fields in items:
            if fields is None:  # deleted (trimmed) while pending
                continue
            position = sid.decode() if isinstance(sid, bytes) else str(sid)
            out.append(StreamEntry(position, decode_event(fields[b"e"] if b"e" in fields else fields["e"])))
        return out

    def read(self, group: str, consumer: str, max_count: int, block_s: float = 0.0) -> list[StreamEntry]:
        self._ensure_group(group)
        entries: list[StreamEntry] = []
        after = self._pending_after.get((group, consumer), "0")
        if after is not None:  # first, once per process: what this consumer had before a crash
            own = self._call(self.client.xreadgroup, group, consumer, {self.key: after}, count=max_count)
            entries = self._entries(own[0][1]) if own else []
            self._pending_after[(group, consumer)] = entries[-1].position if entries else None
        if len(entries) < max_count:
            claimed = self._call(self.client.xautoclaim, self.key, group, consumer, self.claim_idle_ms, "0-0",
                                 count=max_count - len(entries))
            seen = {e.position for e in entries}
            entries += [e for e in self._entries(claimed[1]) if e.position not in seen]
        if len(entries) < max_count:
            block = int(block_s * 1000) if block_s > 0 and not entries else None
            new = self._call(self.client.xreadgroup, group, consumer, {self.key: ">"}, count=max_count - len(entries),
                             block=block)
            entries += self._entries(new[0][1]) if new else []
        return entries

    def replay(self, positions: Sequence[str]) -> list[StreamEntry]:
        if not positions:
            return []
        ordered = sorted(positions, key=lambda p: tuple(int(x) for x in p.split("-")))
        items = self._call(self.client.xrange, self.key, ordered[0], ordered[-1])
        wanted = set(positions)
        return [e for e in self._entries(items) if e.position in wanted]

    def commit(self, group: str, positions: Sequence[str]) -> None:
        if not positions:
            return
        self._call(self.client.xack, self.key, group, *positions)
        self._trim()

    def _trim(self) -> None:
        """Drop entries every group has acknowledged and older than the retention."""
        floor = int(time.time() * 1000) - self.retention_ms
        for info in self._call(self.client.xinfo_groups, self.key):
            pending = self._call(self.client.xpending, self.key, info["name"])
            oldest = pending["min"] if pending["pending"] else info["last-delivered-id"]
            oldest = oldest.decode() if isinstance(oldest, bytes) else str(oldest)
            floor = min(floor, int(oldest.split("-")[0]))
        if floor > 0:
            self._call(self.client.xtrim, self.key, minid=f"{floor}-0", approximate=True)

    def lag(self, group: str) -> int:
        self._ensure_group(group)
        for info in self._call(self.client.xinfo_groups, self.key):
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name == group:
                return int(info.get("lag") or 0) + int(info.get("pending") or 0)
        return 0

    def rewind(self, group: str) -> None:
        for key in [k for k in self._pending_after if k[0] == group]:
            self._pending_after[key] = "0"

    def close(self) -> None:
        self.client.close()
