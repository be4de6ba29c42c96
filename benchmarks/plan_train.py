"""Speed of the training planner on one CPU core (not a timed test).

Layouts per second of ``simulator.training.engine.evaluate`` over the planner's own candidate set
(``simulator.training.plan.candidates``), the one call ``roofsim plan-train`` times as
``configs_per_s``; best of 5 per second of this process's CPU time (``time.process_time``: one thread,
so one core's seconds even on a shared machine) and of wall time. Cases:

1. Llama-3.1-70B on 1024 H100 (DGX H100 nodes, NDR), global batch 1024, sequence 4096: ``fastest``.
2. The same with ``cheapest`` (the GPU count varies over powers of two up to 1024 as well).
3. Mixtral-8x7B on 256 H100, global batch 512, sequence 4096 (expert parallelism and its all-to-alls).
4. Qwen3-30B-A3B (128 experts) on 1024 H100, global batch 2048, sequence 4096, ``cheapest``: about
   100,000 layouts, expert groups spanning nodes.

Run: ``python benchmarks/plan_train.py``; it pins BLAS/OpenMP to one thread.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from simulator.training.api import as_train_scenario  # noqa: E402
from simulator.training.engine import evaluate, gpus_per_node  # noqa: E402
from simulator.training.plan import candidates  # noqa: E402

CASES = (
    ("llama-3.1-70b, 1024 x h100, fastest", dict(model="llama-3.1-70b", gpu="h100-sxm", num_gpus=1024,
                                                 global_batch=1024, seq_len=4096), "fastest"),
    ("llama-3.1-70b, 1024 x h100, cheapest", dict(model="llama-3.1-70b", gpu="h100-sxm", num_gpus=1024,
                                                  global_batch=1024, seq_len=4096), "cheapest"),
    ("mixtral-8x7b, 256 x h100, fastest", dict(model="mixtral-8x7b", gpu="h100-sxm", num_gpus=256,
                                               global_batch=512, seq_len=4096), "fastest"),
    ("qwen3-30b-a3b, 1024 x h100, cheapest", dict(model="qwen3-30b-a3b", gpu="h100-sxm", num_gpus=1024,
                                                  global_batch=2048, seq_len=4096), "cheapest"),
)


def configs_per_s(fields: dict, objective: str, repeats: int = 5) -> tuple[int, float, float]:
    """(layouts, per CPU-second, per wall-second) of one ``evaluate`` over the planner's candidates."""
    sc = as_train_scenario(None, **fields)
    knobs = candidates(sc, gpus_per_node(sc), objective)
    n = int(knobs["tp"].size)
    evaluate(sc, knobs)  # warm the catalog and profile caches
    cpu = wall = np.inf
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        evaluate(sc, knobs)
        cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - t0)
    return n, n / cpu, n / wall


def main() -> None:
    print(f"python {platform.python_version()}, numpy {np.__version__}, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for label, fields, objective in CASES:
        n, per_cpu, per_wall = configs_per_s(fields, objective)
        print(f"{label}: {n:,} layouts, {per_cpu:,.0f} / CPU-s, {per_wall:,.0f} / wall-s")


if __name__ == "__main__":
    main()
