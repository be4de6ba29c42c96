"""Speed of the core, measured on one CPU core (not a timed test).

1. Vectorised decode-step evaluations per second: one ``sweep`` over a batch x context grid of about
   a million points (Llama-3.1-8B on an H100, its shipped profile), best of 5.
2. One ``predict`` call with its full breakdown (decode, batch 32, 4K context), median of 50 samples of 10
   calls after warm-up; and the same over 64 workloads that all differ (batch 1-64, context 1K-64K), so
   that nothing but the configuration (the resolved deployment) is reused from one call to the next.
3. One mixed prefill + decode step (``simulator.engine.run_step``: 32 decoding sequences at 4K context
   plus a 512-token prompt chunk at 2K, as a serving simulator evaluates every iteration), median of 1000.

Run: ``make bench`` (or ``python benchmarks/run.py``); it pins BLAS/OpenMP to one thread. Times are
the process's CPU time (``time.process_time``), so that other work on a shared machine does not count
while this one waits for a core; the load average is printed beside them.
``python benchmarks/run.py --tree DIR`` measures another checkout (e.g. the previous commit, unpacked
with ``git archive``) in the same way, so that before and after can be run side by side.
"""

from __future__ import annotations

import os
import sys

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
if "--tree" in sys.argv:
    sys.path.insert(0, os.path.abspath(sys.argv[sys.argv.index("--tree") + 1]))

import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from simulator import Scenario, predict, sweep  # noqa: E402
from simulator.engine import run_step  # noqa: E402

try:
    from simulator.resolve import resolve  # noqa: E402
except ImportError:  # --tree: a checkout from before simulator/resolve.py
    from simulator.engine import resolve  # noqa: E402
from simulator.step import StepShape  # noqa: E402


def decode_evaluations_per_s(repeats: int = 5) -> tuple[float, int]:
    sc = Scenario()
    batch = np.arange(1, 1025)
    context = np.linspace(128, 131072, 1000).astype(np.int64)
    points = batch.size * context.size
    sweep(sc, batch_size=batch[:8], context_len=context[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        sweep(sc, batch_size=batch, context_len=context)
        best = min(best, time.process_time() - t0)
    return points / best, points


def _median_s(fn, calls: int, per_sample: int = 10) -> float:
    """Median over ``calls`` samples of the mean CPU time of ``per_sample`` calls (the process clock
    ticks too coarsely for one call)."""
    for _ in range(20):
        fn()
    samples = []
    for _ in range(calls):
        t0 = time.process_time()
        for _ in range(per_sample):
            fn()
        samples.append((time.process_time() - t0) / per_sample)
    return statistics.median(samples)


def predict_latency_s(calls: int = 50) -> tuple[float, int]:
    sc = Scenario().with_overrides(**{"workload.batch_size": 32})
    return _median_s(lambda: len(predict(sc).breakdown), calls), len(predict(sc).breakdown)


def varied_predict_latency_s(calls: int = 50) -> float:
    """``predict`` over 64 distinct workloads of one configuration, in turn (a sample is 64 calls)."""
    scenarios = [Scenario().with_overrides(**{"workload.batch_size": b, "workload.context_len": 1024 * b})
                 for b in range(1, 65)]

    def all_of_them():
        for sc in scenarios:
            len(predict(sc).breakdown)

    return _median_s(all_of_them, calls, per_sample=1) / len(scenarios)


def mixed_step_latency_s(calls: int = 100) -> float:
    dep, _ = resolve(Scenario(), {})
    shape = StepShape(32, 1.0, 4096, "decode", chunk_tokens=512.0, chunk_past=2048.0)
    return _median_s(lambda: run_step(dep, shape, "serial"), calls)


def main() -> None:
    import simulator

    rate, points = decode_evaluations_per_s()
    one, rows = predict_latency_s()
    varied = varied_predict_latency_s()
    mixed = mixed_step_latency_s()
    print(f"code: {os.path.dirname(os.path.dirname(simulator.__file__))}")
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}, 1 thread, load average {os.getloadavg()[0]:.2f}")
    print(f"vectorised decode-step evaluations: {rate:,.0f} per second ({points:,} points per sweep)")
    print(f"one predict() call with its {rows}-row breakdown: {one * 1e3:.3f} ms (median of 50 x 10 calls)")
    print(f"one predict() call, 64 distinct workloads in turn: {varied * 1e3:.3f} ms (median of 50 x 64 calls)")
    print(f"one mixed prefill + decode step (run_step): {mixed * 1e3:.3f} ms (median of 100 x 10 calls)")


if __name__ == "__main__":
    main()
