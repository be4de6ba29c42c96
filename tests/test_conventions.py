"""What a user expects of a command-line tool: --version, --help that lists the allowed values,
the node catalog, readable parameter types, reports written where the user runs, a clean install."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwmodels import DTYPES, builtin_profiles, list_nodes
from roofsim.cli.main import build_parser, main
from roofsim.cli.predict import parse_technique
from simulator import predict
from simulator.techniques import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_version(capsys):
    tomllib = pytest.importorskip("tomllib")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"roofsim {version}"


def test_predict_help_lists_the_allowed_values():
    sub = build_parser()._subparsers._group_actions[0].choices["predict"]
    text = " ".join(sub.format_help().split())
    for values in (["prefill", "decode", "generate"], list(DTYPES), ["serial", "overlapped"],
                   ["auto", *builtin_profiles()], list(REGISTRY)):
        assert ", ".join(values) in text, values


def test_hardware_lists_and_shows_nodes(capsys):
    code, out = run(capsys, "hardware", "list")
    assert code == 0 and all(name in out for name in list_nodes())
    assert "8x h100-sxm" in out
    code, out = run(capsys, "hardware", "show", "dgx-h100")
    assert code == 0 and "accelerator: h100-sxm" in out and "accelerators_per_node: 8" in out
    assert run(capsys, "hardware", "show", "h100-sxm")[1].startswith("name: h100-sxm")


@pytest.mark.parametrize("name,row", [("kv_quant", "group_size  int > 0, optional"),
                                      ("kv_quant", "bits           one of 8, 4, 2"),
                                      ("speculative", "alpha                      float in (0, 1)")])
def test_techniques_show_prints_readable_types(capsys, name, row):
    code, out = run(capsys, "techniques", "show", name)
    assert code == 0 and row in out
    assert "Annotated" not in out and "Optional[" not in out and "Literal[" not in out


def test_flash_attention_version_none_from_the_cli(capsys):
    assert parse_technique("flash_attention:version=none") == {"name": "flash_attention", "version": "none"}
    assert parse_technique("kv_quant:group_size=none") == {"name": "kv_quant", "group_size": None}
    code, out = run(capsys, "predict", "--phase", "prefill", "--prompt-len", "8192",
                    "--technique", "flash_attention:version=none", "--json")
    standard = predict(**{"workload.phase": "prefill", "workload.prompt_len": 8192,
                          "techniques": [{"name": "flash_attention", "version": "none"}]})
    assert code == 0 and json.loads(out)["latency_s"] == pytest.approx(standard.latency_s)
    assert standard.latency_s > predict(**{"workload.phase": "prefill", "workload.prompt_len": 8192}).latency_s


def test_validate_from_writes_to_the_current_directory(tmp_path, monkeypatch, capsys):
    shipped = ROOT / "validation" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--from", str(shipped / "h100-sxm.validation.json")]) == 0
    assert sorted(p.name for p in (tmp_path / "validation-out").iterdir()) == \
        ["validation.html", "validation.json", "validation.md"]
    assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == before
    assert main(["validate", "--from", str(shipped / "h100-sxm.validation.json"), "--out", "elsewhere"]) == 0
    assert (tmp_path / "elsewhere" / "validation.json").exists()


def test_the_package_builds_without_deprecation_warnings(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("needs setuptools >= 77 (PEP 639 license strings)")
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and all((ROOT / f).is_file() for f in project["license-files"])
    source = tmp_path / "src"  # a copy: building writes build/ and egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *project["license-files"]):
        shutil.copy(ROOT / name, source / name)
    for package in ("hwmodels", "costmodels", "simulator", "validation", "app", "roofsim"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                           str(source), "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    assert "Deprecat" not in log and "deprecated" not in log, [l for l in log.splitlines() if "eprecat" in l]


def _make_n(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "-B", ".venv/.installed-test", *args], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_make_test_takes_an_extra_package_index():
    """The CPU build of torch comes from PyTorch's own index; the default install uses pip's index only."""
    cpu = "https://download.pytorch.org/whl/cpu"
    install = [line for line in _make_n(f"PIP_EXTRA_INDEX={cpu}").splitlines() if "'.[test]'" in line]
    assert install and install[0].rstrip().endswith(f"--extra-index-url {cpu}")
    default = [line for line in _make_n().splitlines() if "'.[test]'" in line]
    assert default and "index" not in default[0]
    assert f"make test PIP_EXTRA_INDEX={cpu}" in (ROOT / "README.md").read_text()


# --- issue 8 item 12 (the input side): idle GPUs, the demo's profile and fit ---------------------

def test_gpus_left_over_by_tp_times_pp_are_a_warning(capsys):
    p = predict(**{"hardware.num_gpus": 10, "parallelism.tp": 4})
    assert p.replicas == 2
    assert p.warnings == ["hardware.num_gpus: 10 GPUs hold 2 replica(s) of tp x pp = 4; 2 GPU(s) stay idle and are "
                          "not counted in throughput"]
    assert predict(**{"hardware.num_gpus": 8, "parallelism.tp": 4}).warnings == []
    code, out = run(capsys, "predict", "--num-gpus", "10", "--tp", "4")
    assert code == 0 and "warning: hardware.num_gpus: 10 GPUs hold 2 replica(s)" in out


def test_demo_names_each_rows_profile_and_flags_rows_that_do_not_fit(capsys):
    from roofsim.cli.demo import CASES

    code, out = run(capsys, "demo")
    assert code == 0 and "default profile" not in out
    lines = {" ".join(line.split()[:3]): line for line in out.splitlines()[4:4 + len(CASES)]}
    for model, gpu, n, batch, ctx in CASES:
        p = predict(model=model, **{"hardware.gpu": gpu, "hardware.num_gpus": n, "workload.batch_size": batch,
                                    "workload.context_len": ctx})
        line = lines[f"{model} {n}x {gpu}"]
        assert line.rstrip().endswith(p.calibration)
        assert (" NO " in line) == (not p.memory.fits)
    assert any(" NO " in line for line in lines.values())  # the 70B at 32K with batch 64 does not fit
    assert "at most 43 sequences fit" in out
