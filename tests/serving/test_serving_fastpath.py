"""The analytical fast path (simulator.serving.analytic) against the request-level simulation: p50 TTFT,
p50 TPOT and throughput within 10% from 10% to 80% of the fast path's capacity, over models, GPUs,
layouts and prompt/output shapes that put the prefill queue in each of its regimes (several prompts per
step, one, two steps per prompt), one replica stepping every batch and pipeline-parallel replicas with
pp batches in flight (simulator.serving.pipeline_queue), and saturation flagged where the simulated
queue grows without bound. docs/serving.md has the theory and the full table (benchmarks/serve_fastpath.py)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import serve
from simulator.serving.analytic import colocated
from simulator.serving.prefill_queue import _quantiles, spill_decay
from simulator.serving.tables import step_tables

# (model, GPU, tp, pp, prompt tokens, output tokens); a = prompt / (budget - batch) from 0.06 to 2
CASES = [
    ("llama-3.1-8b", "h100-sxm", 1, 1, 1024, 256),  # a ~ 0.5: two prompts never share a step whole
    ("llama-3.1-70b", "h100-sxm", 4, 1, 2048, 256),  # a ~ 1: each prompt fills a step, its tail the next
    ("llama-3.1-8b", "l40s", 1, 1, 512, 128),  # a ~ 0.26: up to three prompts per step
    ("qwen2.5-32b", "h200-sxm", 2, 1, 4096, 128),  # a ~ 2: two full steps per prompt
    ("qwen3-30b-a3b", "h100-sxm", 1, 1, 256, 512),  # MoE, decode-bound
    ("llama-3.1-8b", "a100-80gb-sxm", 1, 1, 128, 1024),  # short prompts, long outputs
    # pipelines: pp lanes; the cycle chain (a < 1) and the busy-lane chain (a >= 1)
    ("llama-3.1-8b", "h100-sxm", 1, 2, 1024, 256),
    ("llama-3.1-8b", "l40s", 1, 2, 512, 128),
    ("llama-3.1-8b", "a100-80gb-sxm", 1, 2, 128, 1024),
    ("llama-3.1-70b", "h100-sxm", 4, 2, 2048, 256),
    ("qwen2.5-32b", "h200-sxm", 1, 2, 4096, 128),
    ("llama-3.1-8b", "h100-sxm", 1, 4, 1024, 256),  # four stages
]
LOADS = (0.1, 0.35, 0.6, 0.8)
REQUESTS = 2000


def _id(case):
    model, gpu, tp, pp, P, O = case
    return f"{model}-{gpu}-tp{tp}" + (f"-pp{pp}" if pp > 1 else "") + f"-{P}x{O}"


def _scenario(model, gpu, tp, pp=1):
    return {"model": model, "hardware": {"gpu": gpu, "num_gpus": tp * pp}, "parallelism": {"tp": tp, "pp": pp}}


def _run(sc, rate, P, O, n=REQUESTS, seed=1):
    return serve(sc, {"rate": rate, "num_requests": n, "prompt_len": P, "output_len": O, "seed": seed},
                 {"max_num_seqs": 256})


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_fast_path_within_10_percent_of_the_simulation(case):
    """A pipeline's simulated p50s are the mean of two seeds: at 80% load they vary by about 5% from seed
    to seed (a prompt holds a lane for whole cycles, so few prompts set a run's waits); the simulation's
    saturation flag is the saturation test's (below)."""
    model, gpu, tp, pp, P, O = case
    sc = _scenario(model, gpu, tp, pp)
    tables = step_tables(sc, P, O)
    capacity = colocated(tables, 0, 1, 256, 1e-3, P, O)["capacity_req_per_s"][()]
    misses = []
    for load in LOADS:
        rate = load * capacity
        fast = colocated(tables, 0, 1, 256, rate, P, O)
        runs = [_run(sc, rate, P, O, seed=seed) for seed in ((1, 2) if pp > 1 else (1,))]
        assert not fast["saturated"][()] and all(r.completed == REQUESTS for r in runs), load
        for name, got, want in (("TTFT p50", fast["ttft_p50_s"][()], np.mean([r.ttft_s.p50 for r in runs])),
                                ("TPOT p50", fast["tpot_p50_s"][()], np.mean([r.tpot_s.p50 for r in runs])),
                                ("throughput", fast["throughput_tokens_per_s"][()],
                                 np.mean([r.throughput_tokens_per_s for r in runs]))):
            if abs(got / want - 1.0) > 0.10:
                misses.append(f"load {load}: {name} {got:.4g} vs simulated {want:.4g} ({got / want - 1:+.1%})")
    assert not misses, misses


SATURATION = CASES[:3] + CASES[4:5] + CASES[6:7] + CASES[9:10]  # one server; PP 2 of each chain


@pytest.mark.parametrize("model, gpu, tp, pp, P, O", SATURATION, ids=[_id(c) for c in SATURATION])
def test_saturation_is_flagged_where_the_simulated_queue_grows(model, gpu, tp, pp, P, O):
    """At 90% of the fast path's capacity both say stable; at 120% both say saturated (the simulation:
    fewer output tokens made in the second half of the arrivals than they asked for)."""
    sc = _scenario(model, gpu, tp, pp)
    tables = step_tables(sc, P, O)
    capacity = colocated(tables, 0, 1, 256, 1e-3, P, O)["capacity_req_per_s"][()]
    for load, expected in ((0.9, False), (1.2, True)):
        fast = colocated(tables, 0, 1, 256, load * capacity, P, O)
        assert bool(fast["saturated"][()]) is expected
        assert _run(sc, load * capacity, P, O, 1500).saturated is expected, load


def test_spill_decay_solves_the_cramer_lundberg_equation():
    """y = theta a solves e^y - 1 = y / rho (lambda tau_f (e^{theta a} - 1) = theta), and tends to Kingman's
    heavy-traffic 2 (1 - rho) / rho as rho -> 1."""
    rho = np.array([0.1, 0.3, 0.5, 0.8, 0.95, 0.995])
    y = spill_decay(rho)
    assert np.all(y > 0)
    np.testing.assert_allclose(np.expm1(y), y / rho, rtol=1e-9)
    assert y[-1] == pytest.approx(2 * (1 - rho[-1]) / rho[-1], rel=0.01)


def test_ramp_mixture_quantiles_match_sampling():
    """The exact quantiles of a mixture of uniform ramps (what the TTFT law is) against 400,000 draws."""
    rng = np.random.default_rng(4)
    starts, widths, weights = rng.uniform(0, 3, (1, 7)), rng.uniform(0.01, 2, (1, 7)), rng.uniform(0, 1, (1, 7))
    weights /= weights.sum()
    pick = rng.choice(7, 400_000, p=weights[0])
    draws = starts[0, pick] + rng.random(400_000) * widths[0, pick]
    for p, got in zip((0.1, 0.5, 0.9, 0.99), _quantiles(starts, widths, weights, (0.1, 0.5, 0.9, 0.99))):
        lo, hi = np.quantile(draws, [p - 0.003, p + 0.003])
        assert lo <= got[0] <= hi
