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


def rows() -> tuple[list[list[str]], list[str]]:
    """The table's rows, and a note for each row whose batch does not fit in memory."""
    out, notes = [], []
    for model, gpu, n, batch, ctx in CASES:
        p = predict(model=model, **{"hardware.gpu": gpu, "hardware.num_gpus": n, "workload.batch_size": batch,
                                    "workload.context_len": ctx})
        fits = p.memory.fits
        if not fits:
            notes.append(f"* {model} on {n}x {gpu}: {size(p.memory.total_bytes)} per GPU exceeds the usable "
                         f"{size(p.memory.capacity_bytes)}; at most {p.max_concurrency} sequences fit")
        out.append([model, f"{n}x {gpu}", str(batch), f"{ctx:,}", seconds(p.latency_s), f"{p.tokens_per_s:,.0f}",
                    size(p.memory.total_bytes) + ("" if fits else " *"), "yes" if fits else "NO",
                    str(p.max_concurrency), p.bound, p.calibration])
    return out, notes


def run(args) -> int:
    table_rows, notes = rows()
    print("Decode step per row; profile 'auto': the measured profile of the GPU where one is shipped "
          "(h100-sxm, h200-sxm), else 'default'\n")
    print(table(["model", "hardware", "batch", "context", "step", "tokens/s", "mem/GPU", "fits", "max users", "bound",
                 "profile"], table_rows))
    if notes:
        print("\n" + "\n".join(notes))
    return 0
