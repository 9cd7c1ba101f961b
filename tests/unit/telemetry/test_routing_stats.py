"""Routing balance numbers against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posttrain.telemetry.routing_stats import layer_stats, merge_counts, routing_summary


def test_skewed_layer():
    s = layer_stats([10, 10, 10, 30])
    assert s["load_share"] == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    assert s["max_vio"] == pytest.approx(1.0)  # 30 / 15 - 1
    assert s["max_mean_ratio"] == pytest.approx(2.0)
    # H = 3 * (1/6) ln 6 + (1/2) ln 2 = (1/2) ln 12;  normalised by ln 4 = ln 12 / ln 16
    assert s["entropy"] == pytest.approx(0.5 * math.log(12))
    assert s["normalized_entropy"] == pytest.approx(math.log(12) / math.log(16))
    assert s["dead_experts"] == [] and s["total"] == 60.0


def test_uniform_layer_has_entropy_log_e():
    s = layer_stats(np.array([5, 5, 5, 5]))
    assert s["entropy"] == pytest.approx(math.log(4))
    assert s["normalized_entropy"] == pytest.approx(1.0)
    assert s["max_vio"] == pytest.approx(0.0)


def test_collapsed_layer():
    s = layer_stats([0, 0, 8, 0])
    assert s["max_vio"] == pytest.approx(3.0)  # E - 1
    assert s["entropy"] == 0.0 and math.copysign(1, s["entropy"]) == 1  # not -0.0 in reports
    assert s["normalized_entropy"] == 0.0
    assert s["dead_experts"] == [0, 1, 3]


def test_idle_and_single_expert_layers():
    idle = layer_stats([0, 0])
    assert idle["max_vio"] is None and idle["normalized_entropy"] is None
    assert idle["dead_experts"] == [0, 1]
    assert layer_stats([7])["normalized_entropy"] == 1.0


@pytest.mark.parametrize("bad", [[], [1, -1], [1, float("nan")], [[1, 2], [3, 4]]])
def test_bad_counts_raise(bad):
    with pytest.raises(ValueError):
        layer_stats(bad)


def test_summary_aggregates_over_active_layers():
    agg = routing_summary({"l0": [10, 10, 10, 30], "l1": [5, 5, 5, 5], "l2": [0, 0, 0, 0]})["aggregate"]
    assert agg["num_layers"] == 3
    assert agg["mean_max_vio"] == pytest.approx(0.5)  # (1 + 0) / 2; idle l2 has no balance
    assert (agg["max_max_vio"], agg["max_vio_layer"]) == (pytest.approx(1.0), "l0")
    assert agg["mean_normalized_entropy"] == pytest.approx((math.log(12) / math.log(16) + 1) / 2)
    assert agg["dead_experts"] == 4


def test_summary_of_nothing():
    agg = routing_summary({})["aggregate"]
    assert agg["mean_max_vio"] is None and agg["max_vio_layer"] is None and agg["dead_experts"] == 0


def test_merge_counts_sums_per_layer():
    merged = merge_counts([{"l0": [1, 2], "l1": [0, 1]}, {"l0": np.array([3, 4])}])
    assert merged == {"l0": [4, 6], "l1": [0, 1]}
    assert all(type(x) is int for x in merged["l0"])
    with pytest.raises(ValueError, match="l0"):
        merge_counts([{"l0": [1, 2]}, {"l0": [1, 2, 3]}])
