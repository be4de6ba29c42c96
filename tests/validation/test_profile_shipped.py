"""The measured profiles shipped in hwmodels/profiles: they load without a GPU, are what ``auto`` picks for
their GPU, and are rejected clearly when corrupt or used for another GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwmodels import InputError, builtin_profiles, load_profile
from hwmodels.profile import KIND_FALLBACK, OP_KINDS, OPTIONAL_KINDS, PROFILE_DIR
from simulator.api import predict

MEASURED = ["h100-sxm", "h200-sxm"]


@pytest.mark.parametrize("name", MEASURED)
def test_shipped_profile_loads_and_is_complete(name):
    assert name in builtin_profiles()
    prof = load_profile(name, gpu=name)
    assert prof.device == name and prof.name == name and prof.schema_version == 1
    assert set(OP_KINDS) <= set(prof.kinds) <= set(OP_KINDS) | set(OPTIONAL_KINDS)
    for kind, eff in prof.kinds.items():
        for curve in (eff.compute, eff.memory):
            assert np.all(np.diff(curve.efficiency) >= 0), kind  # monotone in size
            assert all(0 < e <= 1 for e in curve.efficiency)
        # one kernel launch, except the once-per-step multi-kernel calls of training (fused AdamW, fp32 loss)
        multi = kind in ("optimizer", "optimizer_bf16", "cross_entropy", "cross_entropy_backward")
        assert 0 <= eff.overhead_s < (1e-4 if multi else 2e-5), kind
        assert eff.basis
    env = prof.environment
    for key in ("device_name", "sm_count", "memory_bytes", "driver", "torch", "triton", "cuda", "date", "engines"):
        assert env.get(key), key
    assert env["sm_count"] == 132
    assert prof.achieved_peaks["gemm_bf16_flops_per_s"] > 0.6e15
    assert prof.achieved_peaks["hbm_copy_bytes_per_s"] > 2.5e12
    pts = prof.measurements["points"]
    assert len(pts) > 500 and prof.measurements["columns"][:3] == ["kind", "op", "engine"]
    assert prof.command.startswith("roofsim calibrate")
    # the fitted kinds describe the measurements they were fitted to
    for kind in ("gemm", "memory", "attention_prefill", "attention_decode"):
        assert prof.measurements["fit"][kind]["median_abs_err"] < 0.05, kind


@pytest.mark.parametrize("name", MEASURED)
def test_auto_picks_the_measured_profile_and_peak_stays_selectable(name):
    assert load_profile("auto", gpu=name).name == name
    p = predict(**{"hardware.gpu": name, "workload.batch_size": 8})
    assert p.calibration == name
    peak = predict(**{"hardware.gpu": name, "workload.batch_size": 8, "calibration": "peak"})
    default = predict(**{"hardware.gpu": name, "workload.batch_size": 8, "calibration": "default"})
    assert peak.calibration == "peak" and default.calibration == "default"
    assert peak.latency_s < p.latency_s  # measured kernels reach less than the datasheet peaks
    # a GPU without a measured profile still gets the default one
    assert load_profile("auto", gpu="a100-80gb-sxm").name == "default"


@pytest.mark.parametrize("name", ["peak", "default"])
def test_profiles_without_grouped_gemm_fall_back_to_gemm(name):
    prof = load_profile(name)
    assert "grouped_gemm" not in prof.kinds and not prof.has_kind("grouped_gemm")
    assert prof.kind("grouped_gemm") is prof.kind("gemm") and KIND_FALLBACK["grouped_gemm"] == "gemm"
    with pytest.raises(KeyError):
        prof.kind("no_such_kind")


@pytest.mark.parametrize("gpu", ["h100-sxm", "h200-sxm"])
def test_measured_grouped_gemm(gpu):
    """The measured profiles have their own grouped-GEMM kind (torch._grouped_mm over the routed experts):
    it describes its measurements and is slower than a dense cuBLAS GEMM of the same size."""
    prof = load_profile(gpu)
    assert prof.has_kind("grouped_gemm") and prof.environment["engines"]["grouped_gemm"] == "grouped_mm"
    grouped, gemm = prof.kind("grouped_gemm"), prof.kind("gemm")
    assert grouped is not gemm and grouped.basis.startswith("measured")
    # the fit's median residual on its own points, as measured: 3-5% on the H100, 6.4% on the H200
    assert prof.measurements["fit"]["grouped_gemm"]["median_abs_err"] < {"h100-sxm": 0.05, "h200-sxm": 0.07}[gpu]
    assert sum(1 for row in prof.measurements["points"] if row[0] == "grouped_gemm") == 78
    for flops in (1e10, 1e11, 4e11):
        assert grouped.compute(flops) < gemm.compute(flops)
    assert grouped.overhead_s > gemm.overhead_s
    # a profile written before the kind existed still loads, and prices grouped GEMMs as GEMMs
    data = _shipped()
    del data["kinds"]["grouped_gemm"]
    old = load_profile(data, gpu="h100-sxm")
    assert old.kind("grouped_gemm") == old.kind("gemm")


def test_measured_h100_profile_reflects_the_hardware():
    prof = load_profile("h100-sxm")
    gemm, mem = prof.kinds["gemm"], prof.kinds["memory"]
    # large bf16 GEMMs reach 60-85% of the 989 TFLOP/s dense peak; big copies 85-95% of 3.35 TB/s
    assert 0.6 < gemm.compute(1e13) < 0.85
    assert 0.85 < mem.memory(4e9) <= 0.95
    # decode attention streams the KV cache close to the copy bandwidth once it is large
    assert prof.kinds["attention_decode"].memory(1e9) > 0.8


# --- rejected profiles ------------------------------------------------------------------------------------

def _shipped(name="h100-sxm") -> dict:
    return json.loads((PROFILE_DIR / f"{name}.json").read_text())


def _write(tmp_path, data, name="p.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_corrupt_json_is_rejected(tmp_path):
    text = (PROFILE_DIR / "h100-sxm.json").read_text()
    path = _write(tmp_path, text[: len(text) // 2])
    with pytest.raises(InputError, match="cannot read profile"):
        load_profile(path, gpu="h100-sxm")
    with pytest.raises(InputError, match="not a JSON object"):
        load_profile(_write(tmp_path, "[1, 2]", "list.json"))


def test_wrong_schema_version_is_rejected(tmp_path):
    data = _shipped()
    data["schema_version"] = 99
    with pytest.raises(InputError, match="schema_version 99 is not supported"):
        load_profile(_write(tmp_path, data), gpu="h100-sxm")


def test_efficiency_above_one_is_rejected(tmp_path):
    data = _shipped()
    data["kinds"]["gemm"]["compute"]["efficiency"][-1] = 1.2
    with pytest.raises(InputError) as err:
        load_profile(_write(tmp_path, data), gpu="h100-sxm")
    assert "calibration.kinds.gemm.compute" in str(err.value) and "(0, 1]" in str(err.value)


def test_missing_kind_and_unsorted_curve_are_rejected(tmp_path):
    data = _shipped()
    del data["kinds"]["attention_decode"]
    with pytest.raises(InputError, match="no efficiencies for attention_decode"):
        load_profile(_write(tmp_path, data, "a.json"))
    data = _shipped()
    data["kinds"]["memory"]["memory"]["log10_size"].reverse()
    with pytest.raises(InputError, match="strictly increasing"):
        load_profile(_write(tmp_path, data, "b.json"))


def test_profile_for_another_gpu_is_rejected(tmp_path):
    with pytest.raises(InputError, match="measured on h100-sxm, not h200-sxm"):
        load_profile("h100-sxm", gpu="h200-sxm")
    with pytest.raises(InputError, match="measured on h100-sxm"):
        load_profile(_write(tmp_path, _shipped()), gpu="a100-80gb-sxm")
    with pytest.raises(InputError) as err:
        predict(**{"hardware.gpu": "h200-sxm", "calibration": "h100-sxm"})
    assert err.value.field == "calibration"
