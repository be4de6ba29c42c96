"""What a prediction says about parallelism: each collective's group, link and hidden time, the
placement of the groups on the cluster, the pipeline's stage times, and how much of the step
communication takes (and on which group)."""

from __future__ import annotations

import numpy as np

from costmodels.roofline import COMMUNICATION


def collective_fields(op, t) -> dict:
    """The breakdown keys of a collective operator (none for other operators)."""
    if op.kind != "collective" or not getattr(op, "collective", ""):
        return {}
    return {"collective": op.collective, "group": op.group, "link": op.link, "algorithm": op.algorithm,
            "ranks": int(np.max(op.ranks)), "hidden_s": float(np.mean(t.hidden_s))}


def parallelism_report(ev) -> dict:
    """Degrees, placement, pipeline and communication share of the reported phase's step."""
    dep = ev.dep
    out = dict(dep.cached("parallelism_report", _configuration, dep))
    out["overlap"] = dict(out["overlap"])
    phase = "decode" if "decode" in ev.steps and ev.phase != "prefill" else "prefill"
    step = ev.steps.get(phase)
    if step is None:
        return out
    comm = {}
    # a collective moves data only in a group of more than one GPU (none when every degree is 1)
    for op, t in zip(step.ops, step.times) if dep.cached("report_spans_gpus", _spans_gpus, dep) else ():
        if op.kind == "collective" and getattr(op, "group", ""):
            ranks = op.ranks
            if (ranks if type(ranks) is int else np.max(ranks)) > 1:
                comm[op.group] = comm.get(op.group, 0.0) + _mean(t.time_s)
    latency = _mean(step.latency_s)
    out["communication_s"] = comm
    out["communication_fraction"] = sum(comm.values()) / latency if latency > 0 else 0.0
    out["communication_bound"] = step.bound == COMMUNICATION if type(step.bound) is int \
        else bool(np.any(step.bound == COMMUNICATION))
    pipe = getattr(step, "pipeline", None)
    if pipe is not None:
        out["pipeline"] = {"microbatches": pipe.microbatches, "stage_s": _mean(pipe.stage_s),
                           "send_recv_s": _mean(pipe.send_s), "slot_s": _mean(pipe.slot_s),
                           "token_trip_s": _mean(pipe.trip_s)}
    return out


def _configuration(dep) -> dict:
    """The configuration-only part of the report: degrees and placement (once per deployment)."""
    pl = dep.placement
    out = {"tp": int(np.max(dep.tp)), "pp": dep.pp, "cp": dep.cp, "ep": dep.ep, "expert_tp": int(np.max(dep.etp)),
           "sp": dep.sp, "replicas": dep.replicas, "collective_algorithm": dep.collective_algorithm,
           "overlap": {k: v for k, v in (dep.overlap_boundaries or {}).items() if k != "cp_method"}}
    if pl is not None:
        out.update(gpus_per_node=pl.gpus_per_node, num_nodes=pl.num_nodes, intra_link=pl.intra.name,
                   inter_link=pl.inter.name, groups=pl.describe())
    return out


def _spans_gpus(dep) -> bool:
    return any(np.max(d) > 1 for d in (dep.tp, dep.pp, dep.cp, dep.ep, dep.etp))


def _mean(x) -> float:
    return x if type(x) is float else float(np.mean(x))
