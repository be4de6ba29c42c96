"""The scenario editor in the sidebar, shared by every page.

Each widget's key is ``w.<dotted field>``. The scenario dict in session state is the source of
truth: a widget whose state Streamlit dropped (another page, a hidden input) starts again from it,
and after the widgets run the dict is rebuilt from their values.
"""

from __future__ import annotations

import copy
import json

import streamlit as st
import yaml

from app import state, techniques_ui
from hwmodels import DTYPES, builtin_profiles, get_accelerator, list_accelerators
from hwmodels.errors import InputError
from hwmodels.io import safe_load_bounded
from simulator import get_model, list_models

CUSTOM = "custom (JSON)"
PHASES = ("prefill", "decode", "generate")
# Workload inputs each phase reads.
PHASE_INPUTS = {
    "prefill": ("batch_size", "prompt_len"),
    "decode": ("batch_size", "context_len"),
    "generate": ("batch_size", "prompt_len", "output_len"),
}
WORKLOAD_LABELS = {
    "batch_size": ("Batch size", 1, "sequences per model replica"),
    "prompt_len": ("Prompt tokens", 256, "tokens per prompt"),
    "context_len": ("Context tokens", 1024, "tokens already in the KV cache of each sequence"),
    "output_len": ("Output tokens", 64, "tokens generated per sequence"),
}


def init(key: str, value) -> None:
    """Give a widget its starting value unless it already holds one."""
    if key not in st.session_state:
        st.session_state[key] = copy.deepcopy(value)


def with_option(options: list, key: str) -> list:
    """``options`` plus the widget's current value if it is missing (e.g. an unknown name from the URL)."""
    value = st.session_state.get(key)
    return options if value in options else [*options, value]


def reset_widgets() -> None:
    """Forget every editor widget's state (and remembered value) so that they start again from the
    scenario dict."""
    for key in [k for k in list(st.session_state) if isinstance(k, str) and k.startswith(("w.", "keep.w."))]:
        del st.session_state[key]


def parse_mapping(text: str, field: str, what: str) -> dict:
    """A JSON (or YAML) object from pasted or uploaded text; bad text becomes an ``InputError``."""
    if not text.strip():
        raise InputError(field, f"paste or upload {what}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        try:
            data = safe_load_bounded(text, field, what)
        except yaml.YAMLError:
            raise InputError(field, f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(field, f"{what} must hold a JSON object")
    return data


def uploaded_or_pasted(label: str, key: str, initial: str, height: int = 160) -> tuple[str, str | None]:
    """A text area that an upload fills (so the text survives page changes); returns (text, file name)."""
    upload = st.file_uploader(f"Upload {label}", type=["json", "yaml", "yml"], key=f"{key}.upload",
                              help=f"at most {state.MAX_UPLOAD_BYTES / 2**20:g} MiB of UTF-8 JSON or YAML")
    name = None
    if upload is not None:
        name = upload.name
        if st.session_state.get(f"{key}.seen") != upload.file_id:  # a new file replaces the text once
            text, error = state.attempt(state.upload_text, upload, label)
            if error:
                st.error(error)
            else:
                st.session_state[f"{key}.seen"] = upload.file_id
                st.session_state[f"{key}.text"] = text
    init(f"{key}.text", initial)
    return st.text_area(f"…or paste {label}", key=f"{key}.text", height=height), name


def _model(sc: dict, errors: list[str]) -> None:
    cur = sc["model"]
    init("w.model_source", "preset" if isinstance(cur, str) else "config.json")
    source = st.radio("Model", ["preset", "config.json"], key="w.model_source", horizontal=True,
                      format_func=lambda s: "Preset" if s == "preset" else "HF config.json")
    if source == "preset":
        init("w.model", cur if isinstance(cur, str) else state.DEFAULT["model"])
        sc["model"] = st.selectbox("Model preset", with_option(list_models(), "w.model"), key="w.model",
                                   label_visibility="collapsed")
    else:
        initial = json.dumps(cur, indent=2) if isinstance(cur, dict) else ""
        text, _ = uploaded_or_pasted("config.json", "w.model_config", initial)
        try:
            sc["model"] = parse_mapping(text, "model", "a Hugging Face config.json")
        except InputError as exc:
            errors.append(str(exc))
            return
    spec, _ = state.attempt(get_model, sc["model"])
    if spec is not None:
        attn = "MLA" if spec.mla else f"{spec.num_attention_heads} heads / {spec.num_kv_heads} KV heads"
        moe = f", MoE {spec.moe.num_experts}x top-{spec.moe.top_k}" if spec.moe else ""
        st.caption(f"{spec.name}: {spec.total_params() / 1e9:.3g}B params ({spec.active_params() / 1e9:.3g}B active), "
                   f"{spec.num_layers} layers, {attn}{moe}")


def _hardware(sc: dict, errors: list[str]) -> None:
    hw, par = sc["hardware"], sc["parallelism"]
    cur = hw["gpu"]
    init("w.hardware.gpu", cur if isinstance(cur, str) else CUSTOM)
    choice = st.selectbox("GPU", with_option([*list_accelerators(), CUSTOM], "w.hardware.gpu"), key="w.hardware.gpu")
    if choice != CUSTOM:
        hw["gpu"] = choice
        acc, _ = state.attempt(get_accelerator, choice)
        if acc is not None:
            st.caption(f"{acc.display_name}: {acc.peak_for('bf16') / 1e12:,.0f} TFLOP/s bf16, "
                       f"{acc.hbm_bandwidth_bytes_per_s / 1e12:.2f} TB/s, {acc.hbm_capacity_bytes / 2**30:.0f} GiB")
        st.session_state["last_named_gpu"] = choice
    else:
        seed = cur if isinstance(cur, dict) else state.attempt(
            lambda: get_accelerator(st.session_state.get("last_named_gpu", "h100-sxm")).model_dump(mode="json"))[0]
        init("w.gpu_json", json.dumps(seed, indent=2) if seed else "")
        text = st.text_area("GPU specs (the catalog's schema)", key="w.gpu_json", height=180,
                            help="Edit the datasheet fields; every number needs a source URL.")
        try:
            hw["gpu"] = parse_mapping(text, "hardware.gpu", "the GPU specs")
        except InputError as exc:
            errors.append(str(exc))
    left, right = st.columns(2)
    with left:
        init("w.hardware.num_gpus", hw["num_gpus"])
        hw["num_gpus"] = st.number_input("GPUs", min_value=1, max_value=4096, step=1, key="w.hardware.num_gpus")
    with right:
        init("w.parallelism.tp", par["tp"] if par["tp"] is not None else "auto")
        options = with_option(["auto", *range(1, int(hw["num_gpus"]) + 1)], "w.parallelism.tp")
        tp = st.selectbox("Tensor parallel", options, key="w.parallelism.tp",
                          help="auto: all GPUs of one pipeline stage; must divide the attention heads")
        par["tp"] = None if tp == "auto" else int(tp)


def _precision(sc: dict) -> None:
    cols = [*st.columns(2), *st.columns(2)]
    for col, (field, label) in zip(cols, (("weights", "Weights"), ("kv_cache", "KV cache"), ("compute", "Compute"))):
        with col:
            key = f"w.precision.{field}"
            init(key, sc["precision"][field])
            sc["precision"][field] = st.selectbox(label, with_option(list(DTYPES), key), key=key)


def _calibration(sc: dict, errors: list[str]) -> None:
    cur = sc["calibration"]
    init("w.calibration", cur if isinstance(cur, str) else CUSTOM)
    options = with_option(["auto", *builtin_profiles(), CUSTOM], "w.calibration")
    choice = st.selectbox("Calibration profile", options, key="w.calibration",
                          help="auto: the measured profile of this GPU if shipped, else 'default'; "
                               "peak: 100% of every datasheet peak")
    if choice != CUSTOM:
        sc["calibration"] = choice
        return
    initial = json.dumps(cur, indent=2) if isinstance(cur, dict) else ""
    text, _ = uploaded_or_pasted("a profile JSON", "w.profile", initial)
    try:
        sc["calibration"] = parse_mapping(text, "calibration", "the profile")
    except InputError as exc:
        errors.append(str(exc))


def _workload(sc: dict) -> None:
    wl = sc["workload"]
    init("w.workload.phase", wl["phase"])
    wl["phase"] = st.radio("Phase", list(PHASES), key="w.workload.phase", horizontal=True,
                           help="prefill: one prompt step; decode: one token step over a cached context; "
                                "generate: a whole request (prefill then decode)")
    cols = st.columns(len(PHASE_INPUTS[wl["phase"]]))
    for col, field in zip(cols, PHASE_INPUTS[wl["phase"]]):
        label, step, help_text = WORKLOAD_LABELS[field]
        key = f"w.workload.{field}"
        with col:
            init(key, wl[field])
            wl[field] = st.number_input(label, min_value=1, max_value=100_000_000, step=step, key=key, help=help_text)


def _advanced(sc: dict) -> None:
    with st.expander("Advanced"):
        init("w.parallelism.pp", sc["parallelism"]["pp"])
        sc["parallelism"]["pp"] = st.number_input("Pipeline stages (PP)", min_value=1, max_value=1024, step=1,
                                                  key="w.parallelism.pp")
        init("w.memory_utilization", sc["memory_utilization"])
        sc["memory_utilization"] = st.slider("HBM the engine may use", 0.05, 1.0, step=0.01, key="w.memory_utilization")
        init("w.overlap", sc["overlap"])
        sc["overlap"] = st.radio("Overlap", ["serial", "overlapped"], key="w.overlap", horizontal=True,
                                 help="serial sums operator times; overlapped takes the busiest resource")


def _loaded(text: str) -> dict:
    """A pasted scenario as a dict, refused if it names a server file."""
    data = parse_mapping(text, "scenario", "a scenario") if text.strip() else {}
    state.no_server_files(data)
    return data


def _load_box() -> None:
    with st.expander("Load a scenario file"):
        text = st.text_area("Scenario JSON or YAML", key="load.text", height=120)
        if st.button("Load", key="load.go"):
            data, error = state.attempt(lambda: state.Scenario.from_dict(_loaded(text)))
            if error:
                st.error(error)
            else:
                state.set_current(data.model_dump(mode="json"))
                reset_widgets()
                st.rerun()


def _export(sc: dict) -> None:
    texts, error = state.attempt(state.exports, sc)
    if texts is None:
        st.caption(f"Export unavailable: {error}")
        return
    left, right = st.columns(2)
    left.download_button("JSON", texts[0], file_name="scenario.json", mime="application/json", key="export.json")
    right.download_button("YAML", texts[1], file_name="scenario.yaml", mime="application/x-yaml", key="export.yaml")
    st.caption("Exports run with `roofsim predict FILE`; the page address shares this scenario.")


def scenario_sidebar(url_extra: dict | None = None, sync: bool = True) -> tuple[dict, str | None]:
    """Draw the editor; return the scenario dict and the first input problem (or None). With
    ``sync=False`` the page mirrors the URL itself (after reading its own parameters from it)."""
    sc = copy.deepcopy(state.current())
    errors: list[str] = []
    with st.sidebar:
        for problem in st.session_state.pop("url_problems", []):
            st.warning(f"Ignored a URL parameter: {problem}")
        st.header("Scenario")
        _model(sc, errors)
        _hardware(sc, errors)
        _precision(sc)
        _calibration(sc, errors)
        _workload(sc)
        techniques_ui.picker(sc)
        _advanced(sc)
        state.set_current(sc)
        st.subheader("Export")
        _export(sc)
        _load_box()
    if sync:
        state.sync_url(url_extra)
    return sc, (errors[0] if errors else None)
