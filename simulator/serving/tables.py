"""Step tables for the fast path (``simulator.serving.analytic_tables.StepTables``), priced by the step model
exactly as the request-level simulation prices the same batches (``simulator.serving.steptime``).

``price`` gives one deployment's rows (vectorised over whatever axis the deployment carries, e.g. the
planner's TP degrees): decode steps of b sequences at the mean context P + O/2 over ``BATCH_GRID`` (and
their bound codes); the same steps carrying one prompt's chunk C = min(T, P) (Sarathi-Serve's mixed
batch) and carrying a full budget of T prompt tokens (T / C prompts merged into one chunk with their
causal pairs, as ``steptime.merged_chunk`` merges them); one prompt's prefill alone. A pipeline-parallel
deployment is priced with one micro-batch in flight per step (``microbatches`` 1: one batch's trip
through all stages), its ``lanes`` being the pp batches vLLM keeps in flight (``simulator.serving.lanes``).

KV memory (``kv_sequences``). vLLM V1 allocates a request's blocks as its tokens are computed: each
step, ``Scheduler.schedule`` asks ``kv_cache_manager.allocate_slots(request, num_new_tokens)`` for the
tokens it schedules (a waiting request's prompt chunk, a running request's next token) and, when that
fails, preempts the lowest-priority running request (vllm/v1/core/sched/scheduler.py); nothing is
reserved for tokens not yet generated. So the two questions have two contexts:

* whether a kind serves the workload at all: one request must hold its full context, ceil((P + O) /
  block_size) blocks, or it is preempted forever (the simulation rejects it up front:
  ``cluster._too_big``); ``holds_one``;
* how many run at once in the steady state: a running sequence holds blocks for the tokens it has, on
  average P + O/2 for a sequence halfway through its output (fixed lengths: the batch's sequences are
  spread evenly over their outputs), half a block of rounding each; ``kv_sequences`` = blocks /
  ((P + O/2) / block_size + 1/2). Sizing at P + O would flag saturation early on KV-bound kinds.

The blocks are ``kvcache.kv_blocks``, the simulation's own count (vectorised over the deployment).

``step_tables`` builds the tables of one replica of a scenario, for comparisons of the fast path with
``simulator.serve`` (tests/serving/test_serving_fastpath.py, benchmarks/serve_fastpath.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from costmodels.attention import attended_pairs
from simulator.engine import run_step
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.serving.analytic_tables import BATCH_GRID, StepTables
from simulator.serving.config import ServeConfig
from simulator.serving.kvcache import kv_budget
from simulator.serving.steptime import StepTimer
from simulator.step import StepShape


def price(dep, overlap: str, prompt_len: float, output_len: float, new_prompt: float, chunk_tokens: int,
          budget_tokens: int) -> dict[str, np.ndarray]:
    """One deployment's table rows (see the module docstring); ``chunk_tokens`` 0 for prefill-first.
    Keys: decode, bound (the decode steps' bound codes), mixed, full (grid x the deployment's axis), prefill."""
    P, O = float(prompt_len), float(output_len)
    g = BATCH_GRID.reshape(-1, 1)
    ctx = P + O / 2.0
    step = run_step(dep, dep.transform_shape(StepShape(g, 1.0, ctx, "decode")), overlap)
    decode = step.latency_s
    if not chunk_tokens:
        alone = run_step(dep, StepShape(1.0, new_prompt, P - new_prompt, "prefill"), overlap).latency_s
        return {"decode": decode, "bound": step.bound, "mixed": decode, "full": decode, "prefill": alone}
    c = min(float(chunk_tokens), new_prompt)
    past = P - new_prompt + (new_prompt - c) / 2.0

    T = float(budget_tokens)
    pairs = T / c * float(attended_pairs(c, past))  # T / C chunks like the table's one
    full_past = max(0.0, (pairs - T * (T + 1.0) / 2.0) / T)
    # one chunk and a full budget in one call, along a leading axis of two
    tokens = np.array([c, T]).reshape((2,) + (1,) * g.ndim)
    prompt_past = np.array([past, full_past]).reshape(tokens.shape)
    shape = StepShape(g[None], 1.0, ctx, "decode", chunk_tokens=tokens, chunk_past=prompt_past)
    mixed = run_step(dep, dep.transform_shape(shape), overlap).latency_s
    alone = np.ceil(new_prompt / c) * run_step(dep, StepShape(1.0, c, past, "prefill"), overlap).latency_s
    return {"decode": decode, "bound": step.bound, "mixed": mixed[0], "full": mixed[1], "prefill": alone}


def kv_sequences(blocks, prompt_len: float, output_len: float, block_size: int) -> np.ndarray:
    """Sequences whose blocks fit ``blocks`` in the steady state: each holds the tokens it has, P + O/2 on
    average, plus half a block of rounding (see the module docstring)."""
    per_request = (float(prompt_len) + float(output_len) / 2.0) / block_size + 0.5
    return np.floor(np.asarray(blocks, dtype=float) / per_request)


def holds_one(blocks, prompt_len: float, output_len: float, block_size: int) -> np.ndarray:
    """Whether ``blocks`` hold one request's full context P + O (else it can never finish)."""
    return np.asarray(blocks, dtype=float) >= np.ceil((float(prompt_len) + float(output_len)) / block_size)


def step_tables(scenario: Scenario | dict[str, Any], prompt_len: float, output_len: float,
                config: ServeConfig | dict[str, Any] | None = None) -> StepTables:
    """The tables of one replica of ``scenario`` (its tp x pp x cp GPUs) serving fixed-length requests
    under ``config``'s scheduler (chunked prefill and budget, block size, max_num_seqs); prefix caching
    is not credited."""
    from simulator.serving.cluster import replica_scenario

    cfg = config if isinstance(config, ServeConfig) else ServeConfig.from_dict(dict(config or {}))
    one, _ = replica_scenario(Scenario.from_dict(scenario) if isinstance(scenario, dict) else scenario)
    pp = one.parallelism.pp
    if pp > 1:
        one = one.with_overrides(**{"parallelism.microbatches": 1})
    timer = StepTimer(one)
    sc = timer.scenario
    dep, _ = resolve(sc, {})
    P, O = float(prompt_len), float(output_len)
    chunk = cfg.max_num_batched_tokens if cfg.chunked_prefill else 0
    rows = price(dep, dep.overlap_policy(sc.overlap), P, O, P, chunk, cfg.max_num_batched_tokens)
    budget = kv_budget(sc, cfg.block_size, cfg.max_num_seqs, cfg.max_num_batched_tokens)
    row = lambda v: np.asarray(v, dtype=float).reshape(1, -1)  # noqa: E731
    one_value = lambda v: np.asarray(v, dtype=float).reshape(1)  # noqa: E731
    return StepTables(BATCH_GRID, row(rows["decode"]), row(rows["mixed"]), one_value(rows["prefill"]),
                      one_value(timer.tokens_per_step), one_value(kv_sequences(budget.blocks, P, O, cfg.block_size)),
                      one_value(min(chunk, P) if chunk else 0.0), one_value(cfg.max_num_batched_tokens), one_value(P),
                      full_s=row(rows["full"]), lanes=one_value(pp))


__all__ = ["holds_one", "kv_sequences", "price", "step_tables"]
