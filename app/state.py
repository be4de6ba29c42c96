"""The explorer's shared state: the current scenario (a plain dict in session state, mirrored in
the URL), cached calls into the public API, and the one way errors are shown."""

from __future__ import annotations

import base64
import copy
import json
import zlib
from typing import Any

import numpy as np
import streamlit as st

from hwmodels import builtin_profiles, list_accelerators
from hwmodels.errors import InputError
from hwmodels.io import decode_text
from simulator import Scenario, list_models, predict, sweep
from simulator.long_context import long_context_table

KEY = "scenario"
DEFAULT: dict[str, Any] = Scenario().model_dump(mode="json")
SECTIONS = ("hardware", "parallelism", "precision", "workload")
_INLINE = 160  # JSON values longer than this go into the URL compressed
# Uploads: a config.json is ~1-10 KB and a measured profile ~130 KB; .streamlit/config.toml caps the
# server's uploads at the same size (server.maxUploadSize, in MiB).
MAX_UPLOAD_BYTES = 4 * 2**20


# --- dotted access -----------------------------------------------------------------------------

def get(data: dict, dotted: str) -> Any:
    node = data
    for part in dotted.split("."):
        node = node[part]
    return node


def put(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def flatten(data: dict) -> dict[str, Any]:
    """Scenario dict -> {dotted field: value} (sections are flattened, values kept whole)."""
    out = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


FIELDS = tuple(flatten(DEFAULT))


def with_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        put(out, dotted, copy.deepcopy(value))
    return out


# --- no server files: names come from the catalogs, specs from uploaded or pasted text ----------

def _catalogs() -> dict[str, list[str]]:
    return {"model": list_models(), "hardware.gpu": list_accelerators(),
            "calibration": ["auto", *builtin_profiles()]}


def looks_like_path(text: str) -> bool:
    """Whether a string could name a file (the API resolves such strings by opening them)."""
    return any(c in text for c in "/\\\0") or text.startswith((".", "~")) or \
        text.lower().endswith((".json", ".yaml", ".yml", ".csv", ".txt"))


def _technique_strings(value: Any, where: str):
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _technique_strings(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _technique_strings(v, f"{where}[{i}]")


def no_server_files(data: Any) -> None:
    """Refuse a scenario that would make the server open a file: in the explorer the model, GPU and
    profile are catalog names or inline specs (uploaded or pasted), never paths; so are technique
    parameters (a speculative draft_model). Raises a one-line ``InputError``; opens nothing."""
    if not isinstance(data, dict):
        return
    flat = flatten(data)
    for field, names in _catalogs().items():
        value = flat.get(field)
        if isinstance(value, str) and value not in names:
            what = "a path" if looks_like_path(value) else "not a catalog name"
            raise InputError(field, f"{value[:60]!r} is {what}; the explorer opens no server files "
                                    "(pick a catalog name, or upload/paste the file)")
    for i, entry in enumerate(data.get("techniques") or []):
        for where, value in _technique_strings(entry, f"techniques[{i}]"):
            if looks_like_path(value) and not (where.endswith(".draft_model") and value in list_models()):
                raise InputError(where, f"{value[:60]!r} is a path; the explorer opens no server files")


def upload_text(upload, field: str) -> str:
    """The text of an uploaded file: at most ``MAX_UPLOAD_BYTES``, UTF-8; ``InputError`` otherwise."""
    if upload.size > MAX_UPLOAD_BYTES:
        raise InputError(field, f"{upload.name!r} is {upload.size:,} bytes, over the "
                                f"{MAX_UPLOAD_BYTES / 2**20:g} MiB upload limit")
    return decode_text(upload.getvalue(), field, repr(upload.name))


# --- URL encoding ------------------------------------------------------------------------------

def encode_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = json.dumps(value, separators=(",", ":"))
    if len(text) > _INLINE:
        return "z:" + base64.urlsafe_b64encode(zlib.compress(text.encode(), 9)).decode()
    return text


def decode_value(text: str) -> Any:
    if text.startswith("z:"):
        try:
            return json.loads(zlib.decompress(base64.urlsafe_b64decode(text[2:].encode())))
        except (ValueError, zlib.error) as exc:
            raise InputError("url", f"cannot decode a compressed value ({exc.__class__.__name__})") from None
    if text[:1] in "{[" or text in ("null", "true", "false"):
        try:
            return json.loads(text)
        except ValueError:
            raise InputError("url", f"not valid JSON: {text[:40]!r}") from None
    return text


def to_params(data: dict) -> dict[str, str]:
    """The fields of ``data`` that differ from the defaults, as URL query parameters."""
    base = flatten(DEFAULT)
    return {k: encode_value(v) for k, v in flatten(data).items() if k in base and v != base[k]}


def from_params(params: dict[str, str]) -> tuple[dict, list[str]]:
    """A scenario dict from URL parameters; parameters that do not validate are dropped and reported."""
    data, problems = copy.deepcopy(DEFAULT), []
    for key, text in params.items():
        if key not in FIELDS:
            continue
        try:
            trial = with_overrides(data, {key: decode_value(text)})
            no_server_files(trial)
            data = Scenario.from_dict(trial).model_dump(mode="json")
        except InputError as exc:
            problems.append(str(exc))
    return data, problems


# --- the current scenario ----------------------------------------------------------------------

def current() -> dict:
    """The scenario being explored: from session state, else from the URL, else the defaults."""
    if KEY not in st.session_state:
        data, problems = from_params(dict(st.query_params))
        st.session_state[KEY] = data
        st.session_state["url_problems"] = problems
    return st.session_state[KEY]


def set_current(data: dict) -> None:
    st.session_state[KEY] = data


def enter_page(name: str) -> None:
    """Call first on every page. Streamlit gives each page's widgets their own identity, so on arrival
    from another page the editor's widget state is dropped and rebuilt from the scenario dict (and
    each page's own settings from their remembered values)."""
    previous = st.session_state.get("page")
    if previous is not None and previous != name:
        for key in [k for k in list(st.session_state) if isinstance(k, str) and k.startswith("w.")]:
            del st.session_state[key]
    st.session_state["page"] = name


def remember() -> None:
    """Keep a copy of every editor widget's value, for ``setting`` to restore on another visit."""
    for key in [k for k in list(st.session_state) if isinstance(k, str) and k.startswith("w.")]:
        if not key.endswith(".upload"):
            st.session_state["keep." + key] = st.session_state[key]


def setting(key: str, name: str, default: Any, cast=None) -> None:
    """Start a page's own widget ``key`` from the URL parameter ``name``, else its last value, else ``default``."""
    if key not in st.session_state:
        st.session_state[key] = page_param(name, st.session_state.get("keep." + key, default), cast)


def sync_url(extra: dict[str, Any] | None = None) -> None:
    """Mirror the scenario (and a page's own ``extra`` settings) in the URL's query parameters."""
    params = to_params(current())
    params.update({k: encode_value(v) for k, v in (extra or {}).items()})
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)
    remember()


def page_param(name: str, default: Any, cast=None) -> Any:
    """A page's own setting from the URL: ``cast(value)``, or ``default`` when absent or unreadable."""
    if name not in st.query_params:
        return default
    try:
        value = decode_value(st.query_params[name])
        return cast(value) if cast else value
    except (InputError, ValueError, TypeError, KeyError, IndexError):
        return default


def key_of(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def exports(data: dict) -> tuple[str, str]:
    """(JSON, YAML) texts of a scenario that ``roofsim predict FILE`` reads back."""
    sc = Scenario.from_dict(data)
    return sc.model_dump_json(indent=2) + "\n", sc.to_yaml()


# --- cached API calls (keyed on the scenario's JSON) -------------------------------------------

@st.cache_data(max_entries=1024, show_spinner=False)
def _predict(scenario_json: str):
    data = json.loads(scenario_json)
    no_server_files(data)
    return predict(data)


@st.cache_data(max_entries=256, show_spinner=False)
def _sweep(scenario_json: str, axes: tuple[tuple[str, tuple], ...]) -> dict[str, np.ndarray]:
    data = json.loads(scenario_json)
    no_server_files(data)
    result = sweep(data, **{name: list(values) for name, values in axes})
    return {k: np.asarray(v) for k, v in result.items()}


@st.cache_data(max_entries=128, show_spinner=False)
def _long_context(scenario_json: str, contexts: tuple[int, ...], output_len: int) -> dict[str, np.ndarray]:
    data = json.loads(scenario_json)
    no_server_files(data)
    table = long_context_table(data, list(contexts), output_len)
    return {k: np.asarray(v) for k, v in table.items()}


def cached_predict(data: dict):
    return _predict(key_of(data))


def cached_sweep(data: dict, **axes) -> dict[str, np.ndarray]:
    return _sweep(key_of(data), tuple((k, tuple(np.asarray(v).tolist())) for k, v in axes.items()))


def cached_long_context(data: dict, contexts, output_len: int) -> dict[str, np.ndarray]:
    return _long_context(key_of(data), tuple(int(c) for c in contexts), int(output_len))


# --- errors ------------------------------------------------------------------------------------

def message(exc: BaseException) -> str:
    """One line for the user: an ``InputError`` as it reads, anything else with its type."""
    if isinstance(exc, InputError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def attempt(fn, *args, **kwargs):
    """(result, None) or (None, one-line message); never raises for bad input."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 -- every failure is shown as one line, never a traceback
        return None, message(exc)


def or_stop(fn, *args, **kwargs):
    """``fn(...)``, or an ``st.error`` with its one-line message and the end of this run."""
    value, error = attempt(fn, *args, **kwargs)
    if error:
        st.error(error)
        st.stop()
    return value
