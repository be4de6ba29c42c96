"""Collective cost models: nccl-tests conventions, hand-computed hierarchies, the measured H200 curve."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodels.collectives import (
    ALGORITHMS,
    bus_bandwidth,
    collective_cost,
    collective_time_s,
    collective_traffic,
    protocol_terms,
)
from costmodels.roofline import OpCost, price
from hwmodels import InputError, get_accelerator, get_network, load_profile
from simulator.parallel.comm import price_collective

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


H200 = load_profile("h200-sxm", gpu="h200-sxm")
NVLINK = get_accelerator("h200-sxm").intra_node_link
NDR = get_network("ib-ndr-400").link()


@pytest.mark.parametrize("coll", ["all_gather", "all_to_all"])
def test_each_collective_is_priced_on_its_own_measured_curve(coll):
    """The H200 profile's 2-GPU all-gather and all-to-all points (message S: the gathered tensor, a GPU's
    send buffer), priced as a step prices them, within 10% from 64 KiB up; the all-reduce curve that
    priced every collective before misses them by 16-32%."""
    points = H200.measurements["collectives"]["groups"][coll]["2"]["points"]
    worst_own, worst_all_reduce = 0.0, 0.0
    for size, measured in points:
        cost, overhead = price_collective(H200, coll, float(size), 2, 2, NVLINK, NVLINK)
        own = cost.achieved_time_s + overhead
        if size >= 64 * 1024:
            assert own == pytest.approx(measured, rel=0.10), size
            worst_own = max(worst_own, abs(own / measured - 1))
            worst_all_reduce = max(worst_all_reduce, abs(_priced(coll, float(size), 2, H200, NVLINK) / measured - 1))
    assert worst_own < 0.08 and worst_all_reduce > 0.15


def _with_groups(groups):
    data = H200.model_dump()
    data["measurements"] = {**data["measurements"], "collectives": {"groups": groups}}
    return load_profile(data)


def test_curves_fall_back_to_the_nearest_group_then_to_all_reduce_then_the_kind():
    ag = H200.measurements["collectives"]["groups"]["all_gather"]["2"]
    ar = H200.measurements["collectives"]["groups"]["all_reduce"]["2"]
    wide = {**ag, "efficiency": {**ag["efficiency"], "overhead_s": 9e-6}}
    prof = _with_groups({"all_gather": {"2": ag, "8": wide}, "all_reduce": {"2": ar}})
    assert prof.collective_efficiency("all_gather", 2).overhead_s == ag["efficiency"]["overhead_s"]
    assert prof.collective_efficiency("all_gather", 3).overhead_s == ag["efficiency"]["overhead_s"]  # log2: 2 is nearer
    assert prof.collective_efficiency("all_gather", 4).overhead_s == 9e-6  # a tie goes to the larger group
    assert prof.collective_efficiency("all_gather", 16).overhead_s == 9e-6
    # no reduce-scatter curve: all-reduce's; no curves at all: the collective kind
    assert prof.collective_efficiency("reduce_scatter", 8).overhead_s == ar["efficiency"]["overhead_s"]
    assert prof.collective_efficiency("p2p", 2) == prof.collective_efficiency("send_recv", 2)
    plain = load_profile("h100-sxm")
    assert plain.collective_efficiency("all_to_all", 8) == plain.kinds["collective"]
    bad_curve = {**ag, "efficiency": {**ag["efficiency"], "memory": {"log10_size": [3.0, 9.0], "efficiency": [0.5, 2.0]}}}
    for groups in ({"all_gather": {"two": ag}}, {"allgather": {"2": ag}}, {"all_gather": {"2": bad_curve}}):
        with pytest.raises(InputError) as info:
            _with_groups(groups)
        assert info.value.field == "calibration" and "\n" not in str(info.value)
        assert "measurements.collectives.groups" in str(info.value)


def test_a_sweep_prices_each_point_on_its_own_group_sizes_curve():
    """Arrays of group shapes (a training planner's layouts) cost, point by point, what each shape costs
    alone: the curve and launch overhead of its own in-node group size, the network's protocols."""
    ag = H200.measurements["collectives"]["groups"]["all_gather"]["2"]
    eff = ag["efficiency"]
    slow = {**ag, "efficiency": {**eff, "overhead_s": 9e-6, "memory": {
        "log10_size": eff["memory"]["log10_size"], "efficiency": [e / 2 for e in eff["memory"]["efficiency"]]}}}
    prof = _with_groups({"all_gather": {"2": ag, "8": slow}})
    sizes = np.array([2, 8, 16, 4, 32, 2])
    per_node = np.array([2, 8, 8, 1, 4, 1])
    message = np.array([4e3, 1e6, 3e8, 1e9, 5e7, 2e5])
    cost, overhead = price_collective(prof, "all_gather", message, sizes, per_node, NVLINK, NDR)
    for i in range(sizes.size):
        alone, alone_overhead = price_collective(prof, "all_gather", float(message[i]), int(sizes[i]),
                                                 int(per_node[i]), NVLINK, NDR)
        assert float(cost.achieved_time_s[i] + overhead[i]) == pytest.approx(
            alone.achieved_time_s + alone_overhead, rel=1e-12), i
    assert overhead.tolist() == [eff["overhead_s"], 9e-6, 9e-6, eff["overhead_s"], 9e-6, eff["overhead_s"]]


def test_a_different_all_to_all_curve_changes_only_the_all_to_all_rows():
    from simulator import predict

    groups = H200.measurements["collectives"]["groups"]
    a2a = groups["all_to_all"]["2"]
    slow = {**a2a, "efficiency": {**a2a["efficiency"], "memory": {
        "log10_size": a2a["efficiency"]["memory"]["log10_size"],
        "efficiency": [e / 2 for e in a2a["efficiency"]["memory"]["efficiency"]]}, "overhead_s": 2e-5}}
    changed = _with_groups({**groups, "all_to_all": {"2": slow}})
    sc = {"model": "deepseek-v3", "hardware": {"gpu": "h200-sxm", "num_gpus": 8}, "parallelism": {"tp": 2, "ep": 8},
          "workload": {"phase": "decode", "batch_size": 32, "context_len": 2048}}
    base = {op.name: op.time_s for op in predict({**sc, "calibration": "h200-sxm"}).breakdown}
    other = {op.name: op.time_s for op in predict({**sc, "calibration": changed.model_dump()}).breakdown}
    moved = {name for name in base if other[name] != pytest.approx(base[name], rel=1e-12)}
    assert moved == {"moe.dispatch.all_to_all", "moe.combine.all_to_all"}
    assert all(other[name] > base[name] for name in moved)


def test_the_network_has_its_own_protocol_model():
    """NCCL's tuner (src/graph/tuning.cc): per-protocol network latency and bandwidth factor, at the NIC's
    measured 47 of 50 GB/s; off a rail-optimised fabric every step crosses two more switches."""
    net = get_network("ib-ndr-400")
    assert net.nic_efficiency == pytest.approx(47 / 50)
    expected = ((2.7e-6, 5.0e-6, 0.94 * 0.5), (4.0e-6, 8.5e-6, 0.94 * 0.92), (14e-6, 14e-6, 0.94))
    for got, want in zip(protocol_terms(NDR), expected, strict=True):
        assert got == pytest.approx(want)
    roce = get_network("roce-400")
    hops = 2 * roce.switch_latency_s
    assert protocol_terms(roce.link())[1] == pytest.approx((4.0e-6 + hops, 8.5e-6 + hops, 0.94 * 0.92))
    assert NDR.message_overhead_s == 1e-6


def test_two_nodes_take_the_fastest_network_protocol_by_hand():
    """A 16-GPU ring over two nodes: 28 NVLink steps and 2 network steps; the ring moves at the slower of
    NVLink and the node's 8 NICs, each at its protocol's share; the fastest protocol is taken."""
    s, curve = 64e6, H200.collective_efficiency("all_reduce", 8).memory
    traffic = 2 * 15 / 16 * s
    nvlink = NV * curve.at(traffic)
    by_protocol = [28 * NV_A + 2 * a_ring + traffic / min(nvlink, 8 * IB * e)
                   for a_ring, _, e in protocol_terms(NDR)]
    ring = collective_cost("all_reduce", s, 16, 8, NV, NV_A, IB, IB_A, "ring", intra_efficiency=curve,
                           net_protocols=protocol_terms(NDR))
    assert ring.achieved_time_s == pytest.approx(min(by_protocol))
    assert ring.protocol == by_protocol.index(min(by_protocol))
    assert ring.time_s == pytest.approx(28 * NV_A + 2 * protocol_terms(NDR)[ring.protocol][0] + traffic / min(NV, 8 * IB))
    # a small all-reduce: the tree with LL (2.7 / 5.0 us per network step, half the NIC's rate)
    small = collective_cost("all_reduce", 16384.0, 16, 8, NV, NV_A, IB, IB_A, intra_efficiency=curve,
                            net_protocols=protocol_terms(NDR))
    assert (ALGORITHMS[small.algorithm], small.protocol) == ("tree", 0)
    assert small.latency_s == pytest.approx(2 * (3 * NV_A + 5.0e-6))


def test_hierarchical_all_to_all_by_hand():
    """DeepEP / PXN: (n-g)/n S over the NIC to the same local rank of each other node, (g-1)/g S over
    NVLink (the node's share and the forwarding), both at once; one network message per remote node."""
    s, n, g = 7340032.0, 16, 8
    curve = H200.collective_efficiency("all_to_all", g).memory
    nic, nvl = s * (n - g) / n, s * (g - 1) / g
    cost = collective_cost("all_to_all", s, n, g, NV, NV_A, IB, IB_A, "hierarchical", intra_efficiency=curve,
                           net_protocols=protocol_terms(NDR), net_message_overhead_s=NDR.message_overhead_s)
    options = [max(nvl / (NV * curve.at(nvl)), nic / (IB * e)) + (g - 1) * NV_A + (n // g - 1) * (a + 1e-6)
               for a, _, e in protocol_terms(NDR)]
    assert cost.traffic_bytes == pytest.approx(nic + nvl)
    assert cost.achieved_time_s == pytest.approx(min(options))
    # the direct exchange posts a message per remote GPU: 8 x 1 us against 1 x 1 us
    direct = collective_cost("all_to_all", s, n, g, NV, NV_A, IB, IB_A, "ring", intra_efficiency=curve,
                             net_protocols=protocol_terms(NDR), net_message_overhead_s=NDR.message_overhead_s)
    assert direct.latency_s - cost.latency_s == pytest.approx((n - g - 1) * 1e-6)
    assert direct.achieved_time_s > cost.achieved_time_s


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


@settings(max_examples=300, deadline=None)
@given(kinds, sizes, st.sampled_from([2, 4, 8, 16]), st.floats(1.0, 10.0), st.sampled_from([*ALGORITHMS, "auto"]))
def test_with_measured_curves_and_network_protocols_the_invariants_hold(coll, s, n, more, algo):
    """The same invariants with the H200 curve on NVLink and NDR's protocol model on the network."""
    eff = H200.collective_efficiency(coll, n)

    def cost(per_node, bw_scale=1.0):
        return collective_cost(coll, s, n, per_node, NV * bw_scale, NV_A, IB * bw_scale, IB_A, algo,
                               intra_efficiency=eff.memory, net_protocols=protocol_terms(NDR),
                               net_message_overhead_s=NDR.message_overhead_s, launch_overhead_s=eff.overhead_s)

    inside, spread = cost(n), cost(n // 2)
    assert spread.achieved_time_s >= spread.time_s * (1 - 1e-12)  # efficiencies never beat the peaks
    assert spread.achieved_time_s >= spread.traffic_bytes / NV * (1 - 1e-12)
    if algo == "auto":
        assert inside.achieved_time_s <= spread.achieved_time_s * (1 + 1e-12)
    assert cost(n // 2, more).achieved_time_s <= spread.achieved_time_s * (1 + 1e-12)
