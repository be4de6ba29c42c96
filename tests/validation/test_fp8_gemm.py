"""W8A8 fp8 GEMMs: the sweep's points, the fit into a profile's ``gemm_fp8`` kind, its transfer, and how
the weight_quant technique prices fp8 GEMMs with it (CPU only; the measurement itself needs a GPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwmodels import get_accelerator, load_profile
from hwmodels.profile import PROFILE_DIR, Profile
from simulator import predict, sweep
from validation import fp8_gemm, sweeps
from validation.calibrate import POINT_COLUMNS, _rows
from validation.fit import predict_times

H200 = get_accelerator("h200-sxm")
# a known truth for the synthetic measurement: fp8 GEMMs reach these fractions of the fp8 peak and the HBM
TRUE_C = (np.array([7.0, 10.0, 12.0, 13.5]), np.array([0.15, 0.45, 0.6, 0.66]))
TRUE_M = (np.array([6.0, 7.5, 9.0, 10.0]), np.array([0.3, 0.6, 0.8, 0.85]))
OVERHEAD_S = 4e-6


def test_points_are_the_bf16_shapes_with_one_byte_weights():
    """Same shapes as the cuBLAS sweep; FLOPs 2MKN, bytes as the quantised GEMM is priced: bf16 activations
    in, 1-byte weights, bf16 out. M=1, K=4096, N=6144: 8,192 + 25,165,824 + 12,288 = 25,186,304 bytes."""
    fp8, bf16 = sweeps.gemm_fp8_points(), sweeps.gemm_points(triton=False)
    assert [p.shape for p in fp8] == [p.shape for p in bf16] and len(fp8) > 100
    first = fp8[0]
    assert first.shape == {"M": 1, "K": 4096, "N": 6144}
    assert first.flops == 2 * 4096 * 6144 and first.bytes == 25_186_304
    assert {p.kind for p in fp8} == {"gemm_fp8"} and {p.engine for p in fp8} == {"cublaslt"}


def _synthetic_raw(tmp_path):
    """A raw file as ``run`` writes it, its fp8 times drawn from the known truth (bf16 points beside)."""
    fp8 = sweeps.gemm_fp8_points()
    flops = np.array([p.flops for p in fp8])
    nbytes = np.array([p.bytes for p in fp8])
    times = predict_times(flops, nbytes, H200.peak_for("fp8"), H200.hbm_bandwidth_bytes_per_s, *TRUE_C, *TRUE_M,
                          OVERHEAD_S)
    for p, t in zip(fp8, times):
        p.result = {"time_s": float(t), "spread": 0.01, "method": "graph"}
    bf16 = sweeps.gemm_points(triton=False)[:5]
    for p in bf16:
        p.result = {"time_s": 1e-3, "spread": 0.01, "method": "graph"}
    raw = {"environment": {"device_name": "NVIDIA H200", "catalog_name": "h200-sxm", "date": "2026-12-02"},
           "columns": POINT_COLUMNS, "points": _rows(fp8 + bf16), "command": "python -m validation.fp8_gemm run"}
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    return path, flops, nbytes, times


def test_merge_fits_the_kind_that_reproduces_the_measured_times(tmp_path):
    raw, flops, nbytes, times = _synthetic_raw(tmp_path)
    target = tmp_path / "h200-sxm.json"
    target.write_text((PROFILE_DIR / "h200-sxm.json").read_text())
    fp8_gemm.merge_into_profile(target, raw)
    profile = Profile.model_validate(json.loads(target.read_text()))
    kind = profile.kinds["gemm_fp8"]
    assert "torch._scaled_mm" in kind.basis and profile.environment["engines"]["gemm_fp8"] == "cublaslt"
    fitted = predict_times(flops, nbytes, H200.peak_for("fp8"), H200.hbm_bandwidth_bytes_per_s,
                           np.array(kind.compute.log10_size), np.array(kind.compute.efficiency),
                           np.array(kind.memory.log10_size), np.array(kind.memory.efficiency), kind.overhead_s)
    assert np.median(np.abs(fitted / times - 1.0)) < 0.03
    kept = [r for r in profile.measurements["points"] if r[0] == "gemm_fp8"]
    assert len(kept) == len(flops) and profile.measurements["fp8_gemm"]["raw"] == str(raw)
    # merged again, the points are replaced, not added
    fp8_gemm.merge_into_profile(target, raw)
    again = json.loads(target.read_text())["measurements"]["points"]
    assert sum(1 for r in again if r[0] == "gemm_fp8") == len(flops)
    # the bf16 kinds are untouched
    assert profile.kinds["gemm"] == load_profile("h200-sxm").kinds["gemm"]


def test_transfer_carries_the_kind_labelled_as_such(tmp_path):
    raw, *_ = _synthetic_raw(tmp_path)
    source, target = tmp_path / "h200-sxm.json", tmp_path / "h100-sxm.json"
    source.write_text((PROFILE_DIR / "h200-sxm.json").read_text())
    target.write_text((PROFILE_DIR / "h100-sxm.json").read_text())
    fp8_gemm.merge_into_profile(source, raw)
    fp8_gemm.transfer(source, target)
    carried = Profile.model_validate(json.loads(target.read_text()))
    assert carried.kinds["gemm_fp8"].basis.startswith("transferred from h200-sxm, not measured on h100-sxm")
    # same SM count (132): compute curve unmoved; HBM 3.35 against 4.8 TB/s: memory knots shift by log10 of that
    src = Profile.model_validate(json.loads(source.read_text())).kinds["gemm_fp8"]
    assert carried.kinds["gemm_fp8"].compute.efficiency == src.compute.efficiency
    shift = np.log10(get_accelerator("h100-sxm").hbm_bandwidth_bytes_per_s / H200.hbm_bandwidth_bytes_per_s)
    assert np.allclose(np.array(carried.kinds["gemm_fp8"].memory.log10_size) - src.memory.log10_size, shift, atol=1e-4)


def _profile_with_fp8(tmp_path, factor: float | None):
    """The H200 profile with its ``gemm_fp8`` kind at ``factor`` x its bf16 GEMM efficiencies, or without
    the kind (None)."""
    data = json.loads((PROFILE_DIR / "h200-sxm.json").read_text())
    gemm = data["kinds"]["gemm"]
    data["kinds"].pop("gemm_fp8", None)
    if factor is not None:
        scaled = {curve: {"log10_size": gemm[curve]["log10_size"],
                          "efficiency": [factor * e for e in gemm[curve]["efficiency"]]} for curve in ("compute", "memory")}
        data["kinds"]["gemm_fp8"] = {**scaled, "overhead_s": gemm["overhead_s"], "basis": "test"}
    data["name"] = "h200-fp8-test"
    path = tmp_path / f"h200-fp8-{factor}.json"  # one file per factor (a rewrite can keep size and mtime)
    path.write_text(json.dumps(data))
    return str(path)


FP8 = [{"name": "weight_quant", "format": "fp8"}]


def _gemm_times(p):
    return {r.name: r.time_s for r in p.breakdown if r.kind == "gemm"}


@pytest.mark.parametrize("phase,extra", [("prefill", {"workload.prompt_len": 4096}),
                                         ("decode", {"workload.batch_size": 8, "workload.context_len": 4096})])
def test_fp8_gemms_take_the_measured_fp8_efficiency(tmp_path, phase, extra):
    """Half the bf16 efficiency in ``gemm_fp8`` doubles every quantised layer GEMM's time (compute- or
    memory-bound alike; the overhead aside); the LM head, left in bf16, keeps its time. A profile without
    the kind prices them with its bf16 efficiencies at the fp8 peak, as before."""
    base = {"hardware.gpu": "h200-sxm", "workload.phase": phase, **extra}
    without = _gemm_times(predict(techniques=FP8, calibration=_profile_with_fp8(tmp_path, None), **base))
    half = _gemm_times(predict(techniques=FP8, calibration=_profile_with_fp8(tmp_path, 0.5), **base))
    same = _gemm_times(predict(techniques=FP8, calibration=_profile_with_fp8(tmp_path, 1.0), **base))
    overhead = load_profile("h200-sxm").kinds["gemm"].overhead_s
    for name, t in without.items():
        count = next(r.count for r in predict(techniques=FP8, **base).breakdown if r.name == name)  # any profile
        if name == "lm_head":
            assert half[name] == pytest.approx(t, rel=1e-12)
        else:
            assert half[name] - count * overhead == pytest.approx(2.0 * (t - count * overhead), rel=1e-9)
        assert same[name] == pytest.approx(t, rel=1e-12)


def test_a_sweep_prices_fp8_gemms_as_points_do(tmp_path):
    cal = _profile_with_fp8(tmp_path, 0.7)
    batches = np.array([1, 16, 256])
    swept = sweep({"techniques": FP8, "calibration": cal, "hardware": {"gpu": "h200-sxm"}}, batch_size=batches)
    for i, b in enumerate(batches):
        point = predict(techniques=FP8, calibration=cal, **{"hardware.gpu": "h200-sxm", "workload.batch_size": int(b)})
        assert swept["latency_s"][i] == pytest.approx(point.latency_s, rel=1e-9)


def test_the_shipped_h200_kind_reproduces_its_measured_points():
    """The H200's fp8 GEMMs (214 shapes, validation/results/h200-sxm.fp8-gemm.json) against the profile's
    ``gemm_fp8`` kind: within 4% median and 10% at p90, where the bf16 curves at the fp8 peak (what a
    profile without the kind prices) are further off (6.6% median and 12% p90 when measured)."""
    prof = load_profile("h200-sxm")
    cols = prof.measurements["columns"]
    rows = [dict(zip(cols, r)) for r in prof.measurements["points"] if r[0] == "gemm_fp8"]
    assert len(rows) == 214 and all(r["time_s"] for r in rows)
    flops, nbytes = np.array([r["flops"] for r in rows]), np.array([r["bytes"] for r in rows])
    times = np.array([r["time_s"] for r in rows])

    def errors(kind):
        k = prof.kinds[kind]
        t = predict_times(flops, nbytes, H200.peak_for("fp8"), H200.hbm_bandwidth_bytes_per_s,
                          np.array(k.compute.log10_size), np.array(k.compute.efficiency),
                          np.array(k.memory.log10_size), np.array(k.memory.efficiency), k.overhead_s)
        return np.abs(t / times - 1.0)

    fitted, bf16 = errors("gemm_fp8"), errors("gemm")
    assert np.median(fitted) < 0.04 and np.percentile(fitted, 90) < 0.10
    assert np.median(bf16) > np.median(fitted) and np.percentile(bf16, 90) > np.percentile(fitted, 90)


def test_mfu_counts_fp8_gemms_against_the_fp8_peak_whatever_their_efficiency(tmp_path):
    """Repricing a GEMM to the measured fp8 efficiency scales its peak; MFU still divides its FLOPs by the
    format's peak (the fp8 dense peak), not by the scaled one: with the fp8 curve at half the bf16 one the
    step is slower and MFU falls with it, FLOP for FLOP."""
    base = {"hardware.gpu": "h200-sxm", "workload.phase": "prefill", "workload.prompt_len": 4096}
    for factor in (0.5, 0.8, 1.0):
        p = predict(techniques=FP8, calibration=_profile_with_fp8(tmp_path, factor), **base)
        ideal = sum(r.flops / (H200.peak_for("fp8") if r.kind == "gemm" and r.name != "lm_head" else H200.peak_for("bf16"))
                    for r in p.breakdown if r.kind not in ("collective", "host_transfer"))
        assert p.mfu == pytest.approx(ideal / p.latency_s, rel=1e-9)
