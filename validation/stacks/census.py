"""Count what a stack launches: one step under ``torch.profiler``, its GPU kernels by name.

``python -m validation.stacks.census --stack hf --mode eager --model olmoe-1b-7b --out census.json`` runs
each step of :data:`SHAPES` once to warm up, then once more under the profiler (CUDA activity: every
kernel, memset and memcpy, also those replayed from a CUDA graph), and writes per step the launches by
kernel name with their count and GPU time, the total launches and the GPU busy time (the sum of kernel
durations). This is how the launch counts of ``simulator.stacks.presets`` are checked against the code
a stack really runs (docs/calibration.md): the profiler's wall time is inflated by its own tracing and
is not a measurement of the step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import torch

from validation.stacks.measure import _make_step, _sync

SHAPES = (("prefill", 1, 2048), ("decode", 1, 512), ("decode", 32, 1024), ("decode", 128, 512), ("train", 1, 1024))


def _replayable(step, device, mode: str):
    """The callable that runs the step once as the stack runs it (a captured graph's replay for graph)."""
    step.run()
    if step.reset:
        step.reset()
    _sync(device)
    if mode != "graph":
        return step.run
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        step.run()
    torch.cuda.current_stream(device).wait_stream(side)
    if step.reset:
        step.reset()
    _sync(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step.run()
    if step.reset:
        step.reset()
    _sync(device)
    step.graph = graph  # kept alive with the step
    return graph.replay


def _device_events(prof):
    """(name, GPU microseconds) of every device-side event of a finished profile."""
    cuda = torch.autograd.DeviceType.CUDA
    try:
        events = prof.profiler.kineto_results.events()
        out = []
        for e in events:
            if e.device_type() != cuda:
                continue
            us = e.duration_ns() / 1e3 if hasattr(e, "duration_ns") else e.duration_us()
            out.append((e.name(), float(us)))
        if out:
            return out
    except Exception:  # noqa: BLE001 - older or newer profiler internals: the public event list below
        pass
    return [(ev.name, float(getattr(ev, "device_time_total", 0.0) or getattr(ev, "cuda_time_total", 0.0)))
            for ev in prof.events() if ev.device_type == cuda]


def census_step(step, device, mode: str) -> dict:
    from torch.profiler import ProfilerActivity, profile

    fn = _replayable(step, device, mode)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        _sync(device)
    if step.reset:
        step.reset()
    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for name, us in _device_events(prof):
        k = kernels[name[:160]]
        k[0] += 1
        k[1] += us
    table = sorted(({"name": n, "count": c, "gpu_us": round(t, 2)} for n, (c, t) in kernels.items()),
                   key=lambda r: -r["gpu_us"])
    return {"launches": sum(r["count"] for r in table), "gpu_busy_us": round(sum(r["gpu_us"] for r in table), 1),
            "kernels": table}


def census(make, models: dict[str, dict], mode: str, device, shapes=SHAPES, log=print) -> list[dict]:
    out = []
    for name, spec in models.items():
        stack = make(spec)
        cfg = getattr(stack, "config", None)
        info = {"experts_implementation": getattr(cfg, "_experts_implementation", None),
                "attn_implementation": getattr(cfg, "_attn_implementation", None)} if cfg is not None else {}
        for phase, batch, length in shapes:
            if phase == "train" and not hasattr(stack, "train"):
                continue
            step = None
            try:
                step = _make_step(stack, phase, batch, length)
                res = census_step(step, device, "eager" if phase == "train" else mode)
            except Exception as exc:  # noqa: BLE001 - a step this stack cannot run: say so, keep going
                log(f"{name} {phase} {batch}x{length}: {exc.__class__.__name__}: {str(exc)[:200]}")
                _sync(device)
                continue
            finally:
                if step is not None and step.release:
                    step.release()
            out.append({"stack": getattr(stack, "name", ""), "model": name, "phase": phase, "batch": batch,
                        "length": length, "mode": "eager" if phase == "train" else mode, **info, **res})
            log(f"{name} {phase} {batch}x{length} {mode}: {res['launches']} launches, "
                f"{res['gpu_busy_us'] / 1e3:.3f} ms of kernels")
        del stack
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> None:
    from simulator.models import get_model
    from validation.stacks.run import factory_for

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="torch-unfused")
    ap.add_argument("--mode", choices=["eager", "graph"], default="eager")
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", help="phase:batch:length,... (default: SHAPES)")
    args = ap.parse_args(argv)
    shapes = SHAPES
    if args.shapes:
        shapes = tuple((p, int(b), int(n)) for p, b, n in (item.split(":") for item in args.shapes.split(",")))
    device = torch.device("cuda")
    make = factory_for(args.stack, None, args.mode, device, torch.bfloat16)
    specs = {m: get_model(m, "--model").model_dump(mode="json") for m in args.model}
    rows = census(make, specs, args.mode, device, shapes, log=lambda m: print(m, file=sys.stderr, flush=True))
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
