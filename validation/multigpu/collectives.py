"""NCCL all-reduce, all-gather, reduce-scatter, all-to-all and send/recv over groups of 2, 4 and 8 GPUs
and messages of 4 KiB to 1 GiB (every power of two), as nccl-tests sweeps them.

Sizes are the cost model's message ``S`` (``costmodels.collectives``: the whole tensor): the
all-reduce's buffer, the all-gather's output (each rank contributes S/n), the reduce-scatter's input
(each rank keeps S/n), each rank's all-to-all send buffer, and what each rank sends to its ring
neighbour in send/recv (rank r sends to r+1 and receives from r-1, as nccl-tests' ``sendrecv_perf``).
Each case is ``iters`` back-to-back launches in a CUDA graph (eager where capture fails), timed as
``validation.multigpu.launch`` describes. Before timing, each collective is checked on integer data
against its definition. ``validation.collectives.fit`` fits the cases per collective and group size.
"""

from __future__ import annotations

from typing import Any

from validation.multigpu import launch

NAME = "collectives"
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
# the cost model's name of each (costmodels.collectives)
COST_MODEL_NAME = {"all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
                   "all_to_all": "all_to_all", "send_recv": "p2p"}


def sizes(tiny: bool, quick: bool = False) -> list[int]:
    """Message sizes: every power of two from 4 KiB to 1 GiB (``quick``: every third; ``tiny``: two)."""
    if tiny:
        return [2 ** 12, 2 ** 16]
    return [2 ** k for k in range(12, 31, 3 if quick else 1)]


def _ops(ctx: launch.Ctx, g: int, elems: int, dtype) -> tuple[dict[str, Any], dict[str, Any]]:
    """Buffers and one-launch closures of each collective over the group of ranks 0..g-1."""
    import torch
    import torch.distributed as dist

    group = ctx.group(g)
    dev = ctx.device
    buf = {
        "x": torch.zeros(elems, dtype=dtype, device=dev),
        "part": torch.zeros(elems // g, dtype=dtype, device=dev),
        "out": torch.zeros(elems, dtype=dtype, device=dev),
    }
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    nxt, prv = (ctx.rank + 1) % g, (ctx.rank - 1) % g

    def send_recv():
        if g == 1:
            buf["out"].copy_(buf["x"])
            return
        reqs = dist.batch_isend_irecv([dist.P2POp(dist.isend, buf["x"], nxt, group),
                                       dist.P2POp(dist.irecv, buf["out"], prv, group)])
        for r in reqs:
            r.wait()

    ops = {
        "all_reduce": lambda: dist.all_reduce(buf["x"], group=group),
        "all_gather": lambda: gather(buf["out"], buf["part"], group=group),
        "reduce_scatter": lambda: scatter(buf["part"], buf["x"], group=group),
        "all_to_all": lambda: dist.all_to_all_single(buf["out"], buf["x"], group=group),
        "send_recv": send_recv,
    }
    return ops, buf


def check(ctx: launch.Ctx, g: int, dtype) -> dict[str, float]:
    """Max |error| of each collective on integer data against its definition (exact in bf16)."""
    import torch

    elems, r = 8 * g, ctx.rank
    ops, buf = _ops(ctx, g, elems, dtype)
    idx = torch.arange(elems, device=ctx.device, dtype=torch.float32)
    c = elems // g
    chunk = torch.div(idx, c, rounding_mode="floor")
    part_idx = torch.arange(c, device=ctx.device, dtype=torch.float32)
    cases = {  # name: (set the inputs, the buffer holding the result, the expected result)
        "all_reduce": (lambda: buf["x"].fill_(r + 1), "x", torch.full_like(idx, g * (g + 1) / 2)),
        "all_gather": (lambda: buf["part"].fill_(r), "out", chunk),
        "reduce_scatter": (lambda: buf["x"].copy_(idx + r), "part", g * (r * c + part_idx) + g * (g - 1) / 2),
        "all_to_all": (lambda: buf["x"].copy_(r * g + chunk), "out", chunk * g + r),
        "send_recv": (lambda: buf["x"].fill_(r), "out", torch.full_like(idx, (r - 1) % g)),
    }
    errs = {}
    for name, (setup, where, want) in cases.items():
        setup()
        ops[name]()
        got = buf[where].float()
        errs[name] = float((got - want).abs().max().item())
    return dict(zip(errs, ctx.reduce_max(list(errs.values()), g)))


def run(ctx: launch.Ctx, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    dtype = torch.bfloat16 if ctx.cuda else torch.float32
    elem = torch.finfo(dtype).bits // 8
    cases, checks = [], {}
    repeats = 10
    for g in ctx.degrees(tuple(opts.get("groups") or launch.DEGREES)):
        ctx.group(g)
        if ctx.rank < g:
            checks[str(g)] = check(ctx, g, dtype)
            for nbytes in sizes(ctx.tiny, bool(opts.get("quick"))):
                ops, _ = _ops(ctx, g, nbytes // elem, dtype)
                for name in COLLECTIVES:
                    op = ops[name]
                    iters = 1 if ctx.tiny else (20 if nbytes < 2 ** 24 else 5)
                    eager = launch.time_samples(ctx, op, g, repeats, inner=iters, warmup=3)
                    graph = launch.capture(ctx, op, g, iters)
                    t = eager
                    if graph is not None:
                        t = launch.time_samples(ctx, graph.replay, g, repeats, warmup=1)
                        t = {k: (v / iters if k.endswith("_s") else v) for k, v in t.items()}
                    cases.append({"collective": name, "cost_model_collective": COST_MODEL_NAME[name], "group": g,
                                  "message_bytes": nbytes, "dtype": str(dtype).replace("torch.", ""),
                                  "time_s": t["median_s"], "p90_s": t["p90_s"], "eager_s": eager["median_s"],
                                  "method": "graph" if graph is not None else "eager", "iters": iters})
                    del graph
                del ops
                if ctx.cuda:
                    torch.cuda.empty_cache()
        ctx.barrier()
    return {"cases": cases, "checks": checks, "collectives": list(COLLECTIVES)}
