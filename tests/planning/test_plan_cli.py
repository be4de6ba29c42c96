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
    assert main([*ARGS[:-2], "--verify", "0", "--prompt-len", "lognormal:1,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("roofsim: error: --prompt-len") and "\n" not in err
    assert main(["plan", "--rate", "-2"]) == 2
    assert "rate" in capsys.readouterr().err
