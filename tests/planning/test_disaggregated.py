"""Prefill/decode splits, of one GPU type or two (Splitwise's heterogeneous pairs), verified by the DES
and reproducible with `roofsim serve` from the plan's own scenario and command."""

from __future__ import annotations

import json
import shlex

import pytest

from roofsim.cli.main import main
from simulator.planning import plan
from simulator.planning.verify import des_available

pytestmark = pytest.mark.skipif(not des_available(), reason="the request-level DES has not landed")

# Contract prices where A100s cost $1.00/h against the H100's $2.69: prefill on H100s (compute) and
# decode on A100s (memory bandwidth per dollar), the pairing Splitwise proposes.
PRICES = "h100-sxm: 2.69\na100-80gb-sxm: 1.0\n"
REQUEST = dict(model="llama-3.1-8b", rate=4.0, prompt_len=2048, output_len=256, slo_ttft_s=0.09, slo_tpot_s=0.04,
               gpus=["h100-sxm", "a100-80gb-sxm"], max_gpus=8, batch_caps=[64], verify=3, num_requests=400)


def _hetero(plans):
    return [p for p in plans if p.disaggregate and p.decode_gpu != p.gpu]


def _serve(p, tmp_path, capsys) -> dict:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(p.scenario))
    args = shlex.split(p.serve_command)
    capsys.readouterr()
    assert main(["serve", str(path), *args[3:], "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def prices(tmp_path_factory):
    path = tmp_path_factory.mktemp("prices") / "prices.yaml"
    path.write_text(PRICES)
    return str(path)


@pytest.fixture(scope="module")
def splitwise(prices):
    return plan({**REQUEST, "prices": prices})


def test_top_k_are_all_simulated_and_a_heterogeneous_split_passes(splitwise):
    top = splitwise.plans[:REQUEST["verify"]]
    assert all(p.verified is not None and p.verification is not None for p in top)
    passed = [p for p in _hetero(top) if p.verified]
    assert passed, [(p.gpu, p.decode_gpu, p.disaggregate, p.verified) for p in top]
    p = passed[0]
    v = p.verification
    assert v.ttft_pct_s <= REQUEST["slo_ttft_s"] and v.tpot_pct_s <= REQUEST["slo_tpot_s"] and v.rejected == 0
    assert p.gpu == "h100-sxm" and p.decode_gpu == "a100-80gb-sxm"
    assert p.serve_config["decode_overrides"]["hardware.gpu"] == "a100-80gb-sxm"


def test_heterogeneous_plan_runs_through_roofsim_serve_as_is(splitwise, tmp_path, capsys):
    """The plan's scenario file and its serve command (--disaggregate, --decode-gpu, --decode-tp) give the
    verification's numbers exactly, and the replicas are the plan's pools."""
    p = _hetero([q for q in splitwise.plans if q.verified])[0]
    assert "--decode-gpu a100-80gb-sxm" in p.serve_command
    out = _serve(p, tmp_path, capsys)
    assert out["ttft_s"]["p90"] == p.verification.ttft_pct_s and out["tpot_s"]["p90"] == p.verification.tpot_pct_s
    x, y = (int(n) for n in p.disaggregate.rstrip("D").split("P"))
    pools = [(r["group"], r["gpu"], r["gpus"]) for r in out["replicas"]]
    assert pools == [("prefill", p.gpu, p.tp * p.pp)] * x + [("decode", p.decode_gpu, p.decode_tp * p.pp)] * y
    assert sum(n for _, _, n in pools) == p.num_gpus


def test_split_pools_differ_only_in_gpu_and_tp(splitwise):
    """A split's pools share PP, dtypes and techniques (the KV cache moves between them as it is)."""
    for p in [*splitwise.plans, *splitwise.pareto]:
        if p.decode_scenario is None:
            continue
        for key in ("precision", "techniques", "calibration"):
            assert p.decode_scenario[key] == p.scenario[key]
        assert p.decode_scenario["parallelism"]["pp"] == p.scenario["parallelism"]["pp"]
        assert set(p.serve_config["decode_overrides"]) <= {"hardware.gpu", "parallelism.tp"}


def test_heterogeneous_plan_failing_the_des_is_rejected_with_its_reason(splitwise, prices):
    """With an SLO between the fast path's p90 and the DES's for the passing split, the fast path still
    admits it, the simulation rejects it, and the cheaper-but-rejected list says why."""
    p = _hetero([q for q in splitwise.plans if q.verified])[0]
    v = p.verification
    slo = dict(slo_ttft_s=REQUEST["slo_ttft_s"], slo_tpot_s=REQUEST["slo_tpot_s"])
    if v.ttft_pct_s > p.ttft_p90_s:
        slo["slo_ttft_s"] = (v.ttft_pct_s + p.ttft_p90_s) / 2.0
    else:
        assert v.tpot_pct_s > p.tpot_p90_s, "the fast path is pessimistic on both SLOs for this split"
        slo["slo_tpot_s"] = (v.tpot_pct_s + p.tpot_p90_s) / 2.0
    tight = plan({**REQUEST, **slo, "prices": prices})
    same = [q for q in tight.plans if (q.gpu, q.decode_gpu, q.disaggregate, q.tp, q.decode_tp) ==
            (p.gpu, p.decode_gpu, p.disaggregate, p.tp, p.decode_tp)]
    assert same and same[0].meets_slo_fast_path and same[0].verified is False
    assert tight.cheapest is None or tight.cheapest.usd_per_hour > same[0].usd_per_hour
    reasons = [r["reason"] for r in tight.rejected_cheaper if r["usd_per_hour"] == same[0].usd_per_hour
               and r["config"].startswith(f"{p.disaggregate[0]}P x {p.gpu}")]
    assert reasons and all(r.startswith("the DES misses an SLO") for r in reasons)


def test_decode_replicas_larger_than_prefill_replicas(tmp_path, capsys):
    """`roofsim serve --decode-tp` above the prefill replica's GPUs sizes the decode replica by its own TP."""
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "num_gpus": 1},
                                "parallelism": {"tp": 1}}))
    assert main(["serve", str(path), "--rate", "2", "--num-requests", "100", "--prompt-len", "512", "--output-len",
                 "32", "--disaggregate", "1:1", "--decode-gpu", "a100-80gb-sxm", "--decode-tp", "2", "--json",
                 "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["group"], r["gpu"], r["gpus"]) for r in out["replicas"]] == [("prefill", "h100-sxm", 1),
                                                                           ("decode", "a100-80gb-sxm", 2)]
    assert out["completed"] == 100
