"""The Calibration page's stack section: a pasted measurement CSV is fitted and its residuals shown; a pasted
stack profile is shown; bad input is one line; the Home page shows the prediction's band."""

from __future__ import annotations

import json
from pathlib import Path

from apphelpers import run, shown

from app.fmt import seconds
from simulator.api import predict
from simulator.stacks import StackProfile
from simulator.stacks.measurements import parse_measurements

CSV = Path(__file__).resolve().parents[2] / "validation" / "results" / "stacks" / "torch-unfused-graph.csv"


def _small_csv() -> str:
    lines = CSV.read_text().splitlines()
    return "\n".join([lines[0]] + [ln for ln in lines[1:] if ln.startswith(("llama-3.2-1b", "llama-2-7b"))]) + "\n"


def test_a_pasted_csv_is_fitted_with_its_residuals():
    at = run("calibration")
    at.selectbox(key="cal.stack.structure").set_value("torch-unfused").run()
    at.text_area(key="cal.stack.text").input(_small_csv()).run()
    assert not at.exception
    residuals = next(d.value for d in at.dataframe if "held_out_error" in d.value.columns)
    rows = parse_measurements(_small_csv())
    assert list(residuals["measured_s"]) == [r.latency_s for r in rows]
    assert (residuals["held_out_error"].abs() < 0.5).all()
    labels = [m.label for m in at.metric]
    assert "Median error, model held out" in labels


def test_a_pasted_stack_profile_is_shown_and_bad_input_is_one_line():
    at = run("calibration")
    at.text_area(key="cal.stack.text").input(json.dumps(StackProfile(name="mine").model_dump(mode="json"))).run()
    assert not at.exception and any("mine" in m.value for m in at.markdown)
    at.text_area(key="cal.stack.text").input("model,gpu,phase,batch,latency_s\nx,h200-sxm,decode,1,\n").run()
    assert not at.exception and len(at.error) == 1 and "row 1 column" in at.error[0].value


def test_home_shows_the_band():
    at = run("home")
    p = predict()
    assert shown(at)["Step latency"] == seconds(p.latency_s)
    band = next(c.value for c in at.caption if c.value.startswith("10-90% band"))
    assert seconds(p.latency_band_s[0]) in band and seconds(p.latency_band_s[1]) in band
