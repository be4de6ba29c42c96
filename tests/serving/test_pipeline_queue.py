"""The pipeline model of the fast path (simulator.serving.pipeline_queue) against the recurrence it
describes and against queueing results worked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator.serving import pipeline_queue as pq
from simulator.serving.analytic import colocated
from simulator.serving.analytic_tables import BATCH_GRID, StepTables


def _entries(slots, p):
    """Stage-1 entry times of batches with stage slots ``slots`` through p stages, every lane ready: the
    recurrence of ``lanes.Pipeline`` (a batch enters a stage when it left the previous one and the stage
    is free; a lane's next batch enters after its last left stage p)."""
    free = [0.0] * p
    leave = []  # each batch's exit from stage p
    starts = []
    for k, s in enumerate(slots):
        t = max(free[0], leave[k - p] if k >= p else 0.0)
        starts.append(t)
        for j in range(p):
            t = max(t, free[j]) + s
            free[j] = t
        leave.append(t)
    return np.array(starts), np.array(leave)


@pytest.mark.parametrize("p", [2, 3, 4])
def test_a_long_batch_spaces_the_slots_as_the_flow_shop_says(p):
    """Short batches of slot b and one of slot b + delta (its extra trip X = p delta): stage 1 takes the long
    one b + delta, the p - 2 behind it b each, and the slot before its lane's next batch b + (p - 1) delta;
    the cycle is the long batch's trip, and it leaves p (b + delta) after it entered."""
    b, delta = 1.0, 0.7
    slots = [b] * (3 * p) + [b + delta] + [b] * (3 * p)
    starts, leave = _entries(slots, p)
    k = 3 * p  # the long batch
    intervals = np.diff(starts)[k:k + p]
    want, count, ahead = pq._slots(np.array([[p * b + p * delta]]), np.array([p * b]), np.array([float(p)]))
    expected = [want[0, 0, 0]] + [want[0, 0, 1]] * (p - 2) + [want[0, 0, 2]]
    np.testing.assert_allclose(intervals, expected, rtol=1e-12)
    assert intervals.sum() == pytest.approx(p * (b + delta))
    assert leave[k] - starts[k] == pytest.approx(p * (b + delta))
    assert count[0, 0].tolist() == [1.0, p - 2.0, 1.0] and ahead.tolist() == [True, True, False]


def test_two_stages_enter_and_leave_by_the_longer_of_two_slots():
    """p = 2, any slots: batch k + 1 enters max(s_k-1, s_k) after batch k, and batch k leaves
    s_k + max(s_k-1, s_k) after it entered, the latency (t + Y) / 2 of a trip t behind one of trip Y."""
    rng = np.random.default_rng(3)
    slots = rng.choice([1.0, 1.0, 2.5, 4.0], 400)
    starts, leave = _entries(slots, 2)
    np.testing.assert_allclose(np.diff(starts)[1:], np.maximum(slots[:-2], slots[1:-1])[:], rtol=1e-12)
    latency = (leave - starts)[1:]
    np.testing.assert_allclose(latency, slots[1:] + np.maximum(slots[:-1], slots[1:]), rtol=1e-12)
    trips = 2 * slots
    np.testing.assert_allclose(latency, pq._lane_exit(trips[1:], trips[:-1], 2.0), rtol=1e-12)


def test_busy_lane_chain_conserves_the_prompts_work_on_one_lane():
    """One lane, prompts of a = 2 batches: the cycles that carry prompt work are lambda E[C] a of all, so
    E[C] = t_d / (1 - lambda a X(c)) whatever the queue: t_d = 20 ms, X(c) = 100 ms, lambda = 1.5/s:
    0.02 / (1 - 0.3) = 28.571 ms (to the chain's cut-off of the queue beyond six waiting prompts)."""
    chains = pq.Chains(np.array([1.0]), np.array([2048.0]), np.array([4096.0]))
    s1 = np.array([0.1 / 2048.0])
    mean = chains.mean(np.array([1.5]), np.array([0.02]), s1, s1, np.array([2048.0]))
    assert mean[0] == pytest.approx(0.02 / 0.7, rel=1e-5)


def test_cycle_chain_of_one_lane_is_the_open_step_chain():
    """p = 1: the fullest lane is the step's prompt count, K' ~ Poisson(lambda tau(K)), and the mean step
    of that chain (solved here by power iteration) is the chain's mean cycle."""
    lam, t_d, x_per_prompt, P, c = 20.0, 0.02, 0.015, 512.0, 1800.0
    chains = pq.Chains(np.array([1.0]), np.array([512.0]), np.array([P]))
    s1 = np.array([x_per_prompt / 512.0])
    got = chains.mean(np.array([lam]), np.array([t_d]), s1, s1, np.array([c]))[0]
    J = int(np.ceil(c / P))
    k = np.arange(J + 1)
    tau = t_d + x_per_prompt * np.minimum(k * P, c) / P
    from scipy.stats import poisson
    T = np.array([[poisson.pmf(j, lam * t) if j < J else poisson.sf(J - 1, lam * t) for j in k] for t in tau])
    pi = np.full(J + 1, 1.0 / (J + 1))
    for _ in range(2000):
        pi = pi @ T
    assert got == pytest.approx(float(pi @ tau), rel=1e-9)


def _pipeline_tables(p=2.0, prompt=1024.0):
    """One kind of p lanes whose trip is t_d(b) = 0.012 + 2e-5 b, a prompt's chunk adding 0.02 s."""
    t = 0.012 + 2e-5 * BATCH_GRID
    return StepTables(BATCH_GRID, t[None, :], (t + 0.02)[None, :], np.array([0.03]), np.array([1.0]),
                      np.array([4000.0]), np.array([1024.0]), np.array([2048.0]), np.array([prompt]),
                      full_s=(t + 0.05)[None, :], lanes=np.array([p]))


def test_pipeline_latency_grows_with_load_and_capacity_is_below_even_filling():
    tables = _pipeline_tables()
    cap = colocated(tables, 0, 1, 256, 1e-3, 1024, 256)["capacity_req_per_s"][()]
    r = colocated(tables, 0, 1, 256, cap * np.array([0.1, 0.3, 0.5, 0.7, 0.9]), 1024, 256)
    assert not r["saturated"].any()
    for key in ("ttft_p50_s", "tpot_p50_s", "ttft_pct_s", "tpot_pct_s"):
        assert np.all(np.diff(r[key]) > 0), key
    assert colocated(tables, 0, 1, 256, 1.05 * cap, 1024, 256)["saturated"][()]
    # every lane's batch carrying the same prompt tokens: 2 lanes x 256 / (255 x t_d(256) + X(256 x 1024 / 255))
    M, m_tokens = 256.0, 256.0 * 1024.0 / 255.0
    even = 2.0 * M / (255.0 * (0.012 + 2e-5 * M + 0.02 + (m_tokens - 1024.0) * 0.03 / 1024.0))
    assert cap < even


def test_what_a_prefill_leaves_behind_vanishes_at_low_load():
    """The excess decode a request's prefill leaves behind is positive under load and tends to 0 with
    lambda (nothing else runs): at 1e-4 of capacity it is below 1e-3 of its value at 60%."""
    tables = _pipeline_tables()
    cap = colocated(tables, 0, 1, 256, 1e-3, 1024, 256)["capacity_req_per_s"][()]
    from simulator.serving.analytic_pipeline import _pipeline_steady

    out = []
    for load in (1e-4, 0.6):
        lam = np.array([load * cap])
        *_, (chains, solved, t_d, c) = _pipeline_steady(tables, np.array([0]), lam, 255.0)
        out.append(pq.left_behind(chains, solved, lam)[0][0])
    assert abs(out[0]) < 1e-3 * out[1] and out[1] > 0


def test_curves_and_exact_paths_agree_for_pipelines():
    """A planner-sized call (over 4,096 configurations: the per-kind grid of rates) gives what the
    configurations' own rates give, within the grid's interpolation: 3% on TPOT, capacity and mean TTFT,
    10% on the median TTFT, which turns steeply where half the prompts start waiting."""
    tables = _pipeline_tables()
    cap = colocated(tables, 0, 1, 256, 1e-3, 1024, 256)["capacity_req_per_s"][()]
    rates = cap * np.linspace(0.05, 0.85, 5000)
    many = colocated(tables, np.zeros(5000, dtype=int), 1, 256, rates, 1024, 256)
    few = colocated(tables, np.zeros(50, dtype=int), 1, 256, rates[::100], 1024, 256)
    for key in ("ttft_mean_s", "tpot_p50_s", "capacity_req_per_s"):
        np.testing.assert_allclose(many[key][::100], few[key], rtol=0.03, err_msg=key)
    np.testing.assert_allclose(many["ttft_p50_s"][::100], few["ttft_p50_s"], rtol=0.10)


def test_a_chain_with_two_closed_classes_gets_the_law_of_the_queue_started_empty():
    """Two lanes each holding a prompt for two cycles, with every cycle's arrivals filling every lane
    (saturation): lanes that start together stay in step, lanes one cycle apart stay apart, so the chain
    has two closed classes and pi (T - I) = 0 no unique solution. The law returned is that of the queue
    started with every lane free (the in-step class, both lanes at 2 then 1); an irreducible chain beside
    it in the same call is solved as before, to the last bit."""
    st = pq._busy_structure(2, 2)
    states = st["states"]
    saturated = np.zeros((st["n"], st["n"]))
    for i, (residual, waiting) in enumerate(states):
        left = sorted(max(x - 1, 0) for x in residual)
        nxt = tuple(sorted(2 if x == 0 else x for x in left))
        saturated[i, states.index((nxt, pq.Q_MAX))] = 1.0
    irreducible = pq._busy_chain(st, np.array([0.3]), np.full((1, st["n"]), 1.0), np.array([0.5]))[1][0]
    both = np.stack([irreducible, saturated])
    with pytest.raises(np.linalg.LinAlgError):
        pq._solve_stationary(saturated[None])
    pi = pq._stationary(both)
    assert np.array_equal(pi[0], pq._solve_stationary(irreducible[None])[0])
    in_step = [states.index(((1, 1), pq.Q_MAX)), states.index(((2, 2), pq.Q_MAX))]
    assert pi[1][in_step] == pytest.approx([0.5, 0.5], abs=1e-6)
    assert pi[1].sum() == pytest.approx(1.0)


def test_a_plan_whose_pipelines_saturate_at_the_search_bracket_is_priced_not_a_traceback(capsys):
    """Llama-3.1-70B at 20 req/s of 32K prompts with speculative decoding: the two-stage kinds' steady
    state is bracketed at a cycle where the busy-lane chain saturates (two closed classes); the plan used
    to stop with numpy's 'Singular matrix'."""
    from roofsim.cli.main import main

    code = main(["plan", "--model", "llama-3.1-70b", "--rate", "20", "--prompt-len", "32768", "--output-len", "256",
                 "--slo-ttft", "2", "--gpus", "h100-sxm", "--techniques", "speculative", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["searched_configs"] > 0
    assert all(r["reason"] for r in out["rejected_cheaper"])
