"""Timing on a CUDA device: per-launch time of a kernel in a stream of back-to-back launches.

The cost model prices an operator as ``count x (roofline time + per-launch overhead)``, the way a
decode step runs: hundreds of kernels back to back in one CUDA graph. :func:`time_launches`
measures exactly that. It captures ``n`` launches into a CUDA graph, cycling through several input
sets (rotating buffers, together larger than the L2 cache, so weights stream from HBM as they do in
a real step), replays the graph after a warm-up and returns the median time per launch over the
replays, timed with CUDA events. Kernels that cannot be captured fall back to the same loop run
eagerly between two events. :func:`do_bench_median` is ``triton.testing.do_bench`` (median, L2
flushed before every run) for comparison.

Inputs are random normal data (never zeros: zeros can run faster than real data).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

# The H100's L2 is 50 MiB; rotating sets should add up to several times that.
DEFAULT_L2_BYTES = 50 * 2**20


def l2_bytes(device=None) -> int:
    try:
        return int(torch.cuda.get_device_properties(device or 0).L2_cache_size) or DEFAULT_L2_BYTES
    except Exception:  # noqa: BLE001 - older torch without the field
        return DEFAULT_L2_BYTES


def rotations(set_bytes: float, l2: int | None = None, *, factor: float = 3.0, cap: int = 48,
              budget_bytes: float = 8e9) -> int:
    """How many input sets of ``set_bytes`` to cycle through so that together they exceed
    ``factor`` x the L2 size (at least 1, at most ``cap``, within ``budget_bytes``)."""
    l2 = l2 or DEFAULT_L2_BYTES
    want = math.ceil(factor * l2 / max(set_bytes, 1.0))
    fit = max(1, int(budget_bytes // max(set_bytes, 1.0)))
    return int(max(1, min(want, cap, fit)))


def randn(shape, dtype=torch.bfloat16, device="cuda", scale: float = 1.0, generator=None) -> torch.Tensor:
    """Random normal data (no zeros), created in fp32 on the device and cast."""
    x = torch.randn(shape, dtype=torch.float32, device=device, generator=generator)
    if scale != 1.0:
        x.mul_(scale)
    return x.to(dtype)


@dataclass
class Timing:
    time_s: float  # median per launch
    spread: float  # (p90 - p10) / median over the repeats
    launches: int  # launches per timed repeat
    repeats: int
    method: str  # "graph" or "eager"


def event_times(fn: Callable[[], None], reps: int) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn``, timed with CUDA events on the current stream."""
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return times


def _summ(samples: list[float], n: int, reps: int, method: str) -> Timing:
    per = sorted(s / n for s in samples)
    med = statistics.median(per)
    lo = per[int(0.1 * (len(per) - 1))]
    hi = per[int(math.ceil(0.9 * (len(per) - 1)))]
    return Timing(med, (hi - lo) / med if med > 0 else 0.0, n, reps, method)


def time_launches(fns: Sequence[Callable[[], object]], *, target_s: float = 4e-3, repeats: int = 10,
                  max_launches: int = 2000, use_graph: bool = True) -> Timing:
    """Median time per launch of ``fns`` (one callable per rotating input set), run back to back.

    Every callable is run once first (compilation, autotuning, workspace allocation). A rough
    single-launch time then sets how many launches make a repeat of about ``target_s``.
    """
    fns = list(fns)
    for fn in fns:
        fn()
    torch.cuda.synchronize()
    est = statistics.median(event_times(lambda: [fn() for fn in fns], 3)) / len(fns)
    n = int(min(max_launches, max(len(fns), round(target_s / max(est, 1e-7)))))
    n = max(1, n)

    def body():
        for i in range(n):
            fns[i % len(fns)]()

    if use_graph:
        graph = None
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                body()  # warm-up on the capture stream (allocator pools, lazy init)
            torch.cuda.current_stream().wait_stream(stream)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                body()
            graph.replay()
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 - not capturable: time it eagerly instead
            graph = None
            torch.cuda.synchronize()
        if graph is not None:
            samples = event_times(graph.replay, repeats + 2)[2:]
            del graph
            return _summ(samples, n, repeats, "graph")
    body()
    samples = event_times(body, repeats + 1)[1:]
    return _summ(samples, n, repeats, "eager")


def do_bench_median(fn: Callable[[], object], warmup_ms: int = 10, rep_ms: int = 40) -> float:
    """``triton.testing.do_bench`` median in seconds (the L2 is flushed before every run)."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median")) * 1e-3


class Progress:
    """tqdm when installed, else a one-line counter on stderr."""

    def __init__(self, total: int, desc: str = "", enabled: bool = True):
        self.total, self.desc, self.n, self.enabled = total, desc, 0, enabled
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="pt", dynamic_ncols=True, mininterval=1.0)
            except ImportError:
                self._bar = None

    def update(self, k: int = 1, note: str = "") -> None:
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(k)
        else:
            import sys

            pct = 100.0 * self.n / max(self.total, 1)
            print(f"\r{self.desc} {self.n}/{self.total} ({pct:3.0f}%) {note[:40]:<40}", end="", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            import sys

            print(file=sys.stderr)
