"""Speed of the serving simulator on one CPU core (not a timed test).

10,000 requests of 1024-token prompts and 256 output tokens, Poisson at ``RATE`` req/s, through one
Llama-3.1-8B replica on an H100 (vLLM defaults: 256 sequences, 2048-token budget, chunked prefill).
Reported: wall and CPU time of ``simulator.serve`` (best of 3; the first run includes filling the
step-time tables), engine steps simulated, and steps per CPU second.

Run: ``python benchmarks/serve.py``; it pins BLAS/OpenMP to one thread.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import sys  # noqa: E402
import time  # noqa: E402

from simulator import serve  # noqa: E402

RATE = 18.0  # requests/s: about 80% of this replica's capacity (it serves at most ~22.5 req/s)
SCENARIO = {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm"}}
WORKLOAD = {"rate": RATE, "num_requests": 10_000, "prompt_len": 1024, "output_len": 256, "seed": 0}


def main(repeats: int = 3) -> None:
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = serve(SCENARIO, WORKLOAD)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    steps = len(res.timeline["start_s"])
    print(f"python {sys.version.split()[0]}, 10,000 requests x (1024 in, 256 out) at {RATE:g} req/s, one H100 replica")
    print(f"wall: first run {times[0]:.2f} s, best {min(times):.2f} s; CPU: first {cpu[0]:.2f} s, best {min(cpu):.2f} s "
          "(on a shared machine CPU time is the fair figure)")
    print(f"{steps:,} steps ({steps / min(cpu):,.0f} steps per CPU second); "
          f"TTFT p50 {res.ttft_s.p50 * 1e3:.1f} ms, TPOT p50 {res.tpot_s.p50 * 1e3:.2f} ms, "
          f"mean batch {res.mean_batch_size:.0f}, saturated: {res.saturated}")


if __name__ == "__main__":
    main()
