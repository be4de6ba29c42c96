"""Time a stack over a small grid of prefill and decode steps and write the measurement CSV.

Each step is timed as the stack runs it: ``eager`` runs ``step.run()`` from Python between two CUDA
events recorded on an idle GPU, so host launch gaps count wherever the host, not the GPU, sets the
pace; ``graph`` captures one ``run()`` in a CUDA graph (after a warm-up on a side stream) and times
replays. One warm-up, then at least ``min_repeats`` runs (more while under ``budget_s`` per point), the
median kept; ``reset()`` runs between timed runs, outside the events. The CSV is the format of
``simulator.stacks.measurements`` (one row per step) with the stack, mode, spread and repeats beside.
Points whose KV cache would exceed ``max_kv_bytes`` are skipped.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

PREFILL_GRID = ((1, 128), (1, 512), (1, 2048), (4, 1024), (1, 4096))
DECODE_GRID = ((1, 512), (1, 4096), (8, 1024), (32, 1024), (32, 4096), (128, 512))
QUICK_PREFILL, QUICK_DECODE = PREFILL_GRID[:3], DECODE_GRID[:3]
COLUMNS = ["model", "gpu", "num_gpus", "tp", "phase", "batch", "prompt_len", "context_len", "seq_len", "precision",
           "recompute", "latency_s", "peak_memory_bytes", "stack", "mode", "spread", "repeats"]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(fn, device) -> float:
    if device.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3


def time_step(step, device, mode: str, *, min_repeats: int = 5, max_repeats: int = 15, budget_s: float = 0.3
              ) -> dict:
    """Median time of one step run eagerly or replayed from a CUDA graph; ``mode`` is what was used."""
    reset = step.reset or (lambda: None)
    step.run()
    reset()
    _sync(device)
    fn, graph = step.run, None
    if mode == "graph" and device.type == "cuda":
        if not step.capturable:
            raise RuntimeError("this step cannot be captured in a CUDA graph")
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            step.run()
        torch.cuda.current_stream(device).wait_stream(side)
        reset()
        _sync(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step.run()
        reset()
        _sync(device)
        fn = graph.replay
    samples: list[float] = []
    spent = 0.0
    while len(samples) < max_repeats and (len(samples) < min_repeats or spent < budget_s):
        t = _clock(fn, device)
        reset()
        _sync(device)
        samples.append(t)
        spent += t
    med = statistics.median(samples)
    del graph
    return {"latency_s": med, "spread": (max(samples) - min(samples)) / med, "repeats": len(samples)}


def kv_bytes(spec: dict, batch: int, tokens: int, elem: int = 2) -> int:
    return 2 * spec["num_layers"] * spec["num_kv_heads"] * spec["head_dim"] * batch * tokens * elem


def measure(make: Callable[[dict], object], models: dict[str, dict], *, gpu: str, mode: str, out: str | Path,
            quick: bool = False, device=None, precision: str = "bf16", budget_s: float = 600.0,
            max_kv_bytes: float = 20e9,
            log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> list[dict]:
    """Time every model (name -> roofsim spec dict) over the grid; append rows to ``out`` as they come."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out)
    new_file = not out.exists()
    rows: list[dict] = []
    t_start = time.perf_counter()
    prefill, decode = (QUICK_PREFILL, QUICK_DECODE) if quick else (PREFILL_GRID, DECODE_GRID)
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        stack = None
        for name, spec in models.items():
            t_model = time.perf_counter()
            stack = None  # the previous model's memory goes before the next one is built
            if device.type == "cuda":
                torch.cuda.empty_cache()
            stack = make(spec)
            grid = [("prefill", b, n) for b, n in prefill] + [("decode", b, n) for b, n in decode]
            for phase, batch, length in grid:
                if time.perf_counter() - t_start > budget_s:
                    log(f"time budget {budget_s:.0f} s spent; stopping before {name} {phase} {batch}x{length}")
                    return rows
                if kv_bytes(spec, batch, length + 1) > max_kv_bytes:
                    continue
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                used, label = mode, getattr(stack, "name", "")
                try:
                    step = stack.prefill(batch, length) if phase == "prefill" else stack.decode(batch, length)
                    try:
                        res = time_step(step, device, mode)
                    except Exception as exc:  # noqa: BLE001 - not capturable: time it eagerly, say so in the row
                        if mode != "graph":
                            raise
                        log(f"{name} {phase} {batch}x{length}: no CUDA graph ({exc.__class__.__name__}: "
                            f"{str(exc)[:160]}); timed eagerly")
                        _sync(device)
                        used, label = "eager", label + "-nograph"
                        res = time_step(step, device, "eager")
                    if step.release:
                        step.release()
                except Exception as exc:  # noqa: BLE001 - a shape the stack cannot run: say so, keep going
                    log(f"{name} {phase} {batch}x{length} {mode}: {exc.__class__.__name__}: {str(exc)[:200]}")
                    _sync(device)
                    continue
                peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else ""
                row = {"model": name, "gpu": gpu, "num_gpus": 1, "tp": 1, "phase": phase, "batch": batch,
                       "prompt_len": length if phase == "prefill" else "",
                       "context_len": length if phase == "decode" else "", "seq_len": "", "precision": precision,
                       "recompute": "", "latency_s": f"{res['latency_s']:.6e}", "peak_memory_bytes": peak,
                       "stack": label, "mode": used, "spread": f"{res['spread']:.3f}",
                       "repeats": res["repeats"]}
                writer.writerow(row)
                fh.flush()
                rows.append(row)
                log(f"{name} {phase} b={batch} n={length} {mode}: {res['latency_s'] * 1e3:.3f} ms")
            log(f"{name}: {time.perf_counter() - t_model:.1f} s")
    return rows
