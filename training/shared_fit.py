"""Early-stopped models fitted once a night and shared between training stages, keyed by what they were fit on.

The nightly retrieval stage and the top row (``PathwaysFinal``) both fit SASRec: the same settings
(``models.sasrec``), seed, training events (one sample size for both stages), and validation
(the last ``valid_k`` interactions per profile, carved by the same ``leave_last_k``). Such a fit is
deterministic, so the second stage can take the first one's weights instead of training again.

``fit_key(model, train, valid_k, item_features)`` is a SHA-256 of everything such a fit reads: the
model's class and settings, its seed, the interactions (every array, ids included), the number of
validation interactions carved per user, and the item features when the model reads them
(``EarlyStoppedModel.reads_item_features``). ``save_shared(model, path, key)`` writes the model
(weights as fit on the inner split, ``refit`` off) and its key beside it; ``load_shared(path, key)``
returns the model only when the key matches (a stage reused from an earlier night, other data or
settings: None, and the caller fits its own). Cost: hashing is linear in the interactions (about
0.1 s for 2M); the files are the model's own (SASRec at 20k titles, 64 dims: about 6 MB plus the
histories).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from training.models.torch_utils import EarlyStoppedModel
from training.recommender import Interactions
from training.registry import model_class

KEY_SUFFIX = ".key.json"


def fit_key(model: EarlyStoppedModel, train: Interactions, valid_k: int, item_features: np.ndarray | None = None) -> str:
    """The key of fitting ``model`` (unfitted or fitted: its class, settings and seed) on ``train`` with
    ``valid_k`` interactions per user carved for early stopping."""
    digest = hashlib.sha256()
    params = {"class": _target(model), "config": model.config.model_dump(mode="json"), "seed": model.seed,
              "valid_k": valid_k, "n_users": train.n_users, "n_items": train.n_items}
    digest.update(json.dumps(params, sort_keys=True).encode())
    arrays = [train.users, train.items, train.timestamps, train.user_ids, train.item_ids]
    arrays.append(np.zeros(0, np.float32) if train.weights is None else train.weights)
    if model.reads_item_features and item_features is not None:
        arrays.append(item_features)
    for array in arrays:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _target(model: EarlyStoppedModel) -> str:
    return f"{type(model).__module__}:{type(model).__qualname__}"


def save_shared(model: EarlyStoppedModel, path: Path, key: str) -> Path:
    """Write ``model`` (``model.save``) to ``path`` and its key to ``path`` + ``KEY_SUFFIX`` (last, so a
    key file means a complete model)."""
    if model.config.refit:
        raise ValueError(f"{model.name} was refit on all its data: its weights are not the validation fit a sharer expects")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    key_path = path.with_name(path.name + KEY_SUFFIX)
    tmp = key_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "class": _target(model)}))
    tmp.replace(key_path)
    return path


def load_shared(path: Path | str | None, key: str) -> EarlyStoppedModel | None:
    """The model saved at ``path`` when its key is ``key``, else None (nothing there, or another fit)."""
    if path is None:
        return None
    path = Path(path)
    key_path = path.with_name(path.name + KEY_SUFFIX)
    if not (path.is_file() and key_path.is_file()):
        return None
    saved = json.loads(key_path.read_text())
    if saved.get("key") != key:
        return None
    cls = model_class(saved["class"])
    if not issubclass(cls, EarlyStoppedModel):
        return None
    model: EarlyStoppedModel = cls.load(path)  # each subclass saves its own way
    return model
