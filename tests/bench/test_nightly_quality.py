"""The nightly bench's quality-at-scale comparison: the bar's "at least", and the difference in
standard errors that says whether two worlds' scores are a tie."""

from __future__ import annotations

import pytest

from bench.nightly_quality import compare_sizes, comparison_line


def _q(ndcg, se):
    return {"ndcg20": ndcg, "ndcg20_se": se}


def test_the_largest_world_is_compared_with_the_smallest_in_standard_errors() -> None:
    c = compare_sizes({"100k": _q(0.4008, 0.0028), "300k": _q(0.35, 0.001), "1m": _q(0.4015, 0.0009)})
    assert c["quality_holds_at_scale"] is True  # the middle size plays no part
    assert c["quality_difference"] == pytest.approx(0.0007)
    assert c["quality_difference_se"] == pytest.approx((0.0028**2 + 0.0009**2) ** 0.5, abs=1e-4)
    assert c["quality_difference_z"] == pytest.approx(0.0007 / 0.00294, abs=0.01)
    assert "+0.0007" in comparison_line(c) and "True" in comparison_line(c)

    tie = compare_sizes({"100k": _q(0.4, 0.001), "1m": _q(0.4, 0.002)})
    assert tie["quality_holds_at_scale"] is True and tie["quality_difference_z"] == 0  # "at least"
    worse = compare_sizes({"100k": _q(0.41, 0.001), "1m": _q(0.40, 0.001)})
    assert worse["quality_holds_at_scale"] is False and worse["quality_difference_z"] == pytest.approx(-7.07, abs=0.01)


def test_a_world_without_test_profiles_or_errors_gives_no_verdict() -> None:
    assert compare_sizes({"100k": _q(None, None), "1m": _q(0.4, 0.001)})["quality_holds_at_scale"] is None
    c = compare_sizes({"100k": _q(0.40, None), "1m": _q(0.41, 0.001)})
    assert c["quality_holds_at_scale"] is True and c["quality_difference_se"] is None and c["quality_difference_z"] is None
    assert "standard error None" in comparison_line(c)
