"""The public Python API: ``predict`` one scenario, ``sweep`` it over numpy axes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from costmodels.roofline import BOUND_NAMES
from hwmodels.errors import InputError
from simulator import metrics
from simulator.checks import scenario_warnings
from simulator.engine import AXES, PER_VALUE_AXES, evaluate
from simulator.parallel.report import collective_fields, parallelism_report
from simulator.prediction import (
    MemoryReport,
    OperatorReport,
    Prediction,
    ResourceTimes,
    row_fields_set,
)
from simulator.scenario import Scenario
from simulator.technique_report import technique_effects


def as_scenario(scenario: Scenario | Mapping[str, Any] | None = None, **overrides: Any) -> Scenario:
    """A ``Scenario`` from an instance, a mapping or nothing (defaults), with dotted overrides."""
    if scenario is None:
        scenario = Scenario()
    elif isinstance(scenario, str):
        raise InputError("scenario", f"expected a Scenario or a mapping, got the string {scenario[:60]!r}; "
                                     f"for a model write predict(model={scenario[:60]!r}), for a file "
                                     "Scenario.from_file(path)")
    elif isinstance(scenario, Mapping):
        scenario = Scenario.from_dict(dict(scenario))
    elif not isinstance(scenario, Scenario):
        raise InputError("scenario", f"expected a Scenario, a mapping or None, got {type(scenario).__name__}")
    return scenario.with_overrides(**overrides) if overrides else scenario


def predict(scenario: Scenario | Mapping[str, Any] | None = None, **overrides: Any) -> Prediction:
    """Predict one scenario. ``overrides`` are dotted fields, e.g. ``**{"workload.batch_size": 8}``."""
    sc = as_scenario(scenario, **overrides)
    ev = evaluate(sc)
    a = ev.arrays  # a point's outputs are Python scalars
    dep = ev.dep
    breakdown = [report for phase, step in ev.steps.items() for report in _operator_reports(phase, step)]
    effects, combined = technique_effects(sc)
    f = _float_or_none
    # every value is one the engine computed, of its field's type: built without re-validation, every
    # field in the schema's order (tests/test_speed_paths.py checks it equals the validated object, JSON
    # included)
    phase = sc.workload.phase
    generate = phase == "generate"
    latency, ttft = a["latency_s"], a.get("ttft_s")
    concurrency = int(a["max_concurrency"])
    bands = (a["latency_band_lo_s"], a["latency_band_hi_s"])
    return Prediction.from_trusted_dict({
        "phase": phase, "model": dep.model.name, "gpu": dep.gpu.name, "num_gpus": sc.hardware.num_gpus,
        "tp": dep.tp if type(dep.tp) is int else int(np.max(dep.tp)), "pp": dep.pp, "replicas": dep.replicas,
        "calibration": dep.profile.name, "overlap": ev.overlap,
        "latency_s": float(latency), "tokens_per_s": float(a["tokens_per_s"]),
        "ttft_s": f(ttft), "tpot_s": f(a.get("tpot_s")), "e2e_s": f(a.get("e2e_s")),
        "memory": MemoryReport.from_trusted_dict({k: (bool(a[k]) if k == "fits" else float(a[k]))
                                                  for k in _MEMORY_FIELDS}),  # in the schema's order
        "max_concurrency": concurrency, "bound": BOUND_NAMES[int(a["bound"])],
        "resources": ResourceTimes.ordered((float(a["sm_time_s"]), float(a["hbm_time_s"]),
                                            float(a["link_time_s"]), float(a["overhead_s"]))),
        "mfu": float(a["mfu"]), "mbu": float(a["mbu"]), "breakdown": breakdown,
        "tokens_per_step": float(a["tokens_per_step"]), "s_mbu": float(a["s_mbu"]), "s_mfu": float(a["s_mfu"]),
        "optimal_tokens_per_s_per_gpu": float(a["optimal_tokens_per_s_per_gpu"]),
        "optimal_fraction": float(a["optimal_fraction"]), "techniques": effects, "techniques_combined": combined,
        "warnings": scenario_warnings(sc, dep), "parallelism": parallelism_report(ev),
        "latency_band_s": bands, "tokens_per_s_band": (a["tokens_per_s_band_lo"], a["tokens_per_s_band_hi"]),
        "ttft_band_s": (a["ttft_band_lo_s"], a["ttft_band_hi_s"]) if generate else None,
        "tpot_band_s": (a["tpot_band_lo_s"], a["tpot_band_hi_s"]) if generate else None,
        "e2e_band_s": bands if generate else None, "band_basis": ev.band_basis,
        "max_concurrency_total": concurrency * dep.replicas,
        "prompt_tokens_per_s": f(a.get("prompt_tokens_per_s")),
        "prompt_tokens_credited": f(a.get("prompt_tokens_credited")),
        "dominant_phase": metrics.dominant_phase(phase, ttft, latency - (0.0 if ttft is None else ttft)),
    })


_MEMORY_FIELDS = tuple(MemoryReport.model_fields)


def _float_or_none(x) -> float | None:
    return None if x is None else float(x)


def _scalar(x) -> float:
    """A point's value as a float (the mean where a technique left a per-point array)."""
    if isinstance(x, float):
        return x
    return float(x) if np.ndim(x) == 0 else float(np.mean(x))


def _operator_reports(phase: str, step) -> list[OperatorReport]:
    """The breakdown rows of one priced step; operators that do nothing (a collective at tp = 1, a path
    no token takes) are left out. Rows are built without re-validation: every value is one we made, of
    its field's type."""
    rows = []
    row, fields = OperatorReport.kernel_row, row_fields_set()
    for op, t in zip(step.ops, step.times):
        count, time_s, flops, nbytes = op.count, t.time_s, op.flops, op.hbm_bytes
        if type(time_s) is float and type(flops) is float and type(nbytes) is float \
                and type(op.link_bytes) is float and type(count) in (int, float) and t.hidden_s == 0.0:
            # a point priced in floats: no conversions
            if (time_s == 0.0 and flops == 0.0 and nbytes == 0.0) or count == 0:
                continue
            if op.kind == "collective":
                rows.append(OperatorReport.trusted(
                    name=op.name, kind=op.kind, phase=phase, count=int(round(count)), flops=flops * count,
                    bytes=nbytes * count, link_bytes=op.link_bytes * count, time_s=time_s, compute_s=t.compute_s,
                    memory_s=t.memory_s, link_s=t.link_s, overhead_s=t.overhead_s, bound=BOUND_NAMES[t.bound],
                    **collective_fields(op, t)))
                continue
            rows.append(row(op.name, op.kind, phase, count if type(count) is int else int(round(count)),
                            flops * count, nbytes * count, op.link_bytes * count, time_s, t.compute_s,
                            t.memory_s, t.link_s, t.overhead_s, BOUND_NAMES[t.bound], fields))
            continue
        time_s = _scalar(time_s)  # generate's decode: the mean over the generation
        hidden = _scalar(getattr(t, "hidden_s", 0.0))
        count = _scalar(op.count)  # fractional for layers some tokens skip; 0 for unchosen paths
        flops, nbytes = _scalar(op.flops), _scalar(op.hbm_bytes)
        if (time_s == 0.0 and hidden == 0.0 and flops == 0.0 and nbytes == 0.0) or count == 0.0:
            continue  # e.g. collectives with tp = 1
        bound = t.bound if type(t.bound) is int else int(np.round(np.median(t.bound)))
        rows.append(OperatorReport.trusted(
            name=op.name, kind=op.kind, phase=phase, count=int(round(count)),
            flops=_scalar(op.flops * op.count), bytes=_scalar(op.hbm_bytes * op.count),
            link_bytes=_scalar(op.link_bytes * op.count), time_s=time_s,
            compute_s=_scalar(t.compute_s), memory_s=_scalar(t.memory_s),
            link_s=_scalar(t.link_s), overhead_s=_scalar(t.overhead_s), bound=BOUND_NAMES[bound],
            **collective_fields(op, t),
        ))
    return rows


class SweepResult(dict):
    """Outputs of a sweep as broadcast numpy arrays; ``axes`` holds each axis's values in order
    (output dimension i runs over the i-th axis given)."""

    axes: dict[str, np.ndarray]


def sweep(scenario: Scenario | Mapping[str, Any] | None = None, **axes: Any) -> SweepResult:
    """Evaluate a scenario over the outer product of ``axes`` (1-D arrays named as in ``AXES``:
    batch_size, prompt_len, context_len, output_len, weights, kv_cache, compute, tp, and the
    configuration axes num_gpus, gpu, model). Output dimension i runs over the i-th axis given, and every
    output spans every axis (one a phase ignores is broadcast along). Workload and precision axes are
    vectorised; each value of a configuration axis is a deployment of its own, evaluated in turn."""
    sc = as_scenario(scenario)
    per_value = [name for name in axes if name in PER_VALUE_AXES]
    if not per_value:
        ev = evaluate(sc, axes, operators=False)
        out = SweepResult(ev.arrays)
        out.axes = {name: np.ravel(arr) for name, arr in ev.axes.items()}
        return out
    values = {name: _values(name, axes[name]) for name in per_value}
    inner = {name: v for name, v in axes.items() if name not in PER_VALUE_AXES}
    results = []
    for combo in itertools.product(*values.values()):
        overrides = {AXES[name]: value for name, value in zip(values, combo)}
        try:
            results.append(evaluate(sc.with_overrides(**overrides), inner, operators=False))
        except InputError as exc:
            where = ", ".join(f"{name}={value}" for name, value in zip(values, combo))
            raise InputError(exc.field, f"{exc.message} (at {where})") from None
    keys = [k for k in results[0].arrays if all(k in r.arrays for r in results)]
    lead = [len(v) for v in values.values()]
    order = [*per_value, *results[0].axes]
    out = SweepResult({k: np.stack([r.arrays[k] for r in results]).reshape(*lead, *results[0].arrays[k].shape)
                       .transpose([order.index(name) for name in axes]) for k in keys})
    out.axes = {name: (np.asarray(values[name], dtype=object if name != "num_gpus" else np.int64)
                       if name in values else np.ravel(results[0].axes[name])) for name in axes}
    return out


def _values(name: str, values: Any) -> list:
    items = list(np.atleast_1d(np.asarray(values, dtype=object)).tolist())
    if not items or len(set(map(repr, items))) != len(items):
        raise InputError(name, "expected a non-empty list of distinct values")
    if name == "num_gpus":
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in items):
            raise InputError(name, "expected positive integers")
        return [int(v) for v in items]
    if not all(isinstance(v, str) for v in items):
        raise InputError(name, "expected catalog names")
    return items


__all__ = ["AXES", "predict", "sweep", "as_scenario"]
