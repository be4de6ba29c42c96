"""flash_attention versions select the attention engines a calibrated profile measured (issue 8, item 12):
2 = SDPA's flash backend, 3 = cuDNN fused attention on Hopper, triton = our kernel."""

import numpy as np
import pytest

from hwmodels import load_profile
from hwmodels.profile import KindEfficiency
from technique_helpers import step

PREFILL = dict(phase="prefill", batch=4, prompt=8192, calibration="h100-sxm")


def _attention(ev, phase="prefill"):
    st = ev.steps[phase]
    return [(op, t) for op, t in zip(st.ops, st.times) if op.kind == f"attention_{phase}"]


@pytest.mark.parametrize("version, engine", [("2", "sdpa-flash"), ("triton", "triton")])
def test_a_version_prices_attention_with_its_measured_engine(version, engine):
    profile = load_profile("h100-sxm")
    alt = profile.measurements["alternatives"]["attention_prefill"][engine]
    eff = KindEfficiency.model_validate({k: alt[k] for k in ("compute", "memory")})
    ev = step(**PREFILL, techniques=[{"name": "flash_attention", "version": version}])
    peak = ev.dep.peak_flops_per_s
    for op, t in _attention(ev):
        flops, nbytes = float(op.flops), float(op.hbm_bytes)
        assert float(t.compute_s) == pytest.approx(op.count * flops / (peak * float(eff.compute(flops))), rel=1e-12)
        assert float(t.memory_s) == pytest.approx(
            op.count * nbytes / (ev.dep.hbm_bandwidth_bytes_per_s * float(eff.memory(nbytes))), rel=1e-12)


def test_version_3_on_hopper_is_the_profiles_own_cudnn_engine():
    assert load_profile("h100-sxm").environment["engines"]["attention_prefill"] == "sdpa-cudnn"
    plain = _attention(step(**PREFILL))
    fa3 = _attention(step(**PREFILL, techniques=[{"name": "flash_attention", "version": 3}]))
    assert [float(t.time_s) for _, t in fa3] == [float(t.time_s) for _, t in plain]
    fa2 = _attention(step(**PREFILL, techniques=[{"name": "flash_attention", "version": 2}]))
    ratio = sum(float(t.time_s) for _, t in fa2) / sum(float(t.time_s) for _, t in fa3)
    assert 1.3 < ratio < 2.2  # the profile measured SDPA-flash at 1.69x cuDNN's time (geometric mean)


def test_decode_version_2_uses_the_measured_sdpa_flash_decode_curves():
    profile = load_profile("h100-sxm")
    alt = profile.measurements["alternatives"]["attention_decode"]["sdpa-flash"]
    eff = KindEfficiency.model_validate({k: alt[k] for k in ("compute", "memory")})
    ev = step(batch=16, context=8192, calibration="h100-sxm", techniques=[{"name": "flash_attention", "version": 2}])
    for op, t in _attention(ev, "decode"):
        nbytes = float(op.hbm_bytes)
        assert float(t.memory_s) == pytest.approx(
            op.count * nbytes / (ev.dep.hbm_bandwidth_bytes_per_s * float(eff.memory(nbytes))), rel=1e-12)


def test_an_uncalibrated_profile_keeps_the_papers_ratios():
    """``default`` measured no engine: FA3 = 1.75x the FA2 rate, capped at the device peak (here the cap)."""
    fa2 = _attention(step(**{**PREFILL, "calibration": "default"}, techniques=[{"name": "flash_attention"}]))
    fa3 = _attention(step(**{**PREFILL, "calibration": "default"},
                          techniques=[{"name": "flash_attention", "version": 3}]))
    c2, c3 = (np.sum([float(t.compute_s) for _, t in x]) for x in (fa2, fa3))
    eff = float(load_profile("default").kind("attention_prefill").compute(float(fa2[0][0].flops)))
    assert c2 / c3 == pytest.approx(min(1.75, 1.0 / eff), rel=1e-9)
