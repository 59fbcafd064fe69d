"""Property test: for any small config, the clean log keeps the hard rules and the schema."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.schema import EVENT_SCHEMA, KIDS_MAX_MATURITY
from pathways.config import WorldConfig
from world.generator import generate_world

configs = st.builds(
    WorldConfig,
    seed=st.integers(0, 10_000),
    n_titles=st.integers(10, 40),
    n_accounts=st.integers(1, 8),
    profiles_per_account=st.sampled_from([(1, 1), (1, 4), (2, 3), (4, 4)]),
    kids_profile_share=st.sampled_from([0.0, 0.3, 1.0]),
    days=st.integers(1, 4),
    sessions_per_profile_per_week=st.sampled_from([0.5, 3.0, 14.0]),
    n_latent=st.integers(2, 6),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs)
def test_any_small_world_keeps_the_rules(config):
    w = generate_world(config)
    ev = w.events
    assert ev.schema.equals(EVENT_SCHEMA)
    ids = ev.column("event_id").to_numpy(zero_copy_only=False)
    assert len(set(ids)) == len(ids)
    start = datetime.fromisoformat(config.start.replace("Z", "+00:00"))
    if ev.num_rows:
        ts = ev.column("ts").to_pylist()
        assert min(ts) >= start and max(ts) < start + timedelta(days=config.days)
    kids = w.profiles.column("is_kids").to_numpy(zero_copy_only=False)
    ceiling = w.profiles.column("max_maturity_level").to_numpy()
    assert (ceiling[kids] == KIDS_MAX_MATURITY).all()
    # Every shown or played title is licensed in the profile's region and within its ceiling.
    regions = dict(zip(w.profiles["profile_id"].to_pylist(), w.profiles["region"].to_pylist()))
    ceilings = dict(zip(w.profiles["profile_id"].to_pylist(), ceiling.tolist()))
    licence = {t: set(r) for t, r in zip(w.titles["title_id"].to_pylist(), w.titles["regions"].to_pylist())}
    maturity = dict(zip(w.titles["title_id"].to_pylist(), w.titles["maturity_level"].to_pylist()))
    kinds = ev.column("event_type").to_pylist()
    for kind, p, t in zip(kinds, ev["profile_id"].to_pylist(), ev["title_id"].to_pylist()):
        if kind in ("impression", "artwork_impression", "play"):
            assert regions[p] in licence[t] and maturity[t] <= ceilings[p]
    frac = ev.column("fraction_watched").to_numpy(zero_copy_only=False)
    frac = frac[~np.isnan(frac)]
    assert ((frac >= 0) & (frac <= 1)).all()
