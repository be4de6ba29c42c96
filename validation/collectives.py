"""NCCL collectives for ``roofsim calibrate`` when more than one GPU is visible: the sweep and its fit.

The sweep is ``validation.multigpu.collectives`` (all-reduce, all-gather, reduce-scatter, all-to-all
and send/recv over groups of 2, 4 and 8 GPUs, 4 KiB to 1 GiB, each collective launched back to back
in a CUDA graph as a graph-captured step issues it; NVLink multicast off), run here in one spawned
process per GPU. ``fit`` fits every collective at every group size and gives the profile's
``collective`` kind. It also reads the 2-GPU sweep this module made before (``results``: per-rank
sizes, the all-gather's input), which the shipped H200 profile keeps.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from costmodels.collectives import collective_cost, collective_traffic
from validation import fit as fitmod

COLLECTIVES = ("all_reduce", "all_gather", "all_to_all")  # those every measured profile has
ENV_KEYS = ("device_name", "gpu_count", "driver", "cuda", "torch", "nccl", "world", "topology", "multicast", "date")


def capture_graph(op, iters: int):
    """A CUDA graph of ``iters`` back-to-back launches of ``op``, or None if this rank cannot capture."""
    import torch

    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                op()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(iters):
                op()
        torch.cuda.synchronize()
        return graph
    except Exception:  # noqa: BLE001
        torch.cuda.synchronize()
        return None


def run(quick: bool = False) -> dict[str, Any]:
    """Sweep the collectives over every visible GPU, in groups of 2, 4, 8 (``validation.multigpu.
    collectives``, one spawned process per GPU, NCCL); returns its results document."""
    import json

    import torch

    from validation.multigpu.runner import spawn

    world = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as tmp:
        spawn(world, ["collectives"], tmp, {"quick": quick}, backend="nccl")
        with open(os.path.join(tmp, "collectives.json")) as f:
            return json.load(f)


def _groups(data: dict[str, Any]) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """{collective: {group size: (message sizes S, seconds)}} from either sweep: this module's
    (``results``: per-rank sizes over the whole ``world``) or ``validation.multigpu.collectives``'
    (``cases``: the cost model's message S per collective and group size)."""
    pts: dict[str, dict[int, list[tuple[float, float]]]] = {}
    if "cases" in data:
        for c in data["cases"]:
            if c.get("time_s"):
                pts.setdefault(c["collective"], {}).setdefault(int(c["group"]), []).append(
                    (float(c["message_bytes"]), float(c["time_s"])))
    else:
        world = int(data["world"])
        for name, rows in data["results"].items():
            if name in COLLECTIVES:  # all-gather: the per-rank input; the cost model's message is the output
                pts[name] = {world: [(p[0] * (world if name == "all_gather" else 1), p[1]) for p in rows]}
    return {name: {n: (np.array([p[0] for p in v]), np.array([p[1] for p in v])) for n, v in by_n.items()}
            for name, by_n in pts.items()}


def _fit_one(name: str, sizes: np.ndarray, times: np.ndarray, n: int, link, algorithm: str = "auto"):
    """Alpha-beta and the link-efficiency curve of one collective at group size ``n``, decomposed as the
    step prices it: ``collective_cost``'s traffic and alpha terms for ``algorithm`` (per size: ``auto``
    may pick a tree for small messages, a ring for large), then ``latency + traffic / (bw eff(traffic))
    + overhead`` (``costmodels.roofline.price``)."""
    bw = link.bandwidth_bytes_per_s
    cost = collective_cost(name, sizes, n, n, bw, link.latency_s, bw, link.latency_s, algorithm)
    traffic = np.asarray(cost.traffic_bytes, dtype=float) * np.ones_like(sizes)
    latency = np.asarray(cost.latency_s, dtype=float) * np.ones_like(sizes)
    base = float(latency.min())
    # fit_link takes one latency: shift each time by its algorithm's extra alpha terms
    kf, _ = fitmod.fit_link(traffic, times - latency + base, bw, base)
    # alpha-beta over the bus bytes (nccl-tests' busbw convention: the ring's traffic), algorithm-free
    bus, _ = collective_traffic(name, sizes, n)
    _, ab = fitmod.fit_link(np.asarray(bus, dtype=float) * np.ones_like(sizes), times, bw, base)
    pred = latency + traffic / (bw * np.interp(np.log10(traffic), kf.memory_log10, kf.memory_eff)) + kf.overhead_s
    err = np.abs(pred / times - 1.0)
    kf.stats.update({"points": int(times.size), "median_abs_err": float(np.median(err)),
                     "p90_abs_err": float(np.percentile(err, 90)), "max_abs_err": float(err.max())})
    return kf, {"alpha_s": ab["alpha_s"], "beta_bytes_per_s": ab["beta_bytes_per_s"],
                "points": [[int(s), float(t)] for s, t in zip(sizes, times)], "fit": kf.stats,
                "algorithm": algorithm}


def fit(data: dict[str, Any], gpu) -> tuple[dict[str, Any], dict[str, Any]]:
    """The profile's ``collective`` kind and an alpha-beta fit per collective and group size for
    ``measurements.collectives``.

    The kind is fitted to all-reduce (the collective the step prices) at the largest group measured;
    ``groups[collective][n]`` holds every collective's fit at every group size n, with its
    ``efficiency`` curve (a ``KindEfficiency``) for a cost model that prices each collective and
    group size on its own curve. The top-level ``<collective>`` entries are the largest group's (the
    keys a 2-GPU profile has always had); their ``points`` are (per-rank bytes, s) for a 2-GPU sweep
    and (message S, s) in ``groups``."""
    world = int(data.get("world") or max(int(c["group"]) for c in data["cases"]))
    link = gpu.intra_node_link
    raw: dict[str, Any] = {"world": world, "link": link.name, "methods": data.get("methods", {}),
                           "eager": data.get("eager", {}), "groups": {}}
    if "cases" in data:
        raw["cases"] = data["cases"]
    if "environment" in data:  # a multi-GPU sweep's device, versions, topology and command
        raw["environment"] = {k: data["environment"].get(k) for k in ENV_KEYS}
        raw["command"] = data.get("command", "")
    kind = None
    for name, by_n in _groups(data).items():
        for n in sorted(by_n):
            kf, entry = _fit_one(name, *by_n[n], n, link)
            entry["efficiency"] = kf.kind_efficiency(
                f"measured: NCCL {name.replace('_', '-')} over {n} GPUs ({link.name}); alpha {entry['alpha_s'] * 1e6:.1f} us, "
                f"beta {entry['beta_bytes_per_s'] / 1e9:.0f} GB/s; NVLS off")
            raw["groups"].setdefault(name, {})[str(n)] = entry
        largest = max(by_n)
        top = dict(raw["groups"][name][str(largest)])
        if "cases" not in data:
            top["points"] = [[int(p[0]), float(p[1])] for p in data["results"][name]]
        raw[name] = {k: v for k, v in top.items() if k != "efficiency"}
        if name == "all_reduce":
            kind = raw["groups"][name][str(largest)]["efficiency"]
    assert kind is not None, "no all-reduce measurements"
    return kind, raw


def refit_groups(path: str) -> dict[str, Any]:
    """Fit the per-collective, per-group-size curves (``measurements.collectives.groups``) of the profile
    at ``path`` again from the sweep it keeps, and write them into it; every other field is left as it is
    (``roofsim calibrate --refit`` refits the whole profile). No GPU needed."""
    import json
    from pathlib import Path

    from hwmodels import get_accelerator
    from hwmodels.io import PROFILE_LIMIT_BYTES, read_text_bounded
    from validation.calibrate import collective_data, dumps

    data = json.loads(read_text_bounded(path, PROFILE_LIMIT_BYTES, "profile"))
    coll = collective_data(data)
    if coll is None:
        raise ValueError(f"{path} keeps no collective measurements")
    _, raw = fit(coll, get_accelerator(data["device"]))
    data["measurements"]["collectives"]["groups"] = raw["groups"]
    Path(path).write_text(dumps(data))
    return raw["groups"]
