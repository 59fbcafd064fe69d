"""Size presets of the synthetic world: ``preset("tiny")`` ... ``preset("1m")``.

A preset sets the size knobs (titles, accounts, days, sessions); every other knob (seed, start,
shares, latent dimensions) comes from ``base``. ``"default"`` is ``base`` itself: the configured
world. The scale presets (``1k`` ... ``1m``: profiles, at ~2.5 profiles per account) have 20,000
titles (2,000 for ``1k``, ``10k`` and ``30k``, whose ratios measure the growth with profiles alone)
and about 100 events per profile (a week at ~1.6 sessions), the shape of ``bench/nightly.py``'s bar.
"""

from __future__ import annotations

from pathways.config import WorldConfig

_SCALE = {"days": 7, "sessions_per_profile_per_week": 1.6}
SIZES: dict[str, dict[str, float]] = {
    "tiny": {"n_titles": 30, "n_accounts": 15, "days": 7},  # tests: well under a second
    "small": {"n_titles": 200, "n_accounts": 200, "days": 14},
    "default": {},  # WorldConfig's own sizes: 400 titles, 600 accounts (~1,500 profiles), 28 days
    "large": {"n_titles": 5_000, "n_accounts": 400_000, "days": 7},  # ~1M profiles: stream to disk
    "1k": {"n_titles": 2_000, "n_accounts": 400, **_SCALE},
    "10k": {"n_titles": 2_000, "n_accounts": 4_000, **_SCALE},
    "30k": {"n_titles": 2_000, "n_accounts": 12_000, **_SCALE},
    "100k": {"n_titles": 20_000, "n_accounts": 40_000, **_SCALE},
    "300k": {"n_titles": 20_000, "n_accounts": 120_000, **_SCALE},
    "1m": {"n_titles": 20_000, "n_accounts": 400_000, **_SCALE},
}


def preset(name: str, base: WorldConfig | None = None) -> WorldConfig:
    """The ``base`` world config (default: ``WorldConfig()``) resized to preset ``name``."""
    if name not in SIZES:
        raise ValueError(f"unknown world size {name!r}; choose one of {', '.join(SIZES)}")
    base = base or WorldConfig()
    return WorldConfig.model_validate({**base.model_dump(), **SIZES[name]}) if SIZES[name] else base
