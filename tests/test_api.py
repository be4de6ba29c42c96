"""The public API: predict and sweep agree, outputs are consistent, bad input gets one clear error."""

import numpy as np
import pytest

from hwmodels import InputError
from simulator import Scenario, predict, sweep


def test_sweep_point_equals_predict():
    sc = Scenario().with_overrides(**{"workload.batch_size": 16, "workload.context_len": 8192})
    p = predict(sc)
    r = sweep(sc, batch_size=[1, 16, 64], context_len=[1024, 8192])
    assert r["latency_s"].shape == (3, 2)
    assert r["latency_s"][1, 1] == pytest.approx(p.latency_s)
    assert r["tokens_per_s"][1, 1] == pytest.approx(p.tokens_per_s)
    assert r["kv_cache_bytes"][1, 1] == pytest.approx(p.memory.kv_cache_bytes)
    assert list(r.axes) == ["batch_size", "context_len"]


def test_sweep_over_precision_and_tp():
    r = sweep(Scenario().with_overrides(**{"hardware.num_gpus": 8}), weights=["bf16", "fp8"], tp=[1, 2, 4, 8])
    assert r["weights_bytes"].shape == (2, 4)
    assert r["weights_bytes"][1, 0] == pytest.approx(r["weights_bytes"][0, 0] / 2, rel=1e-3)
    assert np.all(np.diff(r["weights_bytes"], axis=1) < 0)  # more TP, less per GPU


def test_decode_throughput_is_batch_over_step():
    p = predict(**{"workload.batch_size": 32})
    assert p.tokens_per_s == pytest.approx(32 / p.latency_s)
    assert p.bound == "memory"  # decode of an 8B model at batch 32 streams weights and KV


def test_prefill_of_long_prompt_is_compute_bound():
    p = predict(**{"workload.phase": "prefill", "workload.prompt_len": 8192})
    assert p.bound == "compute"
    assert p.tokens_per_s == pytest.approx(8192 / p.latency_s)


def test_max_concurrency_is_the_largest_batch_that_fits():
    sc = Scenario().with_overrides(**{"workload.context_len": 32768})
    n = predict(sc).max_concurrency
    assert n > 0
    assert predict(sc, **{"workload.batch_size": n}).memory.fits
    assert not predict(sc, **{"workload.batch_size": n + 1}).memory.fits


def test_overlapped_policy_is_never_slower_than_serial():
    sc = Scenario().with_overrides(**{"hardware.num_gpus": 4, "workload.batch_size": 64})
    serial = predict(sc)
    overlapped = predict(sc, overlap="overlapped")
    assert overlapped.latency_s <= serial.latency_s
    r = overlapped.resources
    assert overlapped.latency_s == pytest.approx(max(r.sm_s, r.hbm_s, r.link_s, r.overhead_s))


def test_generate_contract_fields():
    p = predict(**{"workload.phase": "generate"})
    data = p.contract()
    for key in ("ttft_s", "tpot_s", "e2e_s", "memory", "max_concurrency", "bound", "breakdown"):
        assert key in data
    assert {op["phase"] for op in data["breakdown"]} == {"prefill", "decode"}


@pytest.mark.parametrize("overrides,field", [
    ({"hardware.num_gpus": 3}, "parallelism.tp"),            # 32 heads over 3 GPUs
    ({"parallelism.tp": 4}, "hardware.num_gpus"),            # tp 4 on 1 GPU
    ({"model": "llama-3.1-8"}, "model"),
    ({"hardware.gpu": "h100"}, "hardware.gpu"),
    ({"calibration": "nope"}, "calibration"),
    ({"precision.weights": "fp12"}, "precision.weights"),
])
def test_bad_scenarios_name_their_field(overrides, field):
    with pytest.raises(InputError) as err:
        predict(**overrides)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_unknown_name_suggests_close_match():
    with pytest.raises(InputError, match="h100-sxm"):
        predict(**{"hardware.gpu": "h100-sx"})


@pytest.mark.parametrize("axes,field", [
    ({"batch_size": [0, 1]}, "batch_size"),
    ({"context_len": [1.5]}, "context_len"),
    ({"context_len": [float("nan")]}, "context_len"),
    ({"bogus": [1]}, "bogus"),
    ({"kv_cache": ["fp9"]}, "kv_cache"),
])
def test_bad_sweep_axes(axes, field):
    with pytest.raises(InputError) as err:
        sweep(None, **axes)
    assert err.value.field == field


def test_missing_or_malformed_scenario_fields(tmp_path):
    with pytest.raises(InputError, match="workload.batch_size"):
        Scenario.from_dict({"workload": {"batch_size": -4}})
    with pytest.raises(InputError, match="workload.phase"):
        Scenario.from_dict({"workload": {"phase": "train"}})
    with pytest.raises(InputError, match="hardwares"):
        Scenario.from_dict({"hardwares": {}})
    bad = tmp_path / "s.yaml"
    bad.write_text("workload: [1, 2")
    with pytest.raises(InputError, match="scenario"):
        Scenario.from_file(bad)


def test_custom_gpu_inline():
    from hwmodels import get_accelerator

    spec = get_accelerator("h100-sxm").model_dump()
    spec.update(name="h100-fast", hbm_bandwidth_bytes_per_s=2 * spec["hbm_bandwidth_bytes_per_s"])
    fast = predict(**{"hardware.gpu": spec, "calibration": "peak", "workload.batch_size": 8})
    base = predict(**{"calibration": "peak", "workload.batch_size": 8})
    assert fast.latency_s == pytest.approx(base.latency_s / 2, rel=0.05)


def test_breakdown_operators_sum_to_the_step():
    p = predict(**{"workload.batch_size": 8, "hardware.num_gpus": 2})
    assert sum(op.time_s for op in p.breakdown) == pytest.approx(p.latency_s)
    assert sum(op.compute_s for op in p.breakdown) == pytest.approx(p.resources.sm_s)
    assert sum(op.memory_s for op in p.breakdown) == pytest.approx(p.resources.hbm_s)
    assert sum(op.link_s for op in p.breakdown) == pytest.approx(p.resources.link_s)
    kinds = {op.name: op.kind for op in p.breakdown}
    assert kinds["attn.qkv_proj"] == "gemm" and kinds["attention.full"] == "attention_decode"
    assert kinds["attn.all_reduce"] == "collective"


def test_generate_reports_the_phase_that_dominates():
    long_output = predict(**{"workload.phase": "generate", "workload.prompt_len": 512, "workload.output_len": 512})
    decode = predict(**{"workload.context_len": 767})  # the generation's middle decode step
    assert long_output.bound == "memory"
    assert long_output.mbu == pytest.approx(decode.mbu, rel=0.02)
    long_prompt = predict(**{"workload.phase": "generate", "workload.prompt_len": 16384, "workload.output_len": 2})
    prefill = predict(**{"workload.phase": "prefill", "workload.prompt_len": 16384})
    assert long_prompt.bound == "compute" and long_prompt.mfu == pytest.approx(prefill.mfu)
