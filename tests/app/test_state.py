"""The scenario's URL form round-trips, and its exports are files `roofsim predict` reads back."""

from __future__ import annotations

import json

import pytest

from apphelpers import HF_CONFIGS
from app import state
from simulator import Scenario, predict
from roofsim.cli.main import main as roofsim


def rich_scenario() -> dict:
    config = json.loads((HF_CONFIGS / "qwen3-30b-a3b.json").read_text())
    return Scenario.from_dict({
        "model": config, "hardware": {"gpu": "h200-sxm", "num_gpus": 4}, "parallelism": {"tp": 4},
        "precision": {"weights": "fp8", "kv_cache": "fp8"}, "calibration": "peak",
        "workload": {"phase": "generate", "batch_size": 12, "prompt_len": 3000, "output_len": 500},
        "memory_utilization": 0.85, "overlap": "overlapped",
    }).model_dump(mode="json")


def test_defaults_have_no_parameters():
    assert state.to_params(state.DEFAULT) == {}


def test_url_round_trip():
    sc = rich_scenario()
    params = state.to_params(sc)
    assert params["model"].startswith("z:")  # a whole config.json travels compressed
    assert params["workload.batch_size"] == "12"
    back, problems = state.from_params(params)
    assert problems == []
    assert back == sc


def test_bad_parameters_are_dropped_with_their_message():
    back, problems = state.from_params({"workload.batch_size": "zero", "hardware.gpu": "b200", "model": "z:!!"})
    assert back["hardware"]["gpu"] == "b200"
    assert back["workload"]["batch_size"] == state.DEFAULT["workload"]["batch_size"]
    assert len(problems) == 2 and problems[0].startswith("workload.batch_size")


@pytest.mark.parametrize("form", ["json", "yaml"])
def test_exports_run_with_roofsim_predict(tmp_path, capsys, form):
    sc = rich_scenario()
    text = state.exports(sc)[0 if form == "json" else 1]
    path = tmp_path / f"scenario.{form}"
    path.write_text(text)
    assert roofsim(["predict", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(predict(sc).contract()))
