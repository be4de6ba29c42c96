"""The Train page: defaults and URL settings show ``simulator.train``'s numbers; bad layouts one line."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from apphelpers import ROOT, assert_clean, errors, shown
from app.fmt import percent, rate, seconds, size
from simulator import train

PAGE = str(ROOT / "app" / "pages" / "7_Train.py")
DEFAULTS = dict(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=8, tp=1, pp=1, seq_len=4096, micro_batch=1,
                global_batch=64, zero=1, recompute="selective", precision="mixed", optimizer="adamw", offload="none",
                tokens=1e12)


def run(params=None):
    at = AppTest.from_file(PAGE, default_timeout=60)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def expected(r):
    m = r.memory
    return {"Step time": seconds(r.step_time_s), "Throughput": rate(r.tokens_per_s),
            "MFU · HFU": f"{percent(r.mfu)} · {percent(r.hfu)}",
            "Memory / GPU": f"{size(m.total_bytes + m.workspace_bytes)} of {size(m.capacity_bytes)}",
            "Days to train": f"{r.time_to_train_s / 86400:,.1f}"}


def test_train_page_defaults():
    at = run()
    assert_clean(at)
    assert shown(at) == expected(train(**DEFAULTS))
    assert len(at.get("plotly_chart")) == 2


def test_train_page_settings_from_the_url():
    at = run({"tr.model": "llama-3.2-1b", "tr.gpu": "h200-sxm", "tr.tp": "2", "tr.recompute": "full",
              "tr.zero": "3"})
    assert_clean(at)
    r = train(**{**DEFAULTS, "model": "llama-3.2-1b", "gpu": "h200-sxm", "tp": 2, "recompute": "full", "zero": 3})
    assert shown(at) == expected(r)
    assert at.query_params["tr.tp"] == "2"


def test_train_page_bad_layout_is_one_line():
    at = run({"tr.tp": "3"})
    assert not at.exception
    assert len(errors(at)) == 1 and "tp" in errors(at)[0] and "\n" not in errors(at)[0]
