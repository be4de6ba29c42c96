"""The time of one engine step for a batch the scheduler formed, from roofsim's own step model.

A step runs ``decode`` sequences (one new token each after their cached context) and prefill chunks
(``chunk_tokens`` new prompt tokens after ``chunk_past`` already computed). The deployment is resolved
once per scenario (``simulator.resolve.resolve``) with the scenario's techniques and calibration, and a
batch is priced by ``simulator.engine.run_step`` on one ``StepShape``:

* decodes present: ``StepShape(b, 1, mean context, "decode", chunk_tokens=N, chunk_past=P)`` with N the
  chunks' total tokens. Decode attention's FLOPs and bytes are linear in each sequence's context, so the
  mean context is exact for them. Several chunks are one chunk of N tokens whose ``P`` gives the same
  causal (query, key) pairs, P = (Σ pairs_i - N(N+1)/2) / N (exact for one chunk; for several fresh
  prompts P clips at 0 and the merged chunk counts the cross-prompt pairs a per-request mask skips).
* prefills only: ``StepShape(k, N/k, P, "prefill")`` (k prompts of the mean length, P matching pairs;
  exact for equal chunks), as ``predict`` prices a prefill of ``batch_size`` prompts.

Techniques the scheduler itself carries out are left out of the step model: ``chunked_prefill``
(the scheduler chunks) and ``prefix_cache`` (the scheduler's block cache decides what is computed).
Every other technique (speculative decoding's verify pass, quantisation, MoE, ...) acts through the
deployment's hooks exactly as in ``predict``.

Speed: the DES asks for tens of thousands of steps, and one ``run_step`` costs ~2 ms, while a
vectorised one costs ~3 µs a point. ``StepTimer.seconds`` therefore interpolates multilinearly in a
table over (decode count, mean context, chunk tokens, chunk past) (decode-only steps: the
first two) whose grid is exact on 0..15 and
geometric above (16 points per octave, ratio 2^(1/16)), filled lazily in vectorised blocks. The step
time is smooth and nearly piecewise linear in each axis, so the interpolation stays within 0.5% of the
exact step (``tests/serving/test_steptime.py``); ``StepTimer.exact`` prices a batch without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from costmodels.attention import attended_pairs
from simulator.api import as_scenario
from simulator.engine import run_step
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.step import StepShape

SCHEDULER_TECHNIQUES = ("chunked_prefill", "prefix_cache")
_K = 16  # grid points 0..K-1 exactly, then K per octave


@dataclass(frozen=True)
class Batch:
    """What one step runs: each decode sequence's cached tokens, and each prefill chunk's new and past tokens."""

    decode_context: Sequence[float] = ()
    chunk_tokens: Sequence[float] = ()
    chunk_past: Sequence[float] = ()


def _grid_value(j):
    j = np.asarray(j, dtype=float)
    return np.where(j < _K, j, _K * np.exp2((j - _K) / _K))


class _LazyGrid:
    """``fn`` on a grid, filled block by block on demand, interpolated multilinearly between grid points."""

    def __init__(self, fn, block: tuple[int, ...]):
        self.fn = fn
        self.block = block
        self.values: dict[tuple[int, ...], float] = {}
        self.fills = 0

    def _fill(self, idx: tuple[int, ...]) -> None:
        ranges = [np.arange(i // n * n, i // n * n + n) for i, n in zip(idx, self.block)]
        mesh = np.meshgrid(*ranges, indexing="ij")
        values = self.fn(*(_grid_value(m) for m in mesh))
        keys = zip(*(m.ravel().tolist() for m in mesh))
        self.values.update(zip(keys, values.ravel().tolist()))
        self.fills += 1

    def at2(self, x: float, y: float) -> float:
        """``self(x, y)`` for a 2-D grid, unrolled (the DES calls this once per step part)."""
        u = x if x < _K else _K + _K * math.log2(x / _K)
        i = int(u)
        x0 = _scalar_grid(i)
        wx = (x - x0) / (_scalar_grid(i + 1) - x0)
        u = y if y < _K else _K + _K * math.log2(y / _K)
        j = int(u)
        y0 = _scalar_grid(j)
        wy = (y - y0) / (_scalar_grid(j + 1) - y0)
        values = self.values
        total = 0.0
        for idx, weight in (((i, j), (1.0 - wx) * (1.0 - wy)), ((i + 1, j), wx * (1.0 - wy)),
                            ((i, j + 1), (1.0 - wx) * wy), ((i + 1, j + 1), wx * wy)):
            if weight > 1e-12:
                value = values.get(idx)
                if value is None:
                    self._fill(idx)
                    value = values[idx]
                total += weight * value
        return total

    def __call__(self, *x: float) -> float:
        corners = [((), 1.0)]  # (grid index, weight) of the corners with a non-zero weight
        for v in x:
            u = v if v < _K else _K + _K * math.log2(v / _K)
            j = int(u)
            g0 = _scalar_grid(j)
            w = (v - g0) / (_scalar_grid(j + 1) - g0)
            if w <= 1e-12:
                corners = [(idx + (j,), cw) for idx, cw in corners]
            else:
                corners = [(idx + (j + 1,), cw * w) for idx, cw in corners] + \
                          [(idx + (j,), cw * (1.0 - w)) for idx, cw in corners]
        total = 0.0
        values = self.values
        for idx, weight in corners:
            value = values.get(idx)
            if value is None:
                self._fill(idx)
                value = values[idx]
            total += weight * value
        return total


@lru_cache(maxsize=4096)
def _scalar_grid(j: int) -> float:
    return float(j) if j < _K else _K * 2.0 ** ((j - _K) / _K)


def _part(name: str) -> str:
    if name.endswith(".chunk"):
        return "chunk"
    return "decode" if (".attention." in "." + name) else "linear"


def merged_chunk(chunk_tokens: Sequence[float], chunk_past: Sequence[float]) -> tuple[float, float]:
    """(N, P): the chunks' total tokens and the past that gives one N-token chunk their causal pairs."""
    n = float(sum(chunk_tokens))
    if n <= 0:
        return 0.0, 0.0
    pairs = float(np.sum(attended_pairs(np.asarray(chunk_tokens, float), np.asarray(chunk_past, float))))
    return n, max(0.0, (pairs - n * (n + 1.0) / 2.0) / n)


class StepTimer:
    """Step times of one scenario's deployment (resolved once)."""

    def __init__(self, scenario: Scenario | dict[str, Any] | None = None):
        sc = as_scenario(scenario)
        kept = [t for t in sc.techniques if t.get("name") not in SCHEDULER_TECHNIQUES]
        self.scenario = sc.model_copy(update={"techniques": kept}) if len(kept) != len(sc.techniques) else sc
        self.dep, _ = resolve(self.scenario, {})
        self.overlap = self.dep.overlap_policy(self.scenario.overlap)
        self.tokens_per_step = float(self.dep.tokens_per_step())
        self._memo: dict[tuple, float] = {}
        self._decode = _LazyGrid(self._decode_fn, (16, 8))
        self._mixed = _LazyGrid(self._mixed_fn, (4, 4, 4, 4))
        self._prefill = _LazyGrid(self._prefill_fn, (4, 4, 4))
        self._linear = _LazyGrid(lambda b, n: self._part_fn("linear", b, 1.0, n, 0.0), (16, 16))
        self._attend = _LazyGrid(lambda b, c: self._part_fn("decode", b, c, 1.0, 0.0), (16, 8))
        self._chunk = _LazyGrid(lambda n, p: self._part_fn("chunk", 1.0, 1.0, n, p), (16, 16))
        self.separable = self.overlap == "serial" and self._check_separable()

    # --- shapes --------------------------------------------------------------------------------------

    def _mixed_shape(self, b, context, n, p) -> StepShape:
        return self.dep.transform_shape(StepShape(b, 1.0, context, "decode", chunk_tokens=n, chunk_past=p))

    def _prefill_shape(self, k, n, p) -> StepShape:
        return self.dep.transform_shape(StepShape(k, n, p, "prefill"))

    def _run(self, shape: StepShape):
        return run_step(self.dep, shape, self.overlap)

    def _mixed_fn(self, b, context, n, p):
        b, context = np.maximum(b, 1.0), np.maximum(context, 1.0)
        out = np.empty(np.shape(b))
        has = n > 0  # a step with no chunk has no chunk-attention launch: price those points apart
        for mask in (has, ~has):
            if np.any(mask):
                out[mask] = self._run(self._mixed_shape(b[mask], context[mask], n[mask], p[mask])).latency_s
        return out

    def _part_fn(self, part: str, b, context, n, p):
        """Serial time of one part of a mixed step: its decode attention, its chunk attention, or
        everything else (GEMMs, norms, collectives, LM head: functions of the decode count and tokens)."""
        shape = self._mixed_shape(np.maximum(b, 1.0), np.maximum(context, 1.0), np.maximum(n, 1.0), p)
        step = self._run(shape)
        total = np.zeros(np.shape(step.latency_s))
        for op, t in zip(step.ops, step.times):
            if _part(op.name) == part:
                total = total + t.time_s
        return total

    def _check_separable(self) -> bool:
        """Whether a mixed step's serial time is the sum of its three parts (every operator depends on one
        part's variables only). A technique's operators could break it; then the 4-D table is used."""
        b, c, n, p = (np.array(v, dtype=float) for v in ([1, 7, 64, 200], [3, 900, 5000, 40], [1, 300, 2000, 17],
                                                        [0, 4000, 20, 9000]))
        full = self._run(self._mixed_shape(b, c, n, p)).latency_s
        parts = self._part_fn("linear", b, 1.0, n, 0.0) + self._part_fn("decode", b, c, 1.0, 0.0) \
            + self._part_fn("chunk", 1.0, 1.0, n, p)
        return bool(np.allclose(parts, full, rtol=1e-9, atol=0.0))

    def _decode_fn(self, b, context):
        return self._run(self._mixed_shape(np.maximum(b, 1.0), np.maximum(context, 1.0), 0.0, 0.0)).latency_s

    def _prefill_fn(self, k, n, p):
        return self._run(self._prefill_shape(np.maximum(k, 1.0), np.maximum(n, 1.0), p)).latency_s

    # --- public --------------------------------------------------------------------------------------

    def shape(self, batch: Batch) -> StepShape:
        """The ``StepShape`` a batch is priced as (see the module docstring)."""
        b = len(batch.decode_context)
        n, p = merged_chunk(batch.chunk_tokens, batch.chunk_past)
        if b:
            return self._mixed_shape(float(b), float(np.mean(batch.decode_context)), n, p)
        k = len(batch.chunk_tokens)
        if not k:
            raise ValueError("an empty batch has no step")
        new, past = np.asarray(batch.chunk_tokens, float), np.asarray(batch.chunk_past, float)
        pairs = float(np.sum(attended_pairs(new, past)))
        mean = n / k
        return self._prefill_shape(float(k), mean, max(0.0, (pairs / k - mean * (mean + 1.0) / 2.0) / mean))

    def exact(self, batch: Batch, breakdown: bool = False):
        """Seconds of one step by a direct ``run_step``; with ``breakdown``, also {operator: seconds}."""
        step = self._run(self.shape(batch))
        seconds = float(step.latency_s)
        if not breakdown:
            return seconds
        parts: dict[str, float] = {}
        for op, t in zip(step.ops, step.times):
            parts[op.name] = parts.get(op.name, 0.0) + float(np.sum(t.time_s))
        return seconds, parts

    def seconds(self, decode: int, context_sum: float, chunk_tokens: float = 0.0, chunk_pairs: float = 0.0,
                chunks: int = 0) -> float:
        """Seconds of a step from its aggregates (the DES's fast path): ``decode`` sequences holding
        ``context_sum`` cached tokens in all, ``chunks`` prefill chunks of ``chunk_tokens`` new tokens in
        all with ``chunk_pairs`` causal (query, key) pairs in all."""
        key = (decode, context_sum, chunk_tokens, chunk_pairs, chunks)
        seconds = self._memo.get(key)
        if seconds is None:
            if len(self._memo) > 1 << 18:
                self._memo.clear()
            seconds = self._memo[key] = self._seconds(*key)
        return seconds

    def _seconds(self, decode: int, context_sum: float, chunk_tokens: float, chunk_pairs: float, chunks: int) -> float:
        n = float(chunk_tokens)
        if decode and n <= 0:
            return self._decode.at2(float(decode), context_sum / decode)
        if decode:
            p = max(0.0, (chunk_pairs - n * (n + 1.0) / 2.0) / n)
            b, c = float(decode), context_sum / decode
            if self.separable:
                return self._linear.at2(b, n) + self._attend.at2(b, c) + self._chunk.at2(n, p)
            return self._mixed(b, c, n, p)
        mean = n / chunks
        p = max(0.0, (chunk_pairs / chunks - mean * (mean + 1.0) / 2.0) / mean)
        return self._prefill(float(chunks), mean, p)


@lru_cache(maxsize=1 << 16)
def chunk_pairs(new_tokens: float, past_tokens: float) -> float:
    """Causal (query, key) pairs of a chunk of ``new_tokens`` after ``past_tokens`` (full attention)."""
    return float(attended_pairs(new_tokens, past_tokens))


def step_time(scenario: Scenario | dict[str, Any] | None, batch: Batch, breakdown: bool = False):
    """Seconds of one step of ``batch`` on ``scenario``'s deployment (and {operator: seconds} on request)."""
    return StepTimer(scenario).exact(batch, breakdown)
