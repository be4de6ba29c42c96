"""``roofsim plan``: the JSON contract, the table and one-line errors."""

from __future__ import annotations

import json

from roofsim.cli.main import main

ARGS = ["plan", "--model", "llama-3.1-8b", "--rate", "4", "--prompt-len", "1024", "--output-len", "128",
        "--slo-ttft", "1", "--slo-tpot", "0.05", "--gpus", "h100-sxm,l40s", "--max-gpus", "8", "--verify", "0"]
PLAN_KEYS = {"gpu", "num_gpus", "tp", "pp", "ep", "replicas", "disaggregate", "techniques", "scenario", "ttft_p90_s",
             "tpot_p90_s", "throughput_tokens_per_s", "usd_per_hour", "usd_per_million_tokens", "joules_per_token",
             "verified"}


def test_json_contract(capsys):
    assert main([*ARGS, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"plans", "pareto", "searched_configs", "search_time_s"} <= out.keys()
    assert out["plans"] and PLAN_KEYS <= out["plans"][0].keys()
    costs = [p["usd_per_hour"] for p in out["plans"]]
    assert costs == sorted(costs)
    assert main(["predict", "--json", *[]]) == 0  # sanity: predict still runs
    capsys.readouterr()


def test_scenario_runs_through_predict(capsys, tmp_path):
    assert main([*ARGS, "--json"]) == 0
    scenario = json.loads(capsys.readouterr().out)["plans"][0]["scenario"]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(scenario))
    assert main(["predict", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu"] == scenario["hardware"]["gpu"]


def test_table_and_engine_commands(capsys):
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert "searched" in out and "cheapest:" in out and "vllm serve meta-llama/Llama-3.1-8B" in out
    assert "python -m sglang.launch_server" in out


def test_errors_are_one_line_exit_2(capsys):
    assert main([*ARGS[:-2], "--verify", "0", "--prompt-len", "lognormal:x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("roofsim: error: plan.prompt_len") and "\n" not in err
    assert main([*ARGS[:-2], "--verify", "0", "--output-len", "0"]) == 2
    assert "--output-len" in capsys.readouterr().err
    assert main(["plan", "--rate", "-2"]) == 2
    assert "rate" in capsys.readouterr().err


def test_cheapest_plan_served_by_roofsim_serve_meets_the_slo(capsys, tmp_path):
    """The plan's scenario runs through `roofsim serve` as is, with the plan's engine settings, and the
    simulation meets both SLOs at the planned rate."""
    from simulator.planning.verify import des_available

    if not des_available():
        return
    assert main([*ARGS[:-2], "--verify", "2", "--num-requests", "600", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["cheapest"]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(best["scenario"]))
    cfg = best["serve_config"]
    assert main(["serve", str(path), "--rate", "4", "--num-requests", "600", "--prompt-len", "1024", "--output-len",
                 "128", "--max-batch", str(cfg["max_num_seqs"]), "--max-batched-tokens",
                 str(cfg["max_num_batched_tokens"]), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ttft_s"]["p90"] <= 1.0 and out["tpot_s"]["p90"] <= 0.05 and out["rejected"] == 0


def test_split_plans_name_each_pool_with_its_gpus():
    """A prefill/decode split on two GPU types reads as its two pools, not as one GPU type."""
    from types import SimpleNamespace

    from roofsim.cli.plan import _gpus

    hetero = SimpleNamespace(num_gpus=8, gpu="h100-sxm", tp=4, pp=1, disaggregate="1P1D", decode_gpu="a100-80gb-sxm")
    assert _gpus(hetero) == "4x h100-sxm + 4x a100-80gb-sxm"
    two_prefill = SimpleNamespace(num_gpus=8, gpu="h100-sxm", tp=2, pp=1, disaggregate="2P1D", decode_gpu=None)
    assert _gpus(two_prefill) == "4x h100-sxm + 4x h100-sxm"
    colocated = SimpleNamespace(num_gpus=4, gpu="h200-sxm", tp=4, pp=1, disaggregate=None, decode_gpu=None)
    assert _gpus(colocated) == "4x h200-sxm"
