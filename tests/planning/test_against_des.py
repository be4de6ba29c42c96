"""The fast path and the planner against the request-level DES (simulator.serving.serve)."""

from __future__ import annotations

import pytest

from simulator.planning import plan
from simulator.planning.space import build
from simulator.planning.verify import des_available
from simulator.serving.analytic import colocated

pytestmark = pytest.mark.skipif(not des_available(), reason="the request-level DES has not landed")


def _des(scenario, rate, prompt, output, n, config):
    from simulator.serving import serve

    return serve(scenario, {"rate": rate, "num_requests": n, "prompt_len": prompt, "output_len": output, "seed": 1},
                 config)


@pytest.mark.parametrize("load", [0.2, 0.5, 0.8])
def test_fast_path_matches_des_below_saturation(load):
    """Llama-3.1-8B on one H100, 1024/256 tokens, chunked prefill with vLLM's defaults: p50 TTFT, p50 TPOT
    and throughput from the fast path against 2,000 simulated requests."""
    space = build("llama-3.1-8b", ["h100-sxm"], [], 1024, 256, chunk_tokens=2048, max_tp=1)
    capacity = colocated(space.tables, 0, 1, 256, 0.01, 1024, 256)["capacity_req_per_s"][()]
    rate = load * capacity
    fast = colocated(space.tables, 0, 1, 256, rate, 1024, 256)
    des = _des(space.kinds[0].scenario("llama-3.1-8b", 1, "auto"), rate, 1024, 256, 2000, {"max_num_seqs": 256})
    assert not fast["saturated"][()]
    assert fast["tpot_p50_s"][()] == pytest.approx(des.tpot_s.p50, rel=0.10)
    assert fast["ttft_p50_s"][()] == pytest.approx(des.ttft_s.p50, rel=0.15)
    # the DES's throughput counts the run's ramp-up and drain, so it sits a few percent below lambda (P + O)
    assert fast["throughput_tokens_per_s"][()] == pytest.approx(des.throughput_tokens_per_s, rel=0.10)


def test_saturation_is_flagged_where_the_queue_grows():
    space = build("llama-3.1-8b", ["l40s"], [], 512, 128, chunk_tokens=2048, max_tp=1)
    capacity = colocated(space.tables, 0, 1, 64, 0.01, 512, 128)["capacity_req_per_s"][()]
    sc = space.kinds[0].scenario("llama-3.1-8b", 1, "auto")
    below, above = 0.5 * capacity, 1.4 * capacity
    fast = colocated(space.tables, 0, 1, 64, [below, above], 512, 128)
    assert fast["saturated"].tolist() == [False, True]
    short = _des(sc, above, 512, 128, 300, {"max_num_seqs": 64})
    long = _des(sc, above, 512, 128, 1200, {"max_num_seqs": 64})
    assert long.ttft_s.p90 > 2.0 * short.ttft_s.p90  # waits grow with the run: no steady state
    ok_short = _des(sc, below, 512, 128, 300, {"max_num_seqs": 64})
    ok_long = _des(sc, below, 512, 128, 1200, {"max_num_seqs": 64})
    assert ok_long.ttft_s.p90 < 2.0 * ok_short.ttft_s.p90


def test_example_plan_is_verified_and_next_cheaper_fails():
    """Llama-3.1-70B at 4 req/s (2K / 256), p90 TTFT 2 s, p90 TPOT 50 ms over H100, H200, A100."""
    result = plan(model="llama-3.1-70b", rate=4.0, prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05,
                  gpus=["h100-sxm", "h200-sxm", "a100-80gb-sxm"], verify=4, num_requests=1000)
    best = result.cheapest
    assert best is not None and best.verified
    assert best.usd_per_hour == min(p.usd_per_hour for p in result.plans if p.verified)
    des = _des(best.scenario, 4.0, 2048, 256, 1000, best.serve_config)
    assert des.ttft_s.p90 <= 2.0 and des.tpot_s.p90 <= 0.05 and des.rejected == 0
    cheaper = [r for r in result.rejected_cheaper if r["usd_per_hour"] is not None]
    assert cheaper and not any("not simulated" in r["reason"] for r in cheaper)
    assert any("DES misses" in r["reason"] for r in cheaper) or all(p.verified for p in result.plans if p.verified is not None)


def test_one_gpu_space_agrees_with_brute_force_des():
    """Every configuration of a small one-GPU space simulated; the planner's cheapest verified plan is the
    cheapest configuration the DES says meets the SLOs."""
    from simulator.planning.search import evaluate
    from simulator.planning.models import PlanRequest

    req = PlanRequest(model="llama-3.1-8b", rate=6.0, prompt_len=512, output_len=128, slo_ttft_s=0.5,
                      slo_tpot_s=0.04, gpus=["l40s"], max_gpus=2, batch_caps=[32, 128], verify=8, num_requests=400,
                      disaggregate=False)
    space, rows, _ = evaluate(req)
    results = []
    for i in range(len(rows)):
        kind = space.kinds[rows.kind[i]]
        cap = int(rows.cap[i])
        r = _des(kind.scenario(req.model, int(rows.replicas[i]), "auto"), req.rate, 512, 128, 400,
                 {"max_num_seqs": cap, "max_num_batched_tokens": 2048})
        ok = r.ttft_s.p90 <= 0.5 and r.tpot_s.p90 <= 0.04 and r.rejected == 0
        results.append((rows.m["usd_per_hour"][i], ok))
    brute = min((c for c, ok in results if ok), default=None)
    got = plan(req).cheapest
    assert (got is None) == (brute is None)
    if brute is not None:
        assert got.usd_per_hour == pytest.approx(brute)
