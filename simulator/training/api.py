"""``train`` (one scenario, a ``TrainReport``) and ``train_sweep`` (numpy arrays over knob axes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hwmodels import InputError
from simulator.training.engine import KNOBS, evaluate
from simulator.training.report import TrainMemory, TrainOperator, TrainReport
from simulator.training.scenario import RECOMPUTE_CODES, TrainScenario

RECOMPUTE_NAMES = {v: k for k, v in RECOMPUTE_CODES.items()}


def as_train_scenario(scenario: TrainScenario | Mapping[str, Any] | None = None, **fields: Any) -> TrainScenario:
    if scenario is None:
        scenario = TrainScenario()
    elif not isinstance(scenario, TrainScenario):
        scenario = TrainScenario.from_dict(dict(scenario))
    return scenario.with_overrides(**fields) if fields else scenario


def bound_of(breakdown: dict[str, float]) -> str:
    """The largest term of the step: what bounds it."""
    return max(breakdown, key=lambda k: breakdown[k]) if breakdown else "compute"


def train(scenario: TrainScenario | Mapping[str, Any] | None = None, **fields: Any) -> TrainReport:
    """Predict one training step (and time to train with ``tokens``). Fields override the scenario's."""
    sc = as_train_scenario(scenario, **fields)
    out = evaluate(sc)

    def f(x):
        return float(np.asarray(x))

    breakdown = {k: f(v) for k, v in out["breakdown"].items()}
    mem = {k: f(v) for k, v in out["memory"].items()}
    mem["fits"] = bool(out["memory"]["fits"])
    ops = [TrainOperator(name=t.op.name, kind=t.op.kind, phase=t.phase, part=t.part, time_s=f(np.mean(time)))
           for t, time in out["ops"] if np.any(time)]
    extra = {k: f(out[k]) for k in ("time_to_train_s", "gpu_hours", "cost_usd", "usd_per_gpu_hour") if k in out}
    if "price_source" in out:
        extra["price_source"] = out["price_source"]
    extra.update(_band(sc, f(out["step_time_s"]), f(out["tokens_per_s"])))
    from simulator.models import get_model

    return TrainReport(
        model=get_model(sc.model).name, gpu=str(sc.gpu if isinstance(sc.gpu, str) else sc.gpu.get("name")),
        calibration=out["calibration"], num_gpus=sc.num_gpus, tp=sc.tp, pp=sc.pp, cp=sc.cp, ep=sc.ep,
        dp=int(out["dp"]), micro_batch=sc.micro_batch, microbatches=int(out["microbatches"]),
        global_batch=int(out["global_batch"]), seq_len=sc.seq_len, precision=sc.precision, recompute=sc.recompute,
        zero=sc.zero, optimizer=sc.optimizer, offload=sc.offload, schedule=sc.schedule, grad_overlap=sc.grad_overlap,
        step_time_s=f(out["step_time_s"]), tokens_per_s=f(out["tokens_per_s"]), mfu=f(out["mfu"]), hfu=f(out["hfu"]),
        model_flops_per_step=f(out["model_flops_per_step"]), hardware_flops_per_step=f(out["hardware_flops_per_step"]),
        memory=TrainMemory(**mem), breakdown=breakdown, bound=bound_of(breakdown), operators=ops, **extra,
    )


def _band(sc, step_s: float, tokens_per_s: float) -> dict:
    from hwmodels import get_accelerator
    from simulator.stacks.bands import train_band
    from simulator.stacks.resolve import resolve_calibration

    gpu = get_accelerator(sc.gpu, "gpu")
    lo, hi, basis = train_band(resolve_calibration(sc.calibration, gpu), gpu.name, step_s)
    return {"step_time_band_s": (lo, hi), "tokens_per_s_band": (tokens_per_s * step_s / hi, tokens_per_s * step_s / lo),
            "band_basis": basis}


class TrainSweep(dict):
    """Outputs as broadcast arrays; ``axes`` holds each axis's values (dimension i runs over axis i)."""

    axes: dict[str, np.ndarray]


def _axes(axes: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for i, (name, values) in enumerate(axes.items()):
        if name not in KNOBS:
            raise InputError(name, f"not a training sweep axis; choose from {', '.join(KNOBS)}")
        arr = np.atleast_1d(np.asarray(values))
        if name == "recompute" and arr.dtype.kind in "US":
            bad = [v for v in arr.tolist() if v not in RECOMPUTE_CODES]
            if bad:
                raise InputError(name, f"unknown recompute {bad[0]!r}; choose from none, selective, full")
            arr = np.vectorize(RECOMPUTE_CODES.__getitem__)(arr)
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number) or np.any(arr < 0) \
                or np.any(arr != np.round(arr)):
            raise InputError(name, "expected a non-empty 1-D array of non-negative integers")
        shape = [1] * len(axes)
        shape[i] = arr.size
        out[name] = arr.astype(np.int64).reshape(shape)
    return out


def train_sweep(scenario: TrainScenario | Mapping[str, Any] | None = None, **axes: Any) -> TrainSweep:
    """Evaluate over the outer product of ``axes`` (names in ``KNOBS``; recompute by name or code)."""
    sc = as_train_scenario(scenario)
    ax = _axes(axes)
    out = evaluate(sc, ax)
    shape = np.broadcast_shapes(*(np.shape(v) for v in ax.values())) if ax else ()
    flat = {k: v for k, v in out.items()
            if k not in ("ops", "breakdown", "memory", "calibration", "price_source", "stack_terms")}
    flat.update({f"memory.{k}": v for k, v in out["memory"].items()})
    flat.update({f"breakdown.{k}": v for k, v in out["breakdown"].items()})
    res = TrainSweep({k: np.broadcast_to(np.asarray(v), np.broadcast_shapes(shape, np.shape(v))) for k, v in flat.items()})
    res.axes = {k: np.ravel(v) for k, v in ax.items()}
    return res
