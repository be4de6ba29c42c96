"""``roofsim demo``: a short prediction table on built-in defaults (what `make run` falls back to)."""

from __future__ import annotations

from simulator.api import predict
from roofsim.cli.format import seconds, size, table

CASES = [
    ("llama-3.1-8b", "h100-sxm", 1, 32, 4096),
    ("llama-3.1-8b", "h200-sxm", 1, 32, 4096),
    ("llama-3.1-70b", "h100-sxm", 4, 32, 4096),
    ("llama-3.1-70b", "h100-sxm", 8, 64, 32768),
    ("mixtral-8x7b", "h100-sxm", 2, 32, 4096),
]


def add_parser(sub) -> None:
    sub.add_parser("demo", help="a table of example decode predictions").set_defaults(run=run)


def run(args) -> int:
    rows = []
    for model, gpu, n, batch, ctx in CASES:
        p = predict(model=model, **{"hardware.gpu": gpu, "hardware.num_gpus": n, "workload.batch_size": batch,
                                    "workload.context_len": ctx})
        rows.append([model, f"{n}x {gpu}", str(batch), f"{ctx:,}", seconds(p.latency_s), f"{p.tokens_per_s:,.0f}",
                     size(p.memory.total_bytes), str(p.max_concurrency), p.bound])
    print("Decode step, default profile\n")
    print(table(["model", "hardware", "batch", "context", "step", "tokens/s", "mem/GPU", "max users", "bound"], rows))
    return 0
