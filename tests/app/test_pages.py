"""Long context, Sweep, Compare and Calibration pages: defaults and changed inputs show the API's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apphelpers import assert_clean, errors, expected_headline, run
from app.calibration_data import comparison_tables, raw_points, validation_results
from app.fmt import delta, percent, rate, seconds, size
from hwmodels import load_profile
from hwmodels.errors import InputError
from simulator import Scenario, predict, sweep
from simulator.long_context import long_context_table


def lc_expected(sc, contexts, decode) -> dict[str, list]:
    t = long_context_table(sc, contexts, decode)
    return {
        "context": [int(c) for c in t["context_len"]],
        "KV/user": [size(v) for v in t["kv_bytes_per_request"]],
        "max users": [int(v) for v in t["max_concurrency"]],
        "prefill (1 user)": [seconds(v) for v in t["prefill_s"]],
        "decode step (1 user)": [seconds(v) for v in t["decode_step_s"]],
        "step @ max users": [seconds(v) for v in t["decode_step_full_batch_s"]],
        "context switch": [seconds(v) for v in t["context_switch_s"]],
        "sessions/s": [f"{v:.3g}" for v in t["session_throughput_per_s"]],
    }


def frame_as_lists(df) -> dict[str, list]:
    return {c: [v.item() if hasattr(v, "item") else v for v in df[c]] for c in df.columns}


# --- Long context ------------------------------------------------------------------------------

def test_long_context_defaults():
    at = run("long_context")
    assert_clean(at)
    contexts = sorted({int(round(1024 * 2 ** (i / 2))) for i in range(21)})
    assert frame_as_lists(at.dataframe[0].value) == lc_expected(Scenario(), contexts, 250)


def test_long_context_changed_inputs_and_url():
    params = {"model": "yi-34b", "hardware.gpu": "a100-80gb-sxm", "calibration": "peak",
              "lc.range": "[4096,65536]", "lc.per_octave": "1", "lc.decode": "100"}
    at = run("long_context", params)
    assert_clean(at)
    sc = Scenario.from_dict({"model": "yi-34b", "hardware": {"gpu": "a100-80gb-sxm"}, "calibration": "peak"})
    assert frame_as_lists(at.dataframe[0].value) == lc_expected(sc, [4096, 8192, 16384, 32768, 65536], 100)
    at.number_input(key="w.lc.decode").set_value(50).run()
    assert frame_as_lists(at.dataframe[0].value) == lc_expected(sc, [4096, 8192, 16384, 32768, 65536], 50)
    assert at.query_params["lc.decode"] == "50"


def test_long_context_with_and_without_techniques(test_technique):
    at = run("long_context", {"techniques": json.dumps([{"name": test_technique}]), "lc.range": "[1024,8192]",
                              "lc.per_octave": "1"})
    assert_clean(at)
    assert len(at.dataframe) == 2  # with, then without
    expected = lc_expected(Scenario(techniques=[{"name": test_technique}]), [1024, 2048, 4096, 8192], 250)
    assert frame_as_lists(at.dataframe[0].value) == expected
    assert frame_as_lists(at.dataframe[1].value) == lc_expected(Scenario(), [1024, 2048, 4096, 8192], 250)


def test_long_context_bad_scenario_is_one_line():
    at = run("long_context", {"hardware.num_gpus": "4", "parallelism.tp": "3"})
    assert not at.exception
    assert len(errors(at)) == 1 and errors(at)[0].startswith("parallelism.tp")


# --- Sweep -------------------------------------------------------------------------------------

def test_sweep_defaults_equal_the_vectorised_sweep():
    at = run("sweep")
    assert_clean(at)
    batches, contexts = [1, 2, 4, 8, 16, 32, 64, 128, 256], [1024, 4096, 16384, 65536, 131072]
    r = sweep(Scenario(), batch_size=batches, context_len=contexts)
    table = at.dataframe[0].value
    assert list(table["latency_s"]) == list(r["latency_s"].ravel())
    assert list(table["fits"]) == list(r["fits"].ravel())
    largest = int(np.asarray(batches)[sweep(Scenario(), batch_size=batches)["fits"].ravel()].max())
    assert f"(your batch values); the largest of these that fits in memory is {largest}" in \
        " ".join(c.value for c in at.caption)


def test_sweep_over_gpu_type_is_one_sweep_axis():
    at = run("sweep", {"workload.batch_size": "8"})
    at.selectbox(key="w.sw.out").set_value("tokens_per_s")
    at.selectbox(key="w.sw.x").set_value("gpu").run()
    at.text_input(key="w.sw.values.gpu").input("h100-sxm, h200-sxm, l40s").run()
    at.selectbox(key="w.sw.y").set_value("batch_size").run()
    at.text_input(key="w.sw.values.batch_size").input("1, 32").run()
    at.radio(key="w.sw.chart").set_value("heatmap").run()
    assert_clean(at)
    table = at.dataframe[0].value
    for gpu in ("h100-sxm", "h200-sxm", "l40s"):
        r = sweep(Scenario(), batch_size=[1, 32]) if gpu == "h100-sxm" else \
            sweep(Scenario().with_overrides(**{"hardware.gpu": gpu}), batch_size=[1, 32])
        assert list(table[table["gpu"] == gpu]["tokens_per_s"]) == list(r["tokens_per_s"])


def test_sweep_settings_come_from_the_url():
    params = {"sw.out": "tokens_per_s", "sw.x": "gpu", "sw.xv": "h200-sxm,l40s", "sw.y": "batch_size",
              "sw.yv": "1,64", "sw.chart": "heatmap"}
    at = run("sweep", params)
    assert_clean(at)
    assert at.selectbox(key="w.sw.x").value == "gpu" and at.radio(key="w.sw.chart").value == "heatmap"
    table = at.dataframe[0].value
    r = sweep(Scenario().with_overrides(**{"hardware.gpu": "l40s"}), batch_size=[1, 64])
    assert list(table[table["gpu"] == "l40s"]["tokens_per_s"]) == list(r["tokens_per_s"])
    assert {k: at.query_params[k] for k in params} == params


def test_sweep_over_tp_and_bad_values():
    at = run("sweep", {"hardware.num_gpus": "8", "model": "llama-3.1-70b"})
    at.selectbox(key="w.sw.x").set_value("tp").run()
    at.selectbox(key="w.sw.y").set_value("(none)").run()
    assert_clean(at)
    sc = Scenario.from_dict({"model": "llama-3.1-70b", "hardware": {"num_gpus": 8}})
    assert list(at.dataframe[0].value["latency_s"]) == list(sweep(sc, tp=[1, 2, 4, 8])["latency_s"])
    at.text_input(key="w.sw.values.tp").input("1, 3").run()
    with pytest.raises(InputError) as exc:
        sweep(sc, tp=[1, 3])
    assert errors(at) == [str(exc.value)]
    at.text_input(key="w.sw.values.tp").input("two").run()
    assert errors(at) == ["sweep.tp: expected whole numbers, got 'two'"]


# --- Compare -----------------------------------------------------------------------------------

def compare_column(p) -> list[str]:
    return [seconds(p.latency_s), rate(p.tokens_per_s), size(p.memory.total_bytes), "yes" if p.memory.fits else "no",
            str(p.max_concurrency), p.bound, percent(p.mfu), percent(p.mbu), f"{p.num_gpus}× {p.gpu}, TP {p.tp}"]


def test_compare_defaults_kv_fp8_beside_a():
    at = run("compare")
    assert_clean(at)
    table = at.dataframe[0].value
    a, b = predict(Scenario()), predict(Scenario(), **{"precision.kv_cache": "fp8"})
    assert list(table["A"]) == compare_column(a)
    assert list(table["B"]) == compare_column(b)
    assert table["Δ B vs A"]["step latency"] == delta(b.latency_s, a.latency_s)


def test_compare_four_scenarios_with_changed_base():
    at = run("compare", {"workload.batch_size": "32"})
    at.radio(key="w.cmp.n").set_value(4).run()
    at.multiselect(key="w.cmp3.fields").set_value(["precision.weights", "workload.batch_size"]).run()
    at.number_input(key="w.cmp3.workload.batch_size").set_value(128).run()
    assert_clean(at)
    table = at.dataframe[0].value
    base = Scenario().with_overrides(**{"workload.batch_size": 32})
    assert list(table["A"]) == compare_column(predict(base))
    assert list(table["C"]) == compare_column(predict(base, **{"hardware.gpu": "h200-sxm"}))
    assert list(table["D"]) == compare_column(predict(base, **{"precision.weights": "fp8", "workload.batch_size": 128}))
    assert "cmp" in at.query_params


def test_compare_variants_come_from_the_url():
    cmp = [{"hardware.gpu": "b200"}, {"workload.batch_size": 8, "precision.kv_cache": "fp8"}]
    at = run("compare", {"cmp": json.dumps(cmp)})
    assert_clean(at)
    assert at.radio(key="w.cmp.n").value == 3
    table = at.dataframe[0].value
    assert list(table["B"]) == compare_column(predict(Scenario(), **{"hardware.gpu": "b200"}))
    assert list(table["C"]) == compare_column(predict(Scenario(), **cmp[1]))


def test_compare_shows_a_bad_variant_in_its_column():
    at = run("compare", {"hardware.num_gpus": "2"})
    at.multiselect(key="w.cmp1.fields").set_value(["parallelism.tp"]).run()
    at.number_input(key="w.cmp1.parallelism.tp").set_value(3).run()
    assert not at.exception
    assert len(errors(at)) == 1 and errors(at)[0].startswith("parallelism.tp")
    assert list(at.dataframe[0].value["B"])[0] == "-"


# --- Calibration -------------------------------------------------------------------------------

def test_calibration_defaults_to_the_scenarios_profile():
    at = run("calibration")
    assert_clean(at)
    profile = load_profile(predict(Scenario()).calibration)
    assert at.metric[0].value == profile.name
    kinds = at.dataframe[0].value if not profile.measurements else next(
        d.value for d in at.dataframe if list(d.value.columns)[:2] == ["kind", "launch overhead"])
    assert list(kinds["kind"]) == list(profile.kinds)
    assert list(kinds["launch overhead"]) == [seconds(k.overhead_s) for k in profile.kinds.values()]
    shipped = validation_results(profile)
    if shipped:  # the validation run shipped for this GPU is shown, row for row
        name, data = shipped
        e2e = [r for title, r in comparison_tables(data) if title == "e2e"]
        shown_tables = {m.value.strip("`"): i for i, m in enumerate(at.markdown) if m.value.startswith("`")}
        assert f"{name}: e2e" in shown_tables
        frames = [d.value for d in at.dataframe if "calibrated (ms)" in d.value.columns]
        assert e2e and list(frames[0]["calibrated (ms)"]) == [f"{r['calibrated_s'] * 1e3:.4g}" for r in e2e[0]]


def test_calibration_builtin_choices():
    at = run("calibration")
    at.selectbox(key="w.cal.profile").set_value("peak").run()
    assert_clean(at)
    assert at.metric[0].value == "peak"
    assert set(at.dataframe[0].value["compute eff. (large)"]) == {"100.0%"}
    at.selectbox(key="w.cal.profile").set_value("default").run()
    assert_clean(at)
    assert "carries no predicted-vs-measured table" in " ".join(c.value for c in at.caption)


def test_calibration_pasted_profile_with_measurements():
    data = load_profile("default").model_dump(mode="json")
    data.update(name="pasted", device=None, measurements={
        "gemm": {"compute": [{"flops": 1e9, "efficiency": 0.4}, [1e12, 0.78]], "memory": {"size": [1e6], "eff": [0.5]}},
        "memory": [{"log10_size": 8, "efficiency": 0.83}],
        "attention_decode": "unparsed note",
        "columns": ["kind", "engine", "flops", "bytes", "time_s"],
        "points": [["gemm", "x", 1e12, 1e8, 2e-3], ["memory", "x", 0.0, 1e9, 5e-4], ["gemm", "x", None, 1, 1], "bad"],
        "datasheet": {"bf16_flops_per_s": 1e15, "hbm_bytes_per_s": 3e12},
        "fit": {"gemm": {"points": 2, "median_abs_err": 0.03}, "memory": {"points": 1, "median_abs_err": 0.05}},
        "validation": {"cases": [{"case": "decode b=1", "predicted_s": 0.0071, "measured_s": 0.0069}]},
    })
    at = run("calibration")
    at.selectbox(key="w.cal.profile").set_value("upload / paste").run()
    at.text_area(key="cal.text").input(json.dumps(data)).run()
    assert_clean(at)
    assert at.metric[0].value == "pasted"
    assert any(c.value.startswith("6 measured points shown") for c in at.caption)
    fit = next(d.value for d in at.dataframe if "median_abs_err (%)" in d.value.columns)
    assert list(fit["median_abs_err (%)"]) == ["3.00", "5.00"]
    cases = next(d.value for d in at.dataframe if "predicted (ms)" in d.value.columns)
    assert list(cases["predicted (ms)"]) == ["7.1"] and list(cases["measured (ms)"]) == ["6.9"]


def test_raw_points_from_launch_rows():
    profile = load_profile({**load_profile("default").model_dump(mode="json"), "measurements": {
        "columns": ["kind", "engine", "flops", "bytes", "time_s"],
        "points": [["gemm", "a", 1e12, 1e8, 2e-3], ["gemm", "b", 1e12, 1e8, 1e-3], ["memory", "a", 0.0, 1e9, 5e-4]],
        "datasheet": {"bf16_flops_per_s": 1e15, "hbm_bytes_per_s": 3e12}},
        "environment": {"engines": {"gemm": "a"}}})
    pts = raw_points(profile)
    assert [(p["kind"], p["resource"]) for p in pts] == [("gemm", "compute"), ("memory", "memory")]
    assert pts[0]["efficiency"] == pytest.approx(1e12 / 2e-3 / 1e15)
    assert pts[1]["efficiency"] == pytest.approx(1e9 / 5e-4 / 3e12)


def test_calibration_bad_profile_is_one_line():
    at = run("calibration")
    at.selectbox(key="w.cal.profile").set_value("upload / paste").run()
    at.text_area(key="cal.text").input(json.dumps({"schema_version": 1, "name": "x", "kinds": {}})).run()
    assert not at.exception
    with pytest.raises(InputError) as exc:
        load_profile({"schema_version": 1, "name": "x", "kinds": {}})
    assert errors(at) == [str(exc.value)]


def test_every_page_shows_the_same_headline_for_the_same_url():
    params = {"hardware.gpu": "h200-sxm", "workload.batch_size": "64"}
    at = run("home", params)
    assert {m.label: m.value for m in at.metric} == expected_headline(
        predict(Scenario(), **{"hardware.gpu": "h200-sxm", "workload.batch_size": 64}))
    for name in ("long_context", "sweep", "compare", "calibration"):
        other = run(name, params)
        assert_clean(other)
        assert other.session_state["scenario"] == at.session_state["scenario"]


def test_scenario_and_page_settings_survive_page_changes():
    at = run("home")
    at.number_input(key="w.workload.batch_size").set_value(64)
    at.selectbox(key="w.hardware.gpu").set_value("h200-sxm").run()
    at.switch_page("pages/2_Sweep.py").run()
    at.selectbox(key="w.sw.x").set_value("context_len").run()
    for target in ("pages/3_Compare.py", "pages/1_Long_context.py", "pages/4_Calibration.py", "Home.py"):
        at.switch_page(target).run()
        assert_clean(at)
        assert at.number_input(key="w.workload.batch_size").value == 64
        assert at.selectbox(key="w.hardware.gpu").value == "h200-sxm"
    assert {m.label: m.value for m in at.metric} == expected_headline(
        predict(Scenario(), **{"workload.batch_size": 64, "hardware.gpu": "h200-sxm"}))
    at.switch_page("pages/2_Sweep.py").run()
    assert at.selectbox(key="w.sw.x").value == "context_len"
