"""``roofsim long-context``: the seed paper's running example, roofsim's figures beside the paper's."""

from __future__ import annotations

from roofsim.cli.format import table
from simulator.long_context import PAPER_CONTEXTS, long_context_table, paper_scenario

# Figures reported in Fu 2024 (arXiv 2405.08944) for Yi-34B on one A100-80GB at theoretical peak.
PAPER_REPORTED = {
    "prefill_s": (0.89, 14.1),
    "decode_s": (8.5, 9.8),
}
DECODE_TOKENS = 250


def add_parser(sub) -> None:
    p = sub.add_parser("long-context", help="reproduce the seed paper's 34B / 50K / A100 example")
    p.set_defaults(run=run)


def paper_rows() -> list[list[str]]:
    t = long_context_table(paper_scenario(), PAPER_CONTEXTS, DECODE_TOKENS)
    rows = [["KV cache per user (GB)", *(f"{v / 1e9:.3f}" for v in t["kv_bytes_per_request"]), "", ""]]
    for key, label in (("prefill_s", "prefill, 1 user (s)"), ("decode_s", f"decode {DECODE_TOKENS} tokens (s)")):
        ours = t[key]
        paper = PAPER_REPORTED[key]
        rows.append([label, f"{ours[0]:.2f}", f"{ours[1]:.2f}", f"{paper[0]:.2f}", f"{paper[1]:.2f}"])
    rows.append(["max concurrent users", *(str(int(v)) for v in t["max_concurrency"]), "many (~20)", "1"])
    rows.append(["context switch (s)", *(f"{v:.3f}" for v in t["context_switch_s"]), "", ""])
    rows.append(["weights (GB)", *(f"{v / 1e9:.2f}" for v in t["weights_bytes"]), "68", "68"])
    return rows


def run(args) -> int:
    print("Yi-34B, one A100-80GB SXM (312 TFLOP/s bf16, 2.039 TB/s, PCIe 4.0), profile 'peak'\n")
    print(table(["quantity", "roofsim 4K", "roofsim 50K", "paper 4K", "paper 50K"], paper_rows()))
    return 0
