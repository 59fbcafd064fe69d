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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pathways.models_config import ModelsConfig


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
    ingest_chunk_rows: int = Field(2_000_000, ge=1)  # a larger event file is ingested this many rows at a time
    block_profiles: int = Field(2_000, ge=1)  # profiles per block of the features stage (its pandas working set)
    materialize_batch_rows: int = Field(50_000, ge=1)  # rows Feast converts and writes online at a time (its memory)


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
    ranker_valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # the latest impressions, held out for metrics
    ranker_gbdt_max_iter: int = Field(150, ge=1)  # the challenger's boosting rounds
    ranker_gbdt_learning_rate: float = Field(0.1, gt=0.0)
    torch_threads: int = Field(1, ge=1)
    mlflow_tracking_uri: str | None = None  # default: sqlite:///<data_dir>/mlflow.db
    experiment_name: str = "pathways"


class CandidateConfig(_Section):
    """Candidate generators (``candidates/``)."""

    per_source: int = Field(120, ge=1)  # titles each generator returns at most
    because_you_watched_rows: int = Field(5, ge=0)  # anchors, one row each
    similar_titles_k: int = Field(30, ge=1)  # snapshot's similar-titles table: titles kept per title (streamed BYW row)
    genre_rows: int = Field(8, ge=0)
    new_release_days: int = Field(120, ge=1)
    continue_min_fraction: float = Field(0.05, ge=0.0, le=1.0)
    finished_fraction: float = Field(0.9, gt=0.0, le=1.0)  # at or above: finished
    # The retrieval models trained nightly (registry names) and the title of the row each serves.
    retrieval_rows: dict[str, str] = Field(
        default_factory=lambda: {"two_tower": "Recommended for you", "sasrec": "Up next for you"})


class PageConfig(_Section):
    """Page assembly (``ranking/page.py``)."""

    max_rows: int = Field(40, ge=1, le=100)
    row_length: int = Field(40, ge=1, le=100)
    dedupe_top_rows: int = Field(10, ge=0)  # no title repeats across the first N rows
    min_row_length: int = Field(5, ge=1)
    diversity_weight: float = Field(0.3, ge=0.0)  # penalty for rows of the same source
    # Rows placed first, in this order, whenever present; their own order is final (not re-scored).
    pinned_sources: tuple[str, ...] = ("continue_watching", "top_picks")
    source_weight: float = Field(0.5, ge=0.0)  # how much a row's own order counts next to the ranker (logit units)

    @field_validator("pinned_sources")
    @classmethod
    def _known_sources(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        from pathways.types import ROW_SOURCES

        unknown = sorted(set(sources) - ROW_SOURCES)
        if unknown:
            raise ValueError(f"unknown row source(s) {unknown}; known: {sorted(ROW_SOURCES)}")
        if len(set(sources)) != len(sources):
            raise ValueError(f"pinned_sources repeats a source: {list(sources)}")
        return sources


class ExperimentConfig(_Section):
    """A/B allocation (``experiments/``)."""

    name: str = "ranker_v1"
    salt: str = "pathways-ranker-2026"
    cells: dict[str, float] = Field(default_factory=lambda: {"control": 0.8, "challenger": 0.2})
    # The nightly job orders each cell's rows with the ranker behind this MLflow alias (a page is built
    # for each cell named here; analysis-only configs may name other cells); cells in ``ltr_cells``
    # are ordered first by the learning-to-rank top-row model where it has a list.
    ranker_aliases: dict[str, str] = Field(default_factory=lambda: {"control": "champion", "challenger": "challenger"})
    ltr_cells: tuple[str, ...] = ("control",)

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> ExperimentConfig:
        if not self.cells:
            raise ValueError("experiment.cells must name at least one cell")
        if any(s < 0 for s in self.cells.values()):
            raise ValueError("experiment.cells shares must be >= 0")
        total = sum(self.cells.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"experiment.cells shares must sum to 1, got {total}")
        if not self.ranker_aliases or not all(self.ranker_aliases.values()):
            raise ValueError("experiment.ranker_aliases must map at least one cell to a non-empty MLflow alias")
        return self


class ServingConfig(_Section):
    """The HTTP service (``serving/``)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    default_row_count: int = Field(40, ge=1, le=100)
    max_row_count: int = Field(100, ge=1, le=1000)
    personalize_budget_ms: float = Field(20.0, gt=0.0)  # the real-time overlay stage; over it: the precomputed page, degraded
    default_region: str = "US"  # for profiles never seen
    snapshot_poll_s: float = Field(2.0, gt=0.0)
    rollback_standby: bool = True  # keep the rollback target loaded beside the live snapshot (a rollback then loads nothing)
    max_ongoing_requests: int = Field(64, ge=1)
    # Replicas and overload (serving/deployment.py, serving/api.py).
    num_replicas: int | None = Field(None, ge=1)  # None: 2 where the machine allows (>= 2 cores, redis stream), else 1
    ingress: Literal["proxy", "haproxy"] = "proxy"  # haproxy: Serve's HAProxy ingress straight to the replicas (needs the haproxy binary)
    replica_cpus: float = Field(0.5, gt=0.0)  # CPUs Ray reserves per replica (its default, 1, fits one replica on 2 cores)
    worker_niceness: int = Field(0, ge=0, le=19)  # the replicas' nice value when serve starts Ray (Ray's own default: 15)
    max_queued_requests: int = Field(512, ge=-1)  # Serve's queue beyond the replicas' ongoing requests (-1: unbounded)
    request_timeout_s: float = Field(10.0, gt=0.0)  # Serve's proxy gives up on a request after this
    overload_inflight: int = Field(24, ge=1)  # requests in one replica beyond which pages are the precomputed fallback
    max_inflight: int = Field(56, ge=1)  # requests in one replica past which: 503 with Retry-After (below max_ongoing_requests)
    page_workers: int = Field(2, ge=1)  # threads building pages per replica (the rest in flight wait for one)
    queue_budget_ms: float = Field(100.0, gt=0.0)  # a request that waited longer for a page worker: the fallback (overloaded)
    retry_after_s: int = Field(1, ge=1)
    gil_switch_interval_ms: float = Field(1.0, gt=0.0, le=100.0)  # a replica's sys.setswitchinterval (Python's: 5; 1 measured better)
    # One deadline per page request, split into stage budgets (serving/logic.py).
    deadline_ms: float = Field(45.0, gt=0.0)  # the whole page; each stage gets min(its budget, what is left)
    snapshot_read_budget_ms: float = Field(15.0, gt=0.0)  # the profile's precomputed page (page store read)
    artwork_budget_ms: float = Field(15.0, gt=0.0)  # the artwork policy (online context read); over it: default artwork
    artwork_poll_s: float = Field(10.0, gt=0.0)  # how often the registry's champion artwork policy is re-checked
    serialize_budget_ms: float = Field(10.0, gt=0.0)  # encoding the response (measured, reported in metrics)
    # Hostile input (serving/guards.py, serving/api.py).
    max_body_bytes: int = Field(2**20, ge=1024)  # checked before the body is read
    max_events_per_request: int = Field(1000, ge=1)
    max_profiles_per_request: int = Field(10, ge=1)  # distinct profiles one request may touch
    impression_rows_logged: int = Field(3, ge=0)  # artwork impressions the server logs per page (first rows)
    impression_queue_pages: int = Field(1000, ge=1)  # pages of impressions waiting to be appended; beyond: dropped, counted
    fallback_cache_pages: int = Field(512, ge=0)  # encoded fallback pages kept per replica (region, maturity, rows)
    degraded_log_every_s: float = Field(10.0, ge=0.0)  # a degradation is logged at most this often per reason


class PipelineConfig(_Section):
    """How the nightly job runs (``pipelines/``)."""

    executor: Literal["local", "ray"] = "local"  # ray: one page builder per worker, as actors
    ray_address: str | None = None  # None: start a local Ray; "auto" or "ray://...": join a cluster
    workers: int = Field(2, ge=1)
    chunk_size: int = Field(256, ge=1)  # profiles per task
    threads: int = Field(2, ge=1, le=64)  # blocks of pages / top-row lists built at once in-process (the heavy steps release the GIL)
    history_shard_profiles: int = Field(50_000, ge=1)  # profiles per shard of the pages stage's one-pass history split
    compile_trees: bool = True  # the page builder scores a gbdt ranker with its trees compiled (tl2cgen; sklearn without a C compiler)
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
    rate_limit_storage: str = "memory://"  # per replica; "redis://127.0.0.1:6379/1": one limit across replicas
    verified_tokens_cached: int = Field(4096, ge=0, le=1_000_000)  # tokens whose signature was checked, until they expire

    @model_validator(mode="after")
    def _rate_limit_parses(self) -> AuthConfig:
        from limits import parse

        try:
            parse(self.rate_limit)
        except ValueError as exc:
            raise ValueError(f"auth.rate_limit {self.rate_limit!r} is not 'N/second|minute|hour': {exc}") from None
        return self


class StreamConfig(_Section):
    """The durable event stream: API -> stream -> lake and real-time state (``features/stream/``)."""

    backend: Literal["log", "redis"] = "log"  # log: embedded fsynced segment log, no server
    log_dir: Path | None = None  # default: <data_dir>/stream
    segment_bytes: int = Field(64 * 2**20, ge=4096)  # a new segment file past this size
    redis_url: str = "redis://127.0.0.1:6379/0"  # the same Redis as the online store in production
    redis_key: str = "pathways:events"
    max_backlog_events: int = Field(5_000_000, ge=1)  # unconsumed by the slowest group: 503, Retry-After
    retention_hours: float = Field(72.0, gt=0.0)  # consumed segments / entries older than this are dropped
    dedupe_window_events: int = Field(500_000, ge=0)  # recent event ids the stream recognises on retry
    retry_after_s: int = Field(1, ge=1)
    lake_group: str = Field("lake", min_length=1)
    realtime_group: str = Field("realtime", min_length=1)
    realtime: Literal["inline", "external"] = "inline"  # inline: the API process applies before answering
    realtime_commit_s: float = Field(1.0, ge=0.0)  # real-time group commits at most this often (re-applying is idempotent)
    flush_events: int = Field(20_000, ge=1)  # lake consumer: flush at this many events ...
    flush_interval_s: float = Field(5.0, gt=0.0)  # ... or this long after the first unflushed one
    claim_idle_s: float = Field(30.0, gt=0.0)  # redis: pending entries idle this long are claimed
    dedupe_days: int = Field(1, ge=0)  # lake: an id is checked against its date's partition and N days before
    recent_plays: int = Field(5, ge=1)  # "Because you watched" seed: plays kept per profile


class BanditConfig(_Section):
    """The nightly artwork job (``bandits/nightly.py``): the candidate policy, its offline evaluation, its name."""

    kind: Literal["uniform", "epsilon_greedy", "linucb", "thompson", "logistic"] = "logistic"  # bandits.policies
    params: dict[str, float | int | bool] = Field(default_factory=dict)  # the policy's config overrides (e.g. C)
    holdout_fraction: float = Field(0.3, gt=0.0, lt=1.0)  # the latest rounds, kept for doubly robust OPE
    n_bootstrap: int = Field(200, ge=10)  # bootstrap resamples for the DR interval
    alpha: float = Field(0.05, gt=0.0, lt=1.0)  # the interval's miscoverage: promote on its lower bound
    bootstrap_seed: int = 0
    min_impressions: int = Field(200, ge=1)  # fewer logged artwork impressions: the stage skips
    context_block_rows: int = Field(500_000, ge=1)  # impressions per point-in-time join of their contexts (memory)
    name: str = "artwork_policy"  # registered model name
    experiment: str = "artwork"  # MLflow experiment


class PublishConfig(_Section):
    """Publishing snapshots (``pipelines/publish.py``): the page store, the checks before a switch, retention."""

    page_store: Literal["auto", "sqlite", "redis"] = "auto"  # auto: redis when features.online_store is redis
    redis_url: str | None = None  # default: features.redis_connection
    redis_prefix: str = "pathways:pages"
    redis_timeout_s: float = Field(0.05, gt=0.0)  # serving's socket timeout per page read
    write_block: int = Field(2000, ge=1)  # pages per write batch (SQLite transaction, Redis pipeline)
    max_page_count_change: float = Field(0.5, ge=0.0)  # refuse when |pages/previous - 1| exceeds it
    max_empty_share_increase: float = Field(0.05, ge=0.0, le=1.0)  # refuse when the empty-page share rises more
    retention_days: float = Field(7.0, ge=0.0)  # Redis page versions beyond pipeline.keep_snapshots older than this go
    keep_runs: int = Field(5, ge=1)  # run folders (runs/<run id>) kept, newest first; the running one always
    raw_retention_days: float = Field(14.0, ge=0.0)  # raw API event files ingested longer ago than this are deleted
    keep_model_versions: int = Field(5, ge=1)  # per registered model; versions with an alias are always kept


class ScheduleConfig(_Section):
    """What the nightly job retrains when, and on how much data (``pipelines/schedule.py``).

    A training stage listed in ``retrain_every_days`` with N > 0 reuses the models of the latest
    earlier run that trained them less than N days ago (its artifacts and registry versions);
    inference (the pages) always covers every profile. ``window_days`` / ``sample_profiles`` cut
    what the training stages read: the last N days of events, and a deterministic hash sample of
    profiles (None: everything). Without ``sample_profiles``, a world of more than
    ``sample_above_profiles`` profiles trains on a sample of that many (None: never by default).
    ``stage_sample_profiles`` caps one training stage's sample (the smaller of it and the general
    rule), a cap that grows to ``stage_sample_share`` of the world's profiles when that is larger:
    the stages with deep models (SASRec / two-tower, cost epochs x events: the retrieval rows and
    the top row, whose generators include them) train on 20,000 profiles up to 500,000 profiles and
    on 4% beyond (40,000 at a million), while ALS and the rankers follow the general rule. Samples are nested (one salted hash: a smaller sample is a
    subset of a larger one). The profiles a stage left out are folded into its trained models
    (their factors and top rows).
    """

    retrain_every_days: dict[str, float] = Field(default_factory=dict)  # e.g. {"train_retrieval": 7, "train_top_row": 7}
    window_days: float | None = Field(None, gt=0.0)
    sample_profiles: int | None = Field(None, ge=1)
    sample_above_profiles: int | None = Field(100_000, ge=1)
    stage_sample_profiles: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {"train_retrieval": 20_000, "train_top_row": 20_000})  # per stage, at most
    # ...or this share of the world's profiles, if larger: a capped stage's sample grows with the world
    # (the 1M world: 39,967 profiles instead of 20,000, NDCG@20 of the top row 0.3997 -> 0.4015 on the next day)
    stage_sample_share: float = Field(0.04, ge=0.0, le=1.0)
    sample_seed: int = 0
    incremental_materialize: bool = True  # load only what changed since the last materialization (Feast)

    @field_validator("retrain_every_days", "stage_sample_profiles")
    @classmethod
    def _known_stages(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = {"train_als", "train_retrieval", "train_top_row", "train_ranker", "artwork"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown training stage(s) {unknown}; known: {sorted(known)}")
        if any(v < 0 for v in value.values()):
            raise ValueError("retrain_every_days values must be >= 0")
        return value


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
    bandits: BanditConfig = BanditConfig()
    models: ModelsConfig = ModelsConfig()
    stream: StreamConfig = StreamConfig()
    publish: PublishConfig = PublishConfig()
    schedule: ScheduleConfig = ScheduleConfig()

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
    def trees_cache_dir(self) -> Path:
        return self.data_dir / "cache" / "trees"  # compiled gbdt rankers (pathways.artifacts.compiled_trees)

    @property
    def mlflow_uri(self) -> str:
        if self.training.mlflow_tracking_uri:
            return self.training.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    def with_overrides(self, overrides: dict[str, Any]) -> PathwaysConfig:
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
