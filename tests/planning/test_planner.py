"""The planner's known answers and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from hwmodels.errors import InputError
from simulator.planning import PlanRequest, plan
from simulator.planning.search import evaluate, pareto_mask

EXAMPLE = dict(model="llama-3.1-70b", rate=4.0, prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05,
               percentile=90, gpus=["h100-sxm", "h200-sxm", "a100-80gb-sxm"], verify=0)


@pytest.fixture(scope="module")
def example():
    return plan(EXAMPLE)


def test_plans_sorted_by_cost_and_cheapest_is_first(example):
    costs = [p.usd_per_hour for p in example.plans]
    assert costs == sorted(costs)
    assert example.cheapest is not None and example.cheapest.usd_per_hour == costs[0]
    assert example.searched_configs > 10_000 and example.search_time_s > 0.0


def test_cheapest_meets_slo_in_fast_path_and_its_scenario_is_accepted(example):
    best = example.cheapest
    assert best.ttft_p90_s <= 2.0 and best.tpot_p90_s <= 0.05 and best.load <= 0.9
    pred = simulator.predict(best.scenario)  # the scenario mapping is accepted as is
    assert pred.memory.fits
    assert best.num_gpus == best.scenario["hardware"]["num_gpus"]


def test_every_cheaper_configuration_is_rejected_with_a_reason(example):
    """The next cheaper configurations in the space fail an SLO, saturate, or do not fit."""
    below = [r for r in example.rejected_cheaper if r["usd_per_hour"] is not None]
    assert below, "the space has configurations cheaper than the cheapest plan"
    assert all(r["usd_per_hour"] < example.cheapest.usd_per_hour for r in below)
    for r in example.rejected_cheaper:
        assert any(word in r["reason"] for word in ("TTFT", "TPOT", "cannot keep up", "does not fit", "DES", "limits",
                                                    "capacity")), r
    assert any("does not fit" in r["reason"] for r in example.rejected_cheaper)  # e.g. 70B on one 80 GB GPU


def test_plan_explains_bound_and_a_cheaper_change(example):
    best = example.cheapest
    assert "decode steps are bound by" in best.bound
    assert best.cheaper_if
    assert best.vllm_command.startswith("vllm serve meta-llama/Llama-3.1-70B")
    assert f"--tensor-parallel-size {best.tp}" in best.vllm_command or best.disaggregate
    assert "--tp-size" in best.sglang_command


def test_costs_add_up(example):
    p = example.cheapest
    assert p.usd_per_hour == pytest.approx(p.num_gpus * 2.69 if p.gpu == "h100-sxm" and not p.decode_gpu
                                           else p.usd_per_hour)
    tokens_per_hour = 4.0 * (2048 + 256) * 3600
    assert p.usd_per_million_tokens == pytest.approx(p.usd_per_hour / tokens_per_hour * 1e6)
    # the input and output split adds back to the whole
    total = p.usd_per_million_input_tokens * 2048 + p.usd_per_million_output_tokens * 256
    assert total == pytest.approx(p.usd_per_million_tokens * (2048 + 256), rel=1e-9)
    assert p.joules_per_token == pytest.approx(p.power_w / (4.0 * 2304))


@settings(max_examples=8, deadline=None)
@given(st.floats(0.03, 0.2), st.floats(1.0, 1.8))
def test_relaxing_an_slo_never_costs_more(tpot, factor):
    base = dict(model="llama-3.1-8b", rate=6.0, prompt_len=1024, output_len=128, slo_ttft_s=1.0,
                gpus=["h100-sxm", "l40s"], verify=0, max_gpus=8, disaggregate=False)
    tight = plan({**base, "slo_tpot_s": tpot}).cheapest
    loose = plan({**base, "slo_tpot_s": tpot * factor}).cheapest
    if tight is not None:
        assert loose is not None and loose.usd_per_hour <= tight.usd_per_hour + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=1, max_size=60))
def test_pareto_set_is_non_dominated(points):
    cost, lat = np.array(points).T
    keep = pareto_mask(cost, lat)
    kept = np.flatnonzero(keep)
    for i in kept:  # nothing dominates a kept point
        assert not np.any((cost <= cost[i]) & (lat <= lat[i]) & ((cost < cost[i]) | (lat < lat[i])))
    for i in np.flatnonzero(~keep):  # every dropped point is dominated or duplicates a kept one
        assert np.any((cost[kept] <= cost[i]) & (lat[kept] <= lat[i]))


def test_result_pareto_is_non_dominated(example):
    pts = [(p.usd_per_hour, p.tpot_p90_s) for p in example.pareto]
    for c, t in pts:
        assert not any((c2 <= c and t2 <= t) and (c2 < c or t2 < t) for c2, t2 in pts)


def test_one_gpu_space_matches_brute_force_over_the_fast_path():
    """With one GPU type and co-located replicas the search equals a loop over every configuration."""
    req = PlanRequest(model="llama-3.1-8b", rate=3.0, prompt_len=512, output_len=128, slo_ttft_s=0.5, slo_tpot_s=0.02,
                      gpus=["l4"], max_gpus=8, verify=0, disaggregate=False, batch_caps=[8, 32, 128])
    space, rows, _ = evaluate(req)
    from simulator.serving.analytic import colocated

    best = None
    for k, kind in enumerate(space.kinds):
        for replicas in range(1, 8 // kind.gpus + 1):
            for cap in req.batch_caps:
                r = colocated(space.tables, k, replicas, cap, req.rate, req.prompt_len, req.output_len, percentile=0.9)
                ok = (not r["saturated"][()] and r["load"][()] <= req.max_load and r["ttft_pct_s"][()] <= 0.5
                      and r["tpot_pct_s"][()] <= 0.02)
                cost = kind.gpus * replicas * 0.468
                if ok and (best is None or cost < best):
                    best = cost
    got = plan(req).cheapest
    assert (got is None) == (best is None)
    if best is not None:
        assert got.usd_per_hour == pytest.approx(best)


def test_power_budget_and_polca_provisioning():
    """Provisioning at the observed draw instead of TDP fits more GPUs in the same envelope (POLCA's
    direction: 30% more servers)."""
    r = plan(EXAMPLE).cheapest
    assert r.power_provisioned_w < r.num_gpus * 700.0
    envelope = 100_000.0
    assert (envelope / r.power_provisioned_w) / (envelope / (r.num_gpus * 700.0)) > 1.0
    tdp = plan({**EXAMPLE, "power_provisioning": "tdp", "power_budget_w": r.num_gpus * 700.0 - 1.0}).cheapest
    observed = plan({**EXAMPLE, "power_budget_w": r.num_gpus * 700.0 - 1.0}).cheapest
    assert observed.usd_per_hour == pytest.approx(r.usd_per_hour)
    assert tdp is None or tdp.usd_per_hour >= r.usd_per_hour


def test_bad_requests_name_the_field():
    with pytest.raises(InputError, match="gpus"):
        plan({**EXAMPLE, "gpus": ["not-a-gpu"]})
    with pytest.raises(InputError, match="techniques"):
        plan({**EXAMPLE, "techniques": [{"name": "magic"}]})
    with pytest.raises(InputError, match="rate"):
        plan({**EXAMPLE, "rate": -1})


def test_fp8_techniques_enter_the_space():
    r = plan({**EXAMPLE, "techniques": [{"name": "fp8_weights"}, {"name": "fp8_kv"}]})
    base = plan(EXAMPLE)
    assert r.searched_configs > base.searched_configs
    assert r.cheapest.usd_per_hour <= base.cheapest.usd_per_hour


def test_fp8_weights_are_priced_as_the_engines_run_them():
    """``--quantization fp8`` is W8A8 on GPUs with fp8 tensor cores and weight-only (FP8 Marlin) on the
    others (vLLM's FP8 W8A8 page): a 2K-token prefill of Llama-3.1-70B on TP 4 is compute bound, so on the
    H100 its fp8 kind takes at most three quarters of bf16's time (GEMMs at twice the peak, attention and the
    LM head in bf16), while on the A100, with no fp8 math, it is no faster; the plan's scenario, run
    through predict, prices the step the table holds."""
    from simulator.planning.space import build

    space = build("llama-3.1-70b", ["h100-sxm", "a100-80gb-sxm"], [{"name": "fp8_weights"}], 2048, 256)
    prefill = {(k.gpu, k.tp, k.weights): space.tables.prefill_s[i] for i, k in enumerate(space.kinds)}
    assert prefill[("h100-sxm", 4, "fp8")] < 0.75 * prefill[("h100-sxm", 4, "bf16")]
    assert prefill[("a100-80gb-sxm", 4, "fp8")] >= prefill[("a100-80gb-sxm", 4, "bf16")]
    kind = next(k for k in space.kinds if (k.gpu, k.tp, k.weights) == ("h100-sxm", 4, "fp8"))
    scenario = {**kind.scenario("llama-3.1-70b", 1, "auto"),
                "workload": {"phase": "prefill", "batch_size": 1, "prompt_len": 2048}}
    assert simulator.predict(scenario).latency_s == pytest.approx(prefill[("h100-sxm", 4, "fp8")], rel=1e-9)


def test_length_specs_enter_as_means_and_spread():
    """uniform:512,1536 has mean 1024 and CV^2 = (1024^2 / 12) / 1024^2 = 1/12 (a uniform's variance is
    width^2 / 12); the fast path sees the mean, and a spread of prompts lengthens the wait (P-K)."""
    spread = PlanRequest(model="llama-3.1-8b", rate=4.0, prompt_len="uniform:512,1536", output_len=128)
    p, cv2, o = spread.lengths()
    assert p == pytest.approx(1024, rel=0.01) and cv2 == pytest.approx(1 / 12, rel=0.05) and o == 128
    base = dict(model="llama-3.1-8b", rate=5.0, output_len=128, gpus=["l40s"], max_gpus=1, verify=0,
                disaggregate=False, slo_ttft_s=10.0, slo_tpot_s=1.0, batch_caps=[64])
    fixed = plan({**base, "prompt_len": 1024}).plans[0]
    varied = plan({**base, "prompt_len": "uniform:512,1536"}).plans[0]
    assert varied.ttft_p90_s > fixed.ttft_p90_s


LONG_PROMPTS = dict(model="llama-3.1-70b", rate=20.0, prompt_len=32768, output_len=256, slo_ttft_s=2.0,
                    slo_tpot_s=0.05, gpus=["h100-sxm"], verify=0)


def test_no_plan_says_how_many_gpus_keep_up_and_that_many_do():
    """20 req/s of 32K prompts for Llama-3.1-70B on at most 64 H100s: nothing keeps up. The answer names
    the GPUs the layout with the most capacity per GPU needs, and a search allowed exactly that many finds
    a configuration of it below the load limit (SLOs relaxed, so that capacity alone decides)."""
    import re

    result = plan(LONG_PROMPTS)
    assert result.cheapest is None
    found = re.search(r"so (\d+) GPUs of it \((\d+) replicas\) are needed \(raise max_gpus\)", result.why_none)
    assert found, result.why_none
    gpus = int(found.group(1))
    assert gpus > 64
    relaxed = plan({**LONG_PROMPTS, "max_gpus": gpus, "slo_ttft_s": 1e4, "slo_tpot_s": 1e3, "disaggregate": False})
    assert relaxed.cheapest is not None and relaxed.cheapest.num_gpus <= gpus
    assert relaxed.cheapest.load <= 0.9


def test_no_plan_names_the_lowest_ttft_any_layout_reaches():
    """On 1024 H100s every layout keeps up but none reaches a p90 TTFT of 2 s; the answer names the lowest
    one, and an SLO just above it (TPOT relaxed) admits a plan at that TTFT."""
    import re

    result = plan({**LONG_PROMPTS, "max_gpus": 1024})
    assert result.cheapest is None
    found = re.search(r"the lowest p90 TTFT of a configuration that keeps up is ([0-9.]+) s", result.why_none)
    assert found, result.why_none
    lowest = float(found.group(1))
    assert lowest > 2.0
    admitted = plan({**LONG_PROMPTS, "max_gpus": 1024, "slo_ttft_s": lowest * 1.001, "slo_tpot_s": 10.0})
    assert admitted.cheapest is not None and admitted.why_none is None
    assert lowest * 0.999 <= admitted.cheapest.ttft_p90_s <= lowest * 1.001


def test_batch_caps_that_change_nothing_are_one_plan():
    """At a third of capacity the queue never fills a batch of 16, so caps of 16, 32 and 64 give the same
    fast-path outcome to the last bit: one plan is listed (and simulated), not three."""
    result = plan({**LONG_PROMPTS, "max_gpus": 1024, "techniques": [{"name": "fp8_weights"}]})
    outcomes = [(p.gpu, p.layout(), p.replicas, p.ttft_p90_s, p.tpot_p90_s, p.load) for p in result.plans]
    assert len(outcomes) == len(set(outcomes)) > 1
    assert result.cheapest is not None and result.cheapest.batch_mean < 16


def test_refine_finds_the_fewest_replicas_the_des_accepts():
    """Llama-3.1-70B at 5 req/s of 32K prompts, fp8, on up to 512 H100s: the fast path holds TP 8 x PP 2
    replicas at a third of their capacity for the TTFT SLO, which the DES meets with room. Refining bisects
    fewer replicas of that layout with the DES: the plan reported is the fewest it accepted, one replica
    fewer was simulated and missed, and every run it made is kept with its verdict."""
    req = {**LONG_PROMPTS, "rate": 5.0, "max_gpus": 512, "techniques": [{"name": "fp8_weights"}], "verify": 1,
           "num_requests": 500}
    plain, refined = plan(req), plan({**req, "refine": True})
    assert plain.cheapest.verified and not plain.refined
    assert "the p90 TTFT SLO" in plain.cheapest.bound and "refine finds the replicas it needs" in plain.cheapest.bound
    assert refined.refined and all(p.verification is not None for p in refined.refined)
    best = refined.cheapest
    accepted = [p for p in refined.refined if p.verified]
    assert best.verified and best.replicas == min(p.replicas for p in accepted) < plain.cheapest.replicas
    assert (best.tp, best.pp, best.max_num_seqs) == (plain.cheapest.tp, plain.cheapest.pp, plain.cheapest.max_num_seqs)
    assert best.usd_per_hour < plain.cheapest.usd_per_hour
    missed = [p.replicas for p in refined.refined if not p.verified]
    assert best.replicas - 1 in missed and all(r < best.replicas for r in missed)
    assert len(refined.refined) <= int(np.ceil(np.log2(plain.cheapest.replicas))) + 1


def test_requests_beyond_the_models_context_are_refused_up_front():
    """OLMoE-1B-7B holds 4,096 positions: 65,536-token prompts, or a lognormal whose tail passes 4,096, are
    rejected by an engine (the DES completes none), so the request is refused with the share beyond."""
    with pytest.raises(InputError, match="every request exceeds olmoe-1b-7b's context of 4,096 tokens"):
        plan({**EXAMPLE, "model": "olmoe-1b-7b", "prompt_len": 65536, "output_len": 128})
    with pytest.raises(InputError, match=r"[0-9.]+% of the requests exceed olmoe-1b-7b's context"):
        plan({**EXAMPLE, "model": "olmoe-1b-7b", "prompt_len": "lognormal:2048,1.0", "output_len": 128})
    assert plan({**EXAMPLE, "model": "olmoe-1b-7b", "prompt_len": 3968, "output_len": 128}).searched_configs > 0


def test_a_verification_with_no_finished_request_misses_the_slo():
    """A DES run where no request finishes reports no percentile; the verdict is a miss (infinite
    latency), not a traceback."""
    from simulator.planning.verify import _quantile

    assert _quantile({"p50": None, "p90": None, "p99": None}, 90.0) == float("inf")
    assert _quantile({"p50": 0.1, "p90": 0.2, "p99": 0.3}, 90.0) == 0.2
