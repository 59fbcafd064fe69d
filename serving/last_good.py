"""Start-up with a bad snapshot: serve the last good version on disk instead of nothing.

``SnapshotStore`` keeps the live snapshot when a new version fails to load, but at start-up there
is no live one: a broken ``CURRENT`` version would leave the replica serving empty pages.
``LastGoodLoader`` is the store's loader: while nothing is live, a version that fails to load is
replaced by the newest older version under the root that loads (versions sort by publish time);
once something is live it loads exactly what it is asked (so a bad new version is refused and the
live one kept, as before). ``pointer_problem`` tells health that the live version is not the one
``CURRENT`` names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pathways.snapshot import SnapshotError, current_version, list_versions
from serving.snapshots import LoadedSnapshot, load_snapshot

log = logging.getLogger(__name__)

LOAD_ERRORS = (SnapshotError, OSError, ValueError, KeyError)


class LastGoodLoader:
    """``loader(path)`` for ``SnapshotStore``; ``has_live()`` says whether a snapshot is live."""

    def __init__(self, has_live: Callable[[], bool], load: Callable[[Path], LoadedSnapshot] = load_snapshot) -> None:
        self.has_live = has_live
        self.load = load

    def __call__(self, path: Path) -> LoadedSnapshot:
        try:
            return self.load(path)
        except LOAD_ERRORS as exc:
            if self.has_live():
                raise
            root = Path(path).parent
            for version in reversed([v for v in list_versions(root) if v < Path(path).name]):
                try:
                    snapshot = self.load(root / version)
                except LOAD_ERRORS:
                    continue
                log.error("snapshot %s cannot be loaded (%s); serving the last good version %s", Path(path).name, exc,
                          version)
                return snapshot
            raise


def pointer_problem(root: Path, live: LoadedSnapshot | None) -> str | None:
    """Why the live snapshot is not what ``CURRENT`` names (None when it is, or nothing is live)."""
    try:
        named = current_version(root)
    except OSError:
        return None
    if live is None or named is None or named == live.version:
        return None
    return f"serving {live.version}; CURRENT names {named} (failed to load, or loading)"
