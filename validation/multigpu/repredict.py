"""Re-predict measured multi-GPU results with roofsim, on a CPU, and compare.

Each script's ``<name>.json`` is re-predicted with the code and profiles of this checkout:

* ``collectives``: each case priced as the step prices a collective (``simulator.parallel.comm.
  price_collective``: ring, tree or hierarchical, the scenario's default algorithm choice, on the GPU's
  NVLink, at the profile's curve for that collective and group size). Target: median |error| <= 10%
  from 64 KiB up, per collective and group size.
* ``tp``, ``pp``: ``validation.validate.predict_row`` (as single-GPU cases) with the case's
  ``parallelism`` (pipeline micro-batches included); a field the scenario does not have is left out
  of the prediction and listed under ``unmodelled``.
* ``ep``: the step's MoE operators (``moe.*``: router, routing, dispatch and combine all-to-all,
  experts; ``mlp_norm``, ``moe_residual``) of a decode step over every rank's tokens with
  ``parallelism.ep``; ``pending`` on a checkout whose scenario has no ``ep``.
* ``dp``: ``simulator.train`` (the training-step model) for the same layout (``train_scenario``), ``pending`` on a
  checkout without it.
  Target for tp/pp/ep/dp: median |error| <= 10%, p90 <= 20%.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hwmodels import get_accelerator, load_profile
from simulator.api import predict
from simulator.parallel.comm import price_collective
from simulator.scenario import ParallelismConfig
from validation.validate import _scenario, _stats, predict_row

COLLECTIVE_FROM_BYTES = 64 * 1024
TARGETS = {"collectives": {"median": 0.10}, "steps": {"median": 0.10, "p90": 0.20}}


def _pending(reason: str) -> dict[str, Any]:
    return {"status": "pending", "reason": reason}


ALGORITHM = ParallelismConfig.model_fields["collective_algorithm"].default


def collective_time_s(collective: str, message_bytes, group: int, gpu_name: str, profile,
                      algorithm: str = ALGORITHM) -> np.ndarray:
    """The step's price of one collective of ``message_bytes`` over ``group`` GPUs of one node
    (``simulator.parallel.comm.price_collective``, as ``simulator.step`` takes it): alpha terms, traffic at
    the profile's curve for this collective and group size, and that curve's launch overhead."""
    link = get_accelerator(gpu_name).intra_node_link
    cost, overhead = price_collective(profile, collective, message_bytes, group, group, link, link, algorithm)
    return np.where(np.asarray(cost.traffic_bytes) > 0, np.asarray(cost.achieved_time_s) + overhead, 0.0)


def collectives(doc: dict[str, Any], profile_ref: str = "auto", algorithm: str = ALGORITHM) -> dict[str, Any]:
    gpu = doc["gpu"]
    prof = load_profile(profile_ref, gpu=gpu)
    rows = [dict(c) for c in doc["cases"] if c.get("time_s")]
    for r in rows:
        r["predicted_s"] = float(collective_time_s(r["collective"], r["message_bytes"], r["group"], gpu, prof,
                                                   algorithm))
        r["error"] = r["predicted_s"] / r["time_s"] - 1.0
    summary = {}
    for key in sorted({(r["collective"], r["group"]) for r in rows}):
        sel = [r["error"] for r in rows if (r["collective"], r["group"]) == key and r["message_bytes"] >= COLLECTIVE_FROM_BYTES]
        s = _stats(sel)
        s["meets_target"] = bool(s.get("n")) and s["median"] <= TARGETS["collectives"]["median"]
        summary[f"{key[0]} x{key[1]}"] = s
    return {"status": "predicted", "profile": prof.name, "cases": rows, "summary": summary}


def _modelled(par: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    fields = ParallelismConfig.model_fields
    return {k: v for k, v in par.items() if k in fields}, sorted(k for k in par if k not in fields)


def _summary(rows: list[dict[str, Any]], group_key) -> dict[str, Any]:
    out = {}
    ok = [r for r in rows if "calibrated_error" in r]
    for key in sorted({group_key(r) for r in ok}):
        s = _stats([r["calibrated_error"] for r in ok if group_key(r) == key])
        s["meets_target"] = s["median"] <= TARGETS["steps"]["median"] and s["p90"] <= TARGETS["steps"]["p90"]
        out[key] = s
    return out


def steps(doc: dict[str, Any], profile_ref: str = "auto") -> dict[str, Any]:
    """TP and PP decoder steps through ``validate.predict_row``."""
    rows = []
    for c in doc["cases"]:
        r = dict(c)
        if "time_s" in r:
            full = r["parallelism"]
            r["parallelism"], r["unmodelled"] = _modelled(full)
            predict_row(r, profile_ref, doc["gpu"])
            r["parallelism"] = full
        rows.append(r)
    key = lambda r: f"{r['model']} {r['phase']} " + " ".join(f"{k}{v}" for k, v in r["parallelism"].items())  # noqa: E731
    return {"status": "predicted", "cases": rows, "summary": _summary(rows, key)}


MOE_OPS = ("moe.", "moe_norm", "mlp_norm", "moe_residual")  # dispatch/combine: moe.*.all_to_all


def ep_prediction(row: dict[str, Any], gpu: str, profile_ref) -> float:
    """The step's MoE operators (and their norm) of ``row['layers']`` layers: a decode step on ``ep`` GPUs,
    each a replica of the attention (``workload.batch_size`` = sequences per replica = the tokens of
    one rank) and 1/ep of the experts."""
    spec = {**row["spec"], "num_layers": row["layers"]}
    par = {"ep": row["parallelism"]["ep"], "tp": 1}
    sc = _scenario(spec, gpu, profile_ref, "decode", row["tokens_per_rank"], 16, par)
    sc["hardware"]["num_gpus"] = par["ep"]
    pred = predict(sc)
    return float(sum(op.time_s for op in pred.breakdown if op.name.startswith(MOE_OPS)))


def ep(doc: dict[str, Any], profile_ref: str = "auto") -> dict[str, Any]:
    if "ep" not in ParallelismConfig.model_fields:
        return {**_pending("the scenario has no parallelism.ep yet (the parallel branch adds it)"),
                "cases": doc["cases"]}
    rows = []
    for c in doc["cases"]:
        r = dict(c)
        if "time_s" in r:
            r["calibrated_s"] = ep_prediction(r, doc["gpu"], profile_ref)
            r["calibrated_error"] = r["calibrated_s"] / r["time_s"] - 1.0
        rows.append(r)
    return {"status": "predicted", "cases": rows,
            "summary": _summary(rows, lambda r: f"{r['model']} ep{r['parallelism']['ep']}")}


def train_scenario(row: dict[str, Any], gpu: str, profile_ref) -> dict[str, Any]:
    """The training scenario (``simulator.training.TrainScenario``) of a measured DDP or FSDP step:
    DDP is ZeRO-0 in bf16 throughout, FSDP is ZeRO-3 with fp32 master weights and bf16 compute; both
    AdamW, gradient reduction overlapped with the backward pass in buckets."""
    fsdp = row["kind"] == "fsdp"
    return {"model": row["spec"], "gpu": gpu, "num_gpus": row["parallelism"]["dp"], "seq_len": row["seq_len"],
            "micro_batch": row["batch_per_gpu"], "zero": 3 if fsdp else 0, "precision": "mixed" if fsdp else "bf16",
            "optimizer": "adamw", "grad_overlap": "bucketed", "flash_attention": True, "calibration": profile_ref}


def dp(doc: dict[str, Any], profile_ref: str = "auto") -> dict[str, Any]:
    import simulator

    train = getattr(simulator, "train", None)  # the training-step model's public entry
    if train is None:
        return {**_pending("no training-step model in this checkout (simulator.train)"), "cases": doc["cases"]}
    rows = []
    for c in doc["cases"]:
        r = dict(c)
        if "time_s" in r:
            r["calibrated_s"] = float(train(train_scenario(r, doc["gpu"], profile_ref)).step_time_s)
            r["calibrated_error"] = r["calibrated_s"] / r["time_s"] - 1.0
        rows.append(r)
    return {"status": "predicted", "cases": rows,
            "summary": _summary(rows, lambda r: f"{r['model']} {r['kind']} dp{r['parallelism']['dp']}")}


PREDICTORS = {"collectives": collectives, "tp": steps, "pp": steps, "ep": ep, "dp": dp}


def repredict(doc: dict[str, Any], profile_ref: str = "auto") -> dict[str, Any]:
    """One results document re-predicted; keeps its environment and command."""
    out = PREDICTORS[doc["script"]](doc, profile_ref)
    return {"script": doc["script"], "gpu": doc["gpu"], "command": doc["command"],
            "environment": doc["environment"], "checks": doc.get("checks", {}), **out}


def repredict_dir(folder: str | Path, profile_ref: str = "auto") -> dict[str, dict[str, Any]]:
    """Every ``<script>.json`` of a results folder, re-predicted."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("script") in PREDICTORS:
            out[doc["script"]] = repredict(doc, profile_ref)
    return out


def markdown(report: dict[str, dict[str, Any]]) -> str:
    """Tables of the errors (median / p90 / max of |predicted / measured - 1|) per script and group."""
    lines = []
    for name, r in report.items():
        env = r["environment"]
        lines += [f"### {name}: {env.get('device_name')} x{env.get('world')}, torch {env.get('torch')}, "
                  f"NCCL {env.get('nccl', '-')}", "", f"`{r['command']}`", ""]
        if r["status"] != "predicted":
            lines += [f"Not re-predicted: {r['reason']}.", ""]
            continue
        lines += ["| case | n | median | p90 | max | target met |", "|---|---|---|---|---|---|"]
        for key, s in r["summary"].items():
            if s.get("n"):
                lines.append(f"| {key} | {s['n']} | {s['median']:.1%} | {s['p90']:.1%} | {s['max']:.1%} | "
                             f"{'yes' if s['meets_target'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)
