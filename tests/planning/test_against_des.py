"""The fast path and the planner against the request-level DES (simulator.serving.serve)."""

from __future__ import annotations

import json
import shlex

import pytest

from roofsim.cli.main import main
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


def _roofsim_serve(entry: dict, tmp_path, capsys) -> dict:
    """Run a plan's (or a rejected configuration's) ``serve_command`` through the CLI, its scenario saved
    as scenario.json as the command expects, and return the JSON the CLI prints."""
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(entry["scenario"]))
    args = shlex.split(entry["serve_command"])
    assert args[:3] == ["roofsim", "serve", "scenario.json"]
    capsys.readouterr()
    assert main(["serve", str(path), *args[3:], "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_example_plan_is_verified_and_next_cheaper_fails(tmp_path, capsys):
    """Llama-3.1-70B at 4 req/s (2K / 256), p90 TTFT 2 s, p90 TPOT 50 ms over H100, H200, A100: the
    cheapest verified plan is the cheapest listed, `roofsim serve` of its scenario at that rate meets both
    SLOs with exactly the verification's numbers, and the next cheaper configuration of the space, served
    the same way, misses an SLO."""
    result = plan(model="llama-3.1-70b", rate=4.0, prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05,
                  gpus=["h100-sxm", "h200-sxm", "a100-80gb-sxm"], verify=4, num_requests=1000)
    best = result.cheapest
    assert best is not None and best.verified
    assert best.usd_per_hour == min(p.usd_per_hour for p in result.plans if p.verified)
    assert all(p.verified is not None for p in result.plans[:4])  # the top K are all simulated
    out = _roofsim_serve(best.model_dump(), tmp_path, capsys)
    assert out["ttft_s"]["p90"] <= 2.0 and out["tpot_s"]["p90"] <= 0.05 and out["rejected"] == 0
    assert out["ttft_s"]["p90"] == best.verification.ttft_pct_s and out["tpot_s"]["p90"] == best.verification.tpot_pct_s
    priced = [r for r in result.rejected_cheaper if r["usd_per_hour"] is not None]
    assert priced and not any("not simulated" in r["reason"] for r in priced)
    assert all(r["usd_per_hour"] < best.usd_per_hour for r in priced)
    nxt = max(priced, key=lambda r: r["usd_per_hour"])
    served = _roofsim_serve(nxt, tmp_path, capsys)
    missed = served["ttft_s"]["p90"] > 2.0 or served["tpot_s"]["p90"] > 0.05 or served["rejected"] > 0
    assert missed, f"{nxt['config']} ({nxt['reason']}) meets both SLOs in the DES: {served['ttft_s']}, {served['tpot_s']}"
    assert any("does not fit" in r["reason"] for r in result.rejected_cheaper)  # 70B bf16 on one or two GPUs


def test_one_gpu_space_agrees_with_brute_force_des():
    """Every configuration of a small one-GPU space simulated; the planner's cheapest verified plan is the
    cheapest configuration the DES says meets the SLOs."""
    from simulator.planning.models import PlanRequest
    from simulator.planning.search import evaluate

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
