"""Hard rules: a table of titles and the rule each breaks for a given profile."""

from __future__ import annotations

import numpy as np
import pytest

from pathways.types import Candidates, ProfileContext
from ranking.rules import allowed_mask, enforce, violations


@pytest.mark.parametrize(
    ("title_id", "region", "max_maturity", "finished", "rule"),
    [
        (105, "US", 4, set(), None),  # i=5: maturity 3, licensed US/BR/GB
        (105, "US", 2, set(), "maturity"),
        (107, "US", 4, set(), "licence"),  # i=7: BR only
        (107, "BR", 4, set(), None),
        (101, "JP", 4, set(), "licence"),  # nobody licensed JP
        (102, "BR", 4, {102}, "finished"),
        (5, "US", 4, set(), "unknown title"),
    ],
)
def test_each_rule(catalog, title_id, region, max_maturity, finished, rule):
    got = violations(catalog, [title_id], region, max_maturity, finished)
    assert got == ([] if rule is None else [(title_id, rule)])
    mask = allowed_mask(catalog, np.array([title_id]), region, max_maturity, frozenset(finished))
    assert bool(mask[0]) is (rule is None)


def test_enforce_filters_candidates_and_keeps_order(catalog):
    p = ProfileContext(1, "US", 2, finished=frozenset({104}))
    c = Candidates("als", np.array([100, 101, 104, 107, 108]), np.array([5, 4, 3, 2, 1]))
    out = enforce(c, catalog, p)
    assert out.title_ids.tolist() == [101, 108]
    assert out.scores.tolist() == [4, 1]
