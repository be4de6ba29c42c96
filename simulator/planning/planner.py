"""``plan``: search the space with the fast path, rank by $/hour, verify the cheapest with the DES,
explain what bounds each plan and which single change would make it cheaper."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from costmodels.roofline import BOUND_NAMES
from simulator.planning import verify
from simulator.planning.commands import serve_command, sglang_command, vllm_command
from simulator.planning.models import Plan, PlanRequest, PlanResult, Verification
from simulator.planning.search import Rows, evaluate, pareto_mask
from simulator.planning.space import Space

LISTED = 10  # plans listed besides the verified ones
STEP_BOUND = {"compute": "compute (tensor-core FLOP/s)", "memory": "HBM bandwidth", "communication": "the TP link",
              "overhead": "kernel-launch overhead"}


def _lane_kv(space: Space, kind) -> np.ndarray:
    """Sequences whose KV fits per batch in flight (a pp-stage replica's lanes share its blocks)."""
    return space.tables.kv_capacity[kind] / space.tables.lane_count()[kind]


def _dedupe(space: Space, rows: Rows, idx: np.ndarray) -> np.ndarray:
    """Keep the first row (in ``idx`` order) per distinct configuration: the same layouts and replicas
    with the same fast-path outcome (percentile TTFT and TPOT, load). Batch caps the queue never reaches,
    or that KV memory clips to the same number of sequences, change nothing, so only the first is kept
    (and simulated)."""
    m = rows.m
    key = np.stack([rows.kind[idx], rows.d_kind[idx], rows.replicas[idx], rows.d_replicas[idx],
                    m["ttft_pct_s"][idx], m["tpot_pct_s"][idx], m["load"][idx]], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    return idx[np.sort(first)]


def _key(space: Space, rows: Rows, i: int) -> tuple:
    """A configuration's identity: layouts, replicas and the batch cap clipped to what KV memory holds."""
    cap = min(rows.cap[i], _lane_kv(space, rows.d_kind[i]))
    return int(rows.kind[i]), int(rows.d_kind[i]), float(rows.replicas[i]), float(rows.d_replicas[i]), float(cap)


def _ranked(rows: Rows, mask: np.ndarray) -> np.ndarray:
    """Rows of ``mask`` by $/hour, then fewer GPUs, then lower TPOT."""
    idx = np.flatnonzero(mask)
    m = rows.m
    return idx[np.lexsort((m["tpot_pct_s"][idx], m["num_gpus"][idx], m["usd_per_hour"][idx]))]


def _bound(req: PlanRequest, space: Space, rows: Rows, i: int) -> str:
    """The limit the plan uses most of (an SLO, or capacity), and what bounds its decode steps."""
    m = rows.m
    memory = _lane_kv(space, rows.d_kind[i]) < rows.cap[i]
    capacity = ("capacity, set by KV-cache memory (fewer sequences fit than the batch cap)" if memory
                else "capacity (the request rate near the most it can serve)")
    ratios = {f"the p{req.percentile:g} TTFT SLO": m["ttft_pct_s"][i] / req.slo_ttft_s,
              f"the p{req.percentile:g} TPOT SLO": m["tpot_pct_s"][i] / req.slo_tpot_s, capacity: m["load"][i]}
    name, value = max(ratios.items(), key=lambda kv: kv[1])
    lane = 1.0 + m["batch_mean"][i] / space.tables.lane_count()[rows.d_kind[i]]  # a batch in flight
    b = int(np.round(np.interp(lane, space.tables.grid,
                               space.decode_bound[rows.d_kind[i]].astype(float))))
    out = f"{name} ({value:.0%} used); decode steps are bound by {STEP_BOUND[BOUND_NAMES[b]]}"
    if "TTFT" in name and rows.d_replicas[i] == 0 and rows.replicas[i] > 1:
        out += (f"; the fast path's TTFT takes each of the {int(rows.replicas[i])} replicas' arrivals as Poisson, "
                "where a router spreads them more evenly, so the DES queues less (refine finds the replicas it needs)")
    return out


def _runnable(dep: dict[str, Any]) -> dict[str, Any]:
    """What runs a configuration in the DES as is: its scenario, engine settings and serve command."""
    return {key: dep[key] for key in ("scenario", "serve_config", "serve_command")}


def _layout(k) -> str:
    return f"{k.gpu} tp{k.tp} pp{k.pp}{f' ep{k.ep}' if k.ep > 1 else ''} {'+'.join(k.labels())}".strip()


def _describe(space: Space, rows: Rows, i: int) -> str:
    k, d = space.kinds[rows.kind[i]], space.kinds[rows.d_kind[i]]
    if rows.d_replicas[i] > 0:
        return (f"{int(rows.replicas[i])}P x {k.gpu} tp{k.tp} + {int(rows.d_replicas[i])}D x {d.gpu} tp{d.tp}"
                f" at ${rows.m['usd_per_hour'][i]:.2f}/h")
    extra = "+".join(k.labels())
    layout = f"tp{k.tp}" + (f" pp{k.pp}" if k.pp > 1 else "") + (f" ep{k.ep}" if k.ep > 1 else "")
    replicas = int(rows.replicas[i])
    # GPUs first, as the table counts them, then the replicas' layout
    return (f"{replicas * k.gpus}x {k.gpu} ({replicas} x {layout}{' ' + extra if extra else ''}), max "
            f"{int(rows.cap[i])} seqs at ${rows.m['usd_per_hour'][i]:.2f}/h")


def _cheaper_if(req: PlanRequest, space: Space, rows: Rows, i: int) -> str:
    """The cheapest configuration that serves the rate but misses exactly one SLO, and that SLO's value."""
    m = rows.m
    cheaper = (m["usd_per_hour"] < m["usd_per_hour"][i]) & ~m["saturated"] & m["allowed"]
    ttft_over = m["ttft_pct_s"] > req.slo_ttft_s
    tpot_over = m["tpot_pct_s"] > req.slo_tpot_s
    for label, mask, value, slo in (("TPOT", cheaper & tpot_over & ~ttft_over, m["tpot_pct_s"], req.slo_tpot_s),
                                    ("TTFT", cheaper & ttft_over & ~tpot_over, m["ttft_pct_s"], req.slo_ttft_s)):
        idx = np.flatnonzero(mask)
        if idx.size:
            j = idx[np.argmin(m["usd_per_hour"][idx])]
            return (f"a p{req.percentile:g} {label} SLO of {value[j] * 1e3:.0f} ms (now {slo * 1e3:.0f} ms) allows "
                    f"{_describe(space, rows, j)}")
    return "nothing cheaper in the space serves this rate within either SLO; a cheaper GPU price or a technique would"


def _cheaper_by_des(req: PlanRequest, best: Plan, plans: list[Plan]) -> None:
    """When the simulation rejected cheaper plans, the single change is the SLO the cheapest of them
    misses alone in the DES."""
    for p in plans:
        v = p.verification
        if p.verified is not False or p.usd_per_hour >= best.usd_per_hour:
            continue
        ttft_over, tpot_over = v.ttft_pct_s > req.slo_ttft_s, v.tpot_pct_s > req.slo_tpot_s
        if ttft_over != tpot_over and v.rejected == 0:
            label, value, slo = ("TPOT", v.tpot_pct_s, req.slo_tpot_s) if tpot_over else ("TTFT", v.ttft_pct_s, req.slo_ttft_s)
            best.cheaper_if = (f"a p{req.percentile:g} {label} SLO of {value * 1e3:.0f} ms (now {slo * 1e3:.0f} ms) admits "
                               f"{p.num_gpus}x {p.gpu} ({p.layout(nodes='')}, max "
                               f"{p.max_num_seqs} seqs) at ${p.usd_per_hour:,.2f}/h, as simulated")
            return


def _reason(req: PlanRequest, rows: Rows, i: int) -> str:
    m = rows.m
    if m["saturated"][i]:
        return f"cannot keep up: {m['load'][i]:.2f} x its capacity"
    if not m["within_limits"][i]:
        return "outside the GPU, budget or power limits"
    if m["load"][i] > req.max_load:
        return f"runs at {m['load'][i]:.0%} of its capacity (plans stay below {req.max_load:.0%})"
    out = []
    if m["ttft_pct_s"][i] > req.slo_ttft_s:
        out.append(f"p{req.percentile:g} TTFT {m['ttft_pct_s'][i]:.3f} s > {req.slo_ttft_s:g} s")
    if m["tpot_pct_s"][i] > req.slo_tpot_s:
        out.append(f"p{req.percentile:g} TPOT {m['tpot_pct_s'][i] * 1e3:.1f} ms > {req.slo_tpot_s * 1e3:g} ms")
    return "; ".join(out) or "meets the SLOs in the fast path; not simulated"


def _why_none(req: PlanRequest, space: Space, rows: Rows, plans: list[Plan]) -> str:
    """Why no configuration is a plan, and the change that would give one: more GPUs when nothing within
    the limits keeps up, else the SLO no layout reaches (its best value), else the simulation's verdict."""
    m = rows.m
    within = np.flatnonzero(m["within_limits"])
    if within.size == 0:
        return (f"no configuration is within the limits (max_gpus {req.max_gpus}, budget, power): every layout "
                "needs more (see rejected_cheaper)")
    allowed = np.flatnonzero(m["allowed"])
    if allowed.size == 0:
        # a co-located replica serves rate / replicas, so R replicas at load L keep up below max_load with
        # ceil(R L / max_load) of them; the layout needing the fewest GPUs so
        colocated = within[rows.d_replicas[within] == 0]
        pool = colocated if colocated.size else within
        replicas = np.ceil(rows.replicas[pool] * m["load"][pool] / req.max_load)
        need = replicas * m["num_gpus"][pool] / rows.replicas[pool]
        j = pool[np.argmin(need)]
        return (f"nothing within max_gpus {req.max_gpus} keeps up with {req.rate:g} req/s below "
                f"{req.max_load:.0%} load: the layout with the most capacity per GPU, {_describe(space, rows, j)}, "
                f"runs at {m['load'][j]:.2f} x its capacity, so {int(need.min())} GPUs of it "
                f"({int(replicas[np.argmin(need)])} replicas) are needed (raise max_gpus)")
    pct = f"p{req.percentile:g}"
    ttft, tpot = m["ttft_pct_s"][allowed], m["tpot_pct_s"][allowed]
    misses = []
    if ttft.min() > req.slo_ttft_s:
        j = allowed[np.argmin(ttft)]
        misses.append(f"the lowest {pct} TTFT of a configuration that keeps up is {ttft.min():.3f} s "
                      f"({_describe(space, rows, j)}), above the {req.slo_ttft_s:g} s SLO")
    if tpot.min() > req.slo_tpot_s:
        j = allowed[np.argmin(tpot)]
        misses.append(f"the lowest {pct} TPOT of a configuration that keeps up is {tpot.min() * 1e3:.1f} ms "
                      f"({_describe(space, rows, j)}), above the {req.slo_tpot_s * 1e3:g} ms SLO")
    if misses:
        return "; ".join(misses) + " (a faster GPU, more GPUs per replica or a technique would lower it)"
    if any(p.verified is False for p in plans):
        return (f"the fast path admitted {sum(p.verified is not None for p in plans)} configurations and the "
                "DES rejected each (see rejected_cheaper)")
    tpot_ok = allowed[tpot <= req.slo_tpot_s]
    j = tpot_ok[np.argmin(m["ttft_pct_s"][tpot_ok])]
    return (f"each SLO is met alone but not both together: among configurations within the {pct} TPOT SLO the "
            f"lowest {pct} TTFT is {m['ttft_pct_s'][j]:.3f} s ({_describe(space, rows, j)})")


def _prefix_tokens(req: PlanRequest, techniques: list[str]) -> int:
    """The shared prompt prefix the verification's workload carries when the plan caches prefixes."""
    if "prefix_cache" not in techniques:
        return 0
    hit = next((float(t.get("hit_rate", 0.5)) for t in req.techniques if t["name"] == "prefix_cache"), 0.0)
    return int(hit * req.lengths()[0])


def _deployment(req: PlanRequest, space: Space, rows: Rows, i: int) -> dict[str, Any]:
    """A configuration as the DES and ``roofsim serve`` run it: its scenario (x prefill replicas of the
    prefill layout for a split of two layouts, else every replica), the decode pool's scenario when
    its layout differs, the engine settings and the ``roofsim serve`` command."""
    k, d = space.kinds[rows.kind[i]], space.kinds[rows.d_kind[i]]
    split = rows.d_replicas[i] > 0
    x, y = int(rows.replicas[i]), int(rows.d_replicas[i])
    cap = int(rows.cap[i])
    same = not split or k == d  # a split of one layout runs as P:D replicas of one scenario
    P, _, O = req.lengths()
    workload = {"phase": "generate", "batch_size": cap, "prompt_len": max(int(round(P)), 1),
                "output_len": max(int(round(O)), 1)}
    scenario = {**k.scenario(req.model, x + y if split and same else x, req.calibration), "workload": workload}
    serve_config = {"max_num_seqs": cap, "max_num_batched_tokens": max(req.max_num_batched_tokens, cap),
                    "chunked_prefill": req.chunked_prefill,
                    "prefix_caching": any(t["name"] == "prefix_cache" for t in scenario["techniques"]),
                    "slo_ttft_s": req.slo_ttft_s, "slo_tpot_s": req.slo_tpot_s}
    if split:  # x prefill replicas of the scenario; y decode replicas, of another GPU type or TP if they differ
        serve_config["disaggregate"] = f"{x}:{y}"
        if not same:
            serve_config["decode_overrides"] = k.decode_overrides(d)
    techniques = sorted(set(k.labels()) | set(d.labels()))
    return {"scenario": scenario, "serve_config": serve_config, "techniques": techniques,
            "decode_scenario": None if same else {**d.scenario(req.model, y, req.calibration), "workload": workload},
            "serve_command": serve_command(serve_config, req.rate, req.prompt_len, req.output_len, req.num_requests,
                                           req.seed, _prefix_tokens(req, techniques))}


def _plan(req: PlanRequest, space: Space, rows: Rows, i: int) -> Plan:
    m = rows.m
    k, d = space.kinds[rows.kind[i]], space.kinds[rows.d_kind[i]]
    split = rows.d_replicas[i] > 0
    x, y = int(rows.replicas[i]), int(rows.d_replicas[i])
    cap = int(rows.cap[i])
    P, _, O = req.lengths()
    dep = _deployment(req, space, rows, i)
    args = (req.model, d.tp, d.pp, 1 if split else x, cap, req.max_num_batched_tokens, d.weights, d.kv_cache,
            d.technique_dicts(), None, d.ep, d.nodes)
    if split:
        pargs = (req.model, k.tp, k.pp, 1, cap, req.max_num_batched_tokens, k.weights, k.kv_cache, k.technique_dicts(),
                 "prefill", k.ep, k.nodes)
        dargs = (*args[:-3], "decode", d.ep, d.nodes)
        vllm = (f"# {x} prefill instance(s):\n{vllm_command(*pargs)}\n# {y} decode instance(s):\n"
                f"{vllm_command(*dargs)}")
        sgl = (f"# {x} prefill instance(s):\n{sglang_command(*pargs)}\n# {y} decode instance(s):\n"
               f"{sglang_command(*dargs)}")
    else:
        vllm, sgl = vllm_command(*args), sglang_command(*args)
    tpot_pct = float(m["tpot_pct_s"][i])
    return Plan(
        gpu=k.gpu, num_gpus=int(m["num_gpus"][i]), tp=k.tp, pp=k.pp, ep=k.ep,
        replicas=int(dep["scenario"]["hardware"]["num_gpus"]) // k.gpus, nodes=k.nodes,
        disaggregate=f"{x}P{y}D" if split else None, decode_gpu=d.gpu if split else None,
        decode_tp=d.tp if split else None, decode_scenario=dep["decode_scenario"], techniques=dep["techniques"],
        max_num_seqs=cap, scenario=dep["scenario"], serve_config=dep["serve_config"],
        serve_command=dep["serve_command"],
        ttft_p50_s=float(m["ttft_p50_s"][i]), tpot_p50_s=float(m["tpot_p50_s"][i]),
        ttft_p90_s=float(m["ttft_pct_s"][i]), tpot_p90_s=tpot_pct, percentile=req.percentile,
        load=float(m["load"][i]), batch_mean=float(m["batch_mean"][i]),
        throughput_tokens_per_s=float(m["throughput_tokens_per_s"][i]),
        output_tokens_per_s_per_gpu=req.rate * O / float(m["num_gpus"][i]),
        tokens_per_s_per_user=1.0 / float(m["tpot_p50_s"][i]),
        usd_per_hour=float(m["usd_per_hour"][i]), usd_per_million_tokens=float(m["usd_per_million_tokens"][i]),
        usd_per_million_input_tokens=float(m["usd_per_million_input_tokens"][i]),
        usd_per_million_output_tokens=float(m["usd_per_million_output_tokens"][i]),
        power_w=float(m["power_w"][i]), power_provisioned_w=float(m["power_provisioned_w"][i]),
        joules_per_token=float(m["joules_per_token"][i]), joules_per_output_token=float(m["joules_per_output_token"][i]),
        energy_kwh_per_day=float(m["power_w"][i]) * 24.0 / 1000.0, meets_slo_fast_path=bool(m["meets_slo"][i]),
        bound=_bound(req, space, rows, i), cheaper_if=_cheaper_if(req, space, rows, i),
        vllm_command=vllm, sglang_command=sgl,
    )


def _verify(req: PlanRequest, plans: list[Plan]) -> float:
    """Simulate the plans (co-located and split, of one GPU type or two) in price order, ``verify`` at a
    time, until ``verify`` of them meet the SLOs or three rounds have run; sets ``verified``."""
    t0 = time.perf_counter()
    if req.verify == 0 or not plans or not verify.des_available():
        return 0.0
    passed, tables = 0, verify.StepTables()  # step tables shared by every round
    for start in range(0, min(len(plans), 3 * req.verify), req.verify):
        batch = plans[start:start + req.verify]
        _simulate(req, batch, tables)
        passed += sum(bool(p.verified) for p in batch)
        if passed >= req.verify:
            break
    return time.perf_counter() - t0


def _simulate(req: PlanRequest, plans: list[Plan], tables) -> None:
    """Run the DES on ``plans`` (one job each) and set their ``verification`` and ``verified``."""
    jobs = [verify.job(p.scenario, p.serve_config, req.rate, req.prompt_len, req.output_len, req.num_requests,
                       req.seed, req.slo_ttft_s, req.slo_tpot_s, req.percentile,
                       prefix_tokens=_prefix_tokens(req, p.techniques)) for p in plans]
    for p, out in zip(plans, verify.run_jobs(jobs, req.backend, req.ray_address, tables)):
        p.verification = Verification(**out)
        p.verified = out["meets_slo"]


def _refine(req: PlanRequest, space: Space, rows: Rows, i: int) -> list[Plan]:
    """The DES runs of a bisection over fewer replicas of row ``i``'s co-located layout (same kind and
    batch cap, within the limits and the load limit): the fewest the DES accepts, if SLO compliance grows
    with replicas (more replicas, each at a lower rate). The fast path's percentiles are an approximation
    of the DES's (docs/serving.md); where they are conservative this finds the replicas the DES needs."""
    m = rows.m
    same = np.flatnonzero((rows.kind == rows.kind[i]) & (rows.d_replicas == 0) & (rows.cap == rows.cap[i])
                          & (rows.replicas < rows.replicas[i]) & m["allowed"] & ~m["saturated"])
    same = same[np.argsort(rows.replicas[same], kind="stable")]
    runs, tables = [], verify.StepTables()
    lo, hi = 0, same.size  # same[hi] (or row i) is accepted; below lo rejected
    while lo < hi:
        mid = (lo + hi) // 2
        p = _plan(req, space, rows, int(same[mid]))
        _simulate(req, [p], tables)
        runs.append(p)
        lo, hi = (lo, mid) if p.verified else (mid + 1, hi)
    return runs


def plan(request: PlanRequest | Mapping[str, Any] | None = None, **fields: Any) -> PlanResult:
    """The cheapest deployments that serve ``rate`` within the SLOs, verified by simulation.
    Accepts a ``PlanRequest``, a mapping, or keyword fields (``simulator.plan(model=..., rate=4)``)."""
    req = request if isinstance(request, PlanRequest) else PlanRequest.from_dict({**dict(request or {}), **fields})
    t0 = time.perf_counter()
    space, rows, searched = evaluate(req)
    m = rows.m
    feasible = _dedupe(space, rows, _ranked(rows, m["feasible"]))
    candidates = feasible[: max(LISTED, 3 * req.verify)]
    front = np.flatnonzero(m["allowed"] & ~m["saturated"])
    front = front[pareto_mask(m["usd_per_hour"][front], m["tpot_pct_s"][front])]
    front = front[np.argsort(m["usd_per_hour"][front], kind="stable")]
    search_time = time.perf_counter() - t0
    plans = [_plan(req, space, rows, int(i)) for i in candidates]
    verify_time = _verify(req, plans)
    ok = [p for p in plans if p.verified] if any(p.verified is not None for p in plans) else plans
    cheapest = ok[0] if ok else None
    refined, refine_time = [], 0.0
    if req.refine and cheapest is not None and cheapest.disaggregate is None and verify.des_available():
        t1 = time.perf_counter()
        refined = _refine(req, space, rows, int(candidates[plans.index(cheapest)]))
        refine_time = time.perf_counter() - t1
        accepted = [p for p in refined if p.verified]
        if accepted:
            cheapest = min(accepted, key=lambda p: p.usd_per_hour)
            plans = [cheapest] + plans
    if cheapest is not None:
        _cheaper_by_des(req, cheapest, plans)
    limit = cheapest.usd_per_hour if cheapest else np.inf
    below = np.flatnonzero((m["usd_per_hour"] < limit) & m["within_limits"])
    below = _dedupe(space, rows, below[np.argsort(-m["usd_per_hour"][below], kind="stable")])[:5]
    rejected = [{"config": _describe(space, rows, int(i)), "usd_per_hour": float(m["usd_per_hour"][i]),
                 "reason": _reason(req, rows, int(i)), **_runnable(_deployment(req, space, rows, int(i)))}
                for i in below]
    simulated = {_key(space, rows, int(i)): p for i, p in zip(candidates, plans) if p.verified is False}
    for i, r in zip(below, rejected):
        if _key(space, rows, int(i)) in simulated:
            v = simulated[_key(space, rows, int(i))].verification
            r["reason"] = (f"the DES misses an SLO: p{req.percentile:g} TTFT {v.ttft_pct_s:.3f} s, "
                           f"TPOT {v.tpot_pct_s * 1e3:.1f} ms")
    listed = {_key(space, rows, int(i)) for i in below}
    rejected += [{"config": _describe(space, rows, int(i)), "usd_per_hour": p.usd_per_hour,
                  "reason": (f"the DES misses an SLO: p{req.percentile:g} TTFT {p.verification.ttft_pct_s:.3f} s, "
                             f"TPOT {p.verification.tpot_pct_s * 1e3:.1f} ms"), **_runnable(p.model_dump())}
                 for i, p in zip(candidates, plans)
                 if p.verified is False and p.usd_per_hour < limit and _key(space, rows, int(i)) not in listed]
    rejected += [{"config": _layout(k), "usd_per_hour": None,
                  "reason": "does not fit: weights and one request's KV exceed memory"} for k in space.unfit]
    rejected += [{"config": _layout(k), "usd_per_hour": None,
                  "reason": f"outside the GPU limits: one replica needs {k.gpus} GPUs ({k.nodes} node"
                            f"{'s' if k.nodes > 1 else ''}), max_gpus is {req.max_gpus}"}
                 for k in space.kinds if k.gpus > req.max_gpus]
    return PlanResult(request=req, plans=plans, pareto=[_plan(req, space, rows, int(i)) for i in front[:50]],
                      cheapest=cheapest, searched_configs=int(searched), search_time_s=search_time,
                      verify_time_s=verify_time, backend=req.backend, rejected_cheaper=rejected,
                      why_none=None if cheapest is not None else _why_none(req, space, rows, plans),
                      refined=refined, refine_time_s=refine_time)


__all__ = ["plan"]
