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


def test_tp16_over_two_nodes_runs_its_all_reduces_over_infiniband():
    tp8 = predict(LLAMA70, **{"hardware.num_gpus": 8})
    tp16 = predict(LLAMA70, **{"hardware.num_gpus": 16})
    ar8 = next(op for op in tp8.breakdown if op.name == "attn.all_reduce")
    ar16 = next(op for op in tp16.breakdown if op.name == "attn.all_reduce")
    assert (ar8.link, ar16.link) == ("nvlink4", "ib-ndr-400")
    assert tp16.parallelism["num_nodes"] == 2
    # decode at batch 1 is latency-bound: the tree adds one network level (2 x 4 us) per all-reduce.
    # 80 layers x 2 all-reduces + the embedding's = 161 all-reduces.
    assert (ar16.time_s - ar8.time_s) / ar8.count == pytest.approx(2 * (4e-6 - 0.0) + 0.0, rel=0.35)
    ratio = _comm_s(tp16) / _comm_s(tp8)
    assert 1.2 < ratio < 2.0  # NCCL rings use all 8 NICs: 400 GB/s per node against NVLink's 450 GB/s


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
