"""Time a stack over a small grid of prefill, decode and training steps and write the measurement CSV.

Each step is timed as the stack runs it: ``eager`` runs ``step.run()`` from Python between two CUDA
events recorded on an idle GPU, so host launch gaps count wherever the host, not the GPU, sets the
pace; ``graph`` captures one ``run()`` in a CUDA graph (after a warm-up on a side stream) and times
replays. One warm-up (two for a training step, whose first run creates the optimizer states), then at
least ``min_repeats`` runs (more while under ``budget_s`` per point); ``reset()`` runs between timed
runs, outside the events. Python's garbage collector is off while a point is timed, as ``timeit``
does by default (Python documentation, ``timeit``: "By default, timeit() temporarily turns off garbage
collection during the timing"), so a collection pause does not land in one sample.

``rounds > 1`` (host-bound eager stacks, whose host speed drifts over minutes) keeps every model built
and visits the whole grid ``rounds`` times, models interleaved, before taking each point's median over
all its samples: a slow minute then spreads over every model instead of biasing one. Each round starts
with a host probe (the time to issue 1,000 tiny kernels) written to the log, so drift can be seen.

The CSV is the format of ``simulator.stacks.measurements`` (one row per step) with the stack, mode,
spread ((max - min) / median) and repeats beside. Points whose KV cache would exceed ``max_kv_bytes``
are skipped; so is a point that fails (out of memory, an operation the stack lacks), with a log line.
"""

from __future__ import annotations

import csv
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

PREFILL_GRID = ((1, 128), (1, 512), (1, 2048), (4, 1024), (1, 4096))
DECODE_GRID = ((1, 512), (1, 4096), (8, 1024), (32, 1024), (32, 4096), (128, 512))
TRAIN_GRID = ((1, 1024), (1, 2048), (2, 2048), (1, 4096))  # (micro-batch, sequence length)
QUICK = {"prefill": PREFILL_GRID[:3], "decode": DECODE_GRID[:3], "train": TRAIN_GRID[:1]}
GRIDS = {"prefill": PREFILL_GRID, "decode": DECODE_GRID, "train": TRAIN_GRID}
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


def step_samples(step, device, mode: str, *, min_repeats: int = 5, max_repeats: int = 15, budget_s: float = 0.3,
                 warmup: int = 1) -> list[float]:
    """Times of repeated runs of one step, eagerly or replayed from a CUDA graph (garbage collector off)."""
    reset = step.reset or (lambda: None)
    for _ in range(warmup):
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
    enabled = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < max_repeats and (len(samples) < min_repeats or spent < budget_s):
            t = _clock(fn, device)
            reset()
            _sync(device)
            samples.append(t)
            spent += t
    finally:
        if enabled:
            gc.enable()
    del graph
    return samples


def time_step(step, device, mode: str, **kw) -> dict:
    """Median time of one step run eagerly or replayed from a CUDA graph, its spread and repeats."""
    samples = step_samples(step, device, mode, **kw)
    return _summary(samples)


def _summary(samples: list[float]) -> dict:
    med = statistics.median(samples)
    return {"latency_s": med, "spread": (max(samples) - min(samples)) / med, "repeats": len(samples)}


def host_probe_s(device, launches: int = 1000) -> float:
    """Seconds the host takes to issue ``launches`` tiny kernels (an in-place add on one element)."""
    x = torch.zeros(1, device=device)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(launches):
        x.add_(1.0)
    t = time.perf_counter() - t0
    _sync(device)
    return t


def kv_bytes(spec: dict, batch: int, tokens: int, elem: int = 2) -> int:
    return 2 * spec["num_layers"] * spec["num_kv_heads"] * spec["head_dim"] * batch * tokens * elem


def _grid(phases, quick: bool, stack) -> list[tuple[str, int, int]]:
    out = []
    for phase in phases:
        if phase == "train" and not hasattr(stack, "train"):
            continue
        out += [(phase, b, n) for b, n in (QUICK if quick else GRIDS)[phase]]
    return out


def _make_step(stack, phase: str, batch: int, length: int):
    return {"prefill": stack.prefill, "decode": stack.decode, "train": getattr(stack, "train", None)}[phase](batch,
                                                                                                            length)


def _time_point(stack, phase, batch, length, mode, device, log, where) -> tuple[list[float], str, str] | None:
    """(samples, mode used, stack label) of one point, or None when the stack cannot run it."""
    used = "eager" if phase == "train" else mode
    label = getattr(stack, "name", "")
    step = None
    try:
        step = _make_step(stack, phase, batch, length)
        warmup = 2 if phase == "train" else 1
        try:
            samples = step_samples(step, device, used, warmup=warmup)
        except Exception as exc:  # noqa: BLE001 - not capturable: time it eagerly, say so in the row
            if used != "graph":
                raise
            log(f"{where}: no CUDA graph ({exc.__class__.__name__}: {str(exc)[:160]}); timed eagerly")
            _sync(device)
            used, label = "eager", label + "-nograph"
            samples = step_samples(step, device, "eager")
    except Exception as exc:  # noqa: BLE001 - a shape the stack cannot run (memory, a missing op): keep going
        log(f"{where} {mode}: {exc.__class__.__name__}: {str(exc)[:200]}")
        _sync(device)
        return None
    finally:
        if step is not None and step.release:
            step.release()
        del step
    return samples, used, label


def measure(make: Callable[[dict], object], models: dict[str, dict], *, gpu: str, mode: str, out: str | Path,
            quick: bool = False, device=None, precision: str = "bf16", budget_s: float = 600.0,
            max_kv_bytes: float = 20e9, phases=("prefill", "decode"), rounds: int = 1,
            log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> list[dict]:
    """Time every model (name -> roofsim spec dict) over the grid of ``phases``; append rows to ``out``."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out)
    before = out.read_text() if out.exists() else ""  # rows of earlier calls stay; this call's follow them
    t_start = time.perf_counter()
    samples: dict[tuple, list[float]] = {}
    meta: dict[tuple, tuple] = {}
    resident: dict[str, object] = {}
    rows: list[dict] = []
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}: host probe {host_probe_s(device) * 1e3:.2f} ms per 1,000 launches")
        for name, spec in models.items():
            if time.perf_counter() - t_start > budget_s:
                log(f"time budget {budget_s:.0f} s spent; stopping before {name} (round {r + 1})")
                break
            t_model = time.perf_counter()
            stack = resident.get(name)
            if stack is None:
                if rounds == 1:
                    resident.clear()  # the previous model's memory goes before the next one is built
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                stack = resident[name] = make(spec)
            for phase, batch, length in _grid(phases, quick, stack):
                if time.perf_counter() - t_start > budget_s:
                    break
                if phase != "train" and kv_bytes(spec, batch, length + 1) > max_kv_bytes:
                    continue
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                where = f"{name} {phase} b={batch} n={length}"
                got = _time_point(stack, phase, batch, length, mode, device, log, where)
                if got is None:
                    continue
                key = (name, phase, batch, length)
                samples.setdefault(key, []).extend(got[0])
                peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else ""
                if key in meta and peak != "":
                    peak = max(peak, meta[key][2])
                meta[key] = (got[1], got[2], peak)
                log(f"{where} {got[1]}: {statistics.median(got[0]) * 1e3:.3f} ms")
            log(f"{name}: {time.perf_counter() - t_model:.1f} s")
        rows = _write(out, before, gpu, precision, samples, meta)  # after every round: a cut-off run keeps its data
    resident.clear()
    return rows


def _write(out: Path, before: str, gpu: str, precision: str, samples: dict, meta: dict) -> list[dict]:
    rows = []
    for (name, phase, batch, length), times in samples.items():
        used, label, peak = meta[(name, phase, batch, length)]
        res = _summary(times)
        rows.append({"model": name, "gpu": gpu, "num_gpus": 1, "tp": 1, "phase": phase, "batch": batch,
                     "prompt_len": length if phase == "prefill" else "",
                     "context_len": length if phase == "decode" else "",
                     "seq_len": length if phase == "train" else "", "precision": precision,
                     "recompute": "none" if phase == "train" else "", "latency_s": f"{res['latency_s']:.6e}",
                     "peak_memory_bytes": peak, "stack": label, "mode": used, "spread": f"{res['spread']:.3f}",
                     "repeats": res["repeats"]})
    with out.open("w", newline="") as fh:
        if before:
            fh.write(before if before.endswith("\n") else before + "\n")
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if not before:
            writer.writeheader()
        writer.writerows(rows)
    return rows
