"""The public Python API: ``predict`` one scenario, ``sweep`` it over numpy axes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from costmodels.roofline import BOUND_NAMES
from hwmodels.errors import InputError
from simulator.checks import scenario_warnings
from simulator.engine import AXES, evaluate
from simulator.parallel.report import collective_fields, parallelism_report
from simulator.prediction import MemoryReport, OperatorReport, Prediction, ResourceTimes
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
    a = {k: v.item() for k, v in ev.arrays.items()}
    dep = ev.dep
    breakdown = []
    for phase, step in ev.steps.items():
        for op, t in zip(step.ops, step.times):
            time_s = float(np.mean(t.time_s))  # generate's decode: the mean over the generation
            hidden = float(np.mean(getattr(t, "hidden_s", 0.0)))
            if time_s == 0.0 and hidden == 0.0 and not np.any(op.flops) and not np.any(op.hbm_bytes):
                continue  # e.g. collectives with tp = 1
            bound = int(np.round(np.median(t.bound)))
            count = float(np.mean(op.count))  # fractional for layers some tokens skip; 0 for unchosen paths
            if count == 0.0:
                continue
            breakdown.append(OperatorReport(
                name=op.name, kind=op.kind, phase=phase, count=int(round(count)),
                flops=float(np.mean(np.asarray(op.flops) * op.count)),
                bytes=float(np.mean(np.asarray(op.hbm_bytes) * op.count)),
                link_bytes=float(np.mean(np.asarray(op.link_bytes) * op.count)), time_s=time_s,
                compute_s=float(np.mean(t.compute_s)), memory_s=float(np.mean(t.memory_s)),
                link_s=float(np.mean(t.link_s)), overhead_s=float(np.mean(t.overhead_s)), bound=BOUND_NAMES[bound],
                **collective_fields(op, t),
            ))
    effects, combined = technique_effects(sc)
    return Prediction(
        phase=sc.workload.phase, model=dep.model.name, gpu=dep.gpu.name, num_gpus=sc.hardware.num_gpus,
        tp=int(np.max(dep.tp)), pp=dep.pp, replicas=dep.replicas, calibration=dep.profile.name, overlap=ev.overlap,
        latency_s=a["latency_s"], tokens_per_s=a["tokens_per_s"],
        ttft_s=a.get("ttft_s"), tpot_s=a.get("tpot_s"), e2e_s=a.get("e2e_s"),
        memory=MemoryReport(**{k: a[k] for k in MemoryReport.model_fields}),
        max_concurrency=int(a["max_concurrency"]), bound=BOUND_NAMES[int(a["bound"])],
        resources=ResourceTimes(sm_s=a["sm_time_s"], hbm_s=a["hbm_time_s"], link_s=a["link_time_s"],
                                overhead_s=a["overhead_s"]),
        mfu=a["mfu"], mbu=a["mbu"], breakdown=breakdown, tokens_per_step=a["tokens_per_step"],
        s_mbu=a["s_mbu"], s_mfu=a["s_mfu"], optimal_tokens_per_s_per_gpu=a["optimal_tokens_per_s_per_gpu"],
        optimal_fraction=a["optimal_fraction"], techniques=effects, techniques_combined=combined,
        warnings=scenario_warnings(sc, dep),
        parallelism=parallelism_report(ev),
        **_bands(a, sc.workload.phase), band_basis=ev.band_basis,
    )


def _bands(a: dict, phase: str) -> dict:
    """The error-band fields of a prediction (``simulator.stacks.bands``)."""
    out = {"latency_band_s": (a["latency_band_lo_s"], a["latency_band_hi_s"]),
           "tokens_per_s_band": (a["tokens_per_s_band_lo"], a["tokens_per_s_band_hi"])}
    if phase == "generate":
        out.update(ttft_band_s=(a["ttft_band_lo_s"], a["ttft_band_hi_s"]),
                   tpot_band_s=(a["tpot_band_lo_s"], a["tpot_band_hi_s"]), e2e_band_s=out["latency_band_s"])
    return out


class SweepResult(dict):
    """Outputs of a sweep as broadcast numpy arrays; ``axes`` holds each axis's values in order
    (output dimension i runs over the i-th axis given)."""

    axes: dict[str, np.ndarray]


def sweep(scenario: Scenario | Mapping[str, Any] | None = None, **axes: Any) -> SweepResult:
    """Evaluate a scenario over the outer product of ``axes`` (1-D arrays named as in ``AXES``:
    batch_size, prompt_len, context_len, output_len, weights, kv_cache, compute, tp)."""
    sc = as_scenario(scenario)
    ev = evaluate(sc, axes)
    out = SweepResult(ev.arrays)
    out.axes = {name: np.ravel(arr) for name, arr in ev.axes.items()}
    return out


__all__ = ["AXES", "predict", "sweep", "as_scenario"]
