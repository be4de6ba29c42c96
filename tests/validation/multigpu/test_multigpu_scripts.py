"""Every multi-GPU validation script runs end to end on 2 local gloo processes (CPU, toy shapes), its
sharded computation equals the unsharded one, and its results file is what the re-prediction reads.

One spawn runs all five scripts (``validation.multigpu.runner.spawn``), with the decoder's Triton
kernels replaced by their torch references (``cpu_kernels``: the kernels have their own tests).
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from validation.multigpu import SCRIPTS  # noqa: E402
from validation.multigpu.runner import spawn  # noqa: E402

pytestmark = pytest.mark.multigpu


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("multigpu")
    spawn(2, list(SCRIPTS), str(out), {"torch_kernels": True}, tiny=True)
    return out


def _doc(results, name):
    return json.loads((results / f"{name}.json").read_text())


@pytest.mark.parametrize("name", SCRIPTS)
def test_results_file_records_the_run(results, name):
    doc = _doc(results, name)
    assert doc["script"] == name and doc["schema"] == 1 and doc["tiny"] is True
    env = doc["environment"]
    assert env["world"] == 2 and env["backend"] == "gloo" and env["torch"] == torch.__version__
    assert "topology" in env  # nvidia-smi topo -m on a GPU host; None on a CPU
    assert env["multicast"] == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                                "NVSHMEM_DISABLE_NVLS": "1"}
    assert "validation.multigpu" in doc["command"] or "pytest" in doc["command"]
    assert doc["gpu"] == "h200-sxm"
    assert doc["cases"], "no cases measured"
    for case in doc["cases"]:
        assert case["time_s"] > 0 and case["p90_s"] >= case["time_s"] * (1 - 1e-9)


def test_collectives_match_their_definitions(results):
    doc = _doc(results, "collectives")
    assert doc["checks"] == {"2": {c: 0.0 for c in doc["collectives"]}}
    kinds = {(c["collective"], c["message_bytes"]) for c in doc["cases"]}
    assert kinds == {(c, s) for c in doc["collectives"] for s in (4096, 65536)}


def test_tensor_parallel_logits_equal_the_whole_model(results):
    assert _doc(results, "tp")["checks"]["2"] < 1e-5  # float32: only the summation order differs


def test_pipeline_logits_equal_the_whole_model(results):
    doc = _doc(results, "pp")
    assert doc["checks"]["2"] < 1e-5
    assert {c["parallelism"]["microbatches"] for c in doc["cases"]} == {2}


def test_expert_parallel_stack_equals_all_experts_on_one_rank(results):
    doc = _doc(results, "ep")
    assert doc["checks"]["2"] < 1e-5
    assert all(c["parallelism"]["ep"] == 2 and c["experts"] == 8 for c in doc["cases"])


def test_ddp_and_fsdp_step_equals_one_process_over_the_global_batch(results):
    checks = _doc(results, "dp")["checks"]["2"]
    assert checks["ddp"] < 1e-5 and checks["fsdp"] < 1e-5
    assert {c["kind"] for c in _doc(results, "dp")["cases"]} == {"ddp", "fsdp"}


def test_results_re_predict(results):
    from simulator.scenario import ParallelismConfig
    from validation.multigpu.repredict import markdown, repredict_dir

    report = repredict_dir(results)
    assert set(report) == set(SCRIPTS)
    for r in report["collectives"]["cases"]:
        assert r["predicted_s"] > 0 and r["error"] == pytest.approx(r["predicted_s"] / r["time_s"] - 1)
    for name in ("tp", "pp"):
        for r in report[name]["cases"]:
            assert r["calibrated_s"] > 0 and r["default_s"] > 0 and r["peak_s"] > 0
    assert report["pp"]["cases"][0]["unmodelled"] == sorted(
        k for k in ("microbatches", "pp", "tp") if k not in ParallelismConfig.model_fields)
    # EP and DP are predicted as soon as the cost model has them, pending until then
    import simulator

    assert report["ep"]["status"] == ("predicted" if "ep" in ParallelismConfig.model_fields else "pending")
    assert report["dp"]["status"] == ("predicted" if hasattr(simulator, "train") else "pending")
    for name in ("ep", "dp"):
        if report[name]["status"] == "predicted":
            assert all(r["calibrated_s"] > 0 for r in report[name]["cases"])
    text = markdown(report)
    assert "toy decode tp2" in text and ("Not re-predicted" in text) == (report["dp"]["status"] == "pending")


def test_cli_re_predicts_a_results_folder(results, capsys):
    from roofsim.cli.main import main

    assert main(["validate", "--from", str(results)]) == 0
    out = capsys.readouterr().out
    assert "toy decode tp2" in out and "all_reduce x2" in out and "toy-moe ep2" in out
    assert (results / "multigpu.md").read_text() + "\n" == out  # the table it prints is the one it keeps
