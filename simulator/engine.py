"""Evaluate a scenario over numpy axes: resolve it, build the steps, price them, add memory.

``predict`` (one point) and ``sweep`` (arrays) share this code: a point is a sweep with no axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from costmodels.roofline import COMMUNICATION, COMPUTE, MEMORY, OVERHEAD, price
from hwmodels import InputError
from hwmodels.dtypes import DTYPES
from simulator import metrics
from simulator.bounds import AXIS_LIMITS, check_counts
from simulator.deployment import Deployment
from simulator.footprint import memory_arrays
from simulator.parallel.overlap import apply_overlaps
from simulator.parallel.pipeline import run_pipelined
from simulator.priced import (
    ATTENTION_KINDS,
    TRANSFER_KINDS,
    StepResult,
    format_peak,
    layer_gemm_flops,
    layer_weight_read_bytes,
    nominal_peak,
    point_step,
    serial_bound,
    total,
)
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.stacks import apply_stack_ops, finish_stack_step
from simulator.stacks.bands import band_arrays
from simulator.step import StepShape, build_step

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
    # configuration axes evaluated one value at a time by ``simulator.sweep`` (each its own deployment)
    "num_gpus": "hardware.num_gpus",
    "gpu": "hardware.gpu",
    "model": "model",
}
PER_VALUE_AXES = ("num_gpus", "gpu", "model")
_INT_AXES = ("batch_size", "prompt_len", "context_len", "output_len", "tp")
_DTYPE_AXES = ("weights", "kv_cache", "compute")
# Gauss-Legendre nodes/weights on [0, 1]: the mean decode step over a generation (step time is
# smooth and nearly piecewise linear in context, so 4 nodes are exact to well under 0.1%).
_GL_X, _GL_W = np.polynomial.legendre.leggauss(4)
_GL_X, _GL_W = (_GL_X + 1.0) / 2.0, _GL_W / 2.0


@dataclass
class Evaluation:
    scenario: Scenario
    dep: Deployment
    phase: str
    axes: dict[str, np.ndarray]
    overlap: str = "serial"
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)
    band_basis: str = ""  # where the error bands come from (simulator.stacks.bands)


def _axis_arrays(axes: dict[str, object]) -> dict[str, np.ndarray]:
    """Validate sweep axes and give each its own dimension (outer product, in the order given)."""
    out = {}
    n = len(axes)
    for i, (name, values) in enumerate(axes.items()):
        if name not in AXES:
            raise InputError(name, f"not a sweep axis; choose from {', '.join(AXES)}")
        if name in PER_VALUE_AXES:
            raise InputError(name, "a configuration axis: sweep it with simulator.sweep")
        arr = np.atleast_1d(np.asarray(values))
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(name, "expected a non-empty 1-D array")
        if name in _DTYPE_AXES:
            bad = [v for v in arr.tolist() if v not in DTYPES]
            if bad:
                raise InputError(name, f"unknown dtype {bad[0]!r}; choose from {', '.join(DTYPES)}")
        else:
            if not np.issubdtype(arr.dtype, np.number):
                raise InputError(name, "expected whole numbers")
            arr = check_counts(name, arr, *AXIS_LIMITS[name]).astype(np.int64)
        shape = [1] * n
        shape[i] = arr.size
        out[name] = arr.reshape(shape)
    return out


def run_step(dep: Deployment, shape: StepShape, overlap: str, techniques=None) -> StepResult:
    """Build, transform and price one step, then combine its operators by the overlap policy.
    ``techniques`` defaults to the deployment's own; each may edit the operator list (``apply_ops``).
    With pp > 1 the stages run micro-batches in flight (``simulator.parallel.pipeline``). A point (scalar
    shape and deployment) stays in Python floats throughout."""
    if dep.pp > 1 and not dep.pipeline_stage:
        return run_pipelined(dep, shape, overlap, techniques, run_step)
    ops = build_step(dep, shape)
    for tech in dep.techniques if techniques is None else techniques:
        ops = tech.apply_ops(ops, shape, dep)
    if dep.stack is not None:  # the user's implementation: unfused work, split launches (simulator.stacks)
        ops = apply_stack_ops(dep.stack, ops, shape, dep)
    times = apply_overlaps(ops, [price(op, dep.profile) for op in ops], dep)
    point = point_step(ops, times, dep, shape, overlap) if dep.stack is None else None  # a stack adds host pace
    if point is not None:
        return point
    sm = total([t.compute_s for t in times])
    hbm = total([t.memory_s for t in times])
    link = total([t.link_s for t in times])
    overhead = total([t.overhead_s for t in times])
    op_flops = [op.flops * op.count for op in ops]  # each operator's FLOPs over its launches
    flops = total(op_flops)
    hbm_bytes = total([op.hbm_bytes * op.count for op in ops], owned=True)
    # each operator's FLOPs at its format's peak; never above the step's dtype peak for an operator a
    # technique slowed (dequantisation, waiting for the busiest expert GPU): that time is not work
    format_s = total([_useful(f, getattr(op, "work_fraction", 1.0)) / format_peak(nominal_peak(op), dep.peak_flops_per_s)
                      for op, f in zip(ops, op_flops) if op.kind not in TRANSFER_KINDS], owned=True)
    attention = [(op, f) for op, f in zip(ops, op_flops) if op.kind in ATTENTION_KINDS]
    kv_read = total([getattr(op, "kv_read_bytes", 0.0) * op.count for op, _ in attention], owned=True)
    att_flops = total([f for _, f in attention])
    weights = total(layer_weight_read_bytes(ops))
    gemm_flops = total(layer_gemm_flops(ops))
    tokens = shape.tokens
    if overlap == "overlapped":
        by_resource = np.stack(np.broadcast_arrays(sm, hbm, link, overhead))
        latency = by_resource.max(axis=0)
        bound = np.array([COMPUTE, MEMORY, COMMUNICATION, OVERHEAD])[by_resource.argmax(axis=0)]
    else:
        latency = total([t.time_s for t in times])
        bound = serial_bound(times)
    if dep.stack is not None:  # the host's pace (eager launches) and per-step costs
        latency, overhead = finish_stack_step(dep.stack, ops, times, latency, overhead, dep)
    # every result spans the shape's axes, even where no operator depends on one (e.g. no KV to grow)
    full = np.broadcast_shapes(*(np.shape(x) for x in (shape.batch, shape.new_tokens, shape.past_tokens,
                                                        shape.chunk_tokens, shape.chunk_past, latency)))

    def span(x):
        return x if np.shape(x) == full else np.broadcast_to(np.asarray(x, dtype=float), full)

    sm, hbm, link, overhead, flops, hbm_bytes, latency = (span(x) for x in (sm, hbm, link, overhead, flops,
                                                                              hbm_bytes, latency))
    return StepResult(ops, times, latency, np.broadcast_to(bound, full), sm, hbm, link, overhead, flops, hbm_bytes,
                      format_s, kv_read, att_flops, tokens, weights, gemm_flops)


def _useful(flops, fraction):
    """The share ``fraction`` of ``flops`` that is work (``StepOp.work_fraction``); the array itself at 1."""
    return flops if fraction == 1.0 else flops * fraction


def prefill_step(dep: Deployment, batch, prompt, overlap: str) -> tuple[StepResult, np.ndarray]:
    """The prefill of ``batch`` prompts, and the new tokens per sequence of one step. With chunked
    prefill the prompt runs as n = ceil(new / chunk) equal chunks over a growing cache: the sum of
    the n chunk steps is n x their mean, taken by Gauss-Legendre quadrature over the cache length."""
    shape = dep.transform_shape(StepShape(batch, prompt, 0.0, "prefill"))
    chunk = dep.prefill_chunk_tokens()
    if chunk is None:
        return run_step(dep, shape, overlap), np.asarray(shape.new_tokens, dtype=float)
    new = np.asarray(shape.new_tokens, dtype=float)
    n = np.maximum(np.ceil(new / chunk), 1.0)
    per = new / n
    past = np.asarray(shape.past_tokens, dtype=float)[..., None] + (new - per)[..., None] * _GL_X
    nodes = StepShape(np.asarray(batch, dtype=float)[..., None], per[..., None], past, "prefill",
                      logits_per_seq=1.0 / n[..., None])  # only the last chunk's logits are sampled
    step = run_step(_with_trailing_axis(dep), nodes, overlap)
    return _integrate(step, n), per


# Per-launch quantities of an operator (and of the metadata techniques read) that add up over steps.
_SUMMED = ("flops", "hbm_bytes", "link_bytes", "rows", "weight_elems", "weight_bytes", "input_elems", "kv_read_bytes")


def _integrate(step: StepResult, scale) -> StepResult:
    """``scale`` x the quadrature mean over the trailing axis of every array of a step."""
    def mean(x):
        return np.asarray(scale, dtype=float) * np.sum(np.asarray(x, dtype=float) * _GL_W, axis=-1)

    def middle(bound):
        return np.broadcast_to(bound, np.shape(step.latency_s))[..., len(_GL_X) // 2]

    ops = [replace(op, **{k: mean(np.asarray(getattr(op, k)) + 0.0 * _GL_W) for k in _SUMMED if hasattr(op, k)})
           for op in step.ops]
    times = [replace(t, compute_s=mean(t.compute_s), memory_s=mean(t.memory_s), link_s=mean(t.link_s),
                     overhead_s=mean(t.overhead_s), time_s=mean(t.time_s), bound=middle(t.bound))
             for t in step.times]
    return StepResult(ops, times, mean(step.latency_s), middle(step.bound), mean(step.sm_time_s),
                      mean(step.hbm_time_s), mean(step.link_time_s), mean(step.overhead_s), mean(step.flops),
                      mean(step.hbm_bytes), mean(step.format_peak_s), mean(step.kv_read_bytes),
                      mean(step.attention_flops), mean(step.tokens), mean(step.weight_read_bytes),
                      mean(step.layer_gemm_flops))


def _summed_only(step: StepResult) -> StepResult:
    """``step`` without its operators and their times (``evaluate(operators=False)``)."""
    return replace(step, ops=[], times=[])


def _latency_only(step: StepResult) -> StepResult:
    """``step`` with its latency, bound and resource times only (what ``evaluate(operators=False)`` still
    reads once the metrics are made); its other sums are zero."""
    return StepResult([], [], step.latency_s, step.bound, step.sm_time_s, step.hbm_time_s, step.link_time_s,
                      step.overhead_s, 0.0, 0.0)


def _pick(condition, if_true: StepResult, if_false: StepResult) -> StepResult:
    """Element-wise choice between two steps' combined quantities (operator lists are not merged)."""
    def pick(name):
        return np.where(condition, getattr(if_true, name), getattr(if_false, name))

    return StepResult([], [], *(pick(f.name) for f in fields(StepResult) if f.name not in ("ops", "times")))


def _blend(share, a: StepResult, b: StepResult) -> StepResult:
    """``share`` x step ``a`` + (1 - share) x step ``b`` (the mean of a mix of two kinds of steps); the
    operators and bound are those of the larger share."""
    def mix(name):
        return share * getattr(a, name) + (1.0 - share) * getattr(b, name)

    main = a if np.all(np.asarray(share) >= 0.5) else b
    values = {f.name: mix(f.name) for f in fields(StepResult) if f.name not in ("ops", "times", "bound")}
    return StepResult(main.ops, main.times, bound=main.bound, **values)


def evaluate(scenario: Scenario, axes: dict[str, object] | None = None, operators: bool = True) -> Evaluation:
    """All outputs of a scenario as arrays over ``axes``, each spanning every axis (one a phase ignores,
    such as context_len in prefill, is broadcast along). ``operators=False`` (a sweep, which returns only
    the outputs) keeps no step's operators and their times: their grid-sized arrays are freed as soon as a
    step is summed, so the outputs take their memory instead of fresh pages."""
    keep = (lambda step: step) if operators else _summed_only
    ax = _axis_arrays(axes or {})
    dep, work = resolve(scenario, ax)
    phase = scenario.workload.phase
    overlap = dep.overlap_policy(scenario.overlap)
    ev = Evaluation(scenario, dep, phase, ax, overlap)
    b, prompt, ctx, out_len = work["batch_size"], work["prompt_len"], work["context_len"], work["output_len"]
    a = ev.arrays
    replicas = dep.replicas
    bf = b * 1.0 if isinstance(b, (int, float)) else np.asarray(b, dtype=float)
    per_step = dep.tokens_per_step()

    if phase in ("prefill", "generate"):
        pre, pre_new = prefill_step(dep, b, prompt, overlap)
        ev.steps["prefill"] = pre = keep(pre)
    if phase == "prefill":
        a["latency_s"] = pre.latency_s
        a["tokens_per_s"] = replicas * bf * prompt / pre.latency_s
        cached, new, processed = prompt, pre_new, bf * prompt
        main = pre
    elif phase == "decode":
        shape = dep.transform_shape(StepShape(b, 1.0, ctx, "decode"))
        dec = keep(run_step(dep, shape, overlap))
        ev.steps["decode"] = main = dec
        a["latency_s"] = dec.latency_s
        a["tokens_per_s"] = replicas * bf * per_step / dec.latency_s
        # prompt tokens of other requests a mixed step prefills (chunked prefill; Sarathi-Serve)
        chunk = shape.chunk_tokens
        a["prompt_tokens_per_s"] = replicas * chunk / dec.latency_s \
            if (chunk if isinstance(chunk, float) else np.any(chunk)) else 0.0
        cached, new = ctx + shape.new_tokens, shape.new_tokens
        processed = bf * per_step + shape.chunk_tokens
    else:  # generate: prefill, then output_len - 1 tokens from decode steps over a growing context
        steps = np.maximum(np.asarray(out_len, dtype=float) - 1.0, 0.0)
        nodes = np.asarray(prompt, dtype=float)[..., None] + np.maximum(steps - 1.0, 0.0)[..., None] * _GL_X
        dep_nodes = _with_trailing_axis(dep)
        shape = dep_nodes.transform_shape(StepShape(np.asarray(bf, dtype=float)[..., None], 1.0, nodes, "decode"))
        dec = keep(_integrate(run_step(dep_nodes, shape, overlap), 1.0))  # the mean decode step of the generation
        # Sarathi-Serve's trade-off: decode steps that carry a prompt chunk are slower (TPOT), but the
        # chunks prefill the next batch's prompts, so in steady state that share of its prefill is done
        # (credited) and the serving cycle is shorter than prefill + decode. Steps carry a chunk only while
        # prompt tokens are left: ceil(b·s / chunk) of them at most; the others are plain decode steps.
        chunk = np.asarray(shape.chunk_tokens, dtype=float)[..., 0] if np.ndim(shape.chunk_tokens) else \
            shape.chunk_tokens
        credited = 0.0
        if np.any(chunk):
            plain = replace(shape, chunk_tokens=0.0, chunk_past=0.0)
            pure = keep(_integrate(run_step(dep_nodes, plain, overlap), 1.0))
            # (a generation of one token has no decode step to carry a chunk: nothing is credited)
            decode_steps = steps / per_step
            mixed = np.minimum(np.ceil(pre.tokens / np.maximum(chunk, 1.0)), decode_steps)
            dec = _blend(mixed / np.maximum(decode_steps, 1.0), dec, pure)
            credited = np.minimum(mixed * chunk / pre.tokens, 1.0)
        ev.steps["decode"] = dec
        tpot = dec.latency_s / per_step
        a["ttft_s"] = pre.latency_s
        a["tpot_s"] = tpot + 0.0 * pre.latency_s
        a["e2e_s"] = pre.latency_s + steps * tpot
        a["latency_s"] = a["e2e_s"]
        cycle = pre.latency_s * (1.0 - credited) + steps * tpot
        a["prompt_tokens_credited"] = credited * pre.tokens + 0.0 * cycle
        a["tokens_per_s"] = replicas * bf * np.asarray(out_len, dtype=float) / cycle
        cached, new = np.asarray(prompt) + np.asarray(out_len), pre_new
        processed = bf * (np.asarray(prompt, dtype=float) + out_len)
        # the phase that takes most of the request's time is the one reported
        main = _pick(steps * a["tpot_s"] > a["ttft_s"], dec, pre)
    a["tokens_per_step"] = per_step  # spans the axes in _span

    a["bound"] = main.bound
    for key in ("sm_time_s", "hbm_time_s", "link_time_s", "overhead_s"):
        a[key] = getattr(main, key)
    a["mfu"] = metrics.mfu(main, dep)
    a["mbu"] = metrics.mbu(main, dep)
    # MoE-CAP's sparsity-aware utilisation of the step that sets the pace, and NanoFlow's optimum
    # (a blend of mixed and plain decode steps reads and does the mean of theirs: the sums blend linearly)
    sparse = metrics.sparse_utilisation(dep, pre if phase == "prefill" else dec)
    if not operators:  # the steps' sums not in the outputs are spent: freed before the outputs still to come
        ev.steps = {name: _latency_only(step) for name, step in ev.steps.items()}
        pre = dec = main = None
    decode_new = dep.transform_shape(StepShape(1.0, 1.0, cached, "decode")).new_tokens
    a.update(memory_arrays(dep, b, cached, new, decode_new))
    a["s_mbu"], a["s_mfu"] = sparse
    gpus_used = replicas * dep.tp * dep.pp
    optimum = metrics.optimal_tokens_per_s_per_gpu(dep)
    a["optimal_tokens_per_s_per_gpu"] = optimum
    a["optimal_fraction"] = processed * (replicas / (gpus_used * optimum)) / a["latency_s"]
    bands, ev.band_basis = band_arrays(ev, work)  # 10-90% error bands of the calibration in use
    a.update(bands)
    _span(a, ax)
    return ev


def _span(a: dict, axes: dict[str, np.ndarray]) -> None:
    """Every output over the full shape of the axes; a point's as Python scalars. Non-finite values are
    refused."""
    if not axes:
        converted = {}  # numpy scalars as Python ones; Python floats and ints stay as they are
        isfinite = math.isfinite
        for key, value in a.items():
            if type(value) is not float:
                if isinstance(value, np.ndarray | np.generic):
                    if np.ndim(value):
                        break
                    value = converted[key] = value.item()
                elif not isinstance(value, int | float):
                    break
            if type(value) is float and not isfinite(value):
                raise InputError(key, "the model produced a non-finite value; check the scenario's sizes")
        else:
            a.update(converted)
            return
    shape = np.broadcast_shapes(*(np.shape(v) for v in a.values()), *(np.shape(v) for v in axes.values()))
    if shape == ():  # a point with a value of another scalar type
        _check_finite(a)
        a.update((key, np.asarray(value).item()) for key, value in a.items())
        return
    _check_finite(a)  # before broadcasting: each value at its own (often smaller) shape
    for key, value in a.items():
        a[key] = np.broadcast_to(value, shape)


_DEP_ARRAYS = ("tp", "weight_bytes", "kv_bytes", "act_bytes", "peak_flops_per_s", "embedding_bytes")


def _with_trailing_axis(dep: Deployment) -> Deployment:
    """A copy whose array knobs get a trailing axis, to broadcast against quadrature nodes."""
    def add(x):
        return x[..., None] if isinstance(x, np.ndarray) else x

    names = {f.name for f in fields(dep)}
    return replace(dep, **{k: add(getattr(dep, k)) for k in _DEP_ARRAYS if k in names})


def _check_finite(arrays: dict[str, np.ndarray]) -> None:
    """Refuse NaN or infinity in any output; the sum of an array is finite exactly when every element is
    (for outputs far below 1e300, as times, bytes and rates are), one pass without a mask."""
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.ndim and 0 in value.strides:  # a broadcast view: its distinct elements only
            value = value[tuple(slice(0, 1) if st == 0 else slice(None) for st in value.strides)]
        if np.issubdtype(value.dtype, np.floating) and not math.isfinite(float(np.sum(value))):
            raise InputError(key, "the model produced a non-finite value; check the scenario's sizes")
