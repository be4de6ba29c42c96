"""Collective cost models: nccl-tests conventions, hand-computed hierarchies, the measured H200 curve."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodels.collectives import (ALGORITHMS, bus_bandwidth, collective_cost, collective_time_s,
                                    collective_traffic)
from costmodels.roofline import OpCost, price
from hwmodels import get_accelerator, load_profile

NV, NV_A = 450e9, 3e-6  # H100/H200 NVLink 4 per direction, per-step latency of the catalog
IB, IB_A = 50e9, 4e-6  # NDR 400 per GPU


def test_bus_bandwidth_follows_nccl_tests():
    # doc/PERFORMANCE.md: busbw = algbw * 2(n-1)/n (all-reduce), (n-1)/n (gather, scatter, all-to-all)
    assert bus_bandwidth("all_reduce", 1e9, 8, 1e-2) == pytest.approx(1e11 * 14 / 8)
    assert bus_bandwidth("all_gather", 1e9, 8, 1e-2) == pytest.approx(1e11 * 7 / 8)
    assert bus_bandwidth("reduce_scatter", 1e9, 4, 1e-2) == pytest.approx(1e11 * 3 / 4)
    assert bus_bandwidth("all_to_all", 1e9, 2, 1e-2) == pytest.approx(1e11 / 2)
    # a ring at the link's peak has bus bandwidth = link bandwidth, whatever n
    for coll in ("all_reduce", "all_gather", "reduce_scatter"):
        for n in (2, 4, 8):
            t = collective_traffic(coll, 1e9, n)[0] / NV
            assert bus_bandwidth(coll, 1e9, n, t) == pytest.approx(NV)


def test_one_node_is_the_ring_on_the_scale_up_link():
    for coll in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
        for algo in ("ring", "hierarchical"):
            cost = collective_cost(coll, 3e6, 8, 8, NV, NV_A, IB, IB_A, algo)
            assert cost.time_s == pytest.approx(collective_time_s(coll, 3e6, 8, NV, NV_A))


def test_tree_wins_small_all_reduces_and_the_ring_large_ones():
    small = collective_cost("all_reduce", 16e3, 8, 8, NV, NV_A, IB, IB_A)
    assert ALGORITHMS[int(small.algorithm)] == "tree" and small.latency_s == pytest.approx(6 * NV_A)
    large = collective_cost("all_reduce", 1e9, 8, 8, NV, NV_A, IB, IB_A)
    assert ALGORITHMS[int(large.algorithm)] == "ring"


def test_two_nodes_by_hand():
    s = 64e6
    # flat ring over 16 GPUs on 2 nodes: 30 steps, 2 of them over IB; 8 NICs carry 8 ring channels
    ring = collective_cost("all_reduce", s, 16, 8, NV, NV_A, IB, IB_A, "ring")
    assert ring.latency_s == pytest.approx(28 * NV_A + 2 * IB_A)
    assert ring.wire_s == pytest.approx(2 * 15 / 16 * s / min(NV, 8 * IB))
    # hierarchical: reduce-scatter (7 steps) + all-reduce of s/8 over 2 nodes (2 steps) + all-gather (7 steps)
    hier = collective_cost("all_reduce", s, 16, 8, NV, NV_A, IB, IB_A, "hierarchical")
    assert hier.latency_s == pytest.approx(14 * NV_A + 2 * IB_A)
    assert hier.wire_s == pytest.approx(2 * 7 / 8 * s / NV + 2 * 1 / 2 * (s / 8) / IB)
    # tree: 2 S at the bottleneck, latency 2((g-1) a_nv + log2(m) a_ib)
    tree = collective_cost("all_reduce", s, 16, 8, NV, NV_A, IB, IB_A, "tree")
    assert tree.latency_s == pytest.approx(2 * (3 * NV_A + 1 * IB_A))
    assert tree.wire_s == pytest.approx(2 * s / min(NV, 8 * IB))
    auto = collective_cost("all_reduce", s, 16, 8, NV, NV_A, IB, IB_A)
    assert auto.time_s == pytest.approx(min(ring.time_s, hier.time_s, tree.time_s))
    # all-to-all over 16 GPUs, 2 nodes: 7/16 of the buffer over NVLink, 8/16 over IB at once
    a2a = collective_cost("all_to_all", s, 16, 8, NV, NV_A, IB, IB_A)
    assert a2a.wire_s == pytest.approx(max(s * 7 / 16 / NV, s * 8 / 16 / IB))
    # one GPU per node (pipeline stages on two nodes): send/recv at the NIC
    p2p = collective_cost("send_recv", s, 2, 1, NV, NV_A, IB, IB_A)
    assert p2p.time_s == pytest.approx(IB_A + s / IB)


def _priced(coll, message, n, profile, link):
    cost = collective_cost(coll, message, n, n, link.bandwidth_bytes_per_s, link.latency_s,
                           link.bandwidth_bytes_per_s, link.latency_s)
    op = OpCost(coll, "collective", 1, link_bytes=cost.traffic_bytes, link_latency_s=cost.latency_s,
                link_bandwidth_bytes_per_s=cost.bandwidth_bytes_per_s)
    return float(price(op, profile).time_s)


def test_reproduces_the_measured_h200_all_reduce_from_64_kib():
    """The H200 profile's NCCL points (2 GPUs, NVLink, CUDA-graph timing; `roofsim calibrate`)."""
    profile = load_profile("h200-sxm", gpu="h200-sxm")
    link = get_accelerator("h200-sxm").intra_node_link
    points = profile.measurements["collectives"]["all_reduce"]["points"]
    checked = 0
    for size, measured in points:
        if size < 64 * 1024:
            continue
        assert _priced("all_reduce", size, 2, profile, link) == pytest.approx(measured, rel=0.10), size
        checked += 1
    assert checked >= 6
    big, t_big = points[-1]  # 256 MiB: bus bandwidth of the measurement and the model agree
    assert bus_bandwidth("all_reduce", big, 2, _priced("all_reduce", big, 2, profile, link)) == pytest.approx(
        bus_bandwidth("all_reduce", big, 2, t_big), rel=0.05)


sizes = st.floats(1e3, 1e10)
degrees = st.sampled_from([2, 4, 8, 16, 32, 64])
kinds = st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"])


@settings(max_examples=200, deadline=None)
@given(kinds, sizes, degrees, st.sampled_from([1, 2, 4, 8]), st.sampled_from([*ALGORITHMS, "auto"]))
def test_time_is_at_least_bytes_over_the_fastest_link(coll, s, n, g, algo):
    cost = collective_cost(coll, s, n, min(g, n), NV, NV_A, IB, IB_A, algo)
    assert cost.time_s >= cost.traffic_bytes / NV * (1 - 1e-12)
    assert cost.traffic_bytes >= collective_traffic(coll, s, n)[0] * (1 - 1e-12) or algo == "hierarchical"


@settings(max_examples=200, deadline=None)
@given(kinds, sizes, st.sampled_from([2, 4, 8]), st.floats(1.0, 10.0))
def test_one_node_never_slower_than_two_and_bandwidth_never_hurts(coll, s, n, more):
    inside = collective_cost(coll, s, n, n, NV, NV_A, IB, IB_A).time_s
    spread = collective_cost(coll, s, n, n // 2, NV, NV_A, IB, IB_A).time_s
    assert inside <= spread * (1 + 1e-12)
    faster = collective_cost(coll, s, n, n // 2, NV * more, NV_A, IB * more, IB_A).time_s
    assert faster <= spread * (1 + 1e-12)
