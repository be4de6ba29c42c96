"""Each technique transforms the cost model where it says it does (operators, bytes, FLOPs, memory)."""

import numpy as np
import pytest

from hwmodels import InputError
from simulator import predict
from simulator.footprint import kv_bytes_per_request, layer_kv_bytes, weight_bytes_per_gpu
from simulator.models import get_model
from technique_helpers import deployment, is_attention, op_sum, op_time, run, step

CTX = 65536


def _kv_read(ev, phase="decode"):
    return op_sum(ev, phase, "kv_read_bytes", is_attention)


# --- the KV hook: memory and decode reads change together ----------------------------------------------


@pytest.mark.parametrize("tech", [
    {"name": "duo_attention", "retrieval_fraction": 0.25},
    {"name": "kv_eviction", "budget_tokens": 2048, "policy": "streaming"},
    {"name": "kv_eviction", "budget_fraction": 0.1, "policy": "streaming"},
])
def test_kept_tokens_shrink_memory_and_decode_reads_alike(tech):
    base, kept = step(context=CTX, batch=4), step(context=CTX, batch=4, techniques=[tech])
    memory = kept.arrays["kv_bytes_per_request"] / base.arrays["kv_bytes_per_request"]
    reads = _kv_read(kept) / _kv_read(base)
    assert float(memory) < 0.5
    assert reads == pytest.approx(float(memory), rel=1e-9)
    flops = op_sum(kept, "decode", "flops", is_attention) / op_sum(base, "decode", "flops", is_attention)
    assert flops == pytest.approx(float(memory), rel=1e-9)  # attention computes over the kept tokens only


def test_duo_attention_formula_and_prefill_pairs():
    dep = deployment(techniques=[{"name": "duo_attention", "retrieval_fraction": 0.3}])
    base = deployment()
    t = 100_000
    assert layer_kv_bytes(dep, t) / layer_kv_bytes(base, t) == pytest.approx((0.3 * t + 0.7 * 320) / t)
    pre = dict(phase="prefill", prompt=32768)
    ratio = op_sum(step(**pre, techniques=[{"name": "duo_attention", "retrieval_fraction": 0.3}]), "prefill", "flops",
                   is_attention) / op_sum(step(**pre), "prefill", "flops", is_attention)
    assert 0.3 < ratio < 0.32  # streaming heads attend to 320 of ~16K keys on average


def test_h2o_scores_cost_memory_and_decode_traffic():
    h2o = {"name": "kv_eviction", "budget_tokens": 1024, "policy": "h2o"}
    streaming = {**h2o, "policy": "streaming"}
    a, b = step(context=CTX, techniques=[h2o]), step(context=CTX, techniques=[streaming])
    assert a.arrays["kv_bytes_per_request"] > b.arrays["kv_bytes_per_request"]
    assert op_sum(a, "decode", "hbm_bytes", is_attention) > op_sum(b, "decode", "hbm_bytes", is_attention)


def test_kv_quant_bytes_and_dequantisation_flops():
    dep = deployment(techniques=[{"name": "kv_quant", "bits": 4, "group_size": 64}])
    assert dep.kv_bytes == pytest.approx((4 + 32 / 64) / 8)
    base, q = step(context=CTX), step(context=CTX, techniques=[{"name": "kv_quant", "bits": 2, "group_size": None}])
    assert _kv_read(q) / _kv_read(base) == pytest.approx(0.25 / 2)
    elems = _kv_read(q) / 0.25
    extra = op_sum(q, "decode", "flops", is_attention) - op_sum(base, "decode", "flops", is_attention)
    assert extra == pytest.approx(2 * elems)


# --- attention shape -------------------------------------------------------------------------------------


def test_gqa_shrinks_kv_and_kv_projections():
    base, gqa = deployment(model="llama-2-7b"), deployment(model="llama-2-7b", techniques=[{"name": "gqa",
                                                                                             "num_kv_heads": 4}])
    assert layer_kv_bytes(gqa, 1000) == layer_kv_bytes(base, 1000) / 8
    saved = 32 * 2 * 4096 * (4096 - 4 * 128) * 2  # k and v projections of 32 layers, bf16
    assert weight_bytes_per_gpu(base) - weight_bytes_per_gpu(gqa) == pytest.approx(saved)


def test_sliding_window_pattern_and_kv():
    dep = deployment(techniques=[{"name": "sliding_window", "window": 1024, "global_every": 4}])
    assert dep.layer_kinds.count("full") == 8 and dep.layer_kinds[3] == "full" and dep.layer_kinds[0] == "sliding"
    per_layer_token = 2 * 8 * 128 * 2
    assert layer_kv_bytes(dep, 10_000) == (8 * 10_000 + 24 * 1024) * per_layer_token


def test_linear_attention_state_is_constant_in_context():
    tech = [{"name": "linear_attention", "fraction": 1.0, "state_dim": 64}]
    short, long = step(context=1000, techniques=tech), step(context=500_000, techniques=tech)
    state = 32 * 64 * 129 * 4 * 32  # heads x state_dim x (head_dim + 1) x fp32, 32 layers
    assert short.arrays["kv_bytes_per_request"] == long.arrays["kv_bytes_per_request"] == pytest.approx(state)
    assert op_sum(short, "decode", "hbm_bytes", is_attention) == op_sum(long, "decode", "hbm_bytes", is_attention)
    half = deployment(techniques=[{"name": "linear_attention", "fraction": 0.5}])
    assert half.layer_kinds.count("linear") == 16 and half.layer_kinds[:2] == ("full", "linear")


def test_yoco_ops_weights_and_cross_stack():
    yoco = [{"name": "yoco", "self_decoder": "sliding_window", "window": 512}]
    ev = step(phase="prefill", batch=2, prompt=4096, techniques=yoco)
    ops = {op.name: op for op in ev.steps["prefill"].ops}
    assert ops["cross.attention.cross"].count == 16 and ops["attention.sliding"].count == 16
    assert float(ops["cross.attn.q_proj"].rows) == 2  # the cross-decoder runs each prompt's last position
    assert float(ops["attn.qkv_proj"].rows) == 2 * 4096 and ops["attn.qkv_proj"].count == 16
    assert "yoco.global_kv_proj" in ops
    base, dep = deployment(), deployment(techniques=yoco)
    kv_proj = 2 * 4096 * 1024 * 2  # k and v of one layer, bf16
    assert weight_bytes_per_gpu(base) - weight_bytes_per_gpu(dep) == pytest.approx(16 * kv_proj - kv_proj)
    dec = step(context=CTX, techniques=yoco)
    names = {op.name for op in dec.steps["decode"].ops}
    assert {"attention.cross", "cross.attn.q_proj", "attn.qkv_proj"} <= names


# --- KV placement and sharing -----------------------------------------------------------------------------


def test_prefix_cache_prefill_and_shared_memory():
    h = 0.75
    tech = [{"name": "prefix_cache", "hit_rate": h}]
    pre = step(phase="prefill", batch=4, prompt=8192, techniques=tech)
    qkv = next(op for op in pre.steps["prefill"].ops if op.name == "attn.qkv_proj")
    assert float(qkv.rows) == 4 * 8192 * (1 - h)
    base, shared = run(batch=8, context=CTX), run(batch=8, context=CTX, techniques=tech)
    per = base["kv_bytes_per_request"]
    assert shared["kv_cache_bytes"] == pytest.approx(8 * (1 - h) * per + h * per, rel=1e-6)
    once = step(batch=8, context=CTX, techniques=[{"name": "prefix_cache", "hit_rate": h, "read_once": True}])
    assert _kv_read(once) / _kv_read(step(batch=8, context=CTX)) == pytest.approx((8 * (1 - h) + h) / 8)


def test_kv_offload_moves_kv_off_the_gpu_and_prices_the_return():
    f = 0.5
    base = step(batch=4, context=CTX)
    for policy in ("fetch", "recompute", "auto"):
        ev = step(batch=4, context=CTX, techniques=[{"name": "kv_offload", "fraction": f, "policy": policy}])
        ratio = ev.arrays["kv_bytes_per_request"] / base.arrays["kv_bytes_per_request"]
        assert float(ratio) == pytest.approx(1 - f + 2 * f / 32)
        fetched = op_sum(ev, "decode", "link_bytes", lambda op: op.name == "kv_offload.fetch")
        if policy == "fetch":
            assert fetched == pytest.approx(f * _kv_read(base))
    times = {p: float(step(batch=4, context=CTX, techniques=[{"name": "kv_offload", "policy": p}]).arrays["latency_s"])
             for p in ("fetch", "recompute", "auto")}
    assert times["auto"] == pytest.approx(min(times["fetch"], times["recompute"]))


# --- weights and kernels ---------------------------------------------------------------------------------


def test_weight_quant_bytes_keep_embeddings_and_dequantise():
    dep = deployment(techniques=[{"name": "weight_quant", "format": "w4a16"}])
    assert dep.weight_bytes == pytest.approx(4.25 / 8) and dep.emb_bytes == 2.0
    m = get_model("llama-3.1-8b")
    emb = 2 * m.vocab_size * m.hidden_size
    layers = m.total_params() - emb - (32 * 2 * 4096 + 4096)
    assert weight_bytes_per_gpu(dep) == pytest.approx(layers * 4.25 / 8 + emb * 2 + (32 * 2 * 4096 + 4096) * 2)
    # compute-bound prefill: dequantisation on the CUDA cores makes the GEMMs slower than bf16
    pre = dict(phase="prefill", prompt=8192)
    gemm = lambda op: op.kind == "gemm"  # noqa: E731
    assert op_time(step(**pre, techniques=[{"name": "weight_quant", "format": "w4a16"}]), "prefill", gemm) > \
        op_time(step(**pre), "prefill", gemm)
    # memory-bound decode: 3.8x fewer weight bytes
    dec = run(batch=1, context=512), run(batch=1, context=512, techniques=[{"name": "weight_quant", "format": "w4a16"}])
    assert dec[0]["latency_s"] / dec[1]["latency_s"] > 2.5


def test_native_fp8_runs_gemms_at_the_fp8_peak():
    ev = step(phase="prefill", prompt=8192, techniques=[{"name": "weight_quant", "format": "fp8"}])
    ops = {op.name: op for op in ev.steps["prefill"].ops}
    assert float(ops["mlp.gate_up_proj"].peak_flops_per_s) == pytest.approx(1978.9e12)
    assert float(ops["lm_head"].peak_flops_per_s) == pytest.approx(989.4e12)  # embeddings stay bf16
    assert "weight_quant.quantize_activations" in ops
    a100 = step(phase="prefill", prompt=8192, gpu="a100-80gb-sxm", techniques=[{"name": "weight_quant", "format": "fp8"}])
    gate = next(op for op in a100.steps["prefill"].ops if op.name == "mlp.gate_up_proj")
    assert float(np.max(gate.peak_flops_per_s)) < 312e12  # no fp8 on Ampere: weight-only, dequantised


def test_sparsity_bytes_flops_and_composition():
    two_four = {"name": "sparsity", "pattern": "2:4"}
    dep = deployment(techniques=[two_four])
    assert dep.layer_weight_bytes == pytest.approx(0.5 * (2 + 0.25))
    pre = dict(phase="prefill", prompt=4096)
    layer_gemms = lambda op: op.kind == "gemm" and op.per_layer  # noqa: E731
    assert op_sum(step(**pre, techniques=[two_four]), "prefill", "flops", layer_gemms) == \
        pytest.approx(0.5 * op_sum(step(**pre), "prefill", "flops", layer_gemms))
    flash_llm = deployment(techniques=[{"name": "sparsity", "sparsity": 0.8}])
    assert flash_llm.layer_weight_bytes == pytest.approx(0.2 * (2 + 2))
    quant = {"name": "weight_quant", "format": "w4a16"}
    one, two = deployment(techniques=[quant, two_four]), deployment(techniques=[two_four, quant])
    assert one.layer_weight_bytes == two.layer_weight_bytes == pytest.approx(0.5 * (4.25 / 8 + 0.25))


def test_attention_quant_uses_low_bit_tensor_peaks():
    ev = step(phase="prefill", prompt=16384, techniques=[{"name": "attention_quant", "qk": "int8", "pv": "fp8"}])
    att = next(op for op in ev.steps["prefill"].ops if op.name == "attention.full")
    assert float(att.peak_flops_per_s) == pytest.approx(1978.9e12)  # int8 and fp8 both at 2x bf16 on H100
    assert any(op.name == "attention_quant.quantize_qk" for op in ev.steps["prefill"].ops)


def test_flash_attention_versions():
    pre = dict(phase="prefill", prompt=16384, calibration="default")
    t = {v: op_time(step(**pre, techniques=[{"name": "flash_attention", "version": v}]), "prefill", is_attention)
         for v in ("none", 1, 2, 3)}
    assert t["none"] > t[1] > t[2] > t[3]
    assert t[2] == pytest.approx(op_time(step(**pre), "prefill", is_attention))  # FA2 is the profile's basis
    at_peak = dict(pre, calibration="peak")
    assert op_time(step(**at_peak, techniques=[{"name": "flash_attention", "version": 3}]), "prefill", is_attention) == \
        pytest.approx(op_time(step(**at_peak), "prefill", is_attention))  # never beyond the device peak
    with pytest.raises(InputError, match="Hopper"):
        run(gpu="a100-80gb-sxm", techniques=[{"name": "flash_attention", "version": 3}])


# --- mixture of experts ----------------------------------------------------------------------------------


def test_moe_routing_and_expert_parallel_imbalance():
    moe = dict(model="mixtral-8x7b", num_gpus=2, phase="prefill", prompt=4096)
    experts = lambda op: op.name.startswith("moe.expert.") and op.kind == "grouped_gemm"  # noqa: E731
    base = op_sum(step(**moe), "prefill", "flops", experts)
    assert base > 0
    top1 = op_sum(step(**moe, techniques=[{"name": "moe", "top_k": 1}]), "prefill", "flops", experts)
    assert top1 == pytest.approx(base / 2)
    skew = op_sum(step(**moe, techniques=[{"name": "moe", "expert_parallel": 2, "load_imbalance": 1.5}]), "prefill",
                  "flops", experts)
    assert skew == pytest.approx(1.5 * base)
    with pytest.raises(InputError, match="expert_parallel"):
        run(**moe, techniques=[{"name": "moe", "expert_parallel": 4}])
    with pytest.raises(InputError, match="mixture-of-experts"):
        run(techniques=[{"name": "moe"}])


def test_weight_techniques_change_the_grouped_expert_gemms():
    """Quantised or 2:4-sparse weights apply to the routed experts' grouped GEMMs as to dense GEMMs."""
    moe = dict(model="mixtral-8x7b", num_gpus=2, phase="prefill", prompt=4096)
    experts = lambda op: op.name.startswith("moe.expert.") and op.kind == "grouped_gemm"  # noqa: E731
    base = step(**moe)
    sparse = step(**moe, techniques=[{"name": "sparsity", "pattern": "2:4"}])
    assert op_sum(sparse, "prefill", "flops", experts) == pytest.approx(0.5 * op_sum(base, "prefill", "flops", experts))
    fp8 = step(**moe, techniques=[{"name": "weight_quant", "format": "fp8"}])
    peaks = {op.name: float(np.max(op.peak_flops_per_s)) for op in fp8.steps["prefill"].ops if experts(op)}
    assert peaks and all(p == pytest.approx(1978.9e12) for p in peaks.values())


def test_sparse_utilisation_counts_activated_experts():
    """MoE-CAP S-MBU by hand: Mixtral decode at batch 1 touches top-2 of 8 experts per layer; on TP 2 each
    GPU reads half of the attention and expert weights and of the KV cache, and the whole (replicated)
    router."""
    r = run(model="mixtral-8x7b", num_gpus=2, batch=1, context=1000)
    m = get_model("mixtral-8x7b")
    attn = sum(lin.params for lin in m.attention_linears())
    expert = sum(lin.params for lin in m.expert_linears())
    router = m.router_linear().params
    kv = 1001 * 32 * 2 * 8 * 128 * 2  # the 1000 cached tokens and the new one, read by decode attention
    expected = ((32 * (attn + 2 * expert) * 2 + kv) / 2 + 32 * router * 2) / r["latency_s"] / 3.35e12
    assert r["s_mbu"] == pytest.approx(expected, rel=1e-9)
    assert r["s_mbu"] <= r["mbu"] * 1.001  # the step also reads embeddings, norms and the LM head


# --- decoding --------------------------------------------------------------------------------------------


def test_speculative_step_is_a_verify_pass_plus_draft_steps():
    draft = "llama-3.2-1b"
    ev = step(batch=2, context=8192, techniques=[{"name": "speculative", "method": "draft", "draft_model": draft,
                                                  "gamma": 3}])
    ops = {op.name: op for op in ev.steps["decode"].ops}
    assert float(ops["attn.qkv_proj"].rows) == 2 * 4  # gamma + 1 positions per sequence
    assert float(ops["lm_head"].rows) == 2 * 4  # logits for each verified position
    assert ops["draft.attn.qkv_proj"].count == 3 * get_model(draft).num_layers  # gamma draft steps
    base = deployment()
    dep = deployment(techniques=[{"name": "speculative", "method": "draft", "draft_model": draft}])
    draft_dep = deployment(model=draft)
    assert weight_bytes_per_gpu(dep) == pytest.approx(weight_bytes_per_gpu(base) + weight_bytes_per_gpu(draft_dep))
    assert kv_bytes_per_request(dep, 1000) == pytest.approx(kv_bytes_per_request(base, 1000)
                                                           + kv_bytes_per_request(draft_dep, 1000))
    self_spec = step(batch=2, context=8192, techniques=[{"name": "speculative", "layer_fraction": 0.25, "gamma": 2}])
    ops = {op.name: op for op in self_spec.steps["decode"].ops}
    assert ops["draft.attn.qkv_proj"].count == pytest.approx(2 * 0.25 * 32)
    medusa = deployment(techniques=[{"name": "speculative", "method": "medusa", "gamma": 3}])
    m = get_model("llama-3.1-8b")
    heads = 3 * (m.hidden_size ** 2 + m.hidden_size * m.vocab_size) * 2
    assert weight_bytes_per_gpu(medusa) - weight_bytes_per_gpu(base) == pytest.approx(heads)


def test_multi_draft_raises_acceptance():
    one = run(techniques=[{"name": "speculative", "alpha": 0.6, "gamma": 4}])["tokens_per_step"]
    three = run(techniques=[{"name": "speculative", "alpha": 0.6, "gamma": 4, "num_drafts": 3}])["tokens_per_step"]
    a = 1 - 0.4 ** 3
    assert three == pytest.approx((1 - a ** 5) / (1 - a)) and three > one


def test_early_exit_runs_fewer_layers_per_token():
    ev = step(context=8192, techniques=[{"name": "early_exit", "exit_fraction": 0.5}])
    ops = {op.name: op for op in ev.steps["decode"].ops}
    assert ops["attn.qkv_proj"].count == 16 and ops["lm_head"].count == 1
    assert ev.arrays["kv_bytes_per_request"] == step(context=8192).arrays["kv_bytes_per_request"]


# --- batching --------------------------------------------------------------------------------------------


def test_chunked_prefill_streams_weights_per_chunk():
    pre = dict(phase="prefill", prompt=8192)
    chunked = step(**pre, techniques=[{"name": "chunked_prefill", "chunk_tokens": 1024}])
    weights = lambda op: op.kind == "gemm" and op.per_layer  # noqa: E731
    w_chunked = op_sum(chunked, "prefill", "weight_bytes", weights)
    assert w_chunked == pytest.approx(8 * op_sum(step(**pre), "prefill", "weight_bytes", weights))
    assert op_sum(chunked, "prefill", "flops", lambda op: op.kind == "gemm") == \
        pytest.approx(op_sum(step(**pre), "prefill", "flops", lambda op: op.kind == "gemm"))
    assert chunked.arrays["activation_bytes"] < step(**pre).arrays["activation_bytes"]
    dec = step(batch=8, context=CTX, techniques=[{"name": "chunked_prefill", "chunk_tokens": 256}])
    ops = {op.name: op for op in dec.steps["decode"].ops}
    assert float(ops["attn.qkv_proj"].rows) == 8 + 256
    assert "attention.full.chunk" in ops


def test_nanoflow_overlaps_and_splits():
    sc = dict(batch=256, context=2048, num_gpus=2)
    ev = step(**sc, techniques=[{"name": "nanoflow", "nano_batches": 4}])
    assert ev.overlap == "overlapped"
    ops = {op.name: op for op in ev.steps["decode"].ops}
    assert ops["attn.qkv_proj"].count == 4 * 32
    one = run(**sc, techniques=[{"name": "nanoflow", "nano_batches": 1}])
    assert one["latency_s"] == pytest.approx(run(**sc, overlap="overlapped")["latency_s"])


# --- the report and validation ---------------------------------------------------------------------------


def test_per_technique_report_against_separate_runs():
    techs = [{"name": "kv_quant", "bits": 4}, {"name": "duo_attention", "retrieval_fraction": 0.5}]
    sc = dict(model="llama-3.1-8b", **{"workload.phase": "decode", "workload.batch_size": 8,
                                        "workload.context_len": 131072})
    p = predict(techniques=techs, **sc)
    assert [e.name for e in p.techniques] == ["kv_quant", "duo_attention"]
    without_quant = predict(techniques=techs[1:], **sc)
    e = p.techniques[0]
    assert e.memory_ratio == pytest.approx(p.memory.total_bytes / without_quant.memory.total_bytes)
    assert e.max_concurrency_before == without_quant.max_concurrency and e.max_concurrency_after == p.max_concurrency
    assert e.throughput_ratio == pytest.approx(p.tokens_per_s / without_quant.tokens_per_s)
    assert e.params == {"bits": 4} and "2402.02750" in e.citation
    both = p.techniques_combined
    assert both.kv_bytes_ratio == pytest.approx(p.techniques[0].kv_bytes_ratio * predict(techniques=techs[1:], **sc)
                                                .techniques[0].kv_bytes_ratio)
    assert predict(**sc).techniques == [] and predict(**sc).techniques_combined is None


@pytest.mark.parametrize("entry,field", [
    ({"name": "kv_quant", "bits": 3}, "techniques[0].bits"),
    ({"name": "duo_attention", "retrieval_fraction": 1.5}, "techniques[0].retrieval_fraction"),
    ({"name": "gqa", "num_kv_heads": 3}, "techniques[0].num_kv_heads"),
    ({"name": "kv_eviction", "budget_tokens": 10, "budget_fraction": 0.5}, "techniques[0]"),
    ({"name": "speculative", "method": "draft"}, "techniques[0]"),
    ({"name": "speculative", "method": "draft", "draft_model": "llama-9"}, "techniques[0].draft_model"),
    ({"name": "sparsity", "pattern": "2:4", "sparsity": 0.7}, "techniques[0]"),
    ({"name": "weight_quant", "format": "int3"}, "techniques[0].format"),
    ({"name": "kv_quant", "bogus": 1}, "techniques[0].bogus"),
    ({"name": "kv_qaunt"}, "techniques[0].name"),
    ({"name": "mla", "qk_rope_head_dim": 128}, "techniques[0].qk_rope_head_dim"),
])
def test_bad_parameters_get_one_clear_error(entry, field):
    with pytest.raises(InputError) as err:
        run(techniques=[entry])
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_a_technique_given_twice_is_an_error():
    with pytest.raises(InputError, match="twice"):
        run(techniques=[{"name": "kv_quant"}, {"name": "kv_quant", "bits": 2}])
