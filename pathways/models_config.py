"""Settings of every recommendation model (``training/models/``): the ``models`` section of ``PathwaysConfig``.

One frozen section per model, named like the model in ``training.registry``; each model class takes
its section (``EASE(config.models.ease)``). The harness tunes the baselines starting from these
values; ``final`` holds the top-row model's own settings, including how its light generators are
configured (they are default-configured, not tuned: the ranker learns how much to trust each one).
Seeds are not model settings: they come from ``training.seed`` (nightly) or the harness's seed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GeneratorName = Literal["popularity", "item_knn", "item_knn_recent", "ease", "als", "bpr", "sasrec", "two_tower"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PopularityConfig(_Section):
    """Most popular: ``count`` distinct train users per item (``users``) or interaction rows
    (``interactions``); ``log1p`` scores log(1 + count) instead of the count."""

    count: Literal["users", "interactions"] = "users"
    log1p: bool = False


class ItemKNNConfig(_Section):
    """Item-kNN with shrunk cosine; ``recency_half_life`` (in items) down-weights older history."""

    k: int = Field(100, ge=1)  # neighbours kept per item
    shrink: float = Field(10.0, ge=0.0)
    block: int = Field(1024, ge=1)  # items per block of the similarity computation (memory only)
    recency_half_life: float | None = Field(None, gt=0.0)


class EASEConfig(_Section):
    """EASE closed form. ``solver``: ``cholesky`` (float32 Cholesky of the item Gram, or the
    user-side Woodbury form when there are fewer users than items) or ``inverse`` (float64 inverse
    of the item Gram). Items with fewer than ``min_count`` train users score 0."""

    l2: float = Field(500.0, gt=0.0)
    max_items: int = Field(20_000, ge=1)
    min_count: int = Field(1, ge=1)
    solver: Literal["cholesky", "inverse"] = "cholesky"


class ALSConfig(_Section):
    """implicit's ALS. ``weighting`` of the train matrix: ``none`` (binary), ``bm25``, ``tfidf``
    (implicit scales by ``alpha``), or ``confidence``: 1 + alpha * (summed interaction weights,
    e.g. fraction watched) with implicit's own alpha left at 1."""

    factors: int = Field(64, ge=1)
    regularization: float = Field(0.05, ge=0.0)
    alpha: float = Field(10.0, gt=0.0)
    iterations: int = Field(15, ge=1)
    weighting: Literal["none", "bm25", "tfidf", "confidence"] = "bm25"
    num_threads: int = Field(0, ge=0)  # implicit's threads (0 = all cores); ALS results do not depend on it
    calculate_training_loss: bool = False


class BPRConfig(_Section):
    """implicit's BPR (Hogwild updates: results depend on ``num_threads``)."""

    factors: int = Field(64, ge=1)
    learning_rate: float = Field(0.05, gt=0.0)
    regularization: float = Field(0.01, ge=0.0)
    iterations: int = Field(100, ge=1)
    num_threads: int = Field(1, ge=0)


class SASRecConfig(_Section):
    """SASRec (``training/models/sasrec.py``)."""

    dim: int = Field(64, ge=1)
    n_blocks: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    max_len: int = Field(200, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_tokens: int = Field(4096, ge=1)  # padded tokens per step
    max_epochs: int = Field(40, ge=1)
    eval_every: int = Field(3, ge=1)
    patience: int = Field(3, ge=1)  # evaluations without improvement before stopping
    valid_k: int = Field(5, ge=1)  # held out per user from the fit data for early stopping
    refit: bool = False  # True: retrain on all fit data for the best epoch count; False: keep the weights
    # Above this catalog size the sampled softmax (n_negatives): at 20k titles (12,851 profiles of the
    # 100k world, leave-last-5) NDCG@20 0.5166 -> 0.5162, recall@20 0.6139 -> 0.6146, fit 335 -> 101 s.
    full_softmax_max_items: int = Field(10_000, ge=1)
    n_negatives: int = Field(4096, ge=1)  # shared negatives per step for the sampled softmax
    # bf16 autocast: "auto" where the CPU computes bf16 natively (oneDNN says so: AVX512 / AMX). On an
    # AVX2-only CPU (an AMD EPYC here) bf16 is emulated: a step took 2.7 s against 0.46 s in float32.
    bf16: bool | Literal["auto"] = "auto"
    threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SASRecConfig:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        return self


class TwoTowerConfig(_Section):
    """Two-tower retrieval (``training/models/two_tower.py``)."""

    dim: int = Field(64, ge=1)
    history: int = Field(50, ge=1)  # items of the user tower's long-term bag
    recent: int = Field(5, ge=1)  # items of its short-term bag
    temperature: float = Field(0.05, gt=0.0)
    lr: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(1e-6, ge=0.0)
    batch_size: int = Field(1024, ge=1)
    max_epochs: int = Field(40, ge=1)
    eval_every: int = Field(2, ge=1)
    patience: int = Field(3, ge=1)
    valid_k: int = Field(5, ge=1)
    refit: bool = False  # as sasrec.refit
    threads: int = Field(1, ge=1)


class RankerConfig(_Section):
    """Learning to rank over candidate lists (``training/models/ltr.py``): MLP, or the GBDT baseline."""

    loss: Literal["listwise", "pairwise"] = "listwise"
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    batch_lists: int = Field(32, ge=1)
    min_steps_per_epoch: int = Field(10, ge=1)  # small data: an epoch still takes this many steps
    max_epochs: int = Field(60, ge=1)
    patience: int = Field(8, ge=1)
    valid_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    pairs_per_list: int = Field(64, ge=1)
    k: int = Field(20, ge=1)  # cut-off of the early-stopping NDCG
    threads: int = Field(1, ge=1)
    gbdt_max_iter: int = Field(200, ge=1)
    gbdt_learning_rate: float = Field(0.05, gt=0.0)


class FinalConfig(_Section):
    """PathwaysFinal, the top row: candidates from ``generators`` re-ranked by ``ranker``.

    Generators read their own section of ``models`` (``models.sasrec``, ``models.item_knn_recent``
    ...) except those configured here (``popularity``, ``ease``, ``als``): the top row's versions.
    """

    valid_k: int = Field(5, ge=1)
    per_generator: int = Field(200, ge=1)  # top-N each generator contributes
    budget: int = Field(500, ge=1)  # candidates per user after the union
    generators: tuple[GeneratorName, ...] = ("sasrec", "two_tower", "ease", "item_knn_recent", "als", "popularity")
    ranker: Literal["listwise", "pairwise", "gbdt"] = "listwise"
    retrain_neural: bool = False  # False: reuse the validation-fit SASRec/two-tower on full histories
    user_chunk: int = Field(512, ge=1)  # users per block of written lists (a Parquet row group, a thread's task)
    # users scored at once inside a block: their full-catalog scores and sort keys (12 bytes x titles
    # x generators each, 29 MB at 128 users x 20k titles) stay in cache; 512 was 1.35x slower
    score_chunk: int = Field(128, ge=1)
    popularity: PopularityConfig = PopularityConfig(count="interactions", log1p=True)
    ease: EASEConfig = EASEConfig(min_count=2, solver="inverse")
    als: ALSConfig = ALSConfig(weighting="none", num_threads=1)


class ModelsConfig(_Section):
    """Every model's settings, one section per registered name (``training.registry``)."""

    popularity: PopularityConfig = PopularityConfig()
    item_knn: ItemKNNConfig = ItemKNNConfig()
    item_knn_recent: ItemKNNConfig = ItemKNNConfig(recency_half_life=10.0)
    ease: EASEConfig = EASEConfig()
    als: ALSConfig = ALSConfig()
    bpr: BPRConfig = BPRConfig()
    sasrec: SASRecConfig = SASRecConfig()
    two_tower: TwoTowerConfig = TwoTowerConfig()
    ltr: RankerConfig = RankerConfig()
    final: FinalConfig = FinalConfig()
