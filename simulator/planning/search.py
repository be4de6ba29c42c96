"""The search: every configuration of the space as one row of numpy arrays, evaluated by the fast path
at once, then costed, powered, constrained and ranked.

Co-located rows are kind x replicas x batch cap. A prefill/decode split (xPyD) is a prefill pool and a
decode pool of one pool class (the same PP, dtypes, techniques and EP; GPU type and TP may differ, as in
Splitwise); the fast path's TTFT depends only on the prefill pool and its TPOT only on the decode
pool (plus the KV transfer between them), so both pools are evaluated over all their options and the
product of the cheapest that meet their own SLO is then evaluated whole with the transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwmodels import get_accelerator
from hwmodels.catalog import get_network
from hwmodels.costs import cheapest_prices, power_model
from hwmodels.errors import InputError
from simulator.planning.models import PlanRequest
from simulator.planning.space import Space, build
from simulator.serving.analytic import colocated
from simulator.serving.analytic_split import decode_pool, prefill_pool

SCALE_OUT = "ib-ndr-400"  # the KV link between pools on different nodes: one 400 Gb/s NIC per GPU (DGX H100)
MAX_POOL_REPLICAS = 8
KEEP_PREFILL, KEEP_DECODE = 32, 128  # cheapest pool options that meet their own SLO, combined pairwise


@dataclass
class Rows:
    """Configurations as parallel arrays (one entry per configuration)."""

    kind: np.ndarray  # prefill kind (co-located: the kind)
    d_kind: np.ndarray  # decode kind (co-located: the kind)
    replicas: np.ndarray  # co-located replicas, or prefill replicas x
    d_replicas: np.ndarray  # decode replicas y (0: co-located)
    cap: np.ndarray
    m: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.kind.size


def _concat(a: Rows, b: Rows) -> Rows:
    keys = a.m.keys() & b.m.keys()
    return Rows(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in ("kind", "d_kind", "replicas", "d_replicas", "cap")),
                {k: np.concatenate([a.m[k], b.m[k]]) for k in keys})


def _per_kind(space: Space, prices: dict) -> dict[str, np.ndarray]:
    power = {g: power_model(g) for g in {k.gpu for k in space.kinds}}
    return {
        "price": np.array([prices[k.gpu].usd_per_gpu_hour for k in space.kinds]),
        "gpus": np.array([k.gpus for k in space.kinds], dtype=float),
        "idle": np.array([power[k.gpu].idle_w for k in space.kinds]),
        "prefill_w": np.array([power[k.gpu].prefill_w for k in space.kinds]),
        "decode_w": np.array([power[k.gpu].decode_w for k in space.kinds]),
        "tdp": np.array([power[k.gpu].tdp_w for k in space.kinds]),
        "link": np.array([get_accelerator(k.gpu).intra_node_link.bandwidth_bytes_per_s for k in space.kinds]),
        "node_gpus": np.array([k.node_gpus for k in space.kinds], dtype=float),
    }


def _colocated_rows(req: PlanRequest, space: Space, pk: dict, P: float, cv2: float, O: float) -> Rows:
    reps = np.maximum(req.max_gpus // pk["gpus"].astype(int), 0)
    kind = np.repeat(np.arange(len(space.kinds)), reps)
    starts = np.repeat(np.cumsum(reps) - reps, reps)
    replicas = np.arange(kind.size) - starts + 1
    caps = np.asarray(req.batch_caps, dtype=float)
    kind, replicas = np.repeat(kind, caps.size), np.repeat(replicas, caps.size)
    cap = np.tile(caps, kind.size // caps.size if caps.size else 0)
    r = colocated(space.tables, kind, replicas, cap, req.rate, P, O, percentile=req.percentile / 100.0, prompt_cv2=cv2)
    g = pk["gpus"][kind] * replicas
    f_p, f_d = r["prefill_fraction"], r["decode_fraction"]
    power = g * (pk["idle"][kind] + f_p * (pk["prefill_w"][kind] - pk["idle"][kind]) + f_d * (pk["decode_w"][kind] - pk["idle"][kind]))
    m = {key: r[key] for key in ("ttft_p50_s", "ttft_pct_s", "tpot_p50_s", "tpot_pct_s", "load", "saturated", "batch_mean",
                                  "throughput_tokens_per_s")}
    m.update(num_gpus=g, usd_per_hour=g * pk["price"][kind], power_w=power, tdp_w=g * pk["tdp"][kind],
             input_share=np.where(f_p + f_d > 0, f_p / np.maximum(f_p + f_d, 1e-12), 0.5))
    return Rows(kind, kind, replicas.astype(float), np.zeros(kind.size), cap, m)


def _pairs(space: Space, pkind, p_cost, p_ok, dkind, d_cost, d_ok) -> tuple[np.ndarray, np.ndarray, int]:
    """Prefill and decode options to evaluate whole, and the number of pairs the search covers: within
    each pool class (``Kind.pool_class``: the KV moves between pools as it is), the ``KEEP_PREFILL``
    and ``KEEP_DECODE`` cheapest options that meet their own SLO, combined pairwise."""
    classes = {}
    cls = np.array([classes.setdefault(k.pool_class(), len(classes)) for k in space.kinds])
    i_all, j_all, covered = [], [], 0
    for c in range(len(classes)):
        covered += int(np.count_nonzero(cls[pkind] == c)) * int(np.count_nonzero(cls[dkind] == c))
        pc, dc = p_ok[cls[pkind[p_ok]] == c], d_ok[cls[dkind[d_ok]] == c]
        pc = pc[np.argsort(p_cost[pc], kind="stable")[:KEEP_PREFILL]]
        dc = dc[np.argsort(d_cost[dc], kind="stable")[:KEEP_DECODE]]
        i_all.append(np.repeat(pc, dc.size))
        j_all.append(np.tile(dc, pc.size))
    return np.concatenate(i_all), np.concatenate(j_all), covered


def _disaggregated_rows(req: PlanRequest, space: Space, pk: dict, P: float, cv2: float, O: float) -> tuple[Rows, int]:
    K = len(space.kinds)
    x = np.arange(1, MAX_POOL_REPLICAS + 1, dtype=float)
    caps = np.asarray(req.batch_caps, dtype=float)
    pkind, prep = np.repeat(np.arange(K), x.size), np.tile(x, K)
    p = prefill_pool(space.tables, pkind, prep, req.rate, percentile=req.percentile / 100.0, prompt_cv2=cv2)
    dkind = np.repeat(np.arange(K), x.size * caps.size)
    drep = np.tile(np.repeat(x, caps.size), K)
    dcap = np.tile(caps, K * x.size)
    d = decode_pool(space.tables, dkind, drep, dcap, req.rate, O)
    p_cost = pk["gpus"][pkind] * prep * pk["price"][pkind]
    d_cost = pk["gpus"][dkind] * drep * pk["price"][dkind]
    p_ok = np.flatnonzero(p["ttft_pct_s"] <= req.slo_ttft_s)
    d_ok = np.flatnonzero(d["tpot_pct_s"] <= req.slo_tpot_s)
    i, j, searched = _pairs(space, pkind, p_cost, p_ok, dkind, d_cost, d_ok)
    if i.size == 0:
        return Rows(*(np.zeros(0) for _ in range(5)), {}), searched
    a, b = pkind[i], dkind[j]
    gp, gd = pk["gpus"][a] * prep[i], pk["gpus"][b] * drep[j]
    gpu_name = np.array([k.gpu for k in space.kinds])
    same_node = (gpu_name[a] == gpu_name[b]) & (gp + gd <= pk["node_gpus"][a])  # a node holds one GPU type
    link = np.where(same_node, pk["link"][a], get_network(SCALE_OUT).bandwidth_bytes_per_s)
    lanes = np.minimum(pk["gpus"][a], pk["gpus"][b])
    transfer = space.kv_bytes_per_gpu[a] * pk["gpus"][a] / (lanes * link)
    d2 = decode_pool(space.tables, b, drep[j], dcap[j], req.rate, O, transfer)
    f_p, f_d = p["busy_fraction"][i], d2["busy_fraction"]
    power = (gp * (pk["idle"][a] + f_p * (pk["prefill_w"][a] - pk["idle"][a]))
             + gd * (pk["idle"][b] + f_d * (pk["decode_w"][b] - pk["idle"][b])))
    saturated = p["saturated"][i] | d2["saturated"]
    capacity = np.minimum(p["capacity_req_per_s"][i], d2["capacity_req_per_s"])
    usd = p_cost[i] + d_cost[j]
    m = {
        "ttft_p50_s": p["ttft_p50_s"][i], "ttft_pct_s": p["ttft_pct_s"][i],
        "tpot_p50_s": d2["tpot_p50_s"], "tpot_pct_s": d2["tpot_pct_s"],
        "load": req.rate / np.maximum(capacity, 1e-300), "saturated": saturated, "batch_mean": d2["batch_mean"],
        "throughput_tokens_per_s": np.where(saturated, capacity, req.rate) * (P + O),
        "num_gpus": gp + gd, "usd_per_hour": usd, "power_w": power,
        "tdp_w": gp * pk["tdp"][a] + gd * pk["tdp"][b], "input_share": p_cost[i] / usd,
    }
    return Rows(a, b, prep[i], drep[j], dcap[j], m), searched


def evaluate(req: PlanRequest) -> tuple[Space, Rows, int]:
    """Every configuration of the request's space with its metrics and costs, and the number of
    configurations the search covered."""
    prices = cheapest_prices(req.prices)
    gpus = req.gpus or sorted(prices)
    missing = [g for g in gpus if g not in prices]
    if missing:
        raise InputError("gpus", f"no price for {', '.join(missing)}; give one with --prices FILE")
    chunk = req.max_num_batched_tokens if req.chunked_prefill else 0
    P, cv2, O = req.lengths()
    space = build(req.model, gpus, req.techniques, P, O, pp_options=tuple(req.pp_options),
                  max_tp=req.max_tp, max_nodes=req.max_nodes, chunk_tokens=chunk,
                  budget_tokens=req.max_num_batched_tokens, max_num_seqs=max(req.batch_caps), calibration=req.calibration)
    pk = _per_kind(space, prices)
    rows = _colocated_rows(req, space, pk, P, cv2, O)
    searched = len(rows)
    if req.disaggregate:
        split, covered = _disaggregated_rows(req, space, pk, P, cv2, O)
        searched += covered
        if len(split):
            rows = _concat(rows, split)
    m = rows.m
    tokens = P + O
    served = np.where(m["saturated"], 0.0, req.rate)
    per_hour_tokens = np.maximum(served, 1e-300) * 3600.0
    m["usd_per_million_tokens"] = m["usd_per_hour"] / (per_hour_tokens * tokens) * 1e6
    m["usd_per_million_input_tokens"] = m["usd_per_hour"] * m["input_share"] / (per_hour_tokens * P) * 1e6
    m["usd_per_million_output_tokens"] = (m["usd_per_hour"] * (1.0 - m["input_share"])
                                          / (per_hour_tokens * O) * 1e6)
    m["power_provisioned_w"] = m["power_w"] if req.power_provisioning == "observed" else m["tdp_w"]
    m["joules_per_token"] = m["power_w"] / np.maximum(served * tokens, 1e-300)
    m["joules_per_output_token"] = m["power_w"] / np.maximum(served * O, 1e-300)
    m["meets_slo"] = (~m["saturated"]) & (m["ttft_pct_s"] <= req.slo_ttft_s) & (m["tpot_pct_s"] <= req.slo_tpot_s)
    limits = m["num_gpus"] <= req.max_gpus
    if req.budget_usd_per_hour is not None:
        limits &= m["usd_per_hour"] <= req.budget_usd_per_hour
    if req.power_budget_w is not None:
        limits &= m["power_provisioned_w"] <= req.power_budget_w
    m["within_limits"] = limits
    m["allowed"] = limits & (m["load"] <= req.max_load)
    m["feasible"] = m["meets_slo"] & m["allowed"]
    return space, rows, searched


def pareto_mask(cost: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Non-dominated points when both ``cost`` and ``latency`` are minimised (ties: the first kept)."""
    order = np.lexsort((latency, cost))
    best = np.minimum.accumulate(latency[order])
    keep = np.empty(order.size, dtype=bool)
    if order.size:
        keep[0] = True
        keep[1:] = latency[order][1:] < best[:-1]
    mask = np.zeros(cost.size, dtype=bool)
    mask[order[keep]] = True
    return mask


__all__ = ["Rows", "evaluate", "pareto_mask"]
