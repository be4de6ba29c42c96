"""A priced step (``StepResult``) and how its operators' times add up: by shape for a sweep (a small
array is never broadcast to the grid to be summed), in one pass of Python floats for a point, and the
bound with the most summed time per point. ``simulator.engine.run_step`` builds and prices the step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from costmodels.roofline import BOUND_NAMES, OpCost, OpTime
from hwmodels.profile import GEMM_KINDS


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
    # what the utilisation metrics need (``simulator.metrics``): the step's FLOPs each at the peak of its
    # operator's number format, the KV bytes and attention-core FLOPs of its attention operators, and
    # the tokens through its GEMMs
    format_peak_s: np.ndarray | float = 0.0
    kv_read_bytes: np.ndarray | float = 0.0
    attention_flops: np.ndarray | float = 0.0
    tokens: np.ndarray | float = 0.0
    # the weight bytes the layers' GEMMs read and the FLOPs of work they do (per GPU, over their launches):
    # S-MBU's weight term and S-MFU's parameter term
    weight_read_bytes: np.ndarray | float = 0.0
    layer_gemm_flops: np.ndarray | float = 0.0

    @property
    def format_peak_flops_per_s(self):
        """The FLOP-weighted (harmonic) mean of the operators' format peaks."""
        return self.flops / self.format_peak_s


def total(values, owned: bool = False):
    """Sum of per-operator values without broadcasting a small one to the grid first: values of one
    shape are added together, then the per-shape sums from the smallest up (plain floats stay floats).
    ``owned``: the values are arrays just computed for this sum, so the largest takes the others in place
    (a sweep's grid is not allocated again)."""
    if all(type(v) is float for v in values):
        return sum(values)
    groups: dict[tuple, list] = {}
    for v in values:
        groups.setdefault(np.shape(v), []).append(v)
    parts = sorted((chain_sum(g) for g in groups.values()), key=np.size)
    if not parts:
        return 0.0
    total = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        last = i == len(parts) - 1
        if last and owned and isinstance(part, np.ndarray) and part.ndim \
                and np.broadcast_shapes(part.shape, np.shape(total)) == part.shape:
            part += total  # the same sum (addition commutes exactly)
            total = part
        else:
            total = total + part
    return total


def point_step(ops, times, dep, shape, overlap: str) -> StepResult | None:
    """``run_step``'s sums for a point (every operator priced in floats) in one pass of Python floats;
    None when any value is an array (then the array path sums them)."""
    dtype_peak, tokens = dep.peak_flops_per_s, shape.tokens
    if type(dtype_peak) is not float or type(tokens) is not float or dep.stack is not None:
        return None
    sm = hbm = link = overhead = flops = hbm_bytes = format_s = kv_read = att_flops = serial = weights = 0.0
    gemm_flops = 0.0
    by_bound = [0.0] * len(BOUND_NAMES)
    for op, t in zip(ops, times):
        time_s, op_flops, count, kind = t.time_s, op.flops, op.count, op.kind
        if type(time_s) is not float or type(op_flops) is not float or type(op.hbm_bytes) is not float \
                or type(count) not in (int, float):
            return None
        sm += t.compute_s
        hbm += t.memory_s
        link += t.link_s
        overhead += t.overhead_s
        by_bound[t.bound] += time_s
        serial += time_s
        op_flops = op_flops * count
        flops += op_flops
        hbm_bytes += op.hbm_bytes * count
        if kind in TRANSFER_KINDS:
            continue
        if op_flops:
            peak = getattr(op, "format_peak_flops_per_s", None)  # ``nominal_peak``, inline: the point path
            if peak is None:
                peak = op.peak_flops_per_s
            format_s += op_flops * getattr(op, "work_fraction", 1.0) / (peak if peak > dtype_peak else dtype_peak)
        if kind in ATTENTION_KINDS:
            kv = getattr(op, "kv_read_bytes", 0.0)
            if type(kv) is not float:
                return None
            kv_read += kv * count
            att_flops += op_flops
        elif kind in GEMM_KINDS and getattr(op, "per_layer", False):
            w = op.weight_bytes
            if type(w) is not float:
                return None
            weights += w * count
            gemm_flops += op_flops * op.work_fraction
    if overlap == "overlapped":
        by_resource = [sm, hbm, link, overhead]
        latency = max(by_resource)
    else:
        by_resource = by_bound
        latency = serial
    bound = by_resource.index(max(by_resource))  # resource codes are the bound codes, in order
    return StepResult(ops, times, latency, bound, sm, hbm, link, overhead, flops, hbm_bytes, format_s, kv_read,
                      att_flops, tokens, weights, gemm_flops)


def chain_sum(values: list):
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def serial_bound(times: list[OpTime]):
    """The bound code with the most summed operator time, per point. Operators with one bound everywhere
    add to that code's (usually small) total; one operator that varies over the whole grid (the attention
    core, whose size is batch x context and whose bound is memory, compute or overhead by size) is
    compared with those totals instead: its code c is the answer where its time t beats the best total
    minus S_c, else the best of the totals (one pass over the grid per code it takes). Smaller operators
    whose bound varies, and several full-size ones, add each code's share, masked at their own shape."""
    sizes = [np.size(t.time_s) for t in times]
    grid = max(sizes, default=1)
    per_code: list[list] = [[] for _ in BOUND_NAMES]
    special = []
    def masked(codes, time_s, low, high):
        if low == high:  # one bound everywhere: no per-code masks
            per_code[low].append(time_s)
            return
        for code in range(low, high + 1):
            per_code[code].append(np.where(codes == code, time_s, 0.0))

    for t, size in zip(times, sizes):
        codes = np.asarray(t.bound)
        low, high = (int(codes), int(codes)) if codes.ndim == 0 else (int(codes.min()), int(codes.max()))
        if size < grid or grid == 1:  # at its own (small) shape
            masked(codes, t.time_s, low, high)
        else:
            special.append((codes, t.time_s, low, high))
    if len(special) > 1:  # general case: full-size masks per code
        for entry in special:
            masked(*entry)
        special = []
    totals = [total(c) for c in per_code]
    best = argmax_codes(totals)
    if not special:
        return best
    codes, time_s, low, high = special[0]
    top = totals[0]
    for value in totals[1:]:
        top = np.maximum(top, value)  # the best total (small)
    out = best
    for code in range(low, high + 1):
        if low != high:
            takes = codes == code
            if not takes.any():  # a code between the lowest and highest the operator never takes
                continue
        wins = time_s > top - totals[code]
        if low != high:
            wins &= takes
        out = np.where(wins, np.int8(code), out)
    return out


def argmax_codes(values: list):
    """Index of the largest of ``values`` element-wise (the first on ties), without stacking them."""
    live = [(code, v) for code, v in enumerate(values) if not (np.ndim(v) == 0 and float(v) == 0.0)]
    if not live:
        return np.zeros((), dtype=np.int64)
    (code, best), arg = live[0], None
    arg = np.asarray(code, dtype=np.int8)
    for i, (code, value) in enumerate(live[1:], start=2):
        better = value > best
        if i < len(live):
            best = np.maximum(best, value)
        arg = np.where(better, np.int8(code), arg)
    return arg


TRANSFER_KINDS = ("collective", "host_transfer")
ATTENTION_KINDS = ("attention_prefill", "attention_decode")


def layer_gemms(ops):
    """The layers' GEMM operators (per-layer GEMMs: not the LM head), as they are priced (routed experts:
    the rows routed to them, the distinct experts touched; only the layers a technique runs)."""
    return [op for op in ops if op.kind in GEMM_KINDS and getattr(op, "per_layer", False)]


def layer_weight_read_bytes(ops):
    """The weight bytes the layers' GEMMs read over their launches."""
    return [op.weight_bytes * op.count for op in layer_gemms(ops)]


def layer_gemm_flops(ops):
    """The FLOPs of work the layers' GEMMs do over their launches (``StepOp.work_fraction``: not the rows a
    GPU waits for)."""
    return [op.flops * op.count * op.work_fraction for op in layer_gemms(ops)]


def nominal_peak(op):
    """The peak of an operator's number format (``StepOp.format_peak_flops_per_s`` where its peak was scaled
    to an engine's efficiency, else its peak)."""
    peak = getattr(op, "format_peak_flops_per_s", None)
    return op.peak_flops_per_s if peak is None else peak


def format_peak(op_peak, dtype_peak):
    if isinstance(op_peak, float) and isinstance(dtype_peak, float):
        return op_peak if op_peak > dtype_peak else dtype_peak
    return np.maximum(op_peak, dtype_peak)
