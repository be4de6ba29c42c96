"""The Scenario page shows the API's numbers, for defaults and changed inputs, and bad input as one line."""

from __future__ import annotations

import json

import pytest

from apphelpers import HF_CONFIGS, assert_clean, errors, expected_headline, run, shown
from app import state
from app.widgets import CUSTOM
from hwmodels import get_accelerator
from hwmodels.errors import InputError
from simulator import Scenario, predict


def scenario_of(at) -> dict:
    return at.session_state["scenario"]


def test_defaults_show_the_api_numbers():
    at = run("home")
    assert_clean(at)
    assert shown(at) == expected_headline(predict(Scenario()))
    assert "memory-bound" in at.info[0].value
    assert dict(at.query_params) == {}  # defaults need no URL parameters


def test_changed_inputs_show_the_api_numbers():
    at = run("home")
    at.selectbox(key="w.model").set_value("qwen2.5-7b")
    at.selectbox(key="w.hardware.gpu").set_value("h200-sxm")
    at.number_input(key="w.hardware.num_gpus").set_value(2).run()
    at.selectbox(key="w.parallelism.tp").set_value(2)
    at.selectbox(key="w.precision.kv_cache").set_value("fp8")
    at.number_input(key="w.workload.batch_size").set_value(48)
    at.number_input(key="w.workload.context_len").set_value(16384).run()
    assert_clean(at)
    sc = Scenario.from_dict({"model": "qwen2.5-7b", "hardware": {"gpu": "h200-sxm", "num_gpus": 2},
                             "parallelism": {"tp": 2}, "precision": {"kv_cache": "fp8"},
                             "workload": {"batch_size": 48, "context_len": 16384}})
    assert shown(at) == expected_headline(predict(sc))
    assert scenario_of(at) == sc.model_dump(mode="json")
    params = dict(at.query_params)
    assert params["workload.batch_size"] == "48" and params["hardware.gpu"] == "h200-sxm"


@pytest.mark.parametrize("phase", ["prefill", "generate"])
def test_other_phases(phase):
    at = run("home")
    at.radio(key="w.workload.phase").set_value(phase).run()
    at.number_input(key="w.workload.prompt_len").set_value(2048)
    at.number_input(key="w.workload.batch_size").set_value(4).run()
    assert_clean(at)
    p = predict(Scenario(), **{"workload.phase": phase, "workload.prompt_len": 2048, "workload.batch_size": 4})
    assert shown(at) == expected_headline(p)
    ops = at.dataframe[-1].value
    assert list(ops["operator"]) == [o.name for o in p.breakdown]
    assert list(ops["time_s"]) == [o.time_s for o in p.breakdown]


def test_url_parameters_set_the_scenario():
    params = {"hardware.gpu": "a100-80gb-sxm", "workload.batch_size": "16", "precision.weights": "fp8",
              "sw.x": "ignored-by-this-page"}
    at = run("home", params)
    assert_clean(at)
    assert at.selectbox(key="w.hardware.gpu").value == "a100-80gb-sxm"
    assert at.number_input(key="w.workload.batch_size").value == 16
    expected = predict(Scenario(), **{"hardware.gpu": "a100-80gb-sxm", "workload.batch_size": 16,
                                      "precision.weights": "fp8"})
    assert shown(at) == expected_headline(expected)


def test_bad_url_parameter_is_reported_and_dropped():
    at = run("home", {"workload.batch_size": "-3", "hardware.gpu": "h200-sxm"})
    assert not at.exception
    assert any("workload.batch_size" in w.value for w in at.warning)
    assert shown(at) == expected_headline(predict(Scenario(), **{"hardware.gpu": "h200-sxm"}))


def test_tp_that_does_not_divide_heads_is_one_line():
    at = run("home")
    at.number_input(key="w.hardware.num_gpus").set_value(4).run()
    at.selectbox(key="w.parallelism.tp").set_value(3).run()
    assert not at.exception
    with pytest.raises(InputError) as exc:
        predict(Scenario(), **{"hardware.num_gpus": 4, "parallelism.tp": 3})
    assert errors(at) == [str(exc.value)]
    assert not at.metric


def test_pasted_hf_config():
    config = json.loads((HF_CONFIGS / "mistral-7b.json").read_text())
    at = run("home")
    at.radio(key="w.model_source").set_value("config.json").run()
    assert errors(at) == ["model: paste or upload a Hugging Face config.json"]
    at.text_area(key="w.model_config.text").input(json.dumps(config)).run()
    assert_clean(at)
    assert shown(at) == expected_headline(predict(Scenario(), model=config))


def test_uploaded_hf_config_fills_the_text_and_survives_a_page_change():
    raw = (HF_CONFIGS / "mixtral-8x7b.json").read_bytes()
    at = run("home")
    at.radio(key="w.model_source").set_value("config.json").run()
    at.file_uploader(key="w.model_config.upload").upload("config.json", raw, "application/json").run()
    assert_clean(at)
    expected = expected_headline(predict(Scenario(), model=json.loads(raw)))
    assert shown(at) == expected
    assert json.loads(at.text_area(key="w.model_config.text").value) == json.loads(raw)
    at.switch_page("pages/2_Sweep.py").run()
    at.switch_page("Home.py").run()
    assert_clean(at)
    assert shown(at) == expected


@pytest.mark.parametrize("text,starts", [("{not json", "model: a Hugging Face config.json is not valid JSON"),
                                         ("[1, 2]", "model: a Hugging Face config.json must hold a JSON object")])
def test_bad_pasted_config_is_one_line(text, starts):
    at = run("home")
    at.radio(key="w.model_source").set_value("config.json").run()
    at.text_area(key="w.model_config.text").input(text).run()
    assert not at.exception
    assert len(errors(at)) == 1 and errors(at)[0].startswith(starts)


def test_incomplete_config_shows_the_api_error():
    config = {"model_type": "llama", "hidden_size": 4096}
    at = run("home")
    at.radio(key="w.model_source").set_value("config.json").run()
    at.text_area(key="w.model_config.text").input(json.dumps(config)).run()
    with pytest.raises(InputError) as exc:
        predict(Scenario(), model=config)
    assert errors(at) == [str(exc.value)]


def test_custom_gpu_specs():
    at = run("home")
    at.selectbox(key="w.hardware.gpu").set_value(CUSTOM).run()
    spec = json.loads(at.text_area(key="w.gpu_json").value)
    assert spec == get_accelerator("h100-sxm").model_dump(mode="json")
    spec["hbm_bandwidth_bytes_per_s"] = 4.0e12
    at.text_area(key="w.gpu_json").input(json.dumps(spec)).run()
    assert_clean(at)
    assert shown(at) == expected_headline(predict(Scenario(), **{"hardware.gpu": spec}))
    del spec["sources"]
    at.text_area(key="w.gpu_json").input(json.dumps(spec)).run()
    with pytest.raises(InputError) as exc:
        predict(Scenario(), **{"hardware.gpu": spec})
    assert errors(at) == [str(exc.value)]


def test_techniques_come_from_the_registry(test_technique):
    at = run("home")
    at.multiselect(key="w.techniques").select(test_technique).run()
    at.number_input(key=f"w.tech.{test_technique}.ratio").set_value(0.25)
    at.number_input(key=f"w.tech.{test_technique}.steps").set_value(7)
    at.checkbox(key=f"w.tech.{test_technique}.enabled").uncheck()
    at.selectbox(key=f"w.tech.{test_technique}.mode").set_value("b").run()
    assert_clean(at)
    entry = {"name": test_technique, "ratio": 0.25, "steps": 7, "enabled": False, "mode": "b"}
    assert scenario_of(at)["techniques"] == [entry]
    assert shown(at) == expected_headline(predict(Scenario(techniques=[entry])))
    assert state.decode_value(at.query_params["techniques"]) == [entry]


def test_out_of_range_technique_parameter_is_one_line(test_technique):
    at = run("home", {"techniques": json.dumps([{"name": test_technique, "ratio": 3.0}])})
    assert not at.exception
    assert len(errors(at)) == 1 and errors(at)[0].startswith("techniques[0]")


def test_every_registered_technique_at_its_defaults():
    from simulator.techniques import REGISTRY

    from app.techniques_ui import entry_with_defaults
    names = [n for n in REGISTRY if not n.startswith("explorer-test")]
    if not names:
        pytest.skip("no techniques registered")
    at = run("home")
    for name in names:
        at.multiselect(key="w.techniques").set_value([name]).run()
        assert not at.exception, (name, at.exception)
        sc = Scenario(techniques=[entry_with_defaults(name)])
        assert at.session_state["scenario"]["techniques"][0]["name"] == name
        try:
            expected = expected_headline(predict(sc))
        except InputError as exc:
            assert errors(at) == [str(exc)], name
            continue
        assert_clean(at)
        assert shown(at) == expected, name


EXPLAIN_CASES = {
    "memory": ({}, ["streams 16.1 GB of weights", "more batch amortises the weights"]),
    "compute": ({"workload.phase": "prefill", "workload.prompt_len": 8192}, ["FLOPs per GPU at", "FP8 compute"]),
    "communication": ({"model": "llama-3.2-1b", "hardware.num_gpus": 8, "hardware.gpu": "l40s",
                       "workload.phase": "prefill", "workload.prompt_len": 4096, "workload.batch_size": 8},
                      ["collectives move", "lower TP"]),
    "overhead": ({"model": "llama-3.2-1b", "hardware.gpu": "b200", "workload.context_len": 128},
                 ["kernel launches cost", "more batch is nearly free"]),
}


@pytest.mark.parametrize("bound", list(EXPLAIN_CASES))
def test_explanation_names_the_bound_and_a_knob(bound):
    overrides, phrases = EXPLAIN_CASES[bound]
    p = predict(Scenario(), **overrides)
    assert p.bound == bound
    at = run("home", state.to_params(Scenario().with_overrides(**overrides).model_dump(mode="json")))
    assert_clean(at)
    line = at.info[0].value
    assert line.startswith(f"{bound}-bound:"), line
    for phrase in phrases:
        assert phrase in line, line
    assert shown(at) == expected_headline(p)


def test_explanation_says_when_it_does_not_fit():
    overrides = {"model": "llama-3.1-70b", "workload.batch_size": 64}
    p = predict(Scenario(), **overrides)
    assert not p.memory.fits
    at = run("home", {k: str(v) for k, v in overrides.items()})
    assert not at.exception
    assert at.warning[0].value.startswith("Does not fit:")
    assert f"at most {p.max_concurrency} sequences fit" in at.warning[0].value


def test_loading_a_scenario_file_sets_every_input():
    sc = Scenario.from_dict({"model": "mistral-7b", "hardware": {"gpu": "l40s", "num_gpus": 2},
                             "workload": {"phase": "prefill", "batch_size": 3, "prompt_len": 777}})
    at = run("home")
    at.text_area(key="load.text").input(sc.to_yaml())
    at.button(key="load.go").click().run()
    assert_clean(at)
    assert at.selectbox(key="w.hardware.gpu").value == "l40s"
    assert at.number_input(key="w.workload.prompt_len").value == 777
    assert shown(at) == expected_headline(predict(sc))
    at.text_area(key="load.text").input("workload: {batch_size: 0}")
    at.button(key="load.go").click().run()
    assert not at.exception
    assert errors(at)[0].startswith("workload.batch_size")
