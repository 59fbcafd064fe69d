"""Size presets of the synthetic world: ``preset("tiny")`` ... ``preset("large")``.

A preset sets the size knobs (titles, accounts, days); every other knob (seed, start, shares,
latent dimensions) comes from ``base``. ``"default"`` is ``base`` itself: the configured world.
"""

from __future__ import annotations

from pathways.config import WorldConfig

SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_titles": 30, "n_accounts": 15, "days": 7},  # tests: well under a second
    "small": {"n_titles": 200, "n_accounts": 200, "days": 14},
    "default": {},  # WorldConfig's own sizes: 400 titles, 600 accounts (~1,500 profiles), 28 days
    "large": {"n_titles": 5_000, "n_accounts": 400_000, "days": 7},  # ~1M profiles: stream to disk
}


def preset(name: str, base: WorldConfig | None = None) -> WorldConfig:
    """The ``base`` world config (default: ``WorldConfig()``) resized to preset ``name``."""
    if name not in SIZES:
        raise ValueError(f"unknown world size {name!r}; choose one of {', '.join(SIZES)}")
    base = base or WorldConfig()
    return base.model_copy(update=SIZES[name]) if SIZES[name] else base
