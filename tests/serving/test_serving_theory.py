"""Queueing theory and conservation checks of the serving simulator (theory in docs/serving.md)."""

import numpy as np
import pytest

from simulator import serve
from simulator.serving import Batch, StepTimer

SC = {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm"}}
ONE_AT_A_TIME = {"max_num_seqs": 1, "max_num_batched_tokens": 512}


@pytest.mark.parametrize("rho, n, tol", [(0.5, 20_000, 0.05), (0.8, 100_000, 0.08)])
def test_md1_mean_ttft(rho, n, tol):
    """Max batch 1, fixed 512-token prompts, one output token, Poisson arrivals: an M/D/1 queue whose
    service time S is one prefill step. Pollaczek-Khinchine: W = S (1 + rho / (2 (1 - rho)))."""
    service = StepTimer(SC).exact(Batch([], [512], [0]))
    res = serve(SC, {"rate": rho / service, "num_requests": n, "prompt_len": 512, "output_len": 1, "seed": 11},
                ONE_AT_A_TIME)
    theory = service * (1.0 + rho / (2.0 * (1.0 - rho)))
    assert res.completed == n
    assert res.ttft_s.mean == pytest.approx(theory, rel=tol)
    # the service itself is deterministic: TTFT - queueing = S for every request
    rec = res.records
    np.testing.assert_allclose(rec["first_token_s"] - rec["first_scheduled_s"], service, rtol=1e-9)


@pytest.fixture(scope="module")
def loaded():
    wl = {"rate": 12.0, "num_requests": 1500, "prompt_len": "lognormal:800,0.6", "output_len": "uniform:2,300",
          "seed": 5}
    return serve(SC, wl, {"max_num_seqs": 64})


def test_littles_law(loaded):
    """The time-average number in the system (sampled at every step start, idle periods empty)
    equals the arrival rate times the mean time in the system, L = lambda W."""
    tl, rec = loaded.timeline, loaded.records
    start, dur = tl["start_s"], tl["duration_s"]
    span = rec["finish_s"].max() - rec["arrival_s"].min()
    in_system = tl["waiting"] + tl["running"]
    average = float(np.sum(in_system * dur)) / span
    lam = len(rec) / span
    w = float(np.mean(rec["finish_s"] - rec["arrival_s"]))
    assert average == pytest.approx(lam * w, rel=0.03)
    assert np.all(np.diff(start) > 0)


def test_tokens_are_conserved(loaded):
    """Every output token comes from one step: a decode step gives each of its sequences one token and
    the step that completes a prompt gives one more; nothing is lost or made twice."""
    rec, tl = loaded.records, loaded.timeline
    assert loaded.completed + loaded.rejected == len(rec) and loaded.rejected == 0
    assert tl["tokens_out"].sum() == rec["output_tokens"].sum()
    assert tl["decode"].sum() + loaded.completed == rec["output_tokens"].sum()  # no preemption: one prefill each


def test_prompt_tokens_are_computed_once_without_preemption(loaded):
    assert loaded.preemptions == 0
    assert int(loaded.timeline["chunk_tokens"].sum()) == int(loaded.records["prompt_tokens"].sum())


def test_same_seed_same_result_to_the_last_digit():
    wl = {"rate": 30.0, "num_requests": 400, "prompt_len": "lognormal:600,0.8", "output_len": "lognormal:100,0.7",
          "seed": 9}
    cfg = {"max_num_seqs": 32, "max_num_batched_tokens": 1024}
    a, b = serve(SC, wl, cfg), serve(SC, wl, cfg)
    assert a.contract() == b.contract()
    assert a.records.tobytes() == b.records.tobytes()
    c = serve(SC, dict(wl, seed=10), cfg)
    assert c.contract() != a.contract()


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_every_token_after_the_first_has_one_itl_gap(mode):
    """ITL samples pool every gap between consecutive tokens: sum over requests of (output - 1), with
    preemptions (recomputed or swapped requests resume with one longer gap, not an extra one)."""
    from simulator.serving.cluster import Simulation
    from simulator.serving.config import ServeConfig
    from simulator.serving.metrics import itl_samples
    from simulator.serving.workload import Workload

    wl = Workload(rate=1000.0, num_requests=48, prompt_len=1000, output_len=1200, seed=2)
    sim = Simulation(dict(SC, memory_utilization=0.25), wl.requests(), ServeConfig(preemption=mode))
    sim.run()
    rep = sim.main.replicas[0]
    assert rep.preemptions > 0
    gaps = np.concatenate([itl_samples(rep), sim.ledger.resume_gaps])
    assert gaps.size == 48 * (1200 - 1)
    assert np.all(gaps > 0)
    rec = sim.ledger.records()
    span = rec["finish_s"] - rec["first_token_s"]
    assert gaps.sum() == pytest.approx(span.sum(), rel=1e-9)  # the gaps of each request add up to e2e - TTFT
