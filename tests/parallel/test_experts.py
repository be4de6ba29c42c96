"""Expert parallelism: DeepSeek-V3 on two H200 nodes (the issue's check), EP = TP versus TP, errors."""

import pytest

from hwmodels import InputError
from simulator import predict

DSV3 = {"model": "deepseek-v3", "hardware": {"gpu": "h200-sxm", "num_gpus": 16},
        "parallelism": {"tp": 1, "ep": 16}, "workload": {"phase": "decode", "batch_size": 64, "context_len": 4096}}
H = 7168  # DeepSeek-V3 hidden size


def _op(pred, name):
    return next(op for op in pred.breakdown if op.name == name)


def test_deepseek_v3_ep16_holds_a_sixteenth_of_the_experts():
    ep = predict(DSV3)
    one = predict(DSV3, **{"hardware.num_gpus": 1, "parallelism.ep": 1})
    # routed experts: 58 MoE layers x 256 experts x 3 matrices of 7168 x 2048, bf16
    experts = 58 * 256 * 3 * H * 2048 * 2
    assert one.memory.weights_bytes - ep.memory.weights_bytes == pytest.approx(experts * 15 / 16, rel=1e-9)
    groups = {g["group"]: g for g in ep.parallelism["groups"]}
    assert groups["ep"]["nodes"] == [0, 1] and groups["ep"]["link"] == "ib-ndr-400"


def test_dispatch_and_combine_all_to_all_by_hand():
    """Two levels (DeepEP's normal kernels, NCCL PXN): S/2 of each GPU's 7.34 MB over its NIC to the same
    local rank of the other node, 7/8 S over NVLink (its node's share and the forwarding), at once."""
    from costmodels.collectives import protocol_terms
    from hwmodels import get_network, load_profile

    ep = predict(DSV3)
    s = 64 * 8 * H * 2  # 64 tokens x top-8 x 7168 x 2 bytes sent per GPU
    profile = load_profile("h200-sxm", gpu="h200-sxm")
    a2a = profile.collective_efficiency("all_to_all", 8)  # the measured 2-GPU curve is the nearest
    nvlink = 7 / 8 * s / (450e9 * a2a.memory.at(7 / 8 * s))
    net = get_network("ib-ndr-400").link()
    by_protocol = [max(nvlink, s / 2 / (50e9 * e)) + 7 * 3e-6 + 1 * (a_ring + 1e-6) for a_ring, _, e in protocol_terms(net)]
    for name in ("moe.dispatch.all_to_all", "moe.combine.all_to_all"):
        op = _op(ep, name)
        assert (op.collective, op.group, op.link, op.count, op.algorithm) == \
            ("all_to_all", "ep", "ib-ndr-400", 58, "hierarchical")
        assert op.link_bytes == pytest.approx(58 * (s / 2 + 7 / 8 * s))
        assert op.time_s / 58 == pytest.approx(min(by_protocol) + a2a.overhead_s)
    # the NIC stage moves at LL128's 0.92 x 47 GB/s = 43.2 GB/s; DeepEP measures 43 GB/s for EP 16 over
    # two H800 nodes with one 400 Gb/s CX7 each (DeepEP docs/legacy.md, normal kernels)
    assert by_protocol.index(min(by_protocol)) == 1 and 50e9 * protocol_terms(net)[1][2] == pytest.approx(43e9, rel=0.05)
    # the direct exchange (ring) posts one network message per remote GPU and is slower
    direct = predict(DSV3, **{"parallelism.collective_algorithm": "ring"})
    op = _op(direct, "moe.dispatch.all_to_all")
    assert op.link_bytes == pytest.approx(58 * s * 15 / 16) and op.time_s > _op(ep, "moe.dispatch.all_to_all").time_s
    # the same layout inside one node (ep 8 on 8 GPUs) runs on NVLink and is faster
    node = predict(DSV3, **{"hardware.num_gpus": 8, "parallelism.ep": 8})
    a2a = _op(node, "moe.dispatch.all_to_all")
    assert a2a.link == "nvlink4" and a2a.time_s < _op(ep, "moe.dispatch.all_to_all").time_s


def test_ep_equal_tp_differs_from_tp_and_feels_imbalance():
    base = {"model": "qwen3-30b-a3b", "hardware": {"gpu": "h100-sxm", "num_gpus": 4},
            "workload": {"phase": "prefill", "batch_size": 4, "prompt_len": 2048}}
    tp = predict(base)
    ep = predict(base, **{"parallelism.ep": 4})
    gemm_tp = _op(tp, "moe.expert.gate_up_proj")
    gemm_ep = _op(ep, "moe.expert.gate_up_proj")
    assert gemm_ep.flops == pytest.approx(gemm_tp.flops)  # same work on average ...
    assert gemm_ep.time_s != pytest.approx(gemm_tp.time_s, rel=1e-6)  # ... in differently shaped GEMMs
    skew = predict(base, **{"parallelism.ep": 4},
                   techniques=[{"name": "moe", "load_imbalance": 1.5}])
    assert _op(skew, "moe.expert.gate_up_proj").flops == pytest.approx(1.5 * gemm_ep.flops)
    assert skew.latency_s > ep.latency_s
    # the technique's expert_parallel = tp is the same layout
    tech = predict(base, techniques=[{"name": "moe", "expert_parallel": 4}])
    assert tech.latency_s == pytest.approx(ep.latency_s)


def test_impossible_expert_layouts_are_one_line_errors():
    with pytest.raises(InputError, match="does not divide num_experts"):
        predict(DSV3, **{"parallelism.ep": 12, "hardware.num_gpus": 12})
    with pytest.raises(InputError, match="no routed experts"):
        predict({"model": "llama-3.1-8b", "parallelism": {"ep": 2}, "hardware": {"num_gpus": 2}})
    with pytest.raises(InputError) as info:
        predict(DSV3, **{"hardware.num_gpus": 8})
    assert info.value.field == "parallelism.ep"
