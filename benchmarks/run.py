"""Speed of the core, measured on one CPU core (not a timed test).

1. Vectorised decode-step evaluations per second: one ``sweep`` over a batch x context grid of about
   a million points (Llama-3.1-8B on an H100, default profile), best of 5.
2. One ``predict`` call (decode, batch 32, 4K context), median of 200 after warm-up.

Run: ``make bench`` (or ``python benchmarks/run.py``); it pins BLAS/OpenMP to one thread.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from simulator import Scenario, predict, sweep  # noqa: E402


def decode_evaluations_per_s(repeats: int = 5) -> tuple[float, int]:
    sc = Scenario()
    batch = np.arange(1, 1025)
    context = np.linspace(128, 131072, 1000).astype(np.int64)
    points = batch.size * context.size
    sweep(sc, batch_size=batch[:8], context_len=context[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sweep(sc, batch_size=batch, context_len=context)
        best = min(best, time.perf_counter() - t0)
    return points / best, points


def predict_latency_s(calls: int = 200) -> float:
    sc = Scenario().with_overrides(**{"workload.batch_size": 32})
    for _ in range(10):
        predict(sc)
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        predict(sc)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    rate, points = decode_evaluations_per_s()
    one = predict_latency_s()
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}, 1 thread")
    print(f"vectorised decode-step evaluations: {rate:,.0f} per second ({points:,} points per sweep)")
    print(f"one predict() call: {one * 1e3:.2f} ms (median of 200)")


if __name__ == "__main__":
    main()
