"""Invariants that hold for every scenario (hypothesis property tests)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import get_accelerator
from simulator import Scenario, sweep

MODELS = ["llama-3.1-8b"]
PHASES = ["prefill", "decode"]

scenarios = st.builds(
    lambda model, phase, batch, prompt, ctx, gpus, weights, kv, calib: Scenario.from_dict({
        "model": model, "hardware": {"gpu": "h100-sxm", "num_gpus": gpus},
        "precision": {"weights": weights, "kv_cache": kv}, "calibration": calib,
        "workload": {"phase": phase, "batch_size": batch, "prompt_len": prompt, "context_len": ctx},
    }),
    st.sampled_from(MODELS), st.sampled_from(PHASES), st.integers(1, 512), st.integers(1, 32768),
    st.integers(1, 262144), st.sampled_from([1, 2, 4, 8]), st.sampled_from(["bf16", "fp8", "int4"]),
    st.sampled_from(["bf16", "fp8"]), st.sampled_from(["peak", "default"]),
)


def _scaled_gpu(factor_bw=1.0, factor_flops=1.0, factor_link=1.0):
    spec = get_accelerator("h100-sxm").model_dump()
    spec["name"] = "h100-scaled"
    spec["hbm_bandwidth_bytes_per_s"] *= factor_bw
    spec["peak_flops_per_s"] = {k: v * factor_flops for k, v in spec["peak_flops_per_s"].items()}
    spec["intra_node_link"]["bandwidth_bytes_per_s"] *= factor_link
    return spec


@settings(max_examples=60, deadline=None)
@given(scenarios, st.floats(1.0, 8.0), st.floats(1.0, 8.0), st.floats(1.0, 8.0))
def test_more_bandwidth_or_flops_is_never_slower(sc, bw, flops, link):
    base = sweep(sc.with_overrides(**{"hardware.gpu": _scaled_gpu()}))["latency_s"]
    faster = sweep(sc.with_overrides(**{"hardware.gpu": _scaled_gpu(bw, flops, link)}))["latency_s"]
    assert np.all(faster <= base * (1 + 1e-12))


@settings(max_examples=60, deadline=None)
@given(scenarios)
def test_time_never_below_the_peak_roofline_floor(sc):
    floor = sweep(sc.with_overrides(calibration="peak", overlap="overlapped"))["latency_s"]
    for overlap in ("serial", "overlapped"):
        t = sweep(sc.with_overrides(overlap=overlap))["latency_s"]
        assert np.all(t >= floor * (1 - 1e-12))


@settings(max_examples=60, deadline=None)
@given(scenarios)
def test_utilisation_never_exceeds_one(sc):
    r = sweep(sc)
    assert np.all(r["mfu"] <= 1.0 + 1e-9) and np.all(r["mbu"] <= 1.0 + 1e-9)
    assert np.all(r["mfu"] > 0) and np.all(r["mbu"] > 0)


@settings(max_examples=40, deadline=None)
@given(scenarios)
def test_memory_grows_with_batch_and_context(sc):
    r = sweep(sc, batch_size=[1, 2, 7, 64], context_len=[1, 100, 5000, 90000], prompt_len=[1, 10, 3000])
    total = r["total_bytes"]
    assert np.all(np.diff(total, axis=0) >= 0)
    # context only matters to decode's cache; prompt only to prefill's
    assert np.all(np.diff(total, axis=1) >= 0) and np.all(np.diff(total, axis=2) >= 0)
    for key in ("latency_s", "tokens_per_s", "total_bytes"):
        assert np.all(np.isfinite(r[key]))
