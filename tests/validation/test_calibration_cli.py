"""``roofsim calibrate`` / ``roofsim validate`` on a machine without a GPU, their GPU-free modes, and the
rule that only ``validation`` imports torch or triton."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "validation" / "results"


def _roofsim(*args, env_extra=None):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env_extra or {})}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-m", "roofsim.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.mark.parametrize("command", [["calibrate"], ["calibrate", "--quick", "--out", "x.json"], ["validate"],
                                     ["validate", "--profile", "h100-sxm"]])
def test_without_a_gpu_exit_2_with_one_line(command):
    res = _roofsim(*command)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "needs a CUDA GPU" in lines[0]
    assert res.stdout == ""


def test_without_torch_exit_2_with_one_line(tmp_path):
    # a shadowing package that fails on import stands for a machine without torch
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no torch here')\n")
    path = os.pathsep.join(p for p in (str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    res = _roofsim("calibrate", env_extra={"PYTHONPATH": path})
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "torch is not installed" in res.stderr


def test_refit_needs_no_gpu(tmp_path):
    out = tmp_path / "h100.json"
    res = _roofsim("calibrate", "--refit", "hwmodels/profiles/h100-sxm.json", "--out", str(out))
    assert res.returncode == 0, res.stderr
    from hwmodels import load_profile

    prof = load_profile(str(out), gpu="h100-sxm")
    shipped = load_profile("h100-sxm")
    for kind in ("gemm", "memory", "attention_prefill", "attention_decode"):
        assert prof.kinds[kind].compute.log10_size == shipped.kinds[kind].compute.log10_size
        assert prof.kinds[kind].overhead_s == pytest.approx(shipped.kinds[kind].overhead_s, rel=0.02)


@pytest.mark.parametrize("gpu", ["h100-sxm", "h200-sxm"])
def test_shipped_measurements_still_validate(tmp_path, gpu):
    """Predict again, with this code and the shipped profile, the steps measured on the GPU: the dense
    models (GQA and MHA) stay within the issue's targets. On the H100, whose profile has a measured
    grouped-GEMM kind and whose decoder ran the fused MoE routing kernels, MoE is held to what was
    measured (prefill 6.9% / 13.3%, decode 5.4% / 9.8% median / p90; docs/validation.md), still
    optimistic, and the experts are priced closely. The H200's MoE cases were measured with the
    earlier unfused routing and are not held to a bound."""
    res = _roofsim("validate", "--from", str(RESULTS / f"{gpu}.validation.json"), "--profile", gpu,
                   "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    result = json.loads((tmp_path / "validation.json").read_text())
    s = result["e2e_summary"]["calibrated"]
    for phase in ("prefill", "decode"):
        assert s[f"dense {phase}"]["median"] <= 0.10 and s[f"dense {phase}"]["p90"] <= 0.20, (phase, s)
        # calibrated beats the uncalibrated default on the dense models
        assert s[f"dense {phase}"]["median"] <= result["e2e_summary"]["default"][f"dense {phase}"]["median"]
    assert result["kernels"]["summary"]["all"]["calibrated"]["median"] <= 0.05
    if gpu == "h100-sxm":
        assert result["kernels"]["summary"]["grouped_gemm"]["calibrated"]["median"] <= 0.05
        for phase, median, p90 in (("prefill", 0.08, 0.15), ("decode", 0.07, 0.12)):
            moe = s[f"olmoe-1b-7b {phase}"]
            assert moe["median"] <= median and moe["p90"] <= p90 and moe["bias"] < 0, (phase, moe)  # still optimistic
            assert moe["median"] < result["e2e_summary"]["default"][f"olmoe-1b-7b {phase}"]["median"]
        pieces = result["moe_breakdown"]
        assert [r["tokens"] for r in pieces] == [1, 8, 32, 128, 512, 4096]
        from validation.validate import MOE_PIECES

        for r in pieces:
            assert list(r["measured_s"]) == list(MOE_PIECES)  # one piece per operator of the step
            experts = "experts (2 grouped GEMMs + SwiGLU)"
            assert r["predicted_by_piece_s"][experts] == pytest.approx(r["measured_s"][experts], rel=0.15), r["tokens"]
    md = (tmp_path / "validation.md").read_text()
    assert "| calibrated | prefill |" in md and "| default | decode |" in md
    assert (tmp_path / "validation.html").read_text().startswith("<html>")


_IMPORT = re.compile(r"^\s*(import|from)\s+(torch|triton)\b", re.MULTILINE)


def test_only_validation_imports_torch_or_triton():
    offenders = []
    for package in ("simulator", "costmodels", "hwmodels", "app"):
        for path in (ROOT / package).rglob("*.py"):
            if _IMPORT.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_cli_modules_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['triton'] = None\n"
            "import roofsim.cli.main as m, roofsim.cli.calibrate, roofsim.cli.validate\n"
            "import validation.env, validation.fit, validation.sweeps\n"
            "names = [c.__name__.rsplit('.', 1)[1] for c in m.COMMANDS]\n"
            "assert 'calibrate' in names and 'validate' in names, names\n"
            "assert validation.env.gpu_unavailable_reason().startswith('torch is not installed')\n"
            "print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_device_names_map_to_the_catalog():
    from hwmodels import list_accelerators
    from validation.env import catalog_name

    assert catalog_name("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert catalog_name("NVIDIA H100 PCIe") == "h100-pcie"
    assert catalog_name("NVIDIA H100 NVL") == "h100-nvl"
    assert catalog_name("NVIDIA H200") == "h200-sxm"
    assert catalog_name("NVIDIA A100-SXM4-80GB") == "a100-80gb-sxm"
    assert catalog_name("Some Other GPU") is None
    from validation.env import _DEVICE_NAMES

    assert {name for _, name in _DEVICE_NAMES} <= set(list_accelerators())
