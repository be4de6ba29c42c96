"""Evaluate a scenario over numpy axes: resolve it, build the steps, price them, add memory.

``predict`` (one point) and ``sweep`` (arrays) share this code: a point is a sweep with no axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from costmodels.roofline import BOUND_NAMES, COMMUNICATION, COMPUTE, MEMORY, OVERHEAD, OpCost, OpTime, price
from hwmodels import InputError, get_accelerator
from hwmodels.dtypes import BYTES_PER_ELEMENT, DTYPES
from simulator.bounds import AXIS_LIMITS, check_counts
from simulator.checks import check_compute_format
from simulator.deployment import Deployment
from simulator.footprint import memory_arrays
from simulator.models import get_model
from simulator.parallel import apply_parallelism
from simulator.parallel.overlap import apply_overlaps
from simulator.parallel.pipeline import run_pipelined
from simulator.scenario import Scenario
from simulator.stacks import apply_stack_ops, finish_stack_step, resolve_calibration
from simulator.stacks.bands import band_arrays
from simulator.step import StepShape, build_step
from simulator.techniques import parse_techniques
from simulator.techniques.moe import sparse_utilisation
from simulator.techniques.nanoflow import optimal_tokens_per_s_per_gpu

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


def _lookup(table: dict[str, float], names) -> np.ndarray | float:
    if isinstance(names, np.ndarray):
        return np.vectorize(table.__getitem__, otypes=[float])(names)
    return table[names]


def resolve(scenario: Scenario, axes: dict[str, np.ndarray]) -> tuple[Deployment, dict[str, object]]:
    """Resolve names into specs and scalar-or-array knobs; check parallelism fits the model."""
    gpu = get_accelerator(scenario.hardware.gpu)
    calibration = resolve_calibration(scenario.calibration, gpu)  # a stack profile sits on the GPU's base
    profile = calibration.profile
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
    check_compute_format(gpu, compute)
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
        techniques=tuple(techniques),
        stack=calibration.stack,
        calibration=calibration,
    )
    for tech in techniques:
        dep = tech.apply_deployment(dep)
    dep = apply_parallelism(dep, scenario)
    work = {
        "batch_size": knob("batch_size", wl.batch_size),
        "prompt_len": knob("prompt_len", wl.prompt_len),
        "context_len": knob("context_len", wl.context_len),
        "output_len": knob("output_len", wl.output_len),
        "techniques": techniques,
    }
    return dep, work


def run_step(dep: Deployment, shape: StepShape, overlap: str, techniques=None) -> StepResult:
    """Build, transform and price one step, then combine its operators by the overlap policy.
    ``techniques`` defaults to the deployment's own; each may edit the operator list (``apply_ops``).
    With pp > 1 the stages run micro-batches in flight (``simulator.parallel.pipeline``)."""
    if dep.pp > 1 and not dep.pipeline_stage:
        return run_pipelined(dep, shape, overlap, techniques, run_step)
    ops = build_step(dep, shape)
    for tech in dep.techniques if techniques is None else techniques:
        ops = tech.apply_ops(ops, shape, dep)
    if dep.stack is not None:  # the user's implementation: unfused work, split launches (simulator.stacks)
        ops = apply_stack_ops(dep.stack, ops, shape, dep)
    times = apply_overlaps(ops, [price(op, dep.profile) for op in ops], dep)
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
    if dep.stack is not None:  # the host's pace (eager launches) and per-step costs
        latency, overhead = finish_stack_step(dep.stack, ops, times, latency, overhead, dep)
    flops = sum(np.asarray(op.flops, dtype=float) * op.count for op in ops)
    hbm_bytes = sum(np.asarray(op.hbm_bytes, dtype=float) * op.count for op in ops)
    # every result spans the shape's axes, even where no operator depends on one (e.g. no KV to grow)
    zero = np.zeros(np.broadcast_shapes(*(np.shape(x) for x in (shape.batch, shape.new_tokens, shape.past_tokens,
                                                                 shape.chunk_tokens, shape.chunk_past))))
    sm, hbm, link, overhead, flops, hbm_bytes, latency = (x + zero for x in (sm, hbm, link, overhead, flops,
                                                                          hbm_bytes, latency))
    return StepResult(ops, times, latency, bound + zero.astype(int), sm, hbm, link, overhead, flops, hbm_bytes)


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
                      mean(step.hbm_bytes))


def _pick(condition, if_true: StepResult, if_false: StepResult) -> StepResult:
    """Element-wise choice between two steps' combined quantities (operator lists are not merged)."""
    def pick(name):
        return np.where(condition, getattr(if_true, name), getattr(if_false, name))

    return StepResult([], [], pick("latency_s"), pick("bound"), pick("sm_time_s"), pick("hbm_time_s"),
                      pick("link_time_s"), pick("overhead_s"), pick("flops"), pick("hbm_bytes"))


def evaluate(scenario: Scenario, axes: dict[str, object] | None = None) -> Evaluation:
    """All outputs of a scenario as broadcast arrays over ``axes``."""
    ax = _axis_arrays(axes or {})
    dep, work = resolve(scenario, ax)
    phase = scenario.workload.phase
    overlap = dep.overlap_policy(scenario.overlap)
    ev = Evaluation(scenario, dep, phase, ax, overlap)
    b, prompt, ctx, out_len = work["batch_size"], work["prompt_len"], work["context_len"], work["output_len"]
    a = ev.arrays
    replicas = dep.replicas
    bf = np.asarray(b, dtype=float)
    per_step = dep.tokens_per_step()

    if phase in ("prefill", "generate"):
        pre, pre_new = prefill_step(dep, b, prompt, overlap)
        ev.steps["prefill"] = pre
    if phase == "prefill":
        a["latency_s"] = pre.latency_s
        a["tokens_per_s"] = replicas * bf * prompt / pre.latency_s
        cached, new, processed = prompt, pre_new, bf * prompt
    elif phase == "decode":
        shape = dep.transform_shape(StepShape(b, 1.0, ctx, "decode"))
        dec = run_step(dep, shape, overlap)
        ev.steps["decode"] = dec
        a["latency_s"] = dec.latency_s
        a["tokens_per_s"] = replicas * bf * per_step / dec.latency_s
        cached, new, processed = np.asarray(ctx) + shape.new_tokens, shape.new_tokens, bf * per_step
    else:  # generate: prefill, then output_len - 1 tokens from decode steps over a growing context
        steps = np.maximum(np.asarray(out_len, dtype=float) - 1.0, 0.0)
        nodes = np.asarray(prompt, dtype=float)[..., None] + np.maximum(steps - 1.0, 0.0)[..., None] * _GL_X
        dep_nodes = _with_trailing_axis(dep)
        shape = dep_nodes.transform_shape(StepShape(bf[..., None], 1.0, nodes, "decode"))
        dec = _integrate(run_step(dep_nodes, shape, overlap), 1.0)  # the mean decode step of the generation
        ev.steps["decode"] = dec
        tpot = dec.latency_s / per_step
        a["ttft_s"] = pre.latency_s
        a["tpot_s"] = tpot + 0.0 * pre.latency_s
        a["e2e_s"] = pre.latency_s + steps * tpot
        a["latency_s"] = a["e2e_s"]
        a["tokens_per_s"] = replicas * bf * np.asarray(out_len, dtype=float) / a["e2e_s"]
        cached, new = np.asarray(prompt) + np.asarray(out_len), pre_new
        processed = bf * (np.asarray(prompt, dtype=float) + out_len)
    a["tokens_per_step"] = np.asarray(per_step if phase != "prefill" else 1.0, dtype=float) + 0.0 * a["latency_s"]

    main = ev.steps.get("decode" if phase == "decode" else "prefill")
    if phase == "generate":  # the phase that takes most of the request's time is the one reported
        main = _pick(steps * a["tpot_s"] > a["ttft_s"], ev.steps["decode"], main)
    a["bound"] = main.bound
    for key in ("sm_time_s", "hbm_time_s", "link_time_s", "overhead_s"):
        a[key] = getattr(main, key)
    a["mfu"] = main.flops / (main.latency_s * dep.peak_flops_per_s)
    a["mbu"] = main.hbm_bytes / (main.latency_s * dep.hbm_bandwidth_bytes_per_s)
    a.update(memory_arrays(dep, b, cached, new))

    # MoE-CAP's sparsity-aware utilisation of the phase that sets the pace, and NanoFlow's optimum
    if phase == "prefill":
        s_args = (bf, prompt, prompt, pre.latency_s)
    elif phase == "decode":
        s_args = (bf, ctx, per_step, a["latency_s"])
    else:
        s_args = (bf, np.asarray(prompt, dtype=float) + out_len / 2.0, per_step, a["tpot_s"] * per_step)
    a["s_mbu"], a["s_mfu"] = sparse_utilisation(dep, *s_args, phase="prefill" if phase == "prefill" else "decode")
    gpus_used = replicas * np.asarray(dep.tp, dtype=float) * dep.pp
    optimum = optimal_tokens_per_s_per_gpu(dep)
    a["optimal_tokens_per_s_per_gpu"] = optimum + 0.0 * a["latency_s"]
    a["optimal_fraction"] = replicas * processed / a["latency_s"] / gpus_used / optimum
    bands, ev.band_basis = band_arrays(ev, work)  # 10-90% error bands of the calibration in use
    a.update(bands)
    shape = np.broadcast_shapes(*(np.shape(v) for v in a.values()))
    for key, value in a.items():
        a[key] = np.broadcast_to(value, shape)
    _check_finite(a)
    return ev


_DEP_ARRAYS = ("tp", "weight_bytes", "kv_bytes", "act_bytes", "peak_flops_per_s", "embedding_bytes")


def _with_trailing_axis(dep: Deployment) -> Deployment:
    """A copy whose array knobs get a trailing axis, to broadcast against quadrature nodes."""
    def add(x):
        return x[..., None] if isinstance(x, np.ndarray) else x

    names = {f.name for f in fields(dep)}
    return replace(dep, **{k: add(getattr(dep, k)) for k in _DEP_ARRAYS if k in names})


def _check_finite(arrays: dict[str, np.ndarray]) -> None:
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise InputError(key, "the model produced a non-finite value; check the scenario's sizes")
