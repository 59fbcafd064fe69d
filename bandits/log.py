"""The artwork log: one row per served artwork impression, typed and validated on construction.

A row says who saw which title (``profile_id``, ``title_id``), what the policy knew
(``context``, noisy slot affinities named by ``context_names``), what it chose (``arm`` of
``n_arms`` variants, with ``propensity`` = P(arm | context) under the logging policy), which
policy chose (``policy_version``), where (``position`` on the page) and what happened
(``reward``: 1 when the member clicked or played the title afterwards, else 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CONTEXT_NAMES_KEY = b"pathways.bandit_log.context_names"
REWARD_EVENTS = ("artwork_click", "play")


@dataclass(frozen=True)
class BanditLog:
    """Parallel arrays of length n; ``context`` is float32 (n, S). Invalid input raises ValueError."""

    context: np.ndarray  # float32 (n, S)
    profile_id: np.ndarray  # int64 (n,)
    title_id: np.ndarray  # int64 (n,)
    arm: np.ndarray  # int32 (n,), in [0, n_arms)
    n_arms: np.ndarray  # int32 (n,), >= 1
    propensity: np.ndarray  # float64 (n,), in (0, 1]
    position: np.ndarray  # int32 (n,), >= 0
    policy_version: np.ndarray  # str (n,)
    reward: np.ndarray  # float32 (n,), finite
    context_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ctx = np.asarray(self.context, dtype=np.float32)
        if ctx.ndim != 2:
            raise ValueError(f"context: expected a 2-d array (n, S), got shape {ctx.shape}")
        if not np.all(np.isfinite(ctx)):
            raise ValueError("context: must be finite")
        n = ctx.shape[0]
        dtypes = {
            "profile_id": np.int64,
            "title_id": np.int64,
            "arm": np.int32,
            "n_arms": np.int32,
            "propensity": np.float64,
            "position": np.int32,
            "policy_version": str,
            "reward": np.float32,
        }
        for name, dtype in dtypes.items():
            value = np.asarray(getattr(self, name))
            if value.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},) to match context, got {value.shape}")
            if dtype is not str and value.dtype.kind not in "iuf":
                raise ValueError(f"{name}: expected numbers, got dtype {value.dtype}")
            object.__setattr__(self, name, value.astype(dtype))
        object.__setattr__(self, "context", ctx)
        object.__setattr__(self, "context_names", tuple(self.context_names))
        if self.context_names and len(self.context_names) != ctx.shape[1]:
            raise ValueError(f"context_names: {len(self.context_names)} names for {ctx.shape[1]} context columns")
        if np.any(self.n_arms < 1):
            raise ValueError("n_arms: must be >= 1")
        if np.any((self.arm < 0) | (self.arm >= self.n_arms)):
            raise ValueError("arm: must be in [0, n_arms)")
        if not np.all((self.propensity > 0) & (self.propensity <= 1)):
            raise ValueError("propensity: must be in (0, 1]")
        if np.any(self.position < 0):
            raise ValueError("position: must be >= 0")
        if not np.all(np.isfinite(self.reward)):
            raise ValueError("reward: must be finite")

    def __len__(self) -> int:
        return int(self.context.shape[0])

    def take(self, index: np.ndarray) -> BanditLog:
        """The rows at ``index`` (int positions or a bool mask), as a new log."""
        fields = ("context", "profile_id", "title_id", "arm", "n_arms", "propensity", "position", "policy_version", "reward")
        return BanditLog(**{f: getattr(self, f)[index] for f in fields}, context_names=self.context_names)

    @classmethod
    def concat(cls, logs: list[BanditLog]) -> BanditLog:
        if not logs:
            raise ValueError("logs: nothing to concatenate")
        names = {lg.context_names for lg in logs}
        if len(names) != 1:
            raise ValueError("context_names: logs disagree on the context layout")
        fields = ("context", "profile_id", "title_id", "arm", "n_arms", "propensity", "position", "policy_version", "reward")
        return cls(**{f: np.concatenate([getattr(lg, f) for lg in logs]) for f in fields}, context_names=logs[0].context_names)

    def to_table(self) -> pa.Table:
        """Arrow table; the context is a fixed-size list column, its names in the schema metadata."""
        s = self.context.shape[1]
        ctx = pa.FixedSizeListArray.from_arrays(pa.array(self.context.reshape(-1), pa.float32()), s)
        table = pa.table(
            {
                "context": ctx,
                "profile_id": pa.array(self.profile_id, pa.int64()),
                "title_id": pa.array(self.title_id, pa.int64()),
                "arm": pa.array(self.arm, pa.int32()),
                "n_arms": pa.array(self.n_arms, pa.int32()),
                "propensity": pa.array(self.propensity, pa.float64()),
                "position": pa.array(self.position, pa.int32()),
                "policy_version": pa.array(self.policy_version.tolist(), pa.string()),
                "reward": pa.array(self.reward, pa.float32()),
            }
        )
        return table.replace_schema_metadata({CONTEXT_NAMES_KEY: json.dumps(list(self.context_names)).encode()})

    @classmethod
    def from_table(cls, table: pa.Table) -> BanditLog:
        missing = {"context", "profile_id", "title_id", "arm", "n_arms", "propensity", "position", "policy_version", "reward"} - set(
            table.column_names
        )
        if missing:
            raise ValueError(f"table: missing columns {sorted(missing)}")
        meta = table.schema.metadata or {}
        names = tuple(json.loads(meta[CONTEXT_NAMES_KEY])) if CONTEXT_NAMES_KEY in meta else ()
        ctx_col = table.column("context").combine_chunks()
        width = ctx_col.type.list_size if pa.types.is_fixed_size_list(ctx_col.type) else len(names)
        flat = ctx_col.flatten().to_numpy(zero_copy_only=False)
        cols = {c: table.column(c).to_numpy() for c in ("profile_id", "title_id", "arm", "n_arms", "propensity", "position", "reward")}
        return cls(
            context=flat.reshape(len(table), width),
            policy_version=np.asarray(table.column("policy_version").to_pylist(), dtype=str),
            context_names=names,
            **cols,
        )

    def write_parquet(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.to_table(), path)
        return path

    @classmethod
    def read_parquet(cls, path: str | Path) -> BanditLog:
        return cls.from_table(pq.read_table(path))

    @classmethod
    def from_events(
        cls,
        events: pa.Table,
        context_fn: Callable[[np.ndarray], np.ndarray],
        n_arms_fn: Callable[[np.ndarray], np.ndarray],
        context_names: tuple[str, ...] = (),
    ) -> BanditLog:
        """Build the log from an event table (``features.schema.EVENT_SCHEMA``).

        Each ``artwork_impression`` is a round; its reward is 1 when an ``artwork_click`` or
        ``play`` of the same (profile, title, session) follows it (at the same time or later).
        ``context_fn(profile_ids) -> (n, S)`` rebuilds what the policy knew; ``n_arms_fn(title_ids)``
        gives each title's variant count. Impressions lacking artwork_id or propensity raise.
        """
        df = events.select(
            ["event_type", "ts", "profile_id", "title_id", "session_id", "position", "artwork_id", "propensity", "policy_version"]
        ).to_pandas()
        imp = df[df["event_type"] == "artwork_impression"].reset_index(drop=True)
        for col in ("artwork_id", "propensity", "title_id"):
            if imp[col].isna().any():
                raise ValueError(f"events: {int(imp[col].isna().sum())} artwork_impression events lack {col}")
        imp["session_id"] = imp["session_id"].fillna("")
        imp["row"] = np.arange(len(imp))
        hits = df[df["event_type"].isin(REWARD_EVENTS)][["profile_id", "title_id", "session_id", "ts"]]
        hits = hits.assign(session_id=hits["session_id"].fillna("")).rename(columns={"ts": "hit_ts"})
        joined = imp[["row", "profile_id", "title_id", "session_id", "ts"]].merge(hits, on=["profile_id", "title_id", "session_id"])
        rewarded = joined.loc[joined["hit_ts"] >= joined["ts"], "row"].unique()
        reward = np.zeros(len(imp), dtype=np.float32)
        reward[rewarded] = 1.0
        profiles = imp["profile_id"].to_numpy(np.int64)
        titles = imp["title_id"].to_numpy(np.int64)
        return cls(
            context=np.asarray(context_fn(profiles), dtype=np.float32).reshape(len(imp), -1),
            profile_id=profiles,
            title_id=titles,
            arm=imp["artwork_id"].to_numpy(np.int32),
            n_arms=np.asarray(n_arms_fn(titles), dtype=np.int32),
            propensity=imp["propensity"].to_numpy(np.float64),
            position=imp["position"].fillna(0).to_numpy(np.int32),
            policy_version=imp["policy_version"].fillna("unknown").to_numpy(str),
            reward=reward,
            context_names=context_names,
        )
