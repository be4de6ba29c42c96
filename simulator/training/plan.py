"""The training planner: search layouts for the fastest (or cheapest) one that fits, vectorised.

Candidates are the product of tensor (divisors of the GPUs per node that divide the heads), pipeline
(divisors of the layer count), context (1, 2, 4, 8) and expert parallelism (divisors of the experts,
MoE only), micro-batch (1-16), recompute (none, selective, full) and ZeRO stage (0-3), with the
data-parallel degree what is left of the GPUs; layouts that do not divide the GPUs, the global batch
or the sequence are dropped, and the rest are evaluated as flat arrays in one call of
``simulator.training.engine.evaluate`` (one operator list, every configuration priced at once; no
Python loop over configurations). ``cheapest`` also varies the GPU count over powers of two up to
``num_gpus``; the winner minimises GPU-hours per step (with a price: dollars).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from hwmodels import InputError
from simulator.models import get_model
from simulator.training.api import as_train_scenario
from simulator.training.engine import evaluate, gpus_per_node
from simulator.training.scenario import RECOMPUTE_CODES

MICRO_BATCHES = (1, 2, 4, 8, 16)
CP_DEGREES = (1, 2, 4, 8)
NAMES = {v: k for k, v in RECOMPUTE_CODES.items()}


def _divisors(n: int, limit: int | None = None) -> list[int]:
    return [d for d in range(1, (limit or n) + 1) if n % d == 0]


def candidates(sc, per_node: int, objective: str) -> dict[str, np.ndarray]:
    m = get_model(sc.model)
    tps = [t for t in _divisors(per_node) if m.num_attention_heads % t == 0]
    pps = [p for p in _divisors(m.num_layers) if p <= sc.num_gpus]
    cps = [c for c in CP_DEGREES if c == 1 or (sc.seq_len % (2 * c) == 0 and c <= sc.num_gpus)]
    eps = _divisors(m.moe.num_experts) if m.moe else [1]
    gpus = [sc.num_gpus]
    if objective == "cheapest":
        gpus = [g for g in (2**i for i in range(int(np.log2(sc.num_gpus)) + 1)) if sc.num_gpus % g == 0]
    grid = np.array(list(itertools.product(gpus, tps, pps, cps, eps, MICRO_BATCHES, (0, 1, 2), (0, 1, 2, 3))),
                    dtype=np.int64).T
    g, tp, pp, cp, ep, mb, rc, zero = grid
    model_par = tp * pp * cp
    ok = (g % model_par == 0)
    dp = np.where(ok, g // np.maximum(model_par, 1), 0)
    ok &= (dp > 0) & (dp % ep == 0)
    gb = sc.global_batch if sc.global_batch is not None else None
    if gb is not None:
        ok &= (dp > 0) & (gb % np.maximum(mb * dp, 1) == 0)
        batch = np.full_like(mb, gb)
    else:
        batch = mb * np.maximum(dp, 1)
    ok &= ~((zero > 0) & (dp == 1))  # ZeRO over one rank is stage 0
    keep = np.nonzero(ok)[0]
    return {"num_gpus": g[keep], "tp": tp[keep], "pp": pp[keep], "cp": cp[keep], "ep": ep[keep],
            "micro_batch": mb[keep], "recompute": rc[keep], "zero": zero[keep], "global_batch": batch[keep]}


def plan_train(scenario=None, objective: str = "fastest", top: int = 5, **fields: Any) -> dict[str, Any]:
    """Search the layouts of ``scenario``; the winner, the runners-up and what bounds the winner."""
    if objective not in ("fastest", "cheapest"):
        raise InputError("objective", "choose fastest or cheapest")
    sc = as_train_scenario(scenario, **fields)
    per_node = gpus_per_node(sc)
    knobs = candidates(sc, per_node, objective)
    n = knobs["tp"].size
    if n == 0:
        raise InputError("num_gpus", "no layout divides the GPUs, the global batch and the sequence")
    start = time.perf_counter()
    out = evaluate(sc, knobs)
    elapsed = time.perf_counter() - start
    step = np.asarray(out["step_time_s"], dtype=float)
    mem = out["memory"]
    fits = np.asarray(mem["fits"], dtype=bool)
    score = step * (knobs["num_gpus"] if objective == "cheapest" else 1.0)
    if not fits.any():
        i = int(np.argmin(mem["total_bytes"] + mem["workspace_bytes"]))
        raise InputError("num_gpus", f"no layout fits; the smallest needs {mem['total_bytes'][i] / 1e9:.1f} GB per GPU "
                                     f"of {mem['capacity_bytes'][i] / 1e9:.1f} GB")
    order = np.argsort(np.where(fits, score, np.inf))[:top]

    def row(i):
        b = {k: float(np.asarray(v)[i]) for k, v in out["breakdown"].items()}
        return {**{k: int(v[i]) for k, v in knobs.items() if k != "recompute"}, "recompute": NAMES[int(knobs["recompute"][i])],
                "dp": int(np.asarray(out["dp"])[i]), "step_time_s": float(step[i]), "mfu": float(np.asarray(out["mfu"])[i]),
                "tokens_per_s": float(np.asarray(out["tokens_per_s"])[i]),
                "memory_bytes": float(mem["total_bytes"][i] + mem["workspace_bytes"][i]),
                "capacity_bytes": float(mem["capacity_bytes"][i]), "breakdown": b,
                "gpu_hours_per_step": float(step[i] * knobs["num_gpus"][i] / 3600.0)}

    best = row(int(order[0]))
    faster = np.nonzero((score < score[order[0]]) & ~fits)[0]
    return {"objective": objective, "evaluated": n, "feasible": int(fits.sum()), "search_s": elapsed,
            "configs_per_s": n / max(elapsed, 1e-9), "best": best, "top": [row(int(i)) for i in order],
            "explanation": explain(best, [row(int(i)) for i in faster[np.argsort(score[faster])][:1]])}


def explain(best: dict[str, Any], faster_unfit: list[dict[str, Any]]) -> str:
    b = best["breakdown"]
    bound = max(b, key=b.get)
    share = b[bound] / best["step_time_s"]
    text = (f"{bound} takes {share:.0%} of the step ({b[bound]:.3g} s of {best['step_time_s']:.3g} s); memory "
            f"{best['memory_bytes'] / 1e9:.1f} of {best['capacity_bytes'] / 1e9:.1f} GB per GPU.")
    if faster_unfit:
        f = faster_unfit[0]
        text += (f" The fastest layout overall (tp={f['tp']} pp={f['pp']} cp={f['cp']} mb={f['micro_batch']} "
                 f"recompute {f['recompute']} ZeRO {f['zero']}, {f['step_time_s']:.3g} s) needs "
                 f"{f['memory_bytes'] / 1e9:.1f} GB per GPU: memory is what holds the winner back.")
    else:
        text += " No faster layout exists even ignoring memory."
    return text
