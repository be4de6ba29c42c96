"""``roofsim calibrate --from-measurements`` on a CPU, its errors, and ``--calibration STACK.json`` in predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "validation" / "results" / "stacks" / "torch-unfused-graph.csv"


def _roofsim(*args):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "roofsim.cli.main", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)


def test_fit_from_measurements_then_predict_with_it(tmp_path):
    rows = CSV.read_text().splitlines()
    small = tmp_path / "m.csv"
    small.write_text("\n".join([rows[0]] + [r for r in rows[1:] if r.startswith(("llama-3.2-1b", "qwen2.5-7b"))]))
    out = tmp_path / "stack.json"
    res = _roofsim("calibrate", "--from-measurements", str(small), "--structure", "torch-unfused", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "model held out" in res.stdout and out.exists()
    stack = json.loads(out.read_text())
    assert stack["stack_schema_version"] == 1 and stack["fixed"]["execution"] == "graph"
    pred = _roofsim("predict", "--json", "--calibration", str(out), "--gpu", "h100-sxm", "--phase", "decode")
    assert pred.returncode == 0, pred.stderr
    data = json.loads(pred.stdout)
    assert data["calibration"] == "h100-sxm+stack" and len(data["latency_band_s"]) == 2
    assert "fitted on h200-sxm" in data["band_basis"]


def test_a_malformed_csv_is_one_line_with_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,gpu,phase,batch,context_len,latency_s\nllama-3.2-1b,h200-sxm,decode,8,1024,fast\n")
    res = _roofsim("calibrate", "--from-measurements", str(bad), "--out", str(tmp_path / "s.json"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "row 1 column latency_s" in res.stderr


def test_gpu_stack_commands_need_a_gpu():
    res = _roofsim("calibrate", "--stack", "hf", "--model", "llama-3.2-1b")
    assert res.returncode == 2 and "needs a CUDA GPU" in res.stderr


def test_a_fitted_stack_evaluates_other_rows_without_a_fit(tmp_path):
    """``--evaluate``: the rows predicted by a stack fitted elsewhere (here on the other models' rows)."""
    rows = CSV.read_text().splitlines()
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("\n".join([rows[0]] + [r for r in rows[1:] if r.startswith(("llama-3.2-1b", "qwen2.5-7b"))]))
    test.write_text("\n".join([rows[0]] + [r for r in rows[1:] if r.startswith("llama-3.2-3b")]))
    out = tmp_path / "stack.json"
    assert _roofsim("calibrate", "--from-measurements", str(train), "--structure", "torch-unfused",
                    "--out", str(out)).returncode == 0
    res = _roofsim("calibrate", "--from-measurements", str(test), "--evaluate", str(out), "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert len(report["rows"]) == 11 and {s["phase"] for s in report["errors"]} == {"prefill", "decode"}
    assert all(abs(r["error"]) < 0.25 for r in report["rows"])
