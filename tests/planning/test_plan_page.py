"""The Plan page (AppTest): defaults and changed inputs show the planner's numbers; state is in the URL."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.fmt import seconds
from simulator import plan

PAGE = Path(__file__).resolve().parents[2] / "app" / "pages" / "6_Plan.py"
DEFAULT = dict(model="llama-3.1-70b", rate=4.0, prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05,
               percentile=90.0, gpus=["h100-sxm", "h200-sxm", "a100-80gb-sxm"], max_gpus=64, techniques=[],
               disaggregate=True, verify=0)


@pytest.fixture(autouse=True)
def _keep_main():
    """AppTest runs a page as ``__main__`` and leaves it in ``sys.modules``; a later test in this worker
    that spawns processes (torch.multiprocessing) would re-run that page in every child."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


def run(params=None) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=90)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at.run()


def test_defaults_show_the_cheapest_plan():
    at = run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    expected = plan(DEFAULT)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cheapest plan"] == f"${expected.cheapest.usd_per_hour:,.2f}/h"
    assert metrics["Configurations searched"] == f"{expected.searched_configs:,}"
    table = at.dataframe[0].value
    assert list(table["$/hour"]) == [round(p.usd_per_hour, 2) for p in expected.plans]
    assert list(table["TPOT p90"]) == [seconds(p.tpot_p90_s) for p in expected.plans]
    codes = [c.value for c in at.code]
    assert codes[0] == expected.cheapest.vllm_command and codes[1] == expected.cheapest.sglang_command
    assert codes[2] == expected.cheapest.serve_command  # the verification as a `roofsim serve` command
    links = " ".join(m.value for m in at.markdown)
    assert "open on the Scenario page" in links and "/Serve?" in links


def test_changed_inputs_and_url():
    at = run({"pl.model": "llama-3.1-8b", "pl.gpus": '["l40s","h100-sxm"]', "pl.prompt": "1024", "pl.output": "128"})
    assert not at.exception and not at.error
    expected = plan({**DEFAULT, "model": "llama-3.1-8b", "gpus": ["l40s", "h100-sxm"], "prompt_len": 1024,
                     "output_len": 128})
    assert {m.label: m.value for m in at.metric}["Cheapest plan"] == f"${expected.cheapest.usd_per_hour:,.2f}/h"
    at.number_input(key="w.pl.rate").set_value(8.0).run()
    assert at.query_params["pl.rate"] == "8.0"
    again = plan({**DEFAULT, "model": "llama-3.1-8b", "gpus": ["l40s", "h100-sxm"], "prompt_len": 1024,
                  "output_len": 128, "rate": 8.0})
    assert {m.label: m.value for m in at.metric}["Cheapest plan"] == f"${again.cheapest.usd_per_hour:,.2f}/h"


def test_an_impossible_slo_says_so():
    at = run({"pl.tpot": "0.001"})
    assert not at.exception
    assert any("No configuration" in w.value for w in at.warning)
    # and why: the lowest TPOT any layout that keeps up reaches, above the 1 ms asked for
    assert any("the lowest p90 TPOT of a configuration that keeps up is" in w.value for w in at.warning)


def test_serve_link_opens_the_plan_with_its_settings():
    """The Serve link's query, given to the Serve page, runs the plan's scenario at the plan's rate."""
    from urllib.parse import parse_qsl, urlparse

    at = run()
    link = next(m.value for m in at.markdown if "open on the Serve page" in m.value)
    url = link.split("](")[-1].rstrip(")")
    params = dict(parse_qsl(urlparse(url).query))
    expected = plan(DEFAULT).cheapest
    assert params["sv.rate"] == "4.0" and params["sv.seqs"] == str(expected.max_num_seqs)
    assert params.get("hardware.gpu", "h100-sxm") == expected.gpu  # defaults stay out of the URL
    assert params["hardware.num_gpus"] == str(expected.num_gpus)
    serve_page = AppTest.from_file(str(PAGE.parent / "5_Serve.py"), default_timeout=120)
    for k, v in {**params, "sv.n": "100", "sv.rates": "4"}.items():
        serve_page.query_params[k] = v
    serve_page.run()
    assert not serve_page.exception, [e.value for e in serve_page.exception]
    assert not serve_page.error, [e.value for e in serve_page.error]


def test_a_two_node_plan_shows_its_nodes():
    """Llama-3.1-405B in bf16 on H100s: the cheapest replica spans two nodes, and the table says so."""
    at = run({"pl.model": "llama-3.1-405b", "pl.gpus": '["h100-sxm"]', "pl.rate": "1.0", "pl.ttft": "3.0",
              "pl.tpot": "0.1"})
    assert not at.exception and not at.error
    expected = plan({**DEFAULT, "model": "llama-3.1-405b", "gpus": ["h100-sxm"], "rate": 1.0, "slo_ttft_s": 3.0,
                     "slo_tpot_s": 0.1}).cheapest
    assert expected.nodes == 2
    layouts = list(at.dataframe[0].value["layout"])
    assert layouts[0] == f"{expected.replicas}x tp{expected.tp}" + (f" pp{expected.pp}" if expected.pp > 1 else "") \
        + ", 2 nodes each"
