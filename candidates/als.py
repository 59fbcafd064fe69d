"""ALS factors as an artifact, an exact faiss index over them, and the "Top picks for you" source.

``AlsArtifacts`` is what ``training/als.py`` produces and everything downstream loads: user and
item factors plus the id maps. It lives here (not in ``training``) so that candidates and
serving load it without importing training code. ``FactorIndex`` wraps a faiss ``IndexFlatIP``
(exact inner product: at catalog sizes up to ~100k titles as fast as HNSW, STACK.md).

``FactorSource`` (``AlsSource`` for ALS; a two-tower model's embeddings plug into the same class)
scores every title by ``user_vector . item_vector``. It over-fetches exactly
enough that the top ``per_source`` allowed titles are always found in one search: the titles the
hard rules block for the profile's cohort plus the profile's seen titles plus ``per_source``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from candidates.base import CohortRules, finalize, seen_titles
from pathways.catalog import Catalog
from pathways.config import CandidateConfig
from pathways.types import Candidates, ProfileContext

FACTORS = "als_factors.npz"
META = "als.json"


@dataclass(frozen=True)
class AlsArtifacts:
    """Learned ALS state. ``user_factors`` (n_users, f) float32 row i = ``profile_ids[i]``;
    ``item_factors`` (n_items, f) float32 row j = ``title_ids[j]``."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    profile_ids: np.ndarray  # int64 (n_users,)
    title_ids: np.ndarray  # int64 (n_items,)
    params: dict[str, float | int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        uf = np.ascontiguousarray(self.user_factors, dtype=np.float32)
        itf = np.ascontiguousarray(self.item_factors, dtype=np.float32)
        pids = np.asarray(self.profile_ids, dtype=np.int64)
        tids = np.asarray(self.title_ids, dtype=np.int64)
        if uf.ndim != 2 or itf.ndim != 2 or uf.shape[1] != itf.shape[1]:
            raise ValueError(f"user_factors {uf.shape} and item_factors {itf.shape} must be 2-d with equal width")
        if uf.shape[0] != pids.shape[0]:
            raise ValueError(f"profile_ids has {pids.shape[0]} ids for {uf.shape[0]} user factor rows")
        if itf.shape[0] != tids.shape[0]:
            raise ValueError(f"title_ids has {tids.shape[0]} ids for {itf.shape[0]} item factor rows")
        for name, ids in (("profile_ids", pids), ("title_ids", tids)):
            if np.unique(ids).size != ids.size:
                raise ValueError(f"{name} holds duplicate ids")
        for name, value in (("user_factors", uf), ("item_factors", itf), ("profile_ids", pids), ("title_ids", tids)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_profile_row", {int(p): i for i, p in enumerate(pids)})
        object.__setattr__(self, "_title_row", {int(t): j for j, t in enumerate(tids)})

    @property
    def profile_row(self) -> dict[int, int]:
        """profile id -> row of ``user_factors``."""
        return self._profile_row  # type: ignore[attr-defined]

    @property
    def title_row(self) -> dict[int, int]:
        """title id -> row of ``item_factors``."""
        return self._title_row  # type: ignore[attr-defined]

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(
            path / FACTORS,
            user_factors=self.user_factors,
            item_factors=self.item_factors,
            profile_ids=self.profile_ids,
            title_ids=self.title_ids,
        )
        (path / META).write_text(json.dumps({"params": self.params}, indent=2))
        return path

    @classmethod
    def load(cls, path: Path | str) -> "AlsArtifacts":
        path = Path(path)
        if not (path / FACTORS).is_file():
            raise FileNotFoundError(f"no ALS artifact at {path} (expected {FACTORS})")
        with np.load(path / FACTORS) as z:
            arrays = {k: z[k] for k in ("user_factors", "item_factors", "profile_ids", "title_ids")}
        meta = json.loads((path / META).read_text()) if (path / META).is_file() else {}
        return cls(**arrays, params=meta.get("params", {}))


class FactorIndex:
    """Exact maximum-inner-product search over item vectors (faiss ``IndexFlatIP``).

    ``vectors`` (n_items, f) float32; ``normalize=True`` indexes unit vectors (cosine).
    """

    def __init__(self, vectors: np.ndarray, normalize: bool = False):
        vecs = np.ascontiguousarray(vectors, dtype=np.float32).copy()
        if normalize:
            faiss.normalize_L2(vecs)
        self.normalize = normalize
        self.vectors = vecs
        self.index = faiss.IndexFlatIP(vecs.shape[1])
        self.index.add(vecs)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per query: (scores, rows), each (n_queries, min(k, n_items)), best first."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32).copy()
        if self.normalize:
            faiss.normalize_L2(q)
        k = max(1, min(int(k), len(self)))
        return self.index.search(q, k)


class FactorSource:
    """Titles by ``user_vector . item_vector`` for any factor model, seen titles and rule-breakers
    removed. ALS uses it as "Top picks for you"; a two-tower model plugs in by putting its
    precomputed user and item embeddings in an ``AlsArtifacts`` container with its own name.
    """

    serves_cohorts = False

    def __init__(
        self,
        artifacts: AlsArtifacts,
        catalog: Catalog,
        config: CandidateConfig,
        name: str = "als",
        evidence: str = "Top picks for you",
    ):
        self.name = name
        self.evidence = evidence
        self.artifacts = artifacts
        self.catalog = catalog
        self.config = config
        self.rules = CohortRules(catalog)
        self.item_positions = catalog.positions(artifacts.title_ids)  # item row -> catalog position
        self.index = FactorIndex(artifacts.item_factors)

    def _fetch_k(self, profile: ProfileContext) -> int:
        extra = self.rules.blocked(profile.region, profile.max_maturity_level) + len(seen_titles(profile))
        return min(len(self.index), self.config.per_source + extra)

    def _row(self, profile: ProfileContext, scores: np.ndarray, rows: np.ndarray) -> Candidates:
        valid = rows >= 0
        rows = rows[valid]
        seen = seen_titles(profile)
        cands = Candidates(self.name, self.artifacts.title_ids[rows], scores[valid], self.evidence)
        cands = self.rules.precut(cands, self.item_positions[rows], profile, self.config.per_source + len(seen))
        return finalize(cands, self.catalog, profile, self.config.per_source, exclude=seen)

    def generate(self, profile: ProfileContext) -> list[Candidates]:
        return self.generate_batch([profile])[0]

    def generate_batch(self, profiles: list[ProfileContext]) -> list[list[Candidates]]:
        """One faiss search for every profile with factors; profiles without factors get no rows."""
        out: list[list[Candidates]] = [[] for _ in profiles]
        known = [(i, self.artifacts.profile_row[p.profile_id]) for i, p in enumerate(profiles)
                 if p.profile_id in self.artifacts.profile_row]
        if not known:
            return out
        ks = [self._fetch_k(profiles[i]) for i, _ in known]
        scores, rows = self.index.search(self.artifacts.user_factors[[r for _, r in known]], max(ks))
        for (i, _), k, s, r in zip(known, ks, scores, rows):
            row = self._row(profiles[i], s[:k], r[:k])  # each profile looks at its own k: batch = single
            if len(row):
                out[i] = [row]
        return out


class AlsSource(FactorSource):
    """"Top picks for you" from the nightly ALS model."""

    def __init__(self, artifacts: AlsArtifacts, catalog: Catalog, config: CandidateConfig):
        super().__init__(artifacts, catalog, config, name="als", evidence="Top picks for you")


def als_pyfunc_class() -> type:  # built lazily so importing candidates does not import mlflow
    """An MLflow ``PythonModel`` whose ``predict`` takes a DataFrame with ``profile_id`` and an
    optional ``k`` param and returns each profile's top-k title ids by ALS score (no rules)."""
    import mlflow.pyfunc

    class AlsPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:  # noqa: ANN001 - MLflow's signature
            self.artifacts = AlsArtifacts.load(Path(context.artifacts["als"]))
            self.index = FactorIndex(self.artifacts.item_factors)

        def predict(self, context, model_input, params=None):  # noqa: ANN001
            k = int((params or {}).get("k", 10))
            rows = [self.artifacts.profile_row.get(int(p), -1) for p in model_input["profile_id"]]
            known = [r for r in rows if r >= 0]
            found = iter(self.index.search(self.artifacts.user_factors[known], k)[1]) if known else iter(())
            return [self.artifacts.title_ids[next(found)].tolist() if r >= 0 else [] for r in rows]

    return AlsPyfunc


def load_registered_als(model_uri: str) -> AlsArtifacts:
    """Load ``models:/als@champion`` (or any URI of a logged ALS model) as ``AlsArtifacts``."""
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    found = next(local.rglob(FACTORS), None)
    if found is None:
        raise FileNotFoundError(f"{model_uri} holds no ALS artifact ({FACTORS})")
    return AlsArtifacts.load(found.parent)
