"""All of Pathways' configuration, in one typed place.

Every section is a frozen pydantic model that rejects unknown keys, so a typo in a config file
is an error, not a silently ignored setting. ``load_config(path)`` reads a TOML or JSON file
(any section may be omitted: the embedded defaults apply) and ``config.with_overrides(...)``
applies dotted overrides (``{"world.n_profiles": 100}``) from the command line.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldConfig(_Section):
    """Size and shape of the synthetic world (``world/``)."""

    seed: int = 7
    n_titles: int = Field(400, ge=10)
    n_accounts: int = Field(600, ge=1)
    profiles_per_account: tuple[int, int] = (1, 4)  # inclusive range
    kids_profile_share: float = Field(0.15, ge=0.0, le=1.0)
    days: int = Field(28, ge=1)  # length of the simulated event log
    sessions_per_profile_per_week: float = Field(3.0, gt=0.0)
    start: str = "2026-10-01T00:00:00Z"  # first moment of the log (ISO 8601, UTC)
    n_latent: int = Field(8, ge=2)  # dimensions of member tastes / title traits


class FeatureConfig(_Section):
    """Feature computation and the Feast store (``features/``)."""

    project: str = "pathways"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "127.0.0.1:6379"
    offline_store: Literal["duckdb", "file"] = "duckdb"
    ttl_days: int = Field(90, ge=1)
    trending_half_life_days: float = Field(3.0, gt=0.0)
    recency_half_life_days: float = Field(14.0, gt=0.0)


class TrainingConfig(_Section):
    """Model training (``training/``); MLflow tracking and registry."""

    seed: int = 11
    als_factors: int = Field(64, ge=2)
    als_iterations: int = Field(15, ge=1)
    als_regularization: float = Field(50.0, ge=0.0)  # 30-100 best on the default world (bench/candidates.py)
    als_alpha: float = Field(20.0, gt=0.0)
    ranker_epochs: int = Field(4, ge=1)
    ranker_hidden: int = Field(64, ge=4)
    ranker_lr: float = Field(3e-3, gt=0.0)
    ranker_batch_size: int = Field(1024, ge=16)
    ranker_max_rows: int = Field(60_000, ge=100)  # impressions sampled for training (seeded)
    torch_threads: int = Field(1, ge=1)
    mlflow_tracking_uri: str | None = None  # default: sqlite:///<data_dir>/mlflow.db
    experiment_name: str = "pathways"


class CandidateConfig(_Section):
    """Candidate generators (``candidates/``)."""

    per_source: int = Field(120, ge=1)  # titles each generator returns at most
    because_you_watched_rows: int = Field(5, ge=0)  # anchors, one row each
    genre_rows: int = Field(8, ge=0)
    new_release_days: int = Field(120, ge=1)
    continue_min_fraction: float = Field(0.05, ge=0.0, le=1.0)
    finished_fraction: float = Field(0.9, gt=0.0, le=1.0)  # at or above: finished


class PageConfig(_Section):
    """Page assembly (``ranking/page.py``)."""

    max_rows: int = Field(40, ge=1, le=100)
    row_length: int = Field(40, ge=1, le=100)
    dedupe_top_rows: int = Field(10, ge=0)  # no title repeats across the first N rows
    min_row_length: int = Field(5, ge=1)
    diversity_weight: float = Field(0.3, ge=0.0)  # penalty for rows of the same source


class ExperimentConfig(_Section):
    """A/B allocation (``experiments/``)."""

    name: str = "ranker_v1"
    salt: str = "pathways-ranker-2026"
    cells: dict[str, float] = Field(default_factory=lambda: {"control": 0.8, "challenger": 0.2})

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> "ExperimentConfig":
        if not self.cells:
            raise ValueError("experiment.cells must name at least one cell")
        if any(s < 0 for s in self.cells.values()):
            raise ValueError("experiment.cells shares must be >= 0")
        total = sum(self.cells.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"experiment.cells shares must sum to 1, got {total}")
        return self


class ServingConfig(_Section):
    """The HTTP service (``serving/``)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    default_row_count: int = Field(40, ge=1, le=100)
    max_row_count: int = Field(100, ge=1, le=1000)
    personalize_budget_ms: float = Field(150.0, gt=0.0)  # over it: the fallback page
    default_region: str = "US"  # for profiles never seen
    snapshot_poll_s: float = Field(2.0, gt=0.0)
    max_ongoing_requests: int = Field(64, ge=1)


class PipelineConfig(_Section):
    """How the nightly job runs (``pipelines/``)."""

    executor: Literal["local", "ray"] = "local"  # ray: one page builder per worker, as actors
    ray_address: str | None = None  # None: start a local Ray; "auto" or "ray://...": join a cluster
    workers: int = Field(2, ge=1)
    chunk_size: int = Field(256, ge=1)  # profiles per task
    keep_snapshots: int = Field(3, ge=1)


class AuthConfig(_Section):
    """Access control for the API (``serving/auth.py``): signed bearer tokens, scopes, rate limits.

    The signing key is read from the environment variable ``secret_env`` or, failing that, from
    ``secret_file``; it never appears in a config file, a snapshot or a log.
    """

    enabled: bool = True
    algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    secret_env: str = "PATHWAYS_JWT_SECRET"
    secret_file: Path | None = None  # e.g. <data_dir>/secrets/jwt_secret, written by `pathways demo`
    issuer: str = "pathways"
    audience: str = "pathways-api"
    token_ttl_s: int = Field(3600, ge=60, le=30 * 86400)
    leeway_s: int = Field(30, ge=0, le=600)
    service_subjects: tuple[str, ...] = ()  # subjects of service tokens (the app backend): any profile
    rate_limit: str = "200/second"  # per token subject, `limits` notation ("N/second", "N/minute")

    @model_validator(mode="after")
    def _rate_limit_parses(self) -> "AuthConfig":
        from limits import parse

        try:
            parse(self.rate_limit)
        except ValueError as exc:
            raise ValueError(f"auth.rate_limit {self.rate_limit!r} is not 'N/second|minute|hour': {exc}") from None
        return self


class PathwaysConfig(_Section):
    """The root: every section, plus where data lives."""

    data_dir: Path = Path("var")
    world: WorldConfig = WorldConfig()
    features: FeatureConfig = FeatureConfig()
    training: TrainingConfig = TrainingConfig()
    candidates: CandidateConfig = CandidateConfig()
    page: PageConfig = PageConfig()
    experiment: ExperimentConfig = ExperimentConfig()
    serving: ServingConfig = ServingConfig()
    auth: AuthConfig = AuthConfig()
    pipeline: PipelineConfig = PipelineConfig()

    # Derived locations, all under data_dir.
    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def feature_repo_dir(self) -> Path:
        return self.data_dir / "feature_repo"

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def mlflow_uri(self) -> str:
        if self.training.mlflow_tracking_uri:
            return self.training.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    def with_overrides(self, overrides: dict[str, Any]) -> "PathwaysConfig":
        """A copy with dotted keys replaced, validated again (``{"world.seed": 3}``)."""
        data = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                if key not in node or not isinstance(node[key], dict):
                    raise ConfigError(f"unknown config key {dotted!r}")
                node = node[key]
            if leaf not in node:
                raise ConfigError(f"unknown config key {dotted!r}")
            node[leaf] = value
        return _validate(data, source="overrides")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says which key and why."""


def _validate(data: dict[str, Any], source: str) -> PathwaysConfig:
    try:
        return PathwaysConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration in {source}: {problems}") from None


def load_config(path: Path | str | None = None, **overrides: Any) -> PathwaysConfig:
    """Read a TOML or JSON config file (or the embedded defaults when ``path`` is None)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot parse {path}: {exc}") from None
    config = _validate(data, source=str(path) if path else "defaults")
    return config.with_overrides(overrides) if overrides else config


def parse_override(text: str) -> tuple[str, Any]:
    """``"world.n_titles=50"`` -> ``("world.n_titles", 50)``; values are read as JSON if they can be."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value
