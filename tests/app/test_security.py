"""The explorer is a web server: a visitor's URL never makes it open a file, uploads are capped, and
every file the CLI opens is read with a bound (devices, FIFOs, huge and binary files are refused)."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apphelpers import HF_CONFIGS, ROOT, assert_clean, page, shown
from app import state
from hwmodels.profile import PROFILE_DIR

FORBIDDEN_SYSTEM = ("/dev/zero", "/etc/hostname", "/etc/passwd")


@pytest.fixture
def bait(tmp_path):
    """Readable files a URL might name (each valid, so code that opened them would succeed), and a
    recorder that fails the test when anything opens one of them or a system file."""
    files = {
        "model": tmp_path / "config.json",
        "calibration": tmp_path / "profile.json",
        "gpu": tmp_path / "gpu.yaml",
        "draft": tmp_path / "draft.json",
    }
    shutil.copy(HF_CONFIGS / "llama-3.1-8b.json", files["model"])
    shutil.copy(PROFILE_DIR / "default.json", files["calibration"])
    shutil.copy(ROOT / "hwmodels" / "data" / "accelerators" / "h100-sxm.yaml", files["gpu"])
    shutil.copy(HF_CONFIGS / "llama-3.1-8b.json", files["draft"])
    return files


@pytest.fixture
def opened(bait, monkeypatch):
    """Paths from ``bait`` or the system files that something tried to open (or stat) while the page ran."""
    forbidden = {str(p) for p in bait.values()} | set(FORBIDDEN_SYSTEM)
    hits: list[str] = []

    def check(path):
        try:
            name = os.fsdecode(path) if not isinstance(path, int) else ""
        except TypeError:
            return
        if name in forbidden:
            hits.append(name)
            raise PermissionError(f"test: the explorer must not open {name}")

    def wrap(fn):
        def inner(path, *args, **kwargs):
            check(path)
            return fn(path, *args, **kwargs)
        return inner

    def wrap_method(fn):
        def inner(self, *args, **kwargs):
            check(str(self))
            return fn(self, *args, **kwargs)
        return inner

    monkeypatch.setattr(builtins, "open", wrap(builtins.open))
    monkeypatch.setattr(io, "open", wrap(io.open))
    monkeypatch.setattr(os, "open", wrap(os.open))
    monkeypatch.setattr(os, "stat", wrap(os.stat))
    for method in ("read_text", "read_bytes", "open", "exists", "is_dir", "is_file"):
        monkeypatch.setattr(Path, method, wrap_method(getattr(Path, method)))
    return hits


def url_attacks(bait) -> list[dict[str, str]]:
    draft = [{"name": "speculative", "method": "draft", "draft_model": str(bait["draft"])}]
    return [
        {"model": str(bait["model"])},
        {"model": str(bait["model"].parent)},  # a folder: the API would read its config.json
        {"model": "/dev/zero"},
        {"model": "/etc/hostname"},
        {"calibration": str(bait["calibration"])},
        {"calibration": "/etc/passwd"},
        {"hardware.gpu": str(bait["gpu"])},
        {"techniques": json.dumps(draft)},
    ]


@pytest.mark.parametrize("index", range(8))
def test_a_url_path_parameter_never_opens_a_file(bait, opened, index):
    params = url_attacks(bait)[index]
    at = page("home", params).run()
    assert opened == []
    assert not at.exception, [e.value for e in at.exception]
    field = next(iter(params))
    notices = [w.value for w in at.warning]
    assert any(n.startswith(f"Ignored a URL parameter: {field}") and "opens no server files" in n
               for n in notices), notices
    assert "Step latency" in shown(at)  # the page keeps working, on the defaults


@pytest.mark.parametrize("name", ["long_context", "sweep", "compare", "calibration"])
def test_no_page_opens_a_url_path(bait, opened, name):
    params = {"model": str(bait["model"]), "calibration": str(bait["calibration"]), "hardware.gpu": "/dev/zero",
              "-": str(bait["calibration"]),  # the Calibration page's own profile setting
              "cmp": json.dumps([{"hardware.gpu": str(bait["gpu"])}, {"calibration": str(bait["calibration"])}]),
              "sw.x": "gpu", "sw.xv": f"h100-sxm, {bait['gpu']}"}
    at = page(name, params).run()
    assert opened == []
    assert not at.exception, [e.value for e in at.exception]
    assert any("opens no server files" in w.value for w in at.warning)


def test_a_pasted_scenario_naming_a_file_is_refused(bait, opened):
    at = page("home").run()
    at.text_area(key="load.text").set_value(f"model: {bait['model']}\n").run()
    at.button(key="load.go").click().run()
    assert opened == []
    assert any("opens no server files" in e.value for e in at.error)
    assert state.get(at.session_state["scenario"], "model") == state.DEFAULT["model"]


def test_an_oversized_upload_is_refused():
    at = page("home").run()
    at.radio(key="w.model_source").set_value("config.json").run()
    big = b'{"model_type": "llama", "pad": "' + b"x" * state.MAX_UPLOAD_BYTES + b'"}'
    at.file_uploader(key="w.model_config.upload").upload("config.json", big, "application/json").run()
    assert not at.exception
    assert any("over the 4 MiB upload limit" in e.value for e in at.error), [e.value for e in at.error]
    assert at.text_area(key="w.model_config.text").value == ""  # nothing of it was taken


def test_a_binary_upload_is_one_line():
    at = page("home").run()
    at.radio(key="w.model_source").set_value("config.json").run()
    at.file_uploader(key="w.model_config.upload").upload("config.json", b"\xff\xd8\xff\xe0 JFIF", "image/jpeg").run()
    assert not at.exception
    assert any("is not UTF-8 text" in e.value for e in at.error)


def test_the_server_caps_uploads_at_the_apps_limit():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == state.MAX_UPLOAD_BYTES <= 16 * 2**20
    assert config["server"]["address"] == "127.0.0.1"


def test_a_catalog_name_still_works(opened):
    at = page("home", {"model": "qwen3-32b", "calibration": "peak", "hardware.gpu": "h200-sxm"}).run()
    assert_clean(at)
    assert not at.warning or all("URL" not in w.value for w in at.warning)


# --- make run listens on localhost unless told otherwise -----------------------------------------

def _make_run(*overrides: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "-B", "run", *overrides], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def test_make_run_serves_localhost_by_default():
    assert re.search(r"--server\.address 127\.0\.0\.1\b", _make_run())
    opened_up = _make_run("HOST=0.0.0.0", "PORT=9000")
    assert "--server.address 0.0.0.0" in opened_up and "--server.port 9000" in opened_up
    readme = (ROOT / "README.md").read_text()
    assert "HOST=0.0.0.0" in readme and "127.0.0.1" in readme


# --- the CLI reads every file with a bound ------------------------------------------------------

def roofsim(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter; a hang fails the test at ``timeout``."""
    return subprocess.run([sys.executable, "-m", "roofsim", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_dev_zero_as_model_exits_2_at_once():
    done = roofsim("predict", "--model", "/dev/zero", timeout=10.0)
    assert done.returncode == 2
    assert done.stderr.strip() == "roofsim: error: model: '/dev/zero' is not a regular file (a device, FIFO or socket)"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    for args in (["--model", str(fifo)], ["--calibration", str(fifo)], [str(fifo)]):
        done = roofsim("predict", *args, timeout=10.0)
        assert done.returncode == 2, done.stderr
        assert "is not a regular file" in done.stderr and len(done.stderr.strip().splitlines()) == 1
