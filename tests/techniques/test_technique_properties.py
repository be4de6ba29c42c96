"""Property tests: turning a technique on never increases the quantity it exists to reduce, and
independent KV reductions compose multiplicatively.

Where a technique only pays off past a break-even (a recurrent state vs a growing KV cache, sparse
indices vs dense values, a latent replicated over TP vs sharded heads), the property is drawn from the
region the technique is meant for, and the break-even is computed, not assumed.
"""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.footprint import layer_kv_bytes
from simulator.models import get_model
from simulator.metrics import active_params
from technique_helpers import deployment, is_attention, op_time, run, step

SETTINGS = settings(max_examples=25, deadline=None)
EPS = 1 + 1e-9

workloads = st.fixed_dictionaries({
    "model": st.sampled_from(["llama-3.1-8b", "llama-2-7b", "qwen2.5-7b"]),
    "num_gpus": st.sampled_from([1, 2, 4]),
    "batch": st.integers(1, 64),
    "context": st.integers(1, 300_000),
    "prompt": st.integers(16, 16_384),
    "calibration": st.sampled_from(["peak", "default"]),
})


def _both(work, tech, **extra):
    return run(**work, **extra), run(**work, **extra, techniques=[tech])


# --- attention shape -------------------------------------------------------------------------------------


@SETTINGS
@given(workloads, st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_gqa_never_increases_kv(work, kv_heads):
    work = {**work, "model": "llama-2-7b"}
    base, gqa = _both(work, {"name": "gqa", "num_kv_heads": kv_heads})
    assert gqa["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS


@SETTINGS
@given(workloads, st.integers(32, 1024), st.sampled_from([16, 32, 64]))
def test_mla_never_increases_kv_where_the_latent_is_smaller(work, rank, rope):
    # an MLA latent is replicated over TP: it pays off while rank + rope <= 2 n_kv d_h / tp (here 8192 / 4)
    work = {**work, "model": "llama-2-7b"}
    base, mla = _both(work, {"name": "mla", "kv_lora_rank": rank, "qk_rope_head_dim": rope})
    assert mla["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS


@SETTINGS
@given(workloads, st.integers(16, 65_536), st.integers(0, 8))
def test_sliding_window_never_increases_kv_or_latency(work, window, every):
    tech = {"name": "sliding_window", "window": window, "global_every": every}
    base, local = _both(work, tech)
    assert local["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS
    assert local["latency_s"] <= base["latency_s"] * EPS
    pre_base, pre_local = _both(work, tech, phase="prefill")
    assert pre_local["latency_s"] <= pre_base["latency_s"] * EPS


@SETTINGS
@given(workloads, st.floats(0.05, 1.0), st.integers(16, 512))
def test_linear_attention_never_increases_kv_past_its_break_even(work, fraction, state_dim):
    tech = {"name": "linear_attention", "fraction": fraction, "state_dim": state_dim}
    dep = deployment(**{k: work[k] for k in ("model", "num_gpus")}, techniques=[tech])
    state = dep.recurrent_state_bytes_per_layer_local
    break_even = state / (dep.kv_elems_per_token_layer_local * dep.kv_bytes)
    assume(work["context"] + 1 >= break_even)
    base, linear = _both(work, tech)
    assert linear["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS


@SETTINGS
@given(workloads, st.sampled_from(["gated_retention", "sliding_window"]), st.integers(64, 8192))
def test_yoco_never_increases_kv_or_prefill_time(work, self_decoder, window):
    tech = {"name": "yoco", "self_decoder": self_decoder, "window": window}
    if self_decoder == "gated_retention":  # L/2 retention states vs (L - 1) layers' KV
        dep = deployment(**{k: work[k] for k in ("model", "num_gpus")}, techniques=[tech])
        per_token = dep.kv_elems_per_token_layer_local * dep.kv_bytes
        assume(work["context"] + 1 >= dep.recurrent_state_bytes_per_layer_local / per_token)
    base, yoco = _both(work, tech)
    assert yoco["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS
    pre_base, pre_yoco = _both(work, tech, phase="prefill")
    assert pre_yoco["latency_s"] <= pre_base["latency_s"] * EPS


# --- KV cache ----------------------------------------------------------------------------------------------


@SETTINGS
@given(workloads, st.sampled_from([8, 4, 2]), st.sampled_from([None, 32, 64, 128]))
def test_kv_quant_never_increases_kv(work, bits, group):
    base, q = _both(work, {"name": "kv_quant", "bits": bits, "group_size": group})
    assert q["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS


@SETTINGS
@given(workloads, st.one_of(st.integers(4, 100_000).map(lambda b: {"budget_tokens": b}),
                            st.floats(0.01, 1.0).map(lambda f: {"budget_fraction": f})),
       st.sampled_from(["h2o", "scissorhands", "streaming"]))
def test_kv_eviction_never_increases_the_cache(work, budget, policy):
    tech = {"name": "kv_eviction", "policy": policy, **budget}
    work_dep = {k: work[k] for k in ("model", "num_gpus")}
    t = work["context"] + 1
    assert layer_kv_bytes(deployment(**work_dep, techniques=[tech]), t) <= layer_kv_bytes(deployment(**work_dep), t) * EPS
    if policy == "streaming":  # no score bookkeeping: memory and decode time drop too
        base, kept = _both(work, tech)
        assert kept["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS
        assert kept["latency_s"] <= base["latency_s"] * EPS


@SETTINGS
@given(workloads, st.floats(0.0, 1.0), st.integers(0, 512), st.integers(0, 4096))
def test_duo_attention_never_increases_kv_or_latency(work, r, sink, recent):
    tech = {"name": "duo_attention", "retrieval_fraction": r, "sink_tokens": sink, "recent_tokens": recent}
    base, duo = _both(work, tech)
    assert duo["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS
    assert duo["latency_s"] <= base["latency_s"] * EPS
    pre_base, pre_duo = _both(work, tech, phase="prefill")
    assert pre_duo["latency_s"] <= pre_base["latency_s"] * EPS


@SETTINGS
@given(workloads, st.floats(0.0, 0.99), st.booleans())
def test_prefix_cache_never_increases_prefill_time_or_kv(work, hit, once):
    tech = {"name": "prefix_cache", "hit_rate": hit, "read_once": once}
    pre_base, pre_hit = _both(work, tech, phase="prefill")
    assert pre_hit["latency_s"] <= pre_base["latency_s"] * EPS
    base, shared = _both(work, tech)
    assert shared["kv_cache_bytes"] <= base["kv_cache_bytes"] * EPS
    assert shared["latency_s"] <= base["latency_s"] * EPS


@SETTINGS
@given(workloads, st.floats(0.01, 1.0), st.sampled_from(["fetch", "recompute", "auto"]))
def test_kv_offload_never_increases_device_kv(work, fraction, policy):
    base, off = _both(work, {"name": "kv_offload", "fraction": fraction, "policy": policy})
    assert off["kv_bytes_per_request"] <= base["kv_bytes_per_request"] * EPS


# --- weights and kernels ---------------------------------------------------------------------------------


@SETTINGS
@given(workloads, st.sampled_from(["w8a8", "fp8", "w4a16", "nvfp4", "mxfp4"]), st.booleans())
def test_weight_quant_never_increases_weight_memory(work, fmt, embeddings):
    base, q = _both(work, {"name": "weight_quant", "format": fmt, "quantize_embeddings": embeddings})
    assert q["weights_bytes"] <= base["weights_bytes"] * EPS


@SETTINGS
@given(workloads, st.one_of(st.just({"pattern": "2:4"}),
                            st.floats(0.5, 0.95).map(lambda s: {"pattern": "unstructured", "sparsity": s})))
def test_sparsity_never_increases_weight_memory_past_break_even(work, params):
    # unstructured with a 16-bit index per bf16 value breaks even at s = 0.5 (Flash-LLM's regime: 70-90%)
    base, sparse = _both(work, {"name": "sparsity", **params})
    assert sparse["weights_bytes"] <= base["weights_bytes"] * EPS


@SETTINGS
@given(workloads, st.sampled_from(["int8", "int4", "fp8"]), st.sampled_from(["fp16", "fp8"]))
def test_attention_quant_never_slows_prefill_attention(work, qk, pv):
    pre = {**work, "phase": "prefill"}
    base = op_time(step(**pre), "prefill", is_attention)
    quant = op_time(step(**pre, techniques=[{"name": "attention_quant", "qk": qk, "pv": pv}]), "prefill", is_attention)
    assert quant <= base * EPS


@SETTINGS
@given(workloads)
def test_newer_flash_attention_never_slower(work):
    pre = {**work, "phase": "prefill"}
    times = [op_time(step(**pre, techniques=[{"name": "flash_attention", "version": v}]), "prefill", is_attention)
             for v in ("none", 1, 2, 3)]
    assert all(b <= a * EPS for a, b in zip(times, times[1:]))


# --- mixture of experts, decoding, batching ------------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 256), st.sampled_from(["prefill", "decode"]))
def test_fewer_experts_per_token_never_add_flops(top_k, batch, phase):
    work = dict(model="mixtral-8x7b", num_gpus=2, batch=batch, phase=phase, prompt=512, context=2048)
    base, routed = step(**work), step(**work, techniques=[{"name": "moe", "top_k": top_k}])
    assert float(np.sum(routed.steps[phase].flops)) <= float(np.sum(base.steps[phase].flops)) * EPS


@SETTINGS
@given(workloads, st.floats(0.01, 0.99), st.integers(1, 8), st.integers(1, 4))
def test_speculation_never_needs_more_than_one_target_pass_per_token(work, alpha, gamma, drafts):
    r = run(**work, techniques=[{"name": "speculative", "alpha": alpha, "gamma": gamma, "num_drafts": drafts}])
    assert 1.0 <= r["tokens_per_step"] <= drafts * gamma + 1


@SETTINGS
@given(workloads, st.floats(0.05, 1.0))
def test_early_exit_never_slows_decode(work, fraction):
    base, early = _both(work, {"name": "early_exit", "exit_fraction": fraction})
    assert early["latency_s"] <= base["latency_s"] * EPS


@SETTINGS
@given(workloads, st.integers(16, 8192))
def test_chunked_prefill_never_increases_activation_memory(work, chunk):
    base, chunked = _both(work, {"name": "chunked_prefill", "chunk_tokens": chunk}, phase="prefill")
    assert chunked["activation_bytes"] <= base["activation_bytes"] * EPS


@SETTINGS
@given(workloads, st.sampled_from(["prefill", "decode", "generate"]))
def test_nanoflow_overlap_never_slower_and_optimum_never_exceeded(work, phase):
    base, nano = _both({**work, "phase": phase}, {"name": "nanoflow", "nano_batches": 1})
    assert nano["latency_s"] <= base["latency_s"] * EPS
    # the optimum charges 2 P FLOPs per token; a prompt token skips the LM head, so prefill may beat it by that much
    m = get_model(work["model"])
    p = active_params(m)
    bound = 1.0 if phase != "prefill" else p / (p - m.vocab_size * m.hidden_size)
    assert base["optimal_fraction"] <= bound * EPS and nano["optimal_fraction"] <= bound * EPS


# --- composition ---------------------------------------------------------------------------------------------

# KV reductions along independent axes: bytes per element, tokens kept, heads, where the bytes live
AXES = {
    "bytes": st.builds(lambda b, g: {"name": "kv_quant", "bits": b, "group_size": g},
                       st.sampled_from([8, 4, 2]), st.sampled_from([None, 64, 128])),
    "tokens": st.one_of(
        st.floats(0.01, 1.0).map(lambda f: {"name": "kv_eviction", "budget_fraction": f, "policy": "streaming"}),
        st.floats(0.0, 1.0).map(lambda r: {"name": "duo_attention", "retrieval_fraction": r})),
    "heads": st.sampled_from([1, 2, 4, 8, 16]).map(lambda n: {"name": "gqa", "num_kv_heads": n}),
    "placement": st.floats(0.01, 1.0).map(lambda f: {"name": "kv_offload", "fraction": f}),
}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([(a, b) for a in AXES for b in AXES if a < b]).flatmap(
    lambda pair: st.tuples(AXES[pair[0]], AXES[pair[1]])), st.integers(1, 500_000), st.sampled_from([1, 2, 4]))
def test_independent_kv_reductions_multiply(pair, context, gpus):
    a, b = pair
    work = dict(model="llama-2-7b", num_gpus=gpus, context=context)
    base = run(**work)["kv_bytes_per_request"]
    ra = run(**work, techniques=[a])["kv_bytes_per_request"] / base
    rb = run(**work, techniques=[b])["kv_bytes_per_request"] / base
    both = run(**work, techniques=[a, b])["kv_bytes_per_request"] / base
    assert both == np.float64(ra * rb) or abs(both - ra * rb) <= 1e-9 * max(both, 1e-30)
