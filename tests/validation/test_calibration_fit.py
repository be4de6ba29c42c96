"""Fitting efficiency curves to kernel timings (validation.fit, validation.calibrate.build_profile): CPU only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwmodels import load_profile
from hwmodels.profile import Profile
from validation import calibrate, sweeps
from validation.fit import fit_kind, fit_link, isotonic_increasing, predict_times

P, BW = 989.4e12, 3.35e12  # H100 SXM datasheet bf16 and HBM peaks

# a known truth: compute and memory curves (log10 size -> efficiency) and an overhead
TRUE_C = (np.array([7.0, 9.0, 11.0, 13.0]), np.array([0.2, 0.45, 0.7, 0.78]))
TRUE_M = (np.array([4.0, 6.0, 8.0, 9.5]), np.array([0.05, 0.4, 0.82, 0.9]))


def _gemm_like_points():
    F, B = [], []
    for M in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]:
        for K, N in [(4096, 6144), (4096, 4096), (4096, 28672), (14336, 4096), (2048, 2048), (8192, 8192),
                     (512, 512), (1024, 2048), (256, 1024)]:
            F.append(2.0 * M * K * N)
            B.append(2.0 * (M * K + K * N + M * N))
    return np.array(F), np.array(B)


def _truth(F, B, overhead):
    return predict_times(F, B, P, BW, *TRUE_C, *TRUE_M, overhead)


def test_isotonic_regression_is_monotone_and_least_squares():
    y = [0.3, 0.2, 0.5, 0.4, 0.9]
    iso = isotonic_increasing(y)
    assert np.all(np.diff(iso) >= 0)
    np.testing.assert_allclose(iso, [0.25, 0.25, 0.45, 0.45, 0.9])
    np.testing.assert_allclose(isotonic_increasing([1, 2, 3]), [1, 2, 3])


@pytest.mark.parametrize("overhead", [0.0, 3e-6])
@pytest.mark.parametrize("refine", [False, True])
def test_fit_recovers_known_efficiencies(refine, overhead):
    """With the overhead known, the curves are the true ones wherever the data constrain them."""
    F, B = _gemm_like_points()
    T = _truth(F, B, overhead)
    kf = fit_kind(F, B, T, P, BW, refine=refine, fixed_overhead=overhead)
    for x in (10.0, 10.5, 11.0, 11.5, 12.0, 12.5):
        assert np.interp(x, kf.compute_log10, kf.compute_eff) == pytest.approx(np.interp(x, *TRUE_C), rel=0.02)
    for x in (6.0, 6.5, 7.0, 7.5, 8.0, 8.5):
        assert np.interp(x, kf.memory_log10, kf.memory_eff) == pytest.approx(np.interp(x, *TRUE_M), rel=0.02)
    assert kf.stats["median_abs_err"] < 0.005


def test_fit_with_free_overhead_reproduces_times():
    """Left free, the overhead trades against small-size efficiency, but the times stay right."""
    F, B = _gemm_like_points()
    T = _truth(F, B, 3e-6)
    kf = fit_kind(F, B, T, P, BW)
    assert kf.stats["median_abs_err"] < 0.01 and kf.stats["p90_abs_err"] < 0.05
    assert 1e-6 < kf.overhead_s < 5e-6


def test_fit_recovers_overhead_and_predicts_noisy_times():
    F, B = _gemm_like_points()
    rng = np.random.default_rng(1)
    T = _truth(F, B, 3e-6) * np.exp(rng.normal(0.0, 0.02, F.size))
    kf = fit_kind(F, B, T, P, BW)
    assert kf.overhead_s == pytest.approx(3e-6, rel=0.35)
    pred = predict_times(F, B, P, BW, kf.compute_log10, kf.compute_eff, kf.memory_log10, kf.memory_eff, kf.overhead_s)
    err = np.abs(pred / T - 1.0)
    assert np.median(err) < 0.03 and np.percentile(err, 90) < 0.08
    assert kf.stats["median_abs_err"] == pytest.approx(float(np.median(err)), abs=1e-3)


def test_fitted_curves_are_monotone_and_valid_efficiencies():
    F, B = _gemm_like_points()
    rng = np.random.default_rng(2)
    T = _truth(F, B, 2e-6) * np.exp(rng.normal(0.0, 0.1, F.size))  # heavy noise: still monotone, in (0, 1]
    kf = fit_kind(F, B, T, P, BW)
    for xs, es in ((kf.compute_log10, kf.compute_eff), (kf.memory_log10, kf.memory_eff)):
        assert np.all(np.diff(xs) > 0)
        assert np.all(np.diff(es) >= 0)
        assert all(0.0 < e <= 1.0 for e in es)
    # and the profile schema accepts them
    from hwmodels.profile import KindEfficiency

    KindEfficiency.model_validate(kf.kind_efficiency("synthetic"))


def test_memory_only_kind_has_no_compute_side():
    n = np.logspace(3, 9.5, 30)
    T = n / (BW * np.interp(np.log10(n), *TRUE_M)) + 1.5e-6
    kf = fit_kind(np.zeros_like(n), n, T, P, BW)
    assert kf.compute_eff == [1.0]
    assert kf.stats["median_abs_err"] < 0.02


def test_fit_link_recovers_alpha_beta():
    n = np.logspace(4, 9, 12)
    T = 5e-6 + n / 50e9
    kf, ab = fit_link(n, T, 64e9, 1e-6)
    assert ab["alpha_s"] == pytest.approx(5e-6, rel=0.05)
    assert ab["beta_bytes_per_s"] == pytest.approx(50e9, rel=0.05)
    assert kf.memory_eff[-1] == pytest.approx(50 / 64, rel=0.05)


# --- the whole profile from synthetic measurements ------------------------------------------------------

def _synthetic_groups(seed=0):
    """Every calibration point, timed by a known profile (the default one) with 2% noise; the Triton
    GEMM and the SDPA flash backend run 30% slower than the vendor / fastest engines."""
    from costmodels.roofline import OpCost, price
    from hwmodels import get_accelerator

    gpu = get_accelerator("h100-sxm")
    truth = load_profile("default")
    rng = np.random.default_rng(seed)
    groups = {
        "gemm": sweeps.gemm_points(quick=True),
        "memory": sweeps.memory_points(quick=True),
        "attention_prefill": sweeps.attention_prefill_points(["triton", "sdpa-flash", "sdpa-cudnn"], quick=True),
        "attention_decode": sweeps.attention_decode_points(["triton", "sdpa-flash"], quick=True),
        "host_transfer": sweeps.host_points(quick=True),
        "grouped_gemm": sweeps.grouped_gemm_points(quick=True),
    }
    for pts in groups.values():
        for p in pts:
            if p.kind == "host_transfer":
                t = 4e-6 + p.bytes / 50e9
            else:
                op = OpCost(p.op, p.kind, 1.0, flops=p.flops, hbm_bytes=p.bytes, peak_flops_per_s=P,
                            hbm_bandwidth_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s)
                t = float(price(op, truth).time_s)
            slow = 1.3 if (p.engine, p.kind) in (("triton", "gemm"), ("sdpa-flash", "attention_prefill"),
                                                 ("sdpa-flash", "attention_decode"), ("grouped_mm", "grouped_gemm")) \
                else 1.0
            p.result = {"time_s": t * slow * float(np.exp(rng.normal(0, 0.02))), "spread": 0.01, "method": "graph"}
    groups["attention_prefill"][0].result = {"error": "RuntimeError: No available kernel"}
    return groups


ENV = {"device_name": "NVIDIA H100 80GB HBM3", "catalog_name": "h100-sxm", "sm_count": 132, "driver": "test",
       "torch": "test", "triton": "test", "date": "2026-01-01T00:00:00Z"}


def test_build_profile_chooses_faster_engines_and_validates(tmp_path):
    groups = _synthetic_groups()
    prof, stats = calibrate.build_profile(groups, ENV, "h100-sxm", quick=True, timings={"total": 1.0},
                                          workspace=8e8)
    Profile.model_validate(prof)
    eng = prof["environment"]["engines"]
    assert eng["gemm"] == "cublas" and eng["attention_decode"] == "triton"
    assert eng["attention_prefill"] in ("triton", "sdpa-cudnn")
    assert prof["device"] == "h100-sxm" and prof["schema_version"] == 1
    for kind in ("gemm", "memory", "attention_prefill", "attention_decode"):
        assert stats[kind]["median_abs_err"] < 0.05, kind
    # every raw point is kept, failures included, and alternatives are fitted too
    n_points = sum(len(g) for g in groups.values())
    assert len(prof["measurements"]["points"]) == n_points
    assert "triton" in prof["measurements"]["alternatives"]["gemm"]
    assert prof["measurements"]["engine_time_ratios"]["gemm"]["triton"] == pytest.approx(1.3, rel=0.05)
    # one GPU: the collective kind keeps the default profile's values and says so
    assert "not measured" in prof["kinds"]["collective"]["basis"]
    # grouped GEMMs: their own kind, fitted like a GEMM, 1.3x slower than the dense truth
    assert eng["grouped_gemm"] == "grouped_mm" and stats["grouped_gemm"]["median_abs_err"] < 0.05
    loaded = Profile.model_validate(prof)
    assert loaded.kind("grouped_gemm").compute(1e11) < loaded.kind("gemm").compute(1e11)


def test_build_profile_without_grouped_points_falls_back():
    groups = _synthetic_groups()
    del groups["grouped_gemm"]
    prof, stats = calibrate.build_profile(groups, ENV, "h100-sxm", quick=True, timings={"total": 1.0}, workspace=8e8)
    assert "grouped_gemm" not in prof["kinds"] and "grouped_gemm" not in stats
    assert Profile.model_validate(prof).kind("grouped_gemm").overhead_s == prof["kinds"]["gemm"]["overhead_s"]


def test_refit_from_kept_points_round_trips(tmp_path):
    groups = _synthetic_groups(seed=3)
    prof, _ = calibrate.build_profile(groups, ENV, "h100-sxm", quick=True, timings={"total": 1.0}, workspace=8e8)
    path = tmp_path / "p.json"
    path.write_text(calibrate.dumps(prof))
    loaded = json.loads(path.read_text())
    back = calibrate.points_from_profile(loaded)
    assert sum(len(v) for v in back.values()) == len(prof["measurements"]["points"])
    again = calibrate.refit(str(path), str(tmp_path / "q.json"))
    for kind, k in prof["kinds"].items():  # raw times are kept to 5 significant digits
        a = again["kinds"][kind]
        assert a["overhead_s"] == pytest.approx(k["overhead_s"], rel=1e-2, abs=1e-9), kind
        for side in ("compute", "memory"):
            assert a[side]["log10_size"] == k[side]["log10_size"], kind
            np.testing.assert_allclose(a[side]["efficiency"], k[side]["efficiency"], rtol=1e-2)
    load_profile(str(tmp_path / "q.json"), gpu="h100-sxm")


def test_sweep_points_count_like_the_cost_model():
    from costmodels.attention import decode_attention_bytes

    g = sweeps.gemm_point(16, 4096, 6144, "cublas")
    assert g.flops == 2 * 16 * 4096 * 6144
    assert g.bytes == 2 * (16 * 4096 + 4096 * 6144 + 16 * 6144)
    d = sweeps.decode_point(8, 1000, 32, 8, 128, "triton")
    assert d.bytes == pytest.approx(float(decode_attention_bytes(8, 1001, 32, 128, 128, 2 * 8 * 128, 2, 2)))
    assert d.flops == 8 * 1001 * 32 * 4 * 128
    pf = sweeps.prefill_point(1, 1024, 32, 8, 128, "triton")
    assert pf.flops == 1024 * 1025 / 2 * 32 * 4 * 128
    # the decode-skinny GEMMs cover M = 1..256 for every layer shape
    ms = {p.shape["M"] for p in sweeps.gemm_points() if p.tag == "llama-3.1-8b.qkv"}
    assert {1, 2, 4, 8, 16, 32, 64, 128, 256} <= ms
    # grouped GEMMs count as the step counts the routed experts (OLMoE-1B-7B, one token: exactly top-8 experts)
    from simulator.resolve import resolve
    from simulator.scenario import Scenario
    from simulator.step import StepShape, build_step

    dep = resolve(Scenario().with_overrides(model="olmoe-1b-7b", calibration="peak"), {})[0]
    ops = {op.name: op for op in build_step(dep, StepShape(1, 1, 100, "decode"))}
    pts = {p.tag: p for p in sweeps.grouped_gemm_points(tokens=[1])}
    for tag, name in (("olmoe-1b-7b.gate_up", "moe.expert.gate_up_proj"), ("olmoe-1b-7b.down", "moe.expert.down_proj")):
        assert pts[tag].kind == ops[name].kind == "grouped_gemm" and pts[tag].shape["touched"] == 8
        assert pts[tag].flops == pytest.approx(float(ops[name].flops))
        assert pts[tag].bytes == pytest.approx(float(ops[name].hbm_bytes))
    # uniform routing: every token picks top-k distinct experts
    counts = sweeps.uniform_routing(4096, 64, 8)
    assert counts.sum() == 4096 * 8 and counts.max() <= 4096 and (counts > 0).all()
    assert len(sweeps.grouped_gemm_points()) == 3 * 2 * len(sweeps.GROUPED_TOKENS)
    sizes = [p.bytes for p in sweeps.memory_points()]
    assert min(sizes) < 64 * 2**10 and max(sizes) > 2e9  # L2-resident to several GB
