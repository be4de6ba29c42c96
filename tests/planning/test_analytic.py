"""The fast path against queueing theory worked by hand (docs/planning.md has the arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.serving.analytic import colocated
from simulator.serving.analytic_split import decode_pool, prefill_pool
from simulator.serving.analytic_tables import BATCH_GRID, StepTables


def linear_tables(a=0.02, s=1e-4, prefill=0.1, kv_capacity=1000.0, chunk=0.0, budget=2048.0, prompt=1024.0,
                  mixed_extra=0.0, k=1.0) -> StepTables:
    """One kind whose decode step is t_d(b) = a + s b; a mixed step adds ``mixed_extra``."""
    t = a + s * BATCH_GRID
    return StepTables(BATCH_GRID, t[None, :], (t + mixed_extra)[None, :], np.array([prefill]), np.array([k]),
                      np.array([kv_capacity]), np.array([chunk]), np.array([budget]), np.array([prompt]))


def test_md1_mean_ttft_is_pollaczek_khinchine():
    """One output token, prefill-first: an M/D/1 queue. S = 0.1 s, lambda = 5/s: rho = 0.5 and
    E[TTFT] = S (1 + rho / (2 (1 - rho))) = 0.1 x 1.5 = 0.15 s."""
    r = colocated(linear_tables(prefill=0.1), 0, 1, 64, 5.0, 1024, 1)
    assert r["ttft_mean_s"][()] == pytest.approx(0.15, rel=1e-9)
    r8 = colocated(linear_tables(prefill=0.1), 0, 1, 64, 8.0, 1024, 1)  # rho = 0.8: 0.1 x (1 + 0.8 / 0.4) = 0.3
    assert r8["ttft_mean_s"][()] == pytest.approx(0.3, rel=1e-9)


def test_decode_batch_solves_littles_law_by_hand():
    """t_d(b) = 0.02 + 1e-4 b, S_p = 0.1, lambda = 2/s, O = 101: free = 1 - 0.2 = 0.8, kappa = 2 x 100 / 0.8
    = 250, u = (1 + 250 x 0.02) / (1 - 250 x 1e-4) = 6 / 0.975 = 6.1538; TPOT = t_d(u) / 0.8 = 0.025769 s."""
    r = colocated(linear_tables(), 0, 1, 256, 2.0, 1024, 101)
    u = 6.0 / 0.975
    assert r["batch_mean"][()] == pytest.approx(u - 1.0, rel=1e-9)
    assert r["tpot_p50_s"][()] == pytest.approx((0.02 + 1e-4 * u) / 0.8, rel=1e-9)
    # Little's law: sequences decoding = arrival rate x time spent decoding
    assert r["batch_mean"][()] == pytest.approx(2.0 * 100 * r["tpot_p50_s"][()], rel=1e-9)


def test_capacity_and_saturation_flag():
    """M = 64: lambda_max = 64 / (100 x t_d(64) + 64 x 0.1) = 64 / (2.64 + 6.4) = 7.0796 req/s."""
    lam_max = 64.0 / (100 * (0.02 + 1e-4 * 64) + 64 * 0.1)
    rates = np.array([0.5, 0.95, 1.05, 2.0]) * lam_max
    r = colocated(linear_tables(), 0, 1, 64, rates, 1024, 101)
    assert r["capacity_req_per_s"][0] == pytest.approx(lam_max, rel=1e-9)
    assert r["saturated"].tolist() == [False, False, True, True]
    assert np.all(np.isinf(r["ttft_p50_s"][2:])) and np.all(np.isfinite(r["ttft_p50_s"][:2]))


def test_replicas_split_the_rate():
    one = colocated(linear_tables(), 0, 1, 256, 1.0, 1024, 101)
    four = colocated(linear_tables(), 0, 4, 256, 4.0, 1024, 101)
    for key in ("ttft_p50_s", "tpot_p50_s", "batch_mean"):
        assert four[key][()] == pytest.approx(one[key][()], rel=1e-12)
    assert four["capacity_req_per_s"][()] == pytest.approx(4 * one["capacity_req_per_s"][()])


def test_wait_percentile_exponential_tail():
    """Delayed waits taken as exponential with mean E[W] / rho: at rho = 0.5, S = 0.1, E[W] = 0.05 and the p90
    wait is (0.05 / 0.5) ln(0.5 / 0.1) = 0.1 ln 5; the p50 wait is 0 (half the requests do not wait)."""
    r = prefill_pool(linear_tables(prefill=0.1), 0, 1, 5.0, percentile=0.9)
    assert r["ttft_pct_s"][()] == pytest.approx(0.1 + 0.1 * np.log(5.0), rel=1e-9)
    assert r["ttft_p50_s"][()] == pytest.approx(0.1, rel=1e-9)


def test_decode_pool_adds_kv_transfer_per_output_token():
    base = decode_pool(linear_tables(), 0, 1, 256, 2.0, 101)
    slow = decode_pool(linear_tables(), 0, 1, 256, 2.0, 101, kv_transfer_s=0.5)
    assert slow["tpot_p50_s"][()] - base["tpot_p50_s"][()] == pytest.approx(0.5 / 100, rel=1e-9)
    # no prefill interference: kappa = 2 x 100 = 200, u = (1 + 4) / (1 - 0.02)
    assert base["batch_mean"][()] == pytest.approx(5.0 / 0.98 - 1.0, rel=1e-9)


def test_speculative_tokens_per_step_divide_tpot():
    one = decode_pool(linear_tables(k=1.0), 0, 1, 256, 0.01, 101)
    two = decode_pool(linear_tables(k=2.0), 0, 1, 256, 0.01, 101)
    assert two["tpot_p50_s"][()] == pytest.approx(one["tpot_p50_s"][()] / 2.0, rel=1e-3)


def test_chunked_prefill_marginal_cost():
    """Chunked, a request adds (P / C)(t_m - t_d) to the decode steps: P = C = 1024, t_m - t_d = 0.05 s,
    lambda = 2: free = 1 - 2 x 0.05 = 0.9, so TPOT = t_d(u) / 0.9 at the solved u."""
    tables = linear_tables(chunk=1024.0, prompt=1024.0, mixed_extra=0.05)
    r = colocated(tables, 0, 1, 256, 2.0, 1024, 101)
    u = r["batch_mean"][()] + 1.0
    assert r["tpot_p50_s"][()] == pytest.approx((0.02 + 1e-4 * u) / 0.9, rel=1e-9)
    assert r["prefill_fraction"][()] == pytest.approx(0.1, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_latency_grows_with_load(lo, hi):
    """More traffic never shortens TTFT or TPOT (below saturation)."""
    lo, hi = sorted((lo, hi))
    lam_max = colocated(linear_tables(), 0, 1, 128, 0.1, 1024, 101)["capacity_req_per_s"][()]
    r = colocated(linear_tables(), 0, 1, 128, np.array([lo, hi]) * lam_max, 1024, 101)
    assert r["ttft_pct_s"][0] <= r["ttft_pct_s"][1] + 1e-12
    assert r["tpot_pct_s"][0] <= r["tpot_pct_s"][1] + 1e-12


def test_vectorised_over_many_configurations():
    n = 100_000
    rng = np.random.default_rng(0)
    r = colocated(linear_tables(), np.zeros(n, dtype=int), rng.integers(1, 9, n), rng.choice([16, 64, 256], n),
                  rng.uniform(0.1, 40.0, n), 1024, 101)
    assert r["ttft_p50_s"].shape == (n,)
    assert np.all(r["saturated"] == (r["load"] >= 1.0) | r["saturated"])
    assert np.all(np.isfinite(r["ttft_p50_s"][~r["saturated"]]))


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.05, 0.9), st.floats(0.5, 0.99), st.floats(0.0, 3.0))
def test_mixture_quantile_matches_monte_carlo(q, rho, p, gap):
    """The closed-form quantile of S + W against 400,000 samples: S = 1 + gap w.p. q else 1, W = 0 w.p.
    1 - rho else exponential with mean 1 (E[W] = rho)."""
    from simulator.serving.mg1 import _mixture_quantile

    rng = np.random.default_rng(0)
    n = 400_000
    s = np.where(rng.random(n) < q, 1.0 + gap, 1.0)
    w = np.where(rng.random(n) < rho, rng.exponential(1.0, n), 0.0)
    got = float(_mixture_quantile(p, np.array(q), np.array(1.0), np.array(1.0 + gap), np.array(rho), np.array(rho)))
    lo, hi = np.quantile(s + w, [max(p - 0.003, 0.0), min(p + 0.003, 1.0)])
    assert lo - 1e-9 <= got <= hi + 1e-9
