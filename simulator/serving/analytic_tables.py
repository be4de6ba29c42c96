"""The step tables the analytical fast path reads: what a replica kind's tables hold (``StepTables``,
priced by ``simulator.serving.tables``) and their values at any batch, piecewise linear between the
points of ``BATCH_GRID``.

Notation (per replica): lambda the arrival rate, P and O the prompt and output tokens (P the new ones
prefill computes), k the tokens a decode step commits per sequence (speculative decoding), T the token
budget of a step (vLLM max_num_batched_tokens), t_d(b) a decode step of b sequences, X(n) the extra time
of n prompt tokens riding on it (chunked prefill, Sarathi-Serve arXiv 2403.02310), piecewise linear in n
through the tables' points X(C) (one prompt's chunk C = min(P, T)) and X(T) (a full budget of prompts).

``_solve_batch`` finds the decode batch of a replica at a rate, the fixed point u = 1 + kappa t_d(u)
(``simulator.serving.analytic``, ``simulator.serving.analytic_split``), exactly on that piecewise-linear
table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Batch sizes the step tables are evaluated at: 1 .. 1024 in half-octaves (2^(j/2)), so a batch's
# segment is found arithmetically, j = floor(2 log2 b); between grid points t_d is linear.
BATCH_GRID = 2.0 ** (np.arange(21) / 2.0)
_PER_OCTAVE = 2.0
_WIDTH = 32  # bisection width (a power of two above the grid size)


@dataclass
class StepTables:
    """Step times of K replica kinds (one per row), all from the step model.

    ``decode_s[k, j]``: one decode step of ``grid[j]`` sequences at the mean context P + O/2;
    ``mixed_s[k, j]``: the same step carrying one prefill chunk of ``chunk_tokens[k]`` tokens (equal to
    ``decode_s`` under prefill-first scheduling); ``prefill_s[k]``: one prompt's prefill alone;
    ``tokens_per_step[k]``: tokens a decode step commits per sequence; ``kv_capacity[k]``: sequences whose
    KV blocks fit in the steady state (P + O/2 tokens each, ``simulator.serving.tables.kv_sequences``);
    ``chunk_tokens[k]``: the prefill chunk ``mixed_s`` carries (0:
    prefill-first); ``budget_tokens[k]``: tokens per step (vLLM max_num_batched_tokens), decodes first;
    ``new_prompt_tokens[k]``: prompt tokens prefill computes (fewer than P with a prefix-cache hit).
    Optional: ``full_s[k, j]``, the decode step carrying ``budget_tokens[k]`` prompt tokens (prompts
    merged as the simulator prices them; ``simulator.serving.tables``), without which X is taken
    linear in the prompt tokens; ``lanes[k]``, batches in flight (pipeline stages; default 1), the other
    tables then being one batch's trip through all stages. ``grid`` must be ``BATCH_GRID``.
    """

    grid: np.ndarray
    decode_s: np.ndarray
    mixed_s: np.ndarray
    prefill_s: np.ndarray
    tokens_per_step: np.ndarray
    kv_capacity: np.ndarray
    chunk_tokens: np.ndarray
    budget_tokens: np.ndarray
    new_prompt_tokens: np.ndarray
    full_s: np.ndarray | None = None
    lanes: np.ndarray | None = None
    _derived: dict | None = field(default=None, init=False, repr=False, compare=False)
    _curves: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def kinds(self) -> int:
        return self.decode_s.shape[0]

    def lane_count(self) -> np.ndarray:
        return np.ones(self.kinds) if self.lanes is None else np.asarray(self.lanes, dtype=float)

    def derived(self) -> dict[str, np.ndarray]:
        """Flat per-segment intercepts and slopes of t_d, of X(C) = t_m - t_d and of X(T), and the
        bisection keys r = (g - 1) / t_d(g) padded with +inf (computed once per table)."""
        if self._derived is None:
            if self.grid.shape != BATCH_GRID.shape or not np.allclose(self.grid, BATCH_GRID):
                raise ValueError("step tables must be evaluated on BATCH_GRID")
            g = self.grid
            chunk = np.maximum(self.chunk_tokens, 1.0)[:, None]
            extra = self.mixed_s - self.decode_s
            full = (self.full_s - self.decode_s) if self.full_s is not None \
                else extra * np.asarray(self.budget_tokens, dtype=float)[:, None] / chunk
            out = {}
            for name, t in (("d", self.decode_s), ("x", extra), ("f", full)):
                slope = np.diff(t, axis=1) / np.diff(g)
                out[name + "_s"] = slope.ravel()
                out[name + "_a"] = (t[:, :-1] - slope * g[:-1]).ravel()
            r = np.full((self.kinds, _WIDTH), np.inf)
            r[:, : g.size] = (g - 1.0) / self.decode_s
            out["r"] = r.ravel()
            self._derived = out
        return self._derived


def _segment(b: np.ndarray) -> np.ndarray:
    """Index j of the grid segment [g_j, g_j+1] holding b (the end segments extrapolate)."""
    j = np.floor(_PER_OCTAVE * np.log2(np.maximum(b, 1.0))).astype(np.int64)
    return np.minimum(j, BATCH_GRID.size - 2)


def _interp(d: dict, name: str, kind: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The table ``name`` ("d": t_d, "x": X(C), "f": X(T)) of ``kind`` at batch ``b``, element-wise."""
    i = kind * (BATCH_GRID.size - 1) + _segment(b)
    return d[name + "_a"][i] + d[name + "_s"][i] * b


def _solve_batch(tables: StepTables, kind: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """u with u = 1 + kappa t_d(u) (the first crossing), exact on the piecewise-linear table; inf when
    the table's largest batch cannot keep up. (u - 1) / t_d(u) rises with u, so the last grid point
    still below the line is found by a branch-free bisection."""
    d = tables.derived()
    r, g = d["r"], BATCH_GRID.size
    base = kind * _WIDTH
    pos = np.zeros(kind.shape, dtype=np.int64)  # r[k, 0] = 0 <= kappa
    step = _WIDTH // 2
    while step:
        pos += step * (r[base + pos + step] <= kappa)
        step //= 2
    seg = np.minimum(pos, g - 2)
    i = kind * (g - 1) + seg
    u = (1.0 + kappa * d["d_a"][i]) / np.maximum(1.0 - kappa * d["d_s"][i], 1e-12)
    return np.where(pos >= g - 1, np.inf, np.maximum(u, 1.0))


def _step_parts(tables: StepTables, kind, u):
    """t_d(u), X(C)(u) and X(T)(u), the extra times at least 0."""
    d = tables.derived()
    return (_interp(d, "d", kind, u), np.maximum(_interp(d, "x", kind, u), 0.0),
            np.maximum(_interp(d, "f", kind, u), 0.0))


__all__ = ["BATCH_GRID", "StepTables"]
