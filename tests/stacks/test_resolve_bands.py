"""Calibration resolution (stack files, family transfer) and the error bands on predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hwmodels import get_accelerator, load_profile
from hwmodels.errors import InputError
from simulator.api import predict, sweep
from simulator.stacks import StackProfile, resolve_calibration, transfer_profile
from simulator.stacks.profile import EfficiencyCorrection


def test_a_profile_carried_to_another_gpu_shifts_its_curves_by_datasheet_ratios():
    h100, h200 = get_accelerator("h100-sxm"), get_accelerator("h200-sxm")
    src = load_profile("h100-sxm")
    carried = transfer_profile(src, h100, h200)
    shift = math.log10(4.8e12 / 3.35e12)  # HBM bandwidth ratio; both have 132 SMs
    assert carried.device == "h200-sxm"
    for b in (1e5, 1e7, 1e9):
        assert carried.kind("memory").memory(b * 10 ** shift) == pytest.approx(src.kind("memory").memory(b))
        assert carried.kind("gemm").compute(b) == pytest.approx(src.kind("gemm").compute(b))


def test_an_uncalibrated_gpu_takes_the_nearest_measured_profile_of_its_family():
    cal = resolve_calibration("auto", get_accelerator("h100-pcie"))
    assert cal.base_kind == "transferred" and cal.source in ("h100-sxm", "h200-sxm")
    assert resolve_calibration("auto", get_accelerator("a100-80gb-sxm")).base_kind == "default"
    assert resolve_calibration("auto", get_accelerator("h200-sxm")).base_kind == "measured"


def test_a_stack_file_sits_on_the_gpus_own_base(tmp_path):
    stack = StackProfile(name="slow-gemm", efficiency={"gemm": EfficiencyCorrection(scale=0.5)})
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack.model_dump(mode="json")))
    for gpu in ("h100-sxm", "h200-sxm"):
        cal = resolve_calibration(str(path), get_accelerator(gpu))
        assert cal.stack == stack and cal.base == gpu
    base = predict(**{"workload.phase": "prefill", "workload.prompt_len": 8192}).latency_s
    slow = predict(calibration=str(path), **{"workload.phase": "prefill", "workload.prompt_len": 8192}).latency_s
    assert 1.5 * base < slow < 2.0 * base  # GEMMs take most of a long prefill


def test_a_bad_stack_file_is_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"stack_schema_version": 1, "name": "x", "fixed": {"execution": "warp"}}))
    with pytest.raises(InputError, match="calibration"):
        predict(calibration=str(path))
    path.write_text(json.dumps({"stack_schema_version": 7, "name": "x"}))
    with pytest.raises(InputError, match="stack_schema_version"):
        predict(calibration=str(path))


@pytest.mark.parametrize("phase", ["prefill", "decode", "generate"])
def test_every_prediction_has_a_band_around_it(phase):
    p = predict(**{"workload.phase": phase})
    lo, hi = p.latency_band_s
    assert lo < p.latency_s < hi
    t_lo, t_hi = p.tokens_per_s_band
    assert t_lo < p.tokens_per_s < t_hi
    assert t_lo == pytest.approx(p.tokens_per_s * p.latency_s / hi)
    data = p.contract()
    assert data["latency_band_s"] == [lo, hi] and data["band_basis"]
    if phase == "generate":
        steps = 256 - 1  # the default output_len
        assert lo == pytest.approx(p.ttft_band_s[0] + steps * p.tpot_band_s[0])
        assert p.e2e_band_s == p.latency_band_s
    else:
        assert "ttft_band_s" not in data


def test_bands_widen_far_from_the_calibrated_shapes_and_off_the_measured_gpu():
    def width(**over):
        p = predict(**over)
        return math.log(p.latency_band_s[1] / p.latency_band_s[0])

    near = width(**{"workload.phase": "decode", "workload.batch_size": 8})
    far = width(**{"workload.phase": "decode", "workload.batch_size": 4096, "workload.context_len": 256})
    assert far > 2 * near
    assert width(**{"workload.phase": "decode", "hardware.gpu": "a100-80gb-sxm", "workload.batch_size": 8}) > near


def test_sweep_carries_band_arrays():
    r = sweep(batch_size=[1, 8, 64])
    assert np.all(r["latency_band_lo_s"] < r["latency_s"]) and np.all(r["latency_s"] < r["latency_band_hi_s"])


def test_a_training_step_on_a_gpu_with_validated_training_steps_takes_their_residuals():
    """The H200's training steps (validation/results/h200-sxm.training*.json, graph replays) re-predicted give
    the band of a training step on its profile: their 10th/90th percentiles of log(measured / predicted);
    the H100, whose training kinds are carried from the H200 and never validated, keeps the doubled prefill
    band and says so."""
    from pathlib import Path

    from simulator.training.api import train
    from validation.training.report import repredict

    results = Path(__file__).resolve().parents[2] / "validation" / "results"
    errs = [r["time_err"] for path in sorted(results.glob("h200-sxm.training*.json")) for r in repredict(path)
            if "time_err" in r and r["timing"] == "graph"]
    assert len(errs) == 36
    q_lo, q_hi = np.percentile(-np.log1p(errs), (10, 90))
    kw = dict(model="llama-3.1-8b", precision="bf16", micro_batch=1, seq_len=4096)
    r = train(gpu="h200-sxm", **kw)
    lo, hi = r.step_time_band_s
    assert math.log(lo / r.step_time_s) == pytest.approx(min(q_lo, -0.01), abs=1e-4)
    assert math.log(hi / r.step_time_s) == pytest.approx(max(q_hi, 0.01), abs=1e-4)
    assert "36 validated training steps" in r.band_basis
    h100 = train(gpu="h100-sxm", **kw)
    assert "no training step validated" in h100.band_basis
