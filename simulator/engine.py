"""Evaluate a scenario over numpy axes: resolve it, build the steps, price them, add memory.

``predict`` (one point) and ``sweep`` (arrays) share this code: a point is a sweep with no axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from costmodels.memory import max_concurrency
from costmodels.roofline import BOUND_NAMES, COMMUNICATION, COMPUTE, MEMORY, OVERHEAD, OpCost, OpTime, price
from hwmodels import InputError, get_accelerator, load_profile
from hwmodels.dtypes import BYTES_PER_ELEMENT, DTYPES
from simulator.deployment import Deployment
from simulator.footprint import activation_bytes_per_sequence, kv_bytes_per_request, weight_bytes_per_gpu
from simulator.models import get_model
from simulator.scenario import Scenario
from simulator.step import StepShape, build_step
from simulator.techniques import parse_techniques

# Sweep axis name -> dotted scenario field.
AXES = {
    "batch_size": "workload.batch_size",
    "prompt_len": "workload.prompt_len",
    "context_len": "workload.context_len",
    "output_len": "workload.output_len",
    "weights": "precision.weights",
    "kv_cache": "precision.kv_cache",
    "compute": "precision.compute",
    "tp": "parallelism.tp",
}
_INT_AXES = ("batch_size", "prompt_len", "context_len", "output_len", "tp")
_DTYPE_AXES = ("weights", "kv_cache", "compute")
# Gauss-Legendre nodes/weights on [0, 1]: the mean decode step over a generation (step time is
# smooth and nearly piecewise linear in context, so 4 nodes are exact to well under 0.1%).
_GL_X, _GL_W = np.polynomial.legendre.leggauss(4)
_GL_X, _GL_W = (_GL_X + 1.0) / 2.0, _GL_W / 2.0


@dataclass
class StepResult:
    """A priced step: per-operator times and their combination."""

    ops: list[OpCost]
    times: list[OpTime]
    latency_s: np.ndarray
    bound: np.ndarray
    sm_time_s: np.ndarray
    hbm_time_s: np.ndarray
    link_time_s: np.ndarray
    overhead_s: np.ndarray
    flops: np.ndarray
    hbm_bytes: np.ndarray


@dataclass
class Evaluation:
    scenario: Scenario
    dep: Deployment
    phase: str
    axes: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)


def _axis_arrays(axes: dict[str, object]) -> dict[str, np.ndarray]:
    """Validate sweep axes and give each its own dimension (outer product, in the order given)."""
    out = {}
    n = len(axes)
    for i, (name, values) in enumerate(axes.items()):
        if name not in AXES:
            raise InputError(name, f"not a sweep axis; choose from {', '.join(AXES)}")
        arr = np.atleast_1d(np.asarray(values))
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(name, "expected a non-empty 1-D array")
        if name in _DTYPE_AXES:
            bad = [v for v in arr.tolist() if v not in DTYPES]
            if bad:
                raise InputError(name, f"unknown dtype {bad[0]!r}; choose from {', '.join(DTYPES)}")
        else:
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise InputError(name, "expected finite numbers")
            if np.any(arr <= 0) or np.any(arr != np.round(arr)):
                raise InputError(name, "expected positive integers")
            arr = arr.astype(np.int64)
        shape = [1] * n
        shape[i] = arr.size
        out[name] = arr.reshape(shape)
    return out


def _lookup(table: dict[str, float], names) -> np.ndarray | float:
    if isinstance(names, np.ndarray):
        return np.vectorize(table.__getitem__, otypes=[float])(names)
    return table[names]


def resolve(scenario: Scenario, axes: dict[str, np.ndarray]) -> tuple[Deployment, dict[str, object]]:
    """Resolve names into specs and scalar-or-array knobs; check parallelism fits the model."""
    gpu = get_accelerator(scenario.hardware.gpu)
    profile = load_profile(scenario.calibration, gpu=gpu.name)
    model = get_model(scenario.model)
    techniques = parse_techniques(scenario.techniques)
    for tech in techniques:
        model = tech.apply_model(model)
    wl, prec, par = scenario.workload, scenario.precision, scenario.parallelism

    def knob(name, default):
        return axes.get(name, default)

    tp = knob("tp", scenario.tp)
    pp = par.pp
    tp_arr = np.asarray(tp)
    if np.any(model.num_attention_heads % tp_arr):
        bad = int(tp_arr[np.nonzero(model.num_attention_heads % tp_arr)][0]) if tp_arr.ndim else int(tp)
        raise InputError("parallelism.tp", f"tp={bad} does not divide num_attention_heads={model.num_attention_heads}")
    kv = model.num_kv_heads
    if not model.mla and np.any((kv % tp_arr != 0) & (tp_arr % kv != 0)):
        raise InputError("parallelism.tp", f"tp must divide num_kv_heads={kv} or be a multiple of it")
    if pp > model.num_layers:
        raise InputError("parallelism.pp", f"pp={pp} exceeds num_layers={model.num_layers}")
    if np.any(tp_arr * pp > scenario.hardware.num_gpus):
        raise InputError("hardware.num_gpus", f"{scenario.hardware.num_gpus} GPUs cannot hold tp x pp = "
                         f"{int(np.max(tp_arr)) * pp}")
    replicas = scenario.hardware.num_gpus // (int(np.max(tp_arr)) * pp)

    compute = knob("compute", prec.compute)
    act_dtype = np.where(np.isin(compute, ["fp32", "tf32", "fp64"]), "fp32", "bf16") \
        if isinstance(compute, np.ndarray) else ("fp32" if compute in ("fp32", "tf32", "fp64") else "bf16")
    dep = Deployment(
        model=model,
        gpu=gpu,
        profile=profile,
        tp=tp,
        pp=pp,
        replicas=replicas,
        weight_bytes=_lookup(BYTES_PER_ELEMENT, knob("weights", prec.weights)),
        kv_bytes=_lookup(BYTES_PER_ELEMENT, knob("kv_cache", prec.kv_cache)),
        act_bytes=_lookup(BYTES_PER_ELEMENT, act_dtype),
        peak_flops_per_s=_lookup({d: gpu.peak_for(d) for d in DTYPES}, compute),
        memory_utilization=scenario.memory_utilization,
    )
    for tech in techniques:
        dep = tech.apply_deployment(dep)
    work = {
        "batch_size": knob("batch_size", wl.batch_size),
        "prompt_len": knob("prompt_len", wl.prompt_len),
        "context_len": knob("context_len", wl.context_len),
        "output_len": knob("output_len", wl.output_len),
        "techniques": techniques,
    }
    return dep, work


def run_step(dep: Deployment, shape: StepShape, overlap: str, techniques=()) -> StepResult:
    """Build, transform and price one step, then combine its operators by the overlap policy."""
    ops = build_step(dep, shape)
    for tech in techniques:
        ops = tech.apply_ops(ops, shape, dep)
    times = [price(op, dep.profile) for op in ops]
    sm = sum(t.compute_s for t in times)
    hbm = sum(t.memory_s for t in times)
    link = sum(t.link_s for t in times)
    overhead = sum(t.overhead_s for t in times)
    if overlap == "overlapped":
        by_resource = np.stack(np.broadcast_arrays(sm, hbm, link, overhead))
        latency = by_resource.max(axis=0)
        bound = np.array([COMPUTE, MEMORY, COMMUNICATION, OVERHEAD])[by_resource.argmax(axis=0)]
    else:
        latency = sum(t.time_s for t in times)
        by_bound = np.stack(np.broadcast_arrays(*[
            sum(np.where(t.bound == code, t.time_s, 0.0) for t in times) for code in range(len(BOUND_NAMES))
        ]))
        bound = by_bound.argmax(axis=0)
    flops = sum(np.asarray(op.flops, dtype=float) * op.count for op in ops)
    hbm_bytes = sum(np.asarray(op.hbm_bytes, dtype=float) * op.count for op in ops)
    return StepResult(ops, times, latency, bound, sm, hbm, link, overhead, flops, hbm_bytes)


def evaluate(scenario: Scenario, axes: dict[str, object] | None = None) -> Evaluation:
    """All outputs of a scenario as broadcast arrays over ``axes``."""
    ax = _axis_arrays(axes or {})
    dep, work = resolve(scenario, ax)
    phase = scenario.workload.phase
    ev = Evaluation(scenario, dep, phase, ax)
    b, prompt, ctx, out_len = work["batch_size"], work["prompt_len"], work["context_len"], work["output_len"]
    techniques = work["techniques"]
    a = ev.arrays
    replicas = dep.replicas

    if phase in ("prefill", "generate"):
        pre = run_step(dep, StepShape(b, prompt, 0.0, "prefill"), scenario.overlap, techniques)
        ev.steps["prefill"] = pre
    if phase == "prefill":
        a["latency_s"] = pre.latency_s
        a["tokens_per_s"] = replicas * np.asarray(b, dtype=float) * prompt / pre.latency_s
        cached, new = prompt, prompt
    elif phase == "decode":
        dec = run_step(dep, StepShape(b, 1.0, ctx, "decode"), scenario.overlap, techniques)
        ev.steps["decode"] = dec
        a["latency_s"] = dec.latency_s
        a["tokens_per_s"] = replicas * np.asarray(b, dtype=float) / dec.latency_s
        cached, new = np.asarray(ctx) + 1, 1
    else:  # generate: prefill, then output_len - 1 decode steps over a growing context
        steps = np.maximum(np.asarray(out_len, dtype=float) - 1.0, 0.0)
        nodes = np.asarray(prompt, dtype=float)[..., None] + np.maximum(steps - 1.0, 0.0)[..., None] * _GL_X
        bb = np.asarray(b, dtype=float)[..., None]
        dep_nodes = _with_trailing_axis(dep)
        dec = run_step(dep_nodes, StepShape(bb, 1.0, nodes, "decode"), scenario.overlap, techniques)
        ev.steps["decode"] = dec
        tpot = np.sum(dec.latency_s * _GL_W, axis=-1)
        a["ttft_s"] = pre.latency_s
        a["tpot_s"] = tpot + 0.0 * pre.latency_s
        a["e2e_s"] = pre.latency_s + steps * tpot
        a["latency_s"] = a["e2e_s"]
        a["tokens_per_s"] = replicas * np.asarray(b, dtype=float) * np.asarray(out_len, dtype=float) / a["e2e_s"]
        cached, new = np.asarray(prompt) + np.asarray(out_len), prompt

    main = ev.steps.get("decode" if phase == "decode" else "prefill")
    a["bound"] = main.bound
    if phase == "generate":  # the phase that takes most of the request's time sets the bound
        decode_bound = ev.steps["decode"].bound[..., len(_GL_X) // 2]
        a["bound"] = np.where(steps * a["tpot_s"] > a["ttft_s"], decode_bound, main.bound)
    for key in ("sm_time_s", "hbm_time_s", "link_time_s", "overhead_s"):
        a[key] = getattr(main, key)
    a["mfu"] = main.flops / (main.latency_s * dep.peak_flops_per_s)
    a["mbu"] = main.hbm_bytes / (main.latency_s * dep.hbm_bandwidth_bytes_per_s)

    weights = weight_bytes_per_gpu(dep)
    kv_req = kv_bytes_per_request(dep, cached)
    act_seq = activation_bytes_per_sequence(dep, new)
    workspace = dep.profile.workspace_bytes
    capacity = dep.gpu.hbm_capacity_bytes * dep.memory_utilization
    a["weights_bytes"] = weights + 0.0 * np.asarray(b, dtype=float)
    a["kv_cache_bytes"] = np.asarray(b, dtype=float) * kv_req
    a["activation_bytes"] = np.asarray(b, dtype=float) * act_seq
    a["workspace_bytes"] = np.full_like(a["weights_bytes"], workspace)
    a["total_bytes"] = a["weights_bytes"] + a["kv_cache_bytes"] + a["activation_bytes"] + workspace
    a["capacity_bytes"] = np.full_like(a["total_bytes"], capacity)
    a["fits"] = a["total_bytes"] <= capacity
    a["kv_bytes_per_request"] = kv_req + 0.0 * a["total_bytes"]
    a["max_concurrency"] = max_concurrency(capacity, weights + workspace, kv_req + act_seq) + 0 * a["fits"]
    shape = np.broadcast_shapes(*(np.shape(v) for v in a.values()))
    for key, value in a.items():
        a[key] = np.broadcast_to(value, shape)
    _check_finite(a)
    return ev


def _with_trailing_axis(dep: Deployment) -> Deployment:
    """A copy whose array knobs get a trailing axis, to broadcast against quadrature nodes."""
    from dataclasses import replace

    def add(x):
        return x[..., None] if isinstance(x, np.ndarray) else x

    return replace(dep, tp=add(dep.tp), weight_bytes=add(dep.weight_bytes), kv_bytes=add(dep.kv_bytes),
                   act_bytes=add(dep.act_bytes), peak_flops_per_s=add(dep.peak_flops_per_s))


def _check_finite(arrays: dict[str, np.ndarray]) -> None:
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise InputError(key, "the model produced a non-finite value; check the scenario's sizes")
