"""Pipeline parallelism for inference: micro-batches in flight through p stages.

The batch runs as m micro-batches of b/m sequences (default m = p, enough to fill the pipe; in decode
at most b, since one sequence's token cannot be split). Each stage
holds ceil(L/p) layers; the first also runs the embedding, the last the final norm and the LM head.
With t_s the slowest stage's time for one micro-batch and t_x one send/recv of its activations
between adjacent stages (``send_recv`` over the link between the stages' GPUs):

* a stage slot is ``max(t_s, t_x)`` when the transfer overlaps the next micro-batch's compute
  (``parallelism.overlap.pp: next_microbatch``), else ``t_s + t_x``;
* decode: every sequence advances one token per cycle, cycle = max(m · slot, p · (t_s + t_x)): with the
  pipe full (m >= p) every stage is busy all the time, otherwise a micro-batch waits for its own trip
  through the p stages (GPipe's bubble, Huang et al. 2019, arXiv 1811.06965; inference pipelining as
  in FasterTransformer / vLLM's pipeline-parallel scheduler). Throughput b / cycle; a token's latency
  through all stages p · (t_s + t_x);
* prefill: the last micro-batch finishes after p · (t_s + t_x) + (m - 1) · slot (fill, then one slot per
  micro-batch; bubble fraction (p - 1)/(m + p - 1), Narayanan et al. 2021, arXiv 2104.04473, §2.2).

The step's breakdown is the slowest stage's operators over one cycle (m micro-batches) plus
``pipeline.bubble``, the time that stage waits. Training schedules (1F1B, interleaved) live in
``simulator.training``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from costmodels.roofline import OVERHEAD, OpCost, OpTime
from simulator.priced import layer_gemm_flops, layer_weight_read_bytes

FIRST_STAGE = ("embedding",)
LAST_STAGE = ("final_norm", "lm_head")
SEND = "pipeline.send_recv"


@dataclass
class PipelineTimes:
    """The pipeline's quantities (seconds, arrays): stage time and transfer of one micro-batch, the
    slot, the cycle (decode) or makespan (prefill), and one token's trip through all stages."""

    microbatches: int
    stage_s: np.ndarray
    send_s: np.ndarray
    slot_s: np.ndarray
    step_s: np.ndarray
    trip_s: np.ndarray


def microbatches(dep) -> int:
    return int(dep.microbatches or dep.pp)


def micro_shape(shape, m: int):
    """One micro-batch of ``shape``: b/m sequences (the mixed-in prefill chunk split alike)."""
    return replace(shape, batch=np.asarray(shape.batch, dtype=float) / m,
                   chunk_tokens=np.asarray(shape.chunk_tokens, dtype=float) / m)


def _stage_of(op) -> str:
    if op.name == SEND:
        return "send"
    if op.name.startswith(FIRST_STAGE):
        return "first"
    if op.name.startswith(LAST_STAGE):
        return "last"
    return "layer" if getattr(op, "per_layer", False) else "last"


def run_pipelined(dep, shape, overlap: str, techniques, run_step):
    """The step of a p-stage pipeline: ``run_step`` prices one micro-batch through every stage, and the
    stages are composed as above. Returns ``run_step``'s ``StepResult`` with a ``pipeline`` attribute."""
    m, p = microbatches(dep), dep.pp
    if shape.phase == "decode":  # a decode step cannot split a sequence: at most one micro-batch per sequence
        m = np.minimum(m, np.maximum(np.asarray(shape.batch, dtype=float), 1.0))
        m = float(m) if np.ndim(m) == 0 else m
    one = run_step(replace(dep, pipeline_stage=True), micro_shape(shape, m), overlap, techniques)
    layers = dep.model.num_layers
    share = np.ceil(layers / p) / layers
    parts = {"layer": 0.0, "first": 0.0, "last": 0.0, "send": 0.0}
    for op, t in zip(one.ops, one.times):
        parts[_stage_of(op)] = parts[_stage_of(op)] + t.time_s
    total = sum(parts.values())
    scale = np.where(total > 0, one.latency_s / np.where(total > 0, total, 1.0), 1.0)  # the overlap policy's share
    first = (share * parts["layer"] + parts["first"]) * scale
    last = (share * parts["layer"] + parts["last"]) * scale
    stage = np.maximum(first, last)
    send = np.asarray(parts["send"], dtype=float) / max(p - 1, 1)
    hidden = (dep.overlap_boundaries or {}).get("pp", "none") == "next_microbatch"
    slot = np.maximum(stage, send) if hidden else stage + send
    trip = p * (stage + send)
    step = trip + (m - 1) * slot if shape.phase == "prefill" else np.maximum(m * slot, trip)
    result = _busiest_stage(one, m, share, last_is_slower=bool(np.mean(last) >= np.mean(first)),
                            step=step, send_hidden=np.where(hidden, send - np.maximum(send - stage, 0.0), 0.0), p=p)
    result.pipeline = PipelineTimes(int(np.max(m)), stage, send, slot, step, trip)
    return result


def _busiest_stage(one, m, share, last_is_slower: bool, step, send_hidden, p: int):
    """The slowest stage's operators over one cycle, a ``pipeline.bubble`` filling the cycle, and totals."""
    own = "last" if last_is_slower else "first"
    ops, times = [], []
    for op, t in zip(one.ops, one.times):
        where = _stage_of(op)
        if where in ("first", "last") and where != own:
            continue
        f = m * (share if where == "layer" else 1.0) / (max(p - 1, 1) if where == "send" else 1.0)
        hidden = send_hidden * m if where == "send" else 0.0
        scaled = replace(t, compute_s=t.compute_s * f, memory_s=t.memory_s * f, link_s=t.link_s * f,
                         overhead_s=t.overhead_s * f, time_s=np.maximum(t.time_s * f - hidden, 0.0),
                         hidden_s=np.asarray(t.hidden_s) * f + hidden)
        ops.append(replace(op, count=op.count * f))
        times.append(scaled)
    busy = sum(t.time_s for t in times)
    bubble = np.maximum(step - busy, 0.0)
    zero = 0.0 * bubble
    ops.append(OpCost("pipeline.bubble", "bubble", 1))
    times.append(OpTime("pipeline.bubble", zero, zero, zero, bubble, bubble, zero.astype(int) + OVERHEAD))
    res = replace(one, ops=ops, times=times, latency_s=step + 0.0 * one.latency_s)
    res.sm_time_s = sum(t.compute_s for t in times[:-1]) + zero
    res.hbm_time_s = sum(t.memory_s for t in times[:-1]) + zero
    res.link_time_s = sum(t.link_s for t in times[:-1]) + zero
    res.overhead_s = sum(t.overhead_s for t in times[:-1]) + zero
    res.flops = sum(np.asarray(op.flops, dtype=float) * op.count for op in ops[:-1]) + zero
    res.hbm_bytes = sum(np.asarray(op.hbm_bytes, dtype=float) * op.count for op in ops[:-1]) + zero
    # the metrics' inputs (simulator.metrics) follow the FLOPs and bytes of the busiest stage's cycle
    flop_ratio = np.where(one.flops > 0, res.flops / np.where(one.flops > 0, one.flops, 1.0), 0.0)
    res.format_peak_s = one.format_peak_s * flop_ratio
    res.attention_flops = one.attention_flops * flop_ratio
    res.kv_read_bytes = one.kv_read_bytes * flop_ratio
    res.weight_read_bytes = sum(layer_weight_read_bytes(ops[:-1])) + zero  # the busiest stage's, over the cycle
    res.layer_gemm_flops = sum(layer_gemm_flops(ops[:-1])) + zero
    res.tokens = one.tokens * m
    return res
