"""The analytical fast path against the request-level simulation (the table in docs/serving.md).

For each deployment (model, GPU, tp, pp, prompt / output tokens; vLLM defaults: chunked prefill,
2,048-token budget, 256 sequences per batch) and each load (a fraction of the fast path's capacity): p50
TTFT, p50 TPOT, throughput, p90 TTFT and p90 TPOT of ``simulator.serving.analytic.colocated`` against the
mean of two seeds of ``simulator.serve`` with 3,000 Poisson requests, as the fast path's relative error.
The pipeline-parallel deployments (pp > 1) keep pp batches in flight (``simulator.serving.lanes``).

Run: ``python benchmarks/serve_fastpath.py`` (several minutes on one core); ``--markdown`` prints the
table, ``--pipeline`` runs only the pp > 1 deployments. ``--replicas`` compares R replicas behind the
simulation's round-robin router (Llama-3.1-8B on H100s, 1024 / 256 tokens, each replica at the same
fraction of its capacity) with the fast path, which treats each replica's arrivals as Poisson at rate / R.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import sys  # noqa: E402

import numpy as np  # noqa: E402

from simulator import serve  # noqa: E402
from simulator.serving.analytic import colocated  # noqa: E402
from simulator.serving.tables import step_tables  # noqa: E402

CASES = [
    ("llama-3.1-8b", "h100-sxm", 1, 1, 1024, 256),
    ("llama-3.1-70b", "h100-sxm", 4, 1, 2048, 256),
    ("llama-3.1-8b", "l40s", 1, 1, 512, 128),
    ("qwen2.5-32b", "h200-sxm", 2, 1, 4096, 128),
    ("qwen3-30b-a3b", "h100-sxm", 1, 1, 256, 512),
    ("llama-3.1-8b", "a100-80gb-sxm", 1, 1, 128, 1024),
    # pipelines: several prompts per batch (a ~ 0.5, 0.26, 0.06), every prompt over batches (a ~ 1, 2), 4 stages
    ("llama-3.1-8b", "h100-sxm", 1, 2, 1024, 256),
    ("llama-3.1-8b", "l40s", 1, 2, 512, 128),
    ("llama-3.1-8b", "a100-80gb-sxm", 1, 2, 128, 1024),
    ("llama-3.1-70b", "h100-sxm", 4, 2, 2048, 256),
    ("qwen2.5-32b", "h200-sxm", 1, 2, 4096, 128),
    ("llama-3.1-8b", "h100-sxm", 1, 4, 1024, 256),
]
LOADS = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8)
SEEDS = (0, 1)
REQUESTS = 3000
METRICS = ("TTFT p50", "TPOT p50", "throughput", "TTFT p90", "TPOT p90")


def compare(model, gpu, tp, pp, P, O, loads=LOADS):
    sc = {"model": model, "hardware": {"gpu": gpu, "num_gpus": tp * pp}, "parallelism": {"tp": tp, "pp": pp}}
    tables = step_tables(sc, P, O)
    capacity = colocated(tables, 0, 1, 256, 1e-3, P, O)["capacity_req_per_s"][()]
    for load in loads:
        rate = load * capacity
        f = colocated(tables, 0, 1, 256, rate, P, O)
        runs = [serve(sc, {"rate": rate, "num_requests": REQUESTS, "prompt_len": P, "output_len": O, "seed": s},
                      {"max_num_seqs": 256}) for s in SEEDS]
        des = [np.mean([getattr(r, a).p50 if a != "tput" else r.throughput_tokens_per_s for r in runs])
               for a in ("ttft_s", "tpot_s", "tput")]
        des += [np.mean([r.ttft_s.p90 for r in runs]), np.mean([r.tpot_s.p90 for r in runs])]
        fast = [f[k][()] for k in ("ttft_p50_s", "tpot_p50_s", "throughput_tokens_per_s", "ttft_pct_s", "tpot_pct_s")]
        yield load, rate, fast, des


def compare_replicas(replica_counts=(1, 4, 16), loads=(0.5, 0.8)) -> None:
    """p50 / p90 TTFT and TPOT of R replicas: the fast path against the mean of two seeds of the DES."""
    from simulator.planning.space import build

    P, O = 1024, 256
    space = build("llama-3.1-8b", ["h100-sxm"], [], P, O, chunk_tokens=2048, max_tp=1)
    capacity = colocated(space.tables, 0, 1, 256, 1e-3, P, O)["capacity_req_per_s"][()]
    print("| load | replicas | TTFT p50 fast / DES | TTFT p90 fast / DES | TPOT p50 fast / DES | TPOT p90 fast / DES |")
    print("|---|---|---|---|---|---|")
    for load in loads:
        for R in replica_counts:
            rate = load * capacity * R
            f = colocated(space.tables, 0, R, 256, rate, P, O)
            sc = space.kinds[0].scenario("llama-3.1-8b", R, "auto")
            runs = [serve(sc, {"rate": rate, "num_requests": 1500 * max(1, R // 2), "prompt_len": P, "output_len": O,
                               "seed": s}, {"max_num_seqs": 256}) for s in SEEDS]

            def des(metric, q):
                return np.mean([getattr(getattr(r, metric), q) for r in runs]) * 1e3

            cells = [(f["ttft_p50_s"][()] * 1e3, des("ttft_s", "p50")), (f["ttft_pct_s"][()] * 1e3, des("ttft_s", "p90")),
                     (f["tpot_p50_s"][()] * 1e3, des("tpot_s", "p50")), (f["tpot_pct_s"][()] * 1e3, des("tpot_s", "p90"))]
            print(f"| {load:.2f} | {R} | " + " | ".join(f"{a:.1f} / {b:.1f} ms ({a / b - 1:+.0%})" for a, b in cells) + " |",
                  flush=True)


def main(markdown: bool = False, pipeline: bool = False) -> None:
    worst = dict.fromkeys(METRICS, 0.0)
    if markdown:
        print("| model / GPU | prompt / output | load | " + " | ".join(METRICS) + " |")
        print("|---" * (3 + len(METRICS)) + "|")
    for model, gpu, tp, pp, P, O in CASES:
        if pipeline and pp == 1:
            continue
        layout = (f" TP{tp}" if tp > 1 else "") + (f" PP{pp}" if pp > 1 else "")
        name = f"{model} / {'' if tp * pp == 1 else f'{tp * pp}x '}{gpu}{layout}"
        for n, (load, rate, fast, des) in enumerate(compare(model, gpu, tp, pp, P, O)):
            err = [(a / b - 1.0) * 100.0 for a, b in zip(fast, des)]
            for m, e in zip(METRICS, err):
                worst[m] = max(worst[m], abs(e))
            if markdown:
                head = f"| {name} | {P} / {O} |" if n == 0 else "| | |"
                print(f"{head} {load:.2f} | " + " | ".join(f"{e:+.1f}%" for e in err) + " |")
            else:
                print(f"{name:34s} {P:5d}/{O:<5d} load {load:.2f} ({rate:6.2f} req/s): "
                      + "  ".join(f"{m} {a * (1e3 if m[0] == 'T' and m[1] != 'h' else 1):.4g} vs {b * (1e3 if m[0] == 'T' and m[1] != 'h' else 1):.4g} ({e:+.1f}%)"
                                  for m, a, b, e in zip(METRICS, fast, des, err)), flush=True)
    print("worst |error|: " + ", ".join(f"{m} {v:.1f}%" for m, v in worst.items()))


if __name__ == "__main__":
    if "--replicas" in sys.argv:
        compare_replicas()
    else:
        main("--markdown" in sys.argv, "--pipeline" in sys.argv)
