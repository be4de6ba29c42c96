"""``roofsim train`` and ``roofsim plan-train``: the JSON contract, readable reports, one-line errors."""

import json

import pytest

from roofsim.cli.main import main
from simulator.training.api import train

CONTRACT = {"step_time_s", "tokens_per_s", "mfu", "hfu", "model_flops_per_step", "hardware_flops_per_step", "memory",
            "breakdown", "time_to_train_s"}
MEMORY = {"weights_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes", "total_bytes", "capacity_bytes",
          "fits"}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_json_contract(capsys):
    code, out, _ = run(capsys, "train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "8", "--zero", "1",
                       "--seq-len", "4096", "--global-batch", "64", "--tokens", "1e10", "--json")
    data = json.loads(out)
    assert code == 0 and CONTRACT <= set(data) and MEMORY <= set(data["memory"])
    expected = train(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=8, zero=1, seq_len=4096, global_batch=64, tokens=1e10)
    assert data["step_time_s"] == pytest.approx(expected.step_time_s)
    assert data["tokens_per_s"] == pytest.approx(64 * 4096 / data["step_time_s"])
    assert data["time_to_train_s"] == pytest.approx(1e10 / data["tokens_per_s"])


def test_train_report_and_scenario_file(capsys, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("model: llama-3.2-1b\ngpu: h200-sxm\nseq_len: 2048\nrecompute: full\n")
    code, out, _ = run(capsys, "train", str(path), "--micro-batch", "4", "--tokens", "1e9", "--usd-per-gpu-hour", "3")
    assert code == 0 and "llama-3.2-1b" in out and "recompute full" in out and "time to train" in out and "$" in out
    assert "optimizer" in out and "compute" in out


def test_plan_train_reports_the_winner_and_its_bound(capsys):
    code, out, _ = run(capsys, "plan-train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "16",
                       "--global-batch", "64", "--seq-len", "4096")
    assert code == 0 and "layouts evaluated" in out and "of the step" in out
    code, out, _ = run(capsys, "plan-train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "16",
                       "--global-batch", "64", "--seq-len", "4096", "--json")
    data = json.loads(out)
    best = data["best"]
    assert best["memory_bytes"] <= best["capacity_bytes"]
    assert all(best["step_time_s"] <= r["step_time_s"] for r in data["top"])


@pytest.mark.parametrize("argv,field", [
    (["train", "--gpu", "h100-sx"], "gpu"),
    (["train", "--model", "nope"], "model"),
    (["train", "--num-gpus", "6", "--tp", "4"], "num_gpus"),
    (["train", "--micro-batch", "0"], "micro_batch"),
    (["train", "--precision", "fp8", "--gpu", "a100-80gb-sxm"], "precision"),
    (["train", "--offload", "nvme"], "nvme_bandwidth_bytes_per_s"),
    (["plan-train", "--num-gpus", "3", "--global-batch", "5", "--seq-len", "4097"], "num_gpus"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, field):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"error: {field}:" in err and "Traceback" not in err
