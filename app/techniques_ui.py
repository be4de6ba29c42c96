"""The technique picker, built from ``simulator.techniques.REGISTRY``: one widget per pydantic field,
so a newly registered technique appears with its parameters without touching the explorer."""

from __future__ import annotations

import json
import types
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
import streamlit as st
import yaml
from pydantic_core import PydanticUndefined

from hwmodels.errors import InputError
from hwmodels.io import safe_load_bounded
from simulator.techniques import REGISTRY


def _unwrap(annotation) -> tuple[Any, bool]:
    """(inner annotation, optional?) for ``X | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        if len(args) == 1:
            return args[0], optional
    return annotation, False


def default_of(finfo) -> Any:
    value = finfo.get_default(call_default_factory=True)
    return None if value is PydanticUndefined else value


def _bounds(finfo, kind: type) -> tuple[Any, Any]:
    low = high = None
    for m in finfo.metadata:
        if isinstance(m, at.Ge):
            low = m.ge
        elif isinstance(m, at.Gt) and kind is int:
            low = m.gt + 1
        elif isinstance(m, at.Le):
            high = m.le
        elif isinstance(m, at.Lt) and kind is int:
            high = m.lt - 1
    return (kind(low) if low is not None else None), (kind(high) if high is not None else None)


def _text_value(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return safe_load_bounded(text, "techniques", "the value")
    except (yaml.YAMLError, InputError):  # kept as typed: the technique's validation names what is wrong
        return text


def param_widget(tech: str, field: str, finfo, value: Any) -> Any:
    """One parameter's widget; returns its value (validation is left to the technique class)."""
    key = f"w.tech.{tech}.{field}"
    label = field.replace("_", " ")
    help_text = finfo.description
    inner, optional = _unwrap(finfo.annotation)
    if get_origin(inner) is Literal:
        options = list(get_args(inner)) + ([None] if optional else [])
        if key not in st.session_state:
            st.session_state[key] = value if value in options else options[0]
        return st.selectbox(label, options, key=key, help=help_text)
    if inner is bool and not optional:
        st.session_state.setdefault(key, bool(value))
        return st.checkbox(label, key=key, help=help_text)
    if inner in (int, float) and not optional:
        # No widget bounds: an out-of-range value (e.g. from a URL) is kept and reported by the technique's
        # own validation instead of being silently clamped.
        low, high = _bounds(finfo, inner)
        limits = ", ".join([f">= {low}"] * (low is not None) + [f"<= {high}"] * (high is not None))
        if key not in st.session_state:
            start = value if isinstance(value, (int, float)) and not isinstance(value, bool) else (low or 1)
            st.session_state[key] = inner(start)
        kwargs = {"step": 1} if inner is int else {"format": "%g", "step": 0.01}
        help_text = " ".join(t for t in (help_text, f"({limits})" if limits else "") if t)
        return st.number_input(label, key=key, help=help_text or None, **kwargs)
    if key not in st.session_state:
        st.session_state[key] = "" if value is None else (value if isinstance(value, str) else json.dumps(value))
    return _text_value(st.text_input(label, key=key, help=(help_text or "") + " (JSON/YAML; empty = none)"))


def _label(name: str) -> str:
    family = getattr(REGISTRY.get(name), "family", "")
    return f"{name} ({family})" if family else name


def picker(sc: dict) -> None:
    """Edit ``sc['techniques']`` in place: a multiselect of registered names and their parameters."""
    entries = {e.get("name"): e for e in sc["techniques"]}
    current = [e.get("name") for e in sc["techniques"]]
    options = list(REGISTRY) + [n for n in current if n not in REGISTRY]
    if "w.techniques" not in st.session_state:
        st.session_state["w.techniques"] = current
    options += [n for n in st.session_state["w.techniques"] if n not in options]
    if not options:
        st.caption("Techniques: none registered.")
        sc["techniques"] = []
        return
    chosen = st.multiselect("Techniques", options, key="w.techniques", format_func=_label,
                            help="applied in the order picked")
    out = []
    for name in chosen:
        cls = REGISTRY.get(name)
        old = entries.get(name, {})
        if cls is None:  # unknown name (e.g. from a URL): kept so that the error names it
            out.append(old or {"name": name})
            continue
        entry: dict[str, Any] = {"name": name}
        with st.expander(f"{name}" + (" parameters" if cls.model_fields else "")):
            about = " — ".join(t for t in (getattr(cls, "summary", ""), getattr(cls, "citation", "")) if t)
            if about:
                st.caption(about)
            for field, finfo in cls.model_fields.items():
                entry[field] = param_widget(name, field, finfo, old.get(field, default_of(finfo)))
        out.append(entry)
    sc["techniques"] = out


def entry_with_defaults(name: str) -> dict[str, Any]:
    """A technique entry with every parameter at its default (for pages that only pick names)."""
    cls = REGISTRY.get(name)
    if cls is None:
        return {"name": name}
    return {"name": name, **{f: v for f, i in cls.model_fields.items() if (v := default_of(i)) is not None}}
