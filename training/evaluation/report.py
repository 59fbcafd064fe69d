"""What one evaluation produced: per-model results, printable as a table and writable as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.data import Dataset
    from training.evaluation.splits import Split
    from training.evaluation.tuning import TuningConfig

TABLE_COLUMNS = ("ndcg@20", "recall@20", "map@20", "coverage@20", "novelty@20", "diversity@20", "popularity@20")


@dataclass
class ModelResult:
    name: str
    kind: str  # "baseline" or "model"
    params: dict[str, Any]
    metrics: dict[str, float]
    train_seconds: float  # the final fit on the full train split
    eval_seconds: float
    tune_seconds: float  # the Optuna search on the validation split (0 when not tuned)
    n_trials: int
    validation_value: float | None  # best validation metric found while tuning
    run_id: str | None = None  # its MLflow run

    def timings(self) -> dict[str, float]:
        return {"train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "tune_seconds": self.tune_seconds}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Report:
    protocol: str
    data: dict[str, Any]  # source, path, fingerprint, sizes
    tuning: dict[str, Any]
    final: str | None  # the model Pathways serves as its top row, when it was run
    results: dict[str, ModelResult] = field(default_factory=dict)
    candidates: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None  # the parent MLflow run

    @classmethod
    def start(cls, protocol: str, data: Dataset, split: Split, tuning: TuningConfig, final: str | None) -> Report:
        inter = data.interactions
        info = {
            "source": data.source,
            "path": data.path,
            "fingerprint": data.fingerprint(),
            "n_users": inter.n_users,
            "n_items": inter.n_items,
            "n_interactions": len(inter),
            "n_train": len(split.train),
            "n_test_users": len(split.test),
            "n_test": int(sum(len(v) for v in split.test.values())),
        }
        return cls(protocol, info, dataclasses.asdict(tuning), final)

    def tags(self) -> dict[str, str]:
        return {"protocol": self.protocol, "data.source": str(self.data["source"]), "data.fingerprint": self.data["fingerprint"]}

    def tuning_params(self) -> dict[str, Any]:
        return {f"tuning.{k}": v for k, v in self.tuning.items()}

    def best_baseline(self, metric: str = "ndcg@20") -> str | None:
        """The baseline with the highest ``metric`` (default ndcg@20, else the first ndcg@K measured)."""
        baselines = [r for r in self.results.values() if r.kind == "baseline"]
        if not baselines:
            return None
        if metric not in baselines[0].metrics:
            metric = next(m for m in baselines[0].metrics if m.startswith("ndcg@"))
        return max(baselines, key=lambda r: r.metrics[metric]).name

    def table(self, columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
        shown = [c for c in columns if any(c in r.metrics for r in self.results.values())]
        head = ["model", *shown, "train_s", "tune_s", "trials"]
        rows = [
            [r.name, *(f"{r.metrics[c]:.4f}" if c in r.metrics else "-" for c in shown),
             f"{r.train_seconds:.1f}", f"{r.tune_seconds:.1f}", str(r.n_trials)]
            for r in self.results.values()
        ]  # fmt: skip
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
        lines = [
            f"protocol {self.protocol} on {self.data['source']} {self.data['path']} "
            f"({self.data['n_users']} users, {self.data['n_items']} items, {self.data['n_test_users']} test users, "
            f"data {self.data['fingerprint']})",
            "  ".join(h.ljust(w) for h, w in zip(head, widths)),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        if self.candidates:
            parts = ", ".join(f"{n} {v:.3f}" for n, v in self.candidates["recall"].items())
            lines.append(
                f"candidate recall@{self.candidates['budget']}: {parts}; union {self.candidates['union_recall']:.3f}"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "data": self.data,
            "tuning": self.tuning,
            "final": self.final,
            "best_baseline": self.best_baseline(),
            "models": {name: r.to_json() for name, r in self.results.items()},
            "candidates": self.candidates,
            "mlflow_run_id": self.run_id,
        }
