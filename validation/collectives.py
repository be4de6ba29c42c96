"""NCCL collectives through torch.distributed, one process per GPU: all-reduce, all-gather and
all-to-all over message sizes from 4 KiB to 256 MiB, and an alpha-beta fit per collective.

Used by ``roofsim calibrate`` when more than one GPU is visible. Each collective is launched back
to back in a CUDA graph, as a graph-captured decode step issues it, and the graph's replays are
timed with CUDA events (median over repeats, the slowest rank's); the same launches made eagerly,
host overhead included, are kept beside them. Message sizes are per rank (the all-reduce's buffer,
each rank's all-gather input, the all-to-all's send buffer); the fit converts them to the cost
model's message (``costmodels.collectives``: the whole tensor) and per-GPU traffic.
NVLink multicast (NVLS) stays off: ``NCCL_NVLS_ENABLE=0`` is set before NCCL starts.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from costmodels.collectives import collective_cost, collective_traffic
from validation import fit as fitmod

COLLECTIVES = ("all_reduce", "all_gather", "all_to_all")


def _sizes(quick: bool) -> list[int]:
    return [2 ** k for k in range(12, 29, 2 if not quick else 4)]


def _time_eager(op, iters: int, repeats: int = 7) -> float:
    import torch
    import torch.distributed as dist

    samples = []
    for _ in range(repeats):
        dist.barrier()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(iters):
            op()
        e.record()
        e.synchronize()
        samples.append(s.elapsed_time(e) * 1e-3 / iters)
    return float(np.median(samples))


def _capture(op, iters: int):
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


def _worker(rank: int, world: int, init_file: str, quick: bool, out_file: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            device_id=torch.device("cuda", rank))
    results: dict[str, list[tuple[int, float]]] = {c: [] for c in COLLECTIVES}
    eager: dict[str, list[tuple[int, float]]] = {c: [] for c in COLLECTIVES}
    methods: dict[str, str] = {}
    for nbytes in _sizes(quick):
        n = nbytes // 2
        x = torch.randn(n, dtype=torch.float32, device="cuda").to(torch.bfloat16)
        gathered = torch.empty(n * world, dtype=torch.bfloat16, device="cuda")
        a2a_out = torch.empty(n - n % world, dtype=torch.bfloat16, device="cuda")
        ops = {
            "all_reduce": lambda: dist.all_reduce(x),
            "all_gather": lambda: dist.all_gather_into_tensor(gathered, x),
            "all_to_all": lambda: dist.all_to_all_single(a2a_out, x[: n - n % world]),
        }
        for name, op in ops.items():
            for _ in range(5):
                op()
            torch.cuda.synchronize()
            iters = 20 if nbytes < 2 ** 24 else 5
            t_eager = _time_eager(op, iters)
            # the launches a CUDA-graph step makes: capture on every rank, or on none
            graph = _capture(op, iters)
            ok = torch.tensor([1.0 if graph is not None else 0.0], device="cuda")
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
            t = t_eager
            if ok.item() > 0:
                graph.replay()
                torch.cuda.synchronize()
                t = _time_eager(graph.replay, 1) / iters
                methods[name] = "graph"
            else:
                methods.setdefault(name, "eager")
            del graph
            both = torch.tensor([t, t_eager], device="cuda")
            dist.all_reduce(both, op=dist.ReduceOp.MAX)
            results[name].append((nbytes, float(both[0].item())))
            eager[name].append((nbytes, float(both[1].item())))
    if rank == 0:
        import json

        with open(out_file, "w") as f:
            json.dump({"world": world, "results": results, "eager": eager, "methods": methods}, f)
    dist.destroy_process_group()


def run(quick: bool = False) -> dict[str, Any]:
    """Sweep the collectives over every visible GPU; returns {world, results: {name: [(bytes, s)]}}."""
    import json

    import torch
    import torch.multiprocessing as mp

    os.environ["NCCL_NVLS_ENABLE"] = "0"
    os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    world = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as tmp:
        init_file, out_file = os.path.join(tmp, "init"), os.path.join(tmp, "out.json")
        mp.spawn(_worker, args=(world, init_file, quick, out_file), nprocs=world, join=True)
        with open(out_file) as f:
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
