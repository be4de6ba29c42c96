"""The roofsim command: the JSON contract, human tables, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from simulator import predict
from roofsim.cli.main import main

CONTRACT_COMMON = {"memory", "max_concurrency", "bound", "breakdown"}
MEMORY_KEYS = {"weights_bytes", "kv_cache_bytes", "activation_bytes", "total_bytes", "capacity_bytes", "fits"}
BREAKDOWN_KEYS = {"name", "flops", "bytes", "time_s", "bound"}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_done_when_command_prints_the_contract():
    """The issue's acceptance command, through a real subprocess (`python -m roofsim`)."""
    argv = ["predict", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--phase", "decode", "--batch", "32",
            "--context", "4096", "--json"]
    proc = subprocess.run([sys.executable, "-m", "roofsim", *argv], capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    assert data["phase"] == "decode"
    assert {"latency_s", "tokens_per_s"} | CONTRACT_COMMON <= set(data)
    assert MEMORY_KEYS <= set(data["memory"])
    assert all(BREAKDOWN_KEYS <= set(op) for op in data["breakdown"])
    expected = predict(**{"workload.batch_size": 32, "workload.context_len": 4096})
    assert data["latency_s"] == pytest.approx(expected.latency_s)
    assert data["tokens_per_s"] == pytest.approx(32 / data["latency_s"])


@pytest.mark.parametrize("phase,keys", [
    ("prefill", {"latency_s", "tokens_per_s"}),
    ("decode", {"latency_s", "tokens_per_s"}),
    ("generate", {"ttft_s", "tpot_s", "e2e_s"}),
])
def test_contract_per_phase(capsys, phase, keys):
    code, out, _ = run(capsys, "predict", "--phase", phase, "--json")
    data = json.loads(out)
    assert code == 0 and data["phase"] == phase
    assert keys | CONTRACT_COMMON <= set(data)


def test_scenario_file_with_flag_overrides(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: mistral-7b\nworkload: {phase: prefill, prompt_len: 2048, batch_size: 2}\n")
    code, out, _ = run(capsys, "predict", str(path), "--batch", "4", "--json")
    data = json.loads(out)
    assert code == 0 and data["model"] == "mistral-7b"
    assert data["tokens_per_s"] == pytest.approx(4 * 2048 / data["latency_s"])


def test_human_table(capsys):
    code, out, _ = run(capsys, "predict", "--batch", "32")
    assert code == 0
    assert "step latency" in out and "attn.qkv_proj" in out and "max concurrency" in out


@pytest.mark.parametrize("argv,field", [
    (["predict", "--gpu", "h100-sx"], "hardware.gpu"),
    (["predict", "--model", "llama-3.1-8"], "model"),
    (["predict", "--num-gpus", "3"], "parallelism.tp"),
    (["predict", "--batch", "0"], "workload.batch_size"),
    (["predict", "/no/such/scenario.yaml"], "scenario"),
    (["predict", "--model", "/no/such/config.json"], "model"),
    (["hardware", "show", "h100"], "hardware.gpu"),
    (["models", "show", "nope"], "model"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, field):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"error: {field}:" in err and "Traceback" not in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--batch", "many"])
    assert exc.value.code == 2


def test_catalog_commands(capsys):
    code, out, _ = run(capsys, "hardware", "list")
    assert code == 0 and "h100-sxm" in out and "mi300x" in out
    code, out, _ = run(capsys, "hardware", "show", "a100-80gb-sxm")
    assert code == 0 and "hbm_bandwidth_bytes_per_s: 2039000000000.0" in out and "https://" in out
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "deepseek-v3" in out
    code, out, _ = run(capsys, "models", "show", "yi-34b")
    assert code == 0 and "total_params: 34388917248" in out


def test_concurrency_and_long_context_tables(capsys):
    code, out, _ = run(capsys, "concurrency", "--model", "yi-34b", "--gpu", "a100-80gb-sxm", "--calibration", "peak",
                       "--memory-utilization", "1.0", "--contexts", "4096,50000")
    assert code == 0 and "50,000" in out and "context switch" in out
    code, out, _ = run(capsys, "long-context")
    assert code == 0 and "paper 50K" in out and "9.83" in out


def test_demo(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0 and "llama-3.1-70b" in out
