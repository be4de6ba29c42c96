"""Placement on a cluster, multi-node tensor parallelism, impossible layouts, step-level invariants."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import InputError, get_accelerator, get_network, get_node
from simulator import predict, sweep
from simulator.parallel.placement import span

LLAMA70 = {"model": "llama-3.1-70b", "hardware": {"gpu": "h100-sxm", "node": "dgx-h100"},
           "workload": {"phase": "decode", "batch_size": 1, "context_len": 4096}}


def _comm_s(pred):
    return sum(op.time_s for op in pred.breakdown if op.kind == "collective")


def test_span_by_hand():
    assert [float(x) for x in span(8, 1, 8)] == [8, 1]  # TP 8 fills a DGX
    assert [float(x) for x in span(16, 1, 8)] == [8, 2]  # TP 16: two nodes
    assert [float(x) for x in span(4, 8, 8)] == [1, 4]  # PP 4 outside TP 8: one stage per node
    assert [float(x) for x in span(4, 2, 8)] == [4, 1]  # CP 4 outside TP 2 stays in the node


def test_network_data_is_sourced_and_the_node_names_its_network():
    for name in ("ib-ndr-400", "ib-xdr-800", "roce-400"):
        net = get_network(name)
        assert all(url.startswith("https://") for url in net.sources.values())
    assert get_network("ib-ndr-400").bandwidth_bytes_per_s == 400e9 / 8
    assert get_network("ib-xdr-800").bandwidth_bytes_per_s == 800e9 / 8
    assert get_node("dgx-h100").network == "ib-ndr-400"
    assert get_node("gb200-nvl72").accelerators_per_node == 72
    # not rail-optimised: a message crosses two more switches
    roce = get_network("roce-400")
    assert roce.link().latency_s == pytest.approx(roce.latency_s + 2 * roce.switch_latency_s)


def test_tp16_over_two_nodes_against_tp8_in_one_by_hand():
    """Llama-3.1-70B, 161 all-reduces of tokens x 8192 x 2 B. Decode is latency-bound: the tree adds a
    network level per direction (LL: 5.0 us each, NCCL's tuner); prefill is bandwidth-bound and the ring
    of 8 NICs (8 x 47 GB/s at LL128's 0.92) moves about as fast as NVLink at its measured efficiency.
    Neither regime reaches 4x (docs/parallelism.md: the published numbers agree)."""
    from hwmodels import load_profile

    curve = load_profile("h100-sxm", gpu="h100-sxm").collective_efficiency("all_reduce", 8).memory
    net = get_network("ib-ndr-400")
    ratios = {}
    for phase, tokens in (("decode", 1), ("prefill", 4096)):
        over = {"workload.phase": phase, "workload.prompt_len": tokens}
        tp8 = predict(LLAMA70, **{"hardware.num_gpus": 8, **over})
        tp16 = predict(LLAMA70, **{"hardware.num_gpus": 16, **over})
        ar8 = next(op for op in tp8.breakdown if op.name == "attn.all_reduce")
        ar16 = next(op for op in tp16.breakdown if op.name == "attn.all_reduce")
        assert (ar8.link, ar16.link) == ("nvlink4", "ib-ndr-400") and tp16.parallelism["num_nodes"] == 2
        s = tokens * 8192 * 2
        if phase == "decode":  # 16 KiB: tree in both; NVLink-bound at the curve's efficiency at 2 S
            nvlink = 450e9 * curve.at(2 * s)
            hand8 = 2 * 3 * 3e-6 + 2 * s / nvlink
            hand16 = 2 * (3 * 3e-6 + 5.0e-6) + 2 * s / min(nvlink, 8 * 50e9 * net.nic_efficiency * 0.5)
            assert (ar8.algorithm, ar16.algorithm) == ("tree", "tree")
        else:  # 64 MiB: ring in one node (14 steps), tree with LL128 over two (8.5 us per network level)
            hand8 = 14 * 3e-6 + 1.75 * s / (450e9 * curve.at(1.75 * s))
            hand16 = 2 * (3 * 3e-6 + 8.5e-6) + 2 * s / min(450e9 * curve.at(2 * s), 8 * 50e9 * net.nic_efficiency * 0.92)
            assert (ar8.algorithm, ar16.algorithm) == ("ring", "tree")
        assert ar8.time_s / ar8.count == pytest.approx(hand8, rel=1e-9)
        assert ar16.time_s / ar16.count == pytest.approx(hand16, rel=1e-9)
        ratios[phase] = _comm_s(tp16) / _comm_s(tp8)
        assert ratios[phase] == pytest.approx(hand16 / hand8, rel=1e-9)  # every all-reduce has the same message
    assert 1.0 < ratios["prefill"] < ratios["decode"] < 2.0  # 1.12x and 1.55x: not the 4x the issue asked


def test_tp16_on_a_slower_network_costs_more():
    tp16 = predict(LLAMA70, **{"hardware.num_gpus": 16, "workload.phase": "prefill", "workload.prompt_len": 4096})
    roce = predict(LLAMA70, **{"hardware.num_gpus": 16, "hardware.network": "roce-400", "workload.phase": "prefill",
                               "workload.prompt_len": 4096})
    xdr = predict(LLAMA70, **{"hardware.num_gpus": 16, "hardware.network": "ib-xdr-800", "workload.phase": "prefill",
                              "workload.prompt_len": 4096})
    assert _comm_s(xdr) <= _comm_s(tp16) <= _comm_s(roce)


def test_impossible_layouts_are_one_line_errors():
    cases = [
        ({"hardware.num_gpus": 16, "hardware.num_nodes": 1}, "hardware.num_gpus"),
        ({"hardware.num_gpus": 8, "parallelism.cp": 2, "parallelism.tp": 8}, "hardware.num_gpus"),
        ({"hardware.node": "dgx-h200"}, "hardware.node"),
        ({"hardware.network": "ib-ndr-40"}, "hardware.network"),
    ]
    for overrides, field in cases:
        with pytest.raises(InputError) as info:
            predict(LLAMA70, **overrides)
        assert info.value.field == field
        assert "\n" not in str(info.value)
    with pytest.raises(InputError) as info:  # a recurrent state cannot be split over the sequence
        predict({"model": "llama-3.1-8b", "hardware": {"num_gpus": 2}, "parallelism": {"cp": 2, "tp": 1},
                 "techniques": [{"name": "linear_attention", "fraction": 1.0}]})
    assert info.value.field == "parallelism.cp"


def _gpu(link_factor):
    spec = get_accelerator("h100-sxm").model_dump()
    spec["name"] = "h100-linkscaled"
    spec["intra_node_link"]["bandwidth_bytes_per_s"] *= link_factor
    return spec


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["prefill", "decode"]), st.integers(1, 256), st.sampled_from([8, 16]),
       st.floats(1.0, 8.0))
def test_more_link_bandwidth_never_slows_a_multi_node_step(phase, batch, gpus, factor):
    sc = {"model": "llama-3.1-70b", "hardware": {"gpu": _gpu(1.0), "num_gpus": gpus},
          "workload": {"phase": phase, "batch_size": batch, "prompt_len": 512, "context_len": 2048}}
    base = sweep(sc)["latency_s"]
    sc["hardware"]["gpu"] = _gpu(factor)
    assert np.all(sweep(sc)["latency_s"] <= base * (1 + 1e-12))


def test_order_puts_pipeline_stages_inside_a_node_when_asked():
    sc = {"model": "llama-3.1-70b", "hardware": {"num_gpus": 16}, "parallelism": {"tp": 8, "pp": 2},
          "workload": {"batch_size": 8}}
    default = {g["group"]: g for g in predict(sc).parallelism["groups"]}
    assert default["tp"]["nodes"] == [0] and default["pp"]["gpus"] == [0, 8] and default["pp"]["link"] == "ib-ndr-400"
    sc["parallelism"]["order"] = ["pp", "tp", "cp", "edp", "dp"]
    pred = predict(sc)
    groups = {g["group"]: g for g in pred.parallelism["groups"]}
    assert groups["pp"]["gpus"] == [0, 1] and groups["pp"]["link"] == "nvlink4"
    assert groups["tp"]["gpus"] == list(range(0, 16, 2)) and groups["tp"]["link"] == "ib-ndr-400"
    assert "etp" not in groups  # a dense model
    with pytest.raises(InputError) as info:
        predict(sc, **{"parallelism.order": ["tp", "tp", "cp", "edp", "dp"]})
    assert info.value.field == "parallelism.order"
    with pytest.raises(InputError, match="adjacent"):
        predict({"model": "deepseek-v3", "hardware": {"gpu": "h200-sxm", "num_gpus": 16},
                 "parallelism": {"tp": 1, "ep": 16, "order": ["tp", "edp", "cp", "pp", "dp"]}})
