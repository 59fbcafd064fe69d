"""The artwork-policy artifact: a trained policy's kind, config, version, learned arrays and arm layout.

On disk a policy is a folder: ``policy.json`` (kind, config, version), ``state.npz`` (learned
arrays) and ``featurizer.npz`` (the catalog's arm layout it was trained with). The artifact holds
plain data only; ``bandits/artifact.py`` turns it into a policy object and back, so this neutral
package never imports the policy classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathways.artifacts.folder import read_arrays, read_meta

META, STATE, FEATURIZER = "policy.json", "state.npz", "featurizer.npz"


@dataclass(frozen=True)
class ArtworkPolicyArtifact:
    """A saved artwork policy. ``state``: the policy's learned arrays (empty for uniform);
    ``featurizer``: the arm layout's arrays by name (``context_names``, ``title_ids``, ``arm_*``)."""

    kind: str
    config: dict[str, Any]
    version: str
    featurizer: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("kind: an artwork policy needs a kind")
        if not self.featurizer:
            raise ValueError(f"{self.kind}: a saved policy needs its featurizer")

    def save(self, path: Path | str) -> Path:
        """Write the folder ``path`` (created if missing); returns it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / META).write_text(json.dumps({"kind": self.kind, "config": self.config, "version": self.version}))
        state: dict[str, Any] = dict(self.state)  # numpy's stub reads ** as possibly allow_pickle
        featurizer: dict[str, Any] = dict(self.featurizer)
        np.savez(path / STATE, **state)
        np.savez(path / FEATURIZER, **featurizer)
        return path

    @classmethod
    def load(cls, path: Path | str) -> ArtworkPolicyArtifact:
        """The policy saved in the folder ``path``; FileNotFoundError when there is none."""
        path = Path(path)
        meta = read_meta(path, META, "artwork policy")
        state, featurizer = read_arrays(path / STATE), read_arrays(path / FEATURIZER)
        return cls(str(meta["kind"]), dict(meta["config"]), str(meta["version"]), featurizer, state)
