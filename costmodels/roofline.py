"""Time of one operator on one device: the roofline with calibrated efficiencies.

``t = count * (max(flops / (peak * eff_c), bytes / (bw * eff_m)) + overhead)`` for kernels
(Williams, Waterman & Patterson, "Roofline", CACM 2009), and ``t = count * (alpha_terms +
bytes / (link_bw * eff_link))`` for transfers over a link (alpha-beta model, Hockney 1994).
Everything broadcasts over numpy arrays of workload shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwmodels.profile import Profile

# Bound labels, as small integers so that they vectorise; BOUND_NAMES maps them to words.
COMPUTE, MEMORY, COMMUNICATION, OVERHEAD = 0, 1, 2, 3  # (price's array path relies on COMPUTE 0, MEMORY 1)
BOUND_NAMES = ("compute", "memory", "communication", "overhead")
_CODE = tuple(np.int8(code) for code in range(len(BOUND_NAMES)))  # one byte per point in bound arrays


@dataclass(slots=True)
class OpCost:
    """What one operator does per launch, per GPU. Arrays broadcast over the workload axes.

    ``kind`` selects the profile's efficiencies. Kernels set ``flops`` and ``hbm_bytes``; transfers
    set ``link_bytes`` and ``link_latency_s`` (the alpha terms of one launch, already multiplied by
    the number of algorithm steps) and ``link_bandwidth_bytes_per_s``. A transfer whose cost model has
    already applied its efficiencies (a collective over the links it spans, ``simulator.parallel.comm``)
    sets ``link_efficiency`` (the fraction of ``link_bandwidth_bytes_per_s`` it reaches) and
    ``link_overhead_s`` (per launch) in place of the profile's curve and overhead for ``kind``.
    """

    name: str
    kind: str
    count: float
    flops: np.ndarray | float = 0.0
    hbm_bytes: np.ndarray | float = 0.0
    link_bytes: np.ndarray | float = 0.0
    link_latency_s: np.ndarray | float = 0.0
    link_bandwidth_bytes_per_s: float = 0.0
    peak_flops_per_s: np.ndarray | float = 0.0
    hbm_bandwidth_bytes_per_s: float = 0.0
    link_efficiency: np.ndarray | float | None = None
    link_overhead_s: np.ndarray | float | None = None
    notes: str = field(default="", compare=False)

    @property
    def is_transfer(self) -> bool:
        return self.kind in ("collective", "host_transfer")


@dataclass(slots=True)
class OpTime:
    """Per-resource time of one operator summed over its launches (seconds, broadcast arrays)."""

    name: str
    compute_s: np.ndarray
    memory_s: np.ndarray
    link_s: np.ndarray
    overhead_s: np.ndarray
    time_s: np.ndarray
    bound: np.ndarray  # int codes, see BOUND_NAMES
    hidden_s: np.ndarray | float = 0.0  # part of the time overlapped with other operators (not in time_s)


def _is_scalar(x) -> bool:
    return type(x) is float or isinstance(x, (int, np.generic)) or (isinstance(x, np.ndarray) and x.ndim == 0)


def price(op: OpCost, profile: Profile) -> OpTime:
    """Time of ``op`` under ``profile``: roofline for kernels, alpha-beta for transfers.

    A point (every size a scalar) is priced with Python floats (fields are floats, ``bound`` an int):
    the same formulas without numpy's per-call cost, which dominates on scalars."""
    kind = op.kind
    eff = profile.kinds.get(kind)
    if eff is None:  # an optional kind the profile lacks: its fallback
        eff = profile.kind(kind)
    flops, hbm, count = op.flops, op.hbm_bytes, op.count
    if type(flops) is float and type(hbm) is float and (type(count) is int or type(count) is float):
        # Python floats throughout (``_price_point``'s formulas, without its conversions); a kernel's
        # point reads only its own sizes and peaks, a transfer's only its link terms
        if kind not in _TRANSFER:
            peak, bw = op.peak_flops_per_s, op.hbm_bandwidth_bytes_per_s
            if type(peak) is float and type(bw) is float:
                overhead = count * eff.overhead_s
                # (no work: no efficiency to look up; 0 / x is 0 at any efficiency)
                compute = count * flops / (peak * eff.compute.at(flops)) if flops else count * flops / peak
                memory = count * hbm / (bw * eff.memory.at(hbm)) if hbm else count * hbm / bw
                if compute >= memory:
                    return OpTime(op.name, compute, memory, 0.0, overhead, compute + overhead,
                                  OVERHEAD if overhead > compute else COMPUTE)
                return OpTime(op.name, compute, memory, 0.0, overhead, memory + overhead,
                              OVERHEAD if overhead > memory else MEMORY)
        else:
            link_bytes, link_eff, link_overhead = op.link_bytes, op.link_efficiency, op.link_overhead_s
            if type(link_bytes) is float and type(op.link_latency_s) is float \
                    and (link_eff is None or _is_scalar(link_eff)) \
                    and (link_overhead is None or _is_scalar(link_overhead)):
                if link_bytes <= 0.0:
                    return OpTime(op.name, 0.0, 0.0, 0.0, 0.0, 0.0, COMMUNICATION)
                overhead = count * (eff.overhead_s if link_overhead is None else float(link_overhead))
                reach = eff.memory.at(link_bytes) if link_eff is None else float(link_eff)
                link = count * (op.link_latency_s + link_bytes / (op.link_bandwidth_bytes_per_s * reach))
                return OpTime(op.name, 0.0, 0.0, link, overhead, link + overhead, COMMUNICATION)
    scalar_link = ((op.link_efficiency is None or _is_scalar(op.link_efficiency))
                   and (op.link_overhead_s is None or _is_scalar(op.link_overhead_s)))
    if (_is_scalar(op.flops) and _is_scalar(op.hbm_bytes) and _is_scalar(op.link_bytes)
            and _is_scalar(op.link_latency_s) and _is_scalar(op.peak_flops_per_s) and _is_scalar(op.count)
            and _is_scalar(op.hbm_bandwidth_bytes_per_s) and scalar_link):
        return _price_point(op, eff)
    if op.is_transfer:
        zero = np.zeros_like(np.asarray(op.flops, dtype=float) + np.asarray(op.hbm_bytes, dtype=float)
                             + np.asarray(op.link_bytes, dtype=float))
        overhead = zero + op.count * (eff.overhead_s if op.link_overhead_s is None else op.link_overhead_s)
        link_bytes = np.asarray(op.link_bytes, dtype=float)
        bw = op.link_bandwidth_bytes_per_s * (eff.memory(link_bytes) if op.link_efficiency is None
                                              else op.link_efficiency)
        link = op.count * (op.link_latency_s + np.where(link_bytes > 0, link_bytes / bw, 0.0)) + zero
        link = np.where(link_bytes > 0, link, 0.0)
        overhead = np.where(link_bytes > 0, overhead, 0.0)
        return OpTime(op.name, zero, zero, link, overhead, link + overhead, zero.astype(int) + COMMUNICATION)
    flops = np.asarray(op.flops, dtype=float)
    hbm = np.asarray(op.hbm_bytes, dtype=float)
    # scalar factors first, so that an array is touched once per operation
    compute = _scaled(flops, op.count / np.asarray(op.peak_flops_per_s, dtype=float), eff.compute)
    memory = _scaled(hbm, op.count / np.asarray(op.hbm_bandwidth_bytes_per_s, dtype=float), eff.memory)
    compute, memory = np.broadcast_arrays(compute, memory)
    busy = np.maximum(compute, memory)
    bound = np.less(compute, memory).view(np.int8)  # MEMORY (1) where memory takes longer, else COMPUTE (0)
    overhead = np.asarray(op.count * eff.overhead_s, dtype=float)
    if np.any(overhead > 0.0):
        bound = np.where(overhead > busy, _CODE[OVERHEAD], bound)
    if busy.ndim and np.shape(overhead) == ():
        busy += overhead  # busy is this call's own array: the time, without another one
        return OpTime(op.name, compute, memory, np.zeros(()), overhead, busy, bound)
    return OpTime(op.name, compute, memory, np.zeros(()), overhead, busy + overhead, bound)


def _scaled(size, factor, curve):
    """``size * factor / curve(size)`` as ``size * (factor / curve(size))``, each step in the array the
    curve returned (a sweep's grid allocated once); a one-knot curve is a constant, folded into the
    factor."""
    if len(curve.efficiency) == 1:
        return size * (factor / curve.efficiency[0])
    if size.ndim and np.ndim(factor) == 0 and size.dtype == np.float64:
        return curve.size_over(size, float(factor))
    eff = curve(size)
    if not isinstance(eff, np.ndarray) or eff.shape != np.broadcast_shapes(eff.shape, np.shape(factor)):
        return size * (factor / eff)
    np.divide(factor, eff, out=eff)
    eff *= size
    return eff


_TRANSFER = ("collective", "host_transfer")


def _price_point(op: OpCost, eff) -> OpTime:
    """``price`` of one point, in floats (same formulas as the array path)."""
    count = float(op.count)
    overhead = count * (eff.overhead_s if op.link_overhead_s is None else float(op.link_overhead_s))
    if op.is_transfer:
        link_bytes = float(op.link_bytes)
        if link_bytes <= 0.0:
            return OpTime(op.name, 0.0, 0.0, 0.0, 0.0, 0.0, COMMUNICATION)
        bw = op.link_bandwidth_bytes_per_s * (eff.memory.at(link_bytes) if op.link_efficiency is None
                                              else float(op.link_efficiency))
        link = count * (float(op.link_latency_s) + link_bytes / bw)
        return OpTime(op.name, 0.0, 0.0, link, overhead, link + overhead, COMMUNICATION)
    flops, hbm = float(op.flops), float(op.hbm_bytes)
    compute = count * flops / (float(op.peak_flops_per_s) * eff.compute.at(flops))
    memory = count * hbm / (op.hbm_bandwidth_bytes_per_s * eff.memory.at(hbm))
    busy = compute if compute >= memory else memory
    bound = OVERHEAD if overhead > busy else (COMPUTE if compute >= memory else MEMORY)
    return OpTime(op.name, compute, memory, 0.0, overhead, busy + overhead, bound)


def roofline_time_s(flops, nbytes, peak_flops_per_s, bandwidth_bytes_per_s, compute_eff=1.0, memory_eff=1.0,
                    overhead_s=0.0):
    """One launch: ``max(F / (P · eff_c), B / (BW · eff_m)) + overhead`` (the formula ``price`` evaluates;
    calibration fits its efficiencies through this function, so fit and prediction cannot drift)."""
    return np.maximum(flops / (peak_flops_per_s * compute_eff), nbytes / (bandwidth_bytes_per_s * memory_eff)) \
        + overhead_s


def compute_bound_at_peak(flops, nbytes, peak_flops_per_s, bandwidth_bytes_per_s):
    """Whether the ideal roofline floor of a launch is set by compute (F/P >= B/BW)."""
    return np.asarray(flops, dtype=float) / peak_flops_per_s >= np.asarray(nbytes, dtype=float) / bandwidth_bytes_per_s


def floor_time(op: OpCost) -> np.ndarray:
    """The ideal roofline floor of ``op`` (100% of every peak, no overhead): a lower bound on any profile."""
    if op.is_transfer:
        link_bytes = np.asarray(op.link_bytes, dtype=float)
        return np.where(link_bytes > 0, op.count * (op.link_latency_s + link_bytes / op.link_bandwidth_bytes_per_s), 0.0)
    return op.count * np.maximum(
        np.asarray(op.flops, dtype=float) / op.peak_flops_per_s,
        np.asarray(op.hbm_bytes, dtype=float) / op.hbm_bandwidth_bytes_per_s,
    )
