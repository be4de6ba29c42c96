"""Fit a stack profile's continuous parameters to measured steps (scipy least squares on log error).

The implementation (``--structure``: which launches and bytes the stack adds, ``simulator.stacks.presets``)
is declared; the fit adjusts the efficiency corrections (scale and slope per kind), the per-launch GPU
overhead and, for eager stacks, the host's per-launch, per-layer and per-step time, and a per-step cost.

Objective: ``sum_i log(pred_i / meas_i)^2 + sum_j (sigma_d * (theta_j - mu_j) / sigma_j)^2`` -- the
log errors of the rows plus Gaussian priors that keep parameters physical, each weighted as if the
rows' own noise were ``sigma_d`` = 2% (a maximum a posteriori fit with that data noise). Scales are
fitted as their logarithm; bounds keep every parameter in its physical range.

A parameter no row is sensitive to (a 1-sigma change moves no row's time by 0.01%) cannot be identified:
the fit refuses and names it (e.g. no decode rows for the decode attention), unless it is frozen
(``freeze``). Two exceptions: ``grouped_gemm`` follows ``gemm`` when no row has routed experts, and
the host terms are held at zero when no row is host-bound.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from costmodels.roofline import price
from hwmodels.errors import InputError
from simulator.stacks.measurements import Measurement
from simulator.stacks.presets import STRUCTURES
from simulator.stacks.profile import (
    CORRECTED_KINDS,
    REF_LOG10,
    EfficiencyCorrection,
    FixedCosts,
    StackProfile,
    read_json,
    stack_from_dict,
)
from simulator.stacks.transform import apply_ops, host_time_s, launches

SIGMA_DATA = 0.02
SENSITIVITY = 1e-4
US = 1e-6


@dataclass(frozen=True)
class Param:
    name: str
    unit: str
    meaning: str
    prior: float  # in fit units (log scale, slope, microseconds)
    sigma: float
    lo: float
    hi: float


# Prior spread of each kind's log efficiency multiplier: GEMMs go to the same vendor library in nearly
# every stack (cuBLAS; measured engine ratios 1.12-1.18x, docs/validation.md); attention backends differ by
# up to 1.7x (cuDNN vs SDPA-flash) and far more with an explicit mask; element-wise kernels in between.
_SCALE_SIGMA = {"gemm": 0.25, "grouped_gemm": 0.5, "attention_prefill": 0.7, "attention_decode": 0.7, "memory": 0.5,
                "strided": 0.3, "atomic": 0.3}
# Prior multipliers of the two kernel classes a stack adds, as measured on the H200 by the census
# (``python -m validation.stacks.census``; validation/results/stacks/census/*.json, olmoe-1b-7b prefill
# 1 x 2048, 16 layers), relative to the shipped memory curve at that size (0.831 of 4.8 TB/s at 134 MB):
# ``strided``: transformers' ``masked_fill`` over 16,384 x 2,048 bf16 rows with a broadcast mask, 134 MB
# read and written in 92.7 us = 1.45 TB/s, 0.363 of the curve; ``atomic``: ``index_add_`` of 16,384 x
# 2,048 bf16 rows into 2,048 (2 bytes read + 2 updated per element, 134 MB) in 265.6 us = 0.505 TB/s,
# 0.127 of the curve.
_SCALE_PRIOR = {"strided": float(np.log(0.363)), "atomic": float(np.log(0.127))}
# Kinds only some implementations launch: held at their prior when no row has them.
_OPTIONAL_KINDS = ("strided", "atomic")


def parameters(execution: str) -> list[Param]:
    out = []
    for kind in CORRECTED_KINDS:
        out.append(Param(f"{kind}.scale", "x", f"{kind} efficiency multiplier at the reference size (fitted as log)",
                         _SCALE_PRIOR.get(kind, 0.0), _SCALE_SIGMA[kind], np.log(0.02), np.log(5.0)))
        out.append(Param(f"{kind}.slope", "per decade", f"log10 change of the {kind} multiplier per decade of size",
                         0.0, 0.15, -0.5, 0.5))
    out.append(Param("launch_overhead_s", "s", "GPU time added to every kernel launch", 0.0, 5.0, 0.0, 200.0))
    if execution == "eager":
        out += [Param("host_launch_s", "s", "host time to issue one kernel", 10.0, 20.0, 0.0, 500.0),
                Param("host_layer_s", "s", "host time per layer beyond its launches", 0.0, 50.0, 0.0, 5000.0),
                Param("host_step_s", "s", "host time per step (model entry, inputs, sampling)", 0.0, 500.0, 0.0,
                      1e5)]
    # a graph replay or the final synchronisation: microseconds (a CUDA graph launch costs a few, NVIDIA's
    # CUDA Programming Guide, "CUDA Graphs"); a wide prior let it absorb what per-launch terms should carry
    out.append(Param("step_s", "s", "fixed time per step (synchronisation, graph launch)", 0.0, 20.0, 0.0, 1e5))
    return out


def _value(p: Param, theta: float) -> float:
    if p.name.endswith(".scale"):
        return float(np.exp(theta))
    return float(theta * US) if p.unit == "s" else float(theta)


def build_stack(base: StackProfile, params: list[Param], theta, tied: dict[str, str]) -> StackProfile:
    vals = {p.name: _value(p, t) for p, t in zip(params, theta)}
    for name, src in tied.items():
        vals[name] = vals[src]
    eff = {}
    for kind in CORRECTED_KINDS:
        s, k = vals.get(f"{kind}.scale", 1.0), vals.get(f"{kind}.slope", 0.0)
        eff[kind] = EfficiencyCorrection(scale=min(max(s, 1e-6), 10.0), slope_per_decade=k)
    fixed = base.fixed.model_copy(update={k: vals[k] for k in FixedCosts.model_fields if k in vals})
    return base.model_copy(update={"efficiency": eff, "fixed": fixed})


@dataclass
class _Group:
    """One group's operators as arrays: what pricing needs, with the base profile's efficiencies evaluated
    once (a correction multiplies them; ``costmodels.roofline.price`` of the corrected profile gives the
    same times, see tests/stacks)."""

    rows: list[int]
    dep: object
    measured: np.ndarray
    kind: list[str]
    count: np.ndarray  # (ops, rows)
    flops: np.ndarray
    nbytes: np.ndarray
    peak: np.ndarray
    bw: float
    eff_c: np.ndarray
    eff_m: np.ndarray
    overhead: np.ndarray
    fixed_s: np.ndarray  # collectives and transfers (the stack leaves them as priced), per row
    launches: np.ndarray
    layers: float


def _table(idx, dep, ops, shape, measured) -> _Group:
    base = dep.profile
    n = len(idx)
    kernels = [op for op in ops if op.kind in CORRECTED_KINDS]
    others = [op for op in ops if op.kind not in CORRECTED_KINDS]
    times = [price(op, base) for op in ops]

    def arr(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n,)).astype(float)

    flops = np.array([arr(op.flops) for op in kernels]).reshape(len(kernels), n)
    nbytes = np.array([arr(op.hbm_bytes) for op in kernels]).reshape(len(kernels), n)
    return _Group(
        rows=list(idx), dep=dep, measured=measured, kind=[op.kind for op in kernels],
        count=np.array([arr(op.count) for op in kernels]).reshape(len(kernels), n), flops=flops, nbytes=nbytes,
        peak=np.array([arr(op.peak_flops_per_s) for op in kernels]).reshape(len(kernels), n),
        bw=float(dep.hbm_bandwidth_bytes_per_s),
        eff_c=np.array([base.kind(op.kind).compute(f) for op, f in zip(kernels, flops)]).reshape(len(kernels), n),
        eff_m=np.array([base.kind(op.kind).memory(b) for op, b in zip(kernels, nbytes)]).reshape(len(kernels), n),
        overhead=np.array([base.kind(op.kind).overhead_s for op in kernels])[:, None],
        fixed_s=sum((arr(t.time_s) for op, t in zip(ops, times) if op in others), np.zeros(n)),
        launches=arr(launches(ops, times)), layers=dep.model.num_layers / dep.pp)


def _scenario(m: Measurement):
    from simulator.scenario import Scenario

    p = m.precision
    return Scenario.from_dict({
        "model": m.model, "hardware": {"gpu": m.gpu, "num_gpus": m.num_gpus}, "parallelism": {"tp": m.tp},
        "precision": {"weights": p, "kv_cache": p, "compute": p}, "workload": {"phase": m.phase}})


def build_groups(rows: list[Measurement], structure: StackProfile, base: str = "auto") -> list[_Group]:
    """Rows grouped by (model, GPU, parallelism, precision, phase), each group's operators built once with
    the structure's implementation applied (it does not change during the fit)."""
    from simulator.resolve import resolve
    from simulator.step import StepShape, build_step

    keyed: dict[tuple, list[int]] = defaultdict(list)
    for i, m in enumerate(rows):
        keyed[(m.model, m.gpu, m.num_gpus, m.tp, m.precision, m.phase)].append(i)
    groups = []
    for idx in keyed.values():
        first = rows[idx[0]]
        where = f"measurements row {first.row}"
        try:
            sc = _scenario(first).with_overrides(calibration=base)
            dep, _ = resolve(sc, {})
        except InputError as exc:
            raise InputError(f"{where} ({exc.field})", exc.message) from None
        batch = np.array([rows[i].batch for i in idx], dtype=float)
        length = np.array([rows[i].length for i in idx], dtype=float)
        if first.phase == "prefill":
            shape = StepShape(batch, length, 0.0 * length, "prefill")
        else:
            shape = StepShape(batch, 1.0 + 0.0 * length, length, "decode")
        ops = apply_ops(structure, build_step(dep, shape), shape, dep)
        groups.append(_table(idx, dep, ops, shape, np.array([rows[i].latency_s for i in idx])))
    return groups


def predict_groups(groups: list[_Group], stack: StackProfile, n: int) -> np.ndarray:
    """Step times of every row under ``stack`` (the groups' structure), as ``simulator.engine.run_step``
    prices them with the corrected profile."""
    out = np.empty(n)
    corr = {k: stack.correction(k) for k in CORRECTED_KINDS}
    extra = stack.fixed.launch_overhead_s
    for g in groups:
        scale = np.array([corr[k].scale for k in g.kind])[:, None]
        slope = np.array([corr[k].slope_per_decade for k in g.kind])[:, None]
        xc = np.log10(np.maximum(g.flops, 1.0))
        xm = np.log10(np.maximum(g.nbytes, 1.0))
        eff_c = np.minimum(g.eff_c * scale * 10.0 ** (slope * (xc - REF_LOG10["compute"])), 1.0)
        eff_m = np.minimum(g.eff_m * scale * 10.0 ** (slope * (xm - REF_LOG10["memory"])), 1.0)
        busy = np.maximum(g.flops / (g.peak * eff_c), g.nbytes / (g.bw * eff_m))
        latency = np.sum(g.count * (busy + g.overhead + extra), axis=0) + g.fixed_s
        host = host_time_s(stack, g.launches, g.layers)
        out[g.rows] = np.maximum(latency, host) + stack.fixed.step_s
    return out


def structure_stack(structure: str | None, name: str, execution: str | None) -> StackProfile:
    """The starting stack: a preset structure, a stack JSON (its implementation kept), or fused."""
    if structure is None or structure in STRUCTURES:
        impl, fixed = STRUCTURES[structure or "fused"]
        stack = StackProfile(name=name, implementation=impl, fixed=fixed)
    else:
        stack = stack_from_dict(read_json(structure, "--structure"), "--structure").model_copy(update={"name": name})
    if execution:
        stack = stack.model_copy(update={"fixed": stack.fixed.model_copy(update={"execution": execution})})
    return stack


_WHY = {"attention_prefill": "no prefill rows", "attention_decode": "no decode rows",
        "gemm": "no rows with GEMMs", "memory": "no rows with element-wise kernels"}


def identified(params: list[Param], predict, freeze) -> dict[int, bool]:
    """For each parameter not in ``freeze``, whether the rows identify it: moving it by its sigma from the
    priors (the others held) changes some row's predicted time ``predict(theta)`` by ``SENSITIVITY`` in log."""
    theta0 = np.array([p.prior for p in params])
    base = predict(theta0)
    out = {}
    for j, p in enumerate(params):
        if p.name not in freeze:
            theta = theta0.copy()
            theta[j] += p.sigma
            out[j] = bool(np.max(np.abs(np.log(predict(theta) / base))) >= SENSITIVITY)
    return out


def _free(params: list[Param], groups, stack, n, freeze) -> tuple[list[Param], dict[str, str], list[str]]:
    """Parameters the rows identify; tied ones (grouped_gemm -> gemm); notes. Refuses an unidentified one."""
    sensitive = identified(params, lambda theta: predict_groups(groups, build_stack(stack, params, theta, {}), n),
                           freeze)
    free, tied, notes = [], {}, []
    for j, p in enumerate(params):
        if p.name in freeze:
            notes.append(f"{p.name} frozen at its prior")
            continue
        if sensitive[j]:
            free.append(p)
        elif p.name.split(".")[0] in _OPTIONAL_KINDS:
            notes.append(f"{p.name} held at its prior (no rows with {p.name.split('.')[0]} kernels)")
        elif p.name.startswith("grouped_gemm."):
            tied[p.name] = p.name.replace("grouped_gemm.", "gemm.")
            notes.append(f"{p.name} follows {tied[p.name]} (no rows with routed experts)")
        elif "." in p.name and not any(p.name.split(".")[0] in g.kind for g in groups):
            kind = p.name.split(".")[0]
            raise InputError(p.name, f"the rows cannot identify it ({_WHY.get(kind, 'no rows depend on it')}); "
                                     f"add such rows or pass --freeze {p.name}")
        else:  # rows have the operators, but none is sensitive (e.g. every decode row host-bound)
            notes.append(f"{p.name} held at its prior (no row's time depends on it)")
    return free, tied, notes


def fit_rows(rows: list[Measurement], stack: StackProfile, freeze=(), groups=None):
    """(fitted stack, in-sample log errors, free parameters, notes, evaluations)."""
    groups = groups or build_groups(rows, stack)
    n = len(rows)
    measured = np.array([m.latency_s for m in rows])
    params = parameters(stack.fixed.execution)
    free, tied, notes = _free(params, groups, stack, n, set(freeze))
    held = {p.name: p.prior for p in params if p not in free}

    def full(theta):
        vals = dict(held)
        vals.update({p.name: t for p, t in zip(free, theta)})
        return np.array([vals[p.name] for p in params])

    def residuals(theta):
        pred = predict_groups(groups, build_stack(stack, params, full(theta), tied), n)
        prior = [SIGMA_DATA * (t - p.prior) / p.sigma for p, t in zip(free, theta)]
        return np.concatenate([np.log(pred / measured), prior])

    lo, hi = np.array([p.lo for p in free]), np.array([p.hi for p in free])
    sig = np.array([p.sigma for p in free])
    x0 = np.clip(np.array([p.prior for p in free]), lo + 0.05 * sig, hi - 0.05 * sig)  # strictly inside
    res = least_squares(residuals, x0, bounds=(lo, hi), x_scale=sig, max_nfev=100 * (len(free) + 1))
    fitted = build_stack(stack, params, full(res.x), tied)
    log_err = residuals(res.x)[:n]
    return fitted, log_err, params, full(res.x), free, notes, res.nfev, groups
