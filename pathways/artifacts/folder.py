"""Reading the files of a saved artifact folder, with one error for "nothing saved here"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def read_meta(path: Path, name: str, what: str) -> dict[str, Any]:
    """The JSON file ``path / name``; FileNotFoundError "no <what> at <path>: ..." when missing or broken."""
    try:
        meta: dict[str, Any] = json.loads((path / name).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FileNotFoundError(f"no {what} at {path}: {exc}") from None
    return meta


def read_arrays(file: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``file`` by name, in saved order (no pickles)."""
    with np.load(file, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
