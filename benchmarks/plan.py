"""Speed of the capacity planner on one CPU core (not a timed test).

1. Fast-path configurations per second: ``simulator.serving.analytic.colocated`` over 2 million
   configurations (kind x replicas x batch cap x rate) on the step tables of Llama-3.1-70B over every
   priced GPU, best of 5, per second of this process's CPU time (``time.process_time``: one thread, so
   one core's seconds even on a shared machine) and per second of wall time.
2. Wall time of a default search (``simulator.plan`` without verification): Llama-3.1-70B at 4 req/s,
   2K/256 tokens, p90 TTFT 2 s and TPOT 50 ms, every priced GPU, co-located and xPyD; median of 5.
3. The same over H100, H200 and A100 only (the issue's example), median of 5.

Run: ``python benchmarks/plan.py``; it pins BLAS/OpenMP to one thread.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from hwmodels.costs import cheapest_prices  # noqa: E402
from simulator import plan  # noqa: E402
from simulator.planning.space import build  # noqa: E402
from simulator.serving.analytic import colocated  # noqa: E402

EXAMPLE = dict(model="llama-3.1-70b", rate=4.0, prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05,
               verify=0)


def fast_path_configs_per_s(n: int = 2_000_000, repeats: int = 5) -> tuple[float, float]:
    space = build("llama-3.1-70b", sorted(cheapest_prices()), [], 2048, 256, chunk_tokens=2048)
    rng = np.random.default_rng(0)
    kind = rng.integers(0, len(space.kinds), n)
    replicas = rng.integers(1, 17, n)
    cap = rng.choice([16, 32, 64, 128, 256, 512], n)
    rate = rng.uniform(0.5, 20.0, n)
    cpu = wall = np.inf
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        colocated(space.tables, kind, replicas, cap, rate, 2048, 256)
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - t0)
    return n / cpu, n / wall


def search_s(gpus=None, repeats: int = 5) -> tuple[float, int]:
    times, searched = [], 0
    for _ in range(repeats):
        result = plan({**EXAMPLE, **({"gpus": gpus} if gpus else {})})
        times.append(result.search_time_s)
        searched = result.searched_configs
    return statistics.median(times), searched


if __name__ == "__main__":
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")
    cpu, wall = fast_path_configs_per_s()
    print(f"fast path: {cpu / 1e6:.2f} million configurations per CPU-second ({wall / 1e6:.2f} million per wall second)")
    t, n = search_s()
    print(f"default search (every priced GPU): {t:.2f} s over {n:,} configurations")
    t, n = search_s(["h100-sxm", "h200-sxm", "a100-80gb-sxm"])
    print(f"H100/H200/A100 search: {t:.2f} s over {n:,} configurations")
