"""Step decomposition of a real model against hand counts (Llama-3.1-8B, bf16)."""

import numpy as np
import pytest

from simulator import predict, sweep
from simulator.engine import evaluate
from simulator.footprint import kv_bytes_per_request, weight_bytes_per_gpu
from simulator.models import get_model
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.step import StepShape, build_step, expected_distinct_experts

LLAMA = get_model("llama-3.1-8b")
# per layer: q 4096x4096, k and v 4096x1024, o 4096x4096, gate/up 4096x14336, down 14336x4096
LAYER_LINEAR_PARAMS = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
NORM_PARAMS = 32 * 2 * 4096 + 4096


def _dep(**overrides):
    sc = Scenario().with_overrides(**{"calibration": "peak", **overrides})
    return resolve(sc, {})[0]


def _ops(dep, shape):
    return {op.name: op for op in build_step(dep, shape)}


def test_llama_parameter_count_by_hand():
    assert LLAMA.total_params() == 32 * LAYER_LINEAR_PARAMS + 2 * 128256 * 4096 + NORM_PARAMS == 8_030_261_248


def test_decode_gemm_flops_are_two_per_weight_per_token():
    ops = _ops(_dep(), StepShape(1, 1, 4096, "decode"))
    gemm_flops = sum(float(op.flops) * op.count for op in ops.values() if op.kind == "gemm")
    assert gemm_flops == 2 * (32 * LAYER_LINEAR_PARAMS + 128256 * 4096)  # lm_head, not the input embedding


def test_decode_attention_reads_the_whole_cache():
    ctx = 4096
    att = _ops(_dep(), StepShape(3, 1, ctx, "decode"))["attention.full"]
    assert att.count == 32
    # 4*d FLOPs per head per cached token (the new token sees ctx + 1 keys), 3 sequences
    assert float(att.flops) == 3 * 32 * 4 * 128 * (ctx + 1)
    kv_per_token_layer = 2 * 8 * 128 * 2
    q_and_o = 32 * 256 * 2
    assert float(att.hbm_bytes) == 3 * ((ctx + 1) * kv_per_token_layer + q_and_o)


def test_prefill_attention_flops_are_causal():
    s = 2048
    att = _ops(_dep(), StepShape(2, s, 0, "prefill"))["attention.full"]
    assert float(att.flops) == 2 * 32 * 4 * 128 * s * (s + 1) / 2


def test_weights_and_kv_memory_by_hand():
    dep = _dep()
    assert weight_bytes_per_gpu(dep) == 2 * LLAMA.total_params()
    assert kv_bytes_per_request(dep, 1000) == 1000 * 32 * 2 * 8 * 128 * 2
    dep2 = _dep(**{"hardware.num_gpus": 2})
    assert dep2.tp == 2
    assert weight_bytes_per_gpu(dep2) == pytest.approx((2 * LLAMA.total_params() - 2 * NORM_PARAMS) / 2 + 2 * NORM_PARAMS)
    assert kv_bytes_per_request(dep2, 1000) == kv_bytes_per_request(dep, 1000) / 2


def test_kv_heads_replicate_when_tp_exceeds_them():
    dep16 = _dep(model="llama-3.1-8b", **{"hardware.num_gpus": 16})
    assert float(dep16.kv_heads_local) == 1.0  # 8 KV heads over 16 GPUs: one (replicated) per GPU


def test_tensor_parallel_adds_two_all_reduces_per_layer():
    dep = _dep(**{"hardware.num_gpus": 4, "parallelism.collective_algorithm": "ring"})
    ops = _ops(dep, StepShape(8, 1, 1024, "decode"))
    for name in ("attn.all_reduce", "mlp.all_reduce"):
        op = ops[name]
        assert op.count == 32
        # ring all-reduce of 8 tokens x 4096 x 2 bytes: 2*(n-1)/n of the message, 2*(n-1) latency steps
        assert float(op.link_bytes) == pytest.approx(2 * 3 / 4 * 8 * 4096 * 2)
        assert float(op.link_latency_s) == pytest.approx(6 * dep.gpu.intra_node_link.latency_s)
        assert (op.collective, op.group, op.link, op.algorithm) == ("all_reduce", "tp", "nvlink4", "ring")
    # auto: a 64 KiB all-reduce over 4 GPUs takes the tree (2 log2(4) = 4 latency steps, 2 S traffic)
    tree = _ops(_dep(**{"hardware.num_gpus": 4}), StepShape(8, 1, 1024, "decode"))["attn.all_reduce"]
    assert tree.algorithm == "tree"
    assert float(tree.link_latency_s) == pytest.approx(4 * dep.gpu.intra_node_link.latency_s)
    assert float(tree.link_bytes) == pytest.approx(2 * 8 * 4096 * 2)


def test_expected_distinct_experts():
    assert expected_distinct_experts(1, 8, 2) == pytest.approx(2.0)
    assert expected_distinct_experts(10_000, 8, 2) == pytest.approx(8.0)
    # two tokens, top-1 of 4: 4 * (1 - (3/4)^2) = 1.75
    assert expected_distinct_experts(2, 4, 1) == pytest.approx(1.75)


def test_generate_matches_summed_decode_steps():
    base = {"calibration": "default", "workload.prompt_len": 1000, "workload.output_len": 9}
    gen = evaluate(Scenario().with_overrides(**{**base, "workload.phase": "generate"})).arrays
    steps = sweep(Scenario().with_overrides(**{**base, "workload.phase": "decode"}),
                  context_len=np.arange(1000, 1008))["latency_s"]
    assert float(gen["tpot_s"]) == pytest.approx(float(np.mean(steps)), rel=1e-3)
    assert float(gen["e2e_s"]) == pytest.approx(float(gen["ttft_s"]) + 8 * float(gen["tpot_s"]))


def test_kv_bytes_per_token_in_the_prediction():
    from simulator import predict

    p = predict(**{"calibration": "peak", "workload.context_len": 999})
    assert p.memory.kv_bytes_per_token == pytest.approx(32 * 2 * 8 * 128 * 2)  # 131,072 B per token
    assert p.memory.kv_bytes_per_request == pytest.approx(1000 * 131072)  # the cache after the step


# --- mixture of experts: routing, permutation, grouped expert GEMMs ---------------------------------------


def _moe_ops(model, batch, **overrides):
    dep = _dep(model=model, **overrides)
    return dep, _ops(dep, StepShape(np.asarray(batch, dtype=float), 1, 1024, "decode"))


def test_moe_routing_operators_by_hand():
    """OLMoE-1B-7B (h = 2048, 64 experts, top-8), bf16: T tokens, int32 ids / indices, fp32 routing weights."""
    T = np.array([1.0, 8.0, 512.0])
    dep, ops = _moe_ops("olmoe-1b-7b", T)
    h, E, k = 2048, 64, 8
    route, sort, permute, unpermute = (ops[n] for n in ("moe.route", "moe.sort", "moe.permute", "moe.unpermute"))
    for op in (route, sort, permute, unpermute):
        assert op.kind == "memory" and op.count == 16 and op.per_layer
    # softmax (5 FLOPs per logit) + top-k (k comparisons per logit); read T x E bf16 logits, write T x k ids + weights
    np.testing.assert_allclose(route.flops, T * E * (5 + k))
    np.testing.assert_allclose(route.hbm_bytes, T * E * 2 + T * k * (4 + 4))
    # sort T x k pairs by expert: read the ids, write the sorted pair indices and E + 1 offsets
    np.testing.assert_allclose(sort.hbm_bytes, T * k * 4 * 2 + (E + 1) * 4)
    assert np.all(np.asarray(sort.flops) == 0)
    # gather: each token row read once, written k times in expert order, one int32 index per written row
    np.testing.assert_allclose(permute.hbm_bytes, T * h * 2 + T * k * (h * 2 + 4))
    # weighted sum back: read T x k rows with their index and weight, write T rows; a multiply-add per element read
    np.testing.assert_allclose(unpermute.hbm_bytes, T * k * (h * 2 + 4 + 4) + T * h * 2)
    np.testing.assert_allclose(unpermute.flops, 2 * T * k * h)
    assert float(permute.hbm_bytes[0]) == 36896.0 and float(unpermute.hbm_bytes[0]) == 36928.0
    # operator order in the layer: router, route, sort, permute, experts, unpermute
    names = [op.name for op in build_step(dep, StepShape(1, 1, 1024, "decode"))]
    seq = ["moe.router", "moe.route", "moe.sort", "moe.permute", "moe.expert.gate_up_proj", "moe.expert.act",
           "moe.expert.down_proj", "moe.unpermute", "moe.all_reduce", "moe_residual"]
    assert [n for n in names if n in seq] == seq


def test_routed_experts_are_one_grouped_gemm_per_projection():
    T = np.array([1.0, 64.0])
    _, ops = _moe_ops("olmoe-1b-7b", T)
    gate_up, down = ops["moe.expert.gate_up_proj"], ops["moe.expert.down_proj"]
    assert gate_up.kind == down.kind == "grouped_gemm"
    assert ops["moe.router"].kind == "gemm"
    touched = expected_distinct_experts(T, 64, 8)
    np.testing.assert_allclose(gate_up.flops, 2 * T * 8 * 2048 * 2048)
    np.testing.assert_allclose(gate_up.hbm_bytes, 2 * (T * 8 * 2048 + T * 8 * 2048) + touched * 2048 * 2048 * 2)
    np.testing.assert_allclose(down.flops, 2 * T * 8 * 1024 * 2048)


def test_moe_routing_under_tensor_parallelism():
    """Mixtral-8x7B (h = 4096, 8 experts, top-2) over 2 GPUs: the router is replicated and the experts are split
    along their intermediate dimension, so each GPU routes and permutes every token at full width while its
    expert GEMMs do half the work."""
    T = np.array([4.0])
    _, one = _moe_ops("mixtral-8x7b", T)
    _, two = _moe_ops("mixtral-8x7b", T, **{"hardware.num_gpus": 2})
    for name in ("moe.route", "moe.sort", "moe.permute", "moe.unpermute"):
        np.testing.assert_allclose(two[name].hbm_bytes, one[name].hbm_bytes)
        np.testing.assert_allclose(two[name].flops, one[name].flops)
    np.testing.assert_allclose(one["moe.permute"].hbm_bytes, 4 * 4096 * 2 + 4 * 2 * (4096 * 2 + 4))
    np.testing.assert_allclose(one["moe.route"].hbm_bytes, 4 * 8 * 2 + 4 * 2 * 8)
    for name in ("moe.expert.gate_up_proj", "moe.expert.down_proj"):
        np.testing.assert_allclose(two[name].flops, one[name].flops / 2)


def test_a_one_token_generation_credits_no_prompt_chunk():
    """With output_len 1 there is no decode step to carry a prompt chunk (Sarathi-Serve's credit is 0): the
    cycle is the prefill, not 0 (which made the throughput infinite and the prediction an error)."""
    kw = {"workload.phase": "generate", "workload.output_len": 1, "workload.prompt_len": 100,
          "techniques": [{"name": "chunked_prefill", "chunk_tokens": 256}]}
    p = predict(**kw)
    assert p.prompt_tokens_credited == 0.0
    assert p.tokens_per_s == pytest.approx(p.replicas * 1 * 1 / p.ttft_s)
    two = predict(**{**kw, "workload.output_len": 2})
    assert two.prompt_tokens_credited == pytest.approx(100.0)  # one decode step carries the whole 100-token prompt
