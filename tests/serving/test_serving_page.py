"""The explorer's Serve page (Streamlit AppTest): it shows what ``simulator.serve`` returns."""

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.fmt import seconds
from simulator import serve

PAGE = Path(os.path.abspath(__file__)).parents[2] / "app" / "pages" / "5_Serve.py"
SMALL = {"sv.n": "400", "sv.rates": "4, 40", "sv.rate": "6"}


def run(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


@pytest.fixture(scope="module")
def page():
    return run(SMALL)


def test_headline_is_the_apis_result(page):
    assert not page.exception, [e.value for e in page.exception]
    assert not page.error, [e.value for e in page.error]
    res = serve({}, {"rate": 6.0, "num_requests": 400, "prompt_len": "1024", "output_len": "256", "seed": 0},
                {"max_num_seqs": 256, "max_num_batched_tokens": 2048, "chunked_prefill": True, "slo_ttft_s": 0.5,
                 "slo_tpot_s": 0.05})
    shown = {m.label: m.value for m in page.metric}
    assert shown["TTFT p50 · p99"] == f"{seconds(res.ttft_s.p50)} · {seconds(res.ttft_s.p99)}"
    assert shown["TPOT p50 · p99"] == f"{seconds(res.tpot_s.p50)} · {seconds(res.tpot_s.p99)}"


def test_load_curve_marks_saturation(page):
    table = page.dataframe[0].value
    assert table["rate"].tolist() == [4.0, 40.0]
    assert table["saturated"].tolist() == [False, True]
    assert any("first at 40" in c.value for c in page.caption)


def test_settings_live_in_the_url(page):
    assert page.query_params["sv.rates"] == ["4, 40"] or page.query_params["sv.rates"] == "4, 40"
    again = run({**SMALL, "sv.output": "64"})
    assert again.text_input(key="w.sv.output").value == "64"


def test_disaggregation_needs_two_replicas_and_says_so(page):
    # one GPU: the disaggregated column explains in one line why it cannot run
    assert any("serve.disaggregate" in i.value for i in page.info)
    two = run({**SMALL, "hardware.num_gpus": "2", "parallelism.tp": "1"})
    assert not two.exception and not two.error
    labels = [m.label for m in two.metric]
    assert labels.count("TPOT p99") == 2 and "KV transfer mean" in labels


def test_bad_rates_are_one_line():
    at = run({**SMALL, "sv.rates": "fast"})
    assert [e.value for e in at.error] == ["serve.rates: expected numbers, got 'fast'"]
