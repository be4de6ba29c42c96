"""Speed of the capacity planner on one CPU core (not a timed test).

1. Fast-path configurations per second: ``simulator.serving.analytic.colocated`` over 2 million
   configurations (kind x replicas x batch cap x rate) on the step tables of Llama-3.1-70B over every
   priced GPU, best of 5, per second of this process's CPU time (``time.process_time``: one thread, so
   one core's seconds even on a shared machine) and per second of wall time.
2. Wall time of a default search (``simulator.plan`` without verification): Llama-3.1-70B at 4 req/s,
   2K/256 tokens, p90 TTFT 2 s and TPOT 50 ms, every priced GPU, co-located and xPyD; median of 5.
3. The same over H100, H200 and A100 only (the issue's example), median of 5.
4. A DES latency-vs-load sweep (Llama-3.1-70B on 4x H100 and 4x H200 at TP 4, six rates each, 2K / 256
   tokens, 1,000 requests per run): jobs on shared step tables (``run_jobs``) against jobs that build
   their own (``run_tasks(run_job, ...)``), in process and, with Ray installed, as Ray tasks on a local
   one-CPU instance started before the clock; best of 3 wall times.

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
from simulator.planning import verify  # noqa: E402
from simulator.planning.models import PlanRequest  # noqa: E402
from simulator.planning.space import build  # noqa: E402
from simulator.serving.analytic import colocated  # noqa: E402

EXAMPLE = dict(model="llama-3.1-70b", rate=4.0, prompt_len=2048, output_len=256, slo_ttft_s=2.0, slo_tpot_s=0.05,
               verify=0)


def fast_path_configs_per_s(n: int = 2_000_000, repeats: int = 5) -> tuple[float, float]:
    default = PlanRequest(**EXAMPLE)
    space = build("llama-3.1-70b", sorted(cheapest_prices()), [], 2048, 256, chunk_tokens=2048,
                  max_nodes=default.max_nodes)
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


def search_s(gpus=None, repeats: int = 5) -> tuple[float, float, int]:
    """Median wall time (the result's ``search_time_s``) and CPU time of one search."""
    walls, cpus, searched = [], [], 0
    for _ in range(repeats):
        c0 = time.process_time()
        result = plan({**EXAMPLE, **({"gpus": gpus} if gpus else {})})
        cpus.append(time.process_time() - c0)
        walls.append(result.search_time_s)
        searched = result.searched_configs
    return statistics.median(walls), statistics.median(cpus), searched


def load_curve_s(repeats: int = 3) -> dict[str, float]:
    """Best wall seconds of one DES load curve per way of running it (see the module docstring)."""
    deployments = [({"model": "llama-3.1-70b", "hardware": {"gpu": g, "num_gpus": 4}, "parallelism": {"tp": 4}},
                    {"max_num_seqs": 128}) for g in ("h100-sxm", "h200-sxm")]
    rates = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    jobs = [verify.job(sc, cfg, r, 2048, 256, 1000, 0, 1e9, 1e9, 90.0) for sc, cfg in deployments for r in rates]

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    out = {"in process, shared tables": best(lambda: verify.run_jobs(jobs, "local")),
           "in process, each job builds its own": best(lambda: verify.run_tasks(verify.run_job, jobs, "local"))}
    try:
        import ray  # noqa: F401
    except ImportError:
        return out
    with verify.ray_session():
        verify.run_tasks(verify.run_job, jobs[:1], "ray")  # the worker's imports
        out["Ray, tables from the object store"] = best(lambda: verify.run_jobs(jobs, "ray"))
        out["Ray, each task builds its own"] = best(lambda: verify.run_tasks(verify.run_job, jobs, "ray"))
    return out


if __name__ == "__main__":
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")
    cpu, wall = fast_path_configs_per_s()
    print(f"fast path: {cpu / 1e6:.2f} million configurations per CPU-second ({wall / 1e6:.2f} million per wall second)")
    t, c, n = search_s()
    print(f"default search (every priced GPU): {t:.2f} s wall, {c:.2f} s CPU over {n:,} configurations")
    t, c, n = search_s(["h100-sxm", "h200-sxm", "a100-80gb-sxm"])
    print(f"H100/H200/A100 search: {t:.2f} s wall, {c:.2f} s CPU over {n:,} configurations")
    for name, seconds in load_curve_s().items():
        print(f"load curve, 12 DES runs of 1,000 requests, {name}: {seconds:.2f} s wall")
