"""``roofsim concurrency``: the seed paper's four limits over context lengths for one scenario."""

from __future__ import annotations

from roofsim.cli.format import seconds, size, table
from roofsim.cli.predict import add_scenario_flags, scenario_from_args
from simulator.long_context import long_context_table

DEFAULT_CONTEXTS = "4096,16384,32768,50000,131072,262144,1048576"


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def add_parser(sub) -> None:
    p = sub.add_parser("concurrency", help="prefill, concurrency, decode and context switch over context lengths")
    add_scenario_flags(p)
    p.add_argument("--contexts", type=_ints, default=_ints(DEFAULT_CONTEXTS), help="comma-separated token counts")
    p.add_argument("--decode-tokens", type=int, default=250, help="tokens decoded per user")
    p.set_defaults(run=run)


def render(t: dict, decode_tokens: int) -> str:
    rows = []
    for i, ctx in enumerate(t["context_len"]):
        rows.append([f"{int(ctx):,}", size(t["kv_bytes_per_request"][i]), str(int(t["max_concurrency"][i])),
                     seconds(t["prefill_s"][i]), seconds(t["decode_s"][i]), seconds(t["decode_step_full_batch_s"][i]),
                     seconds(t["context_switch_s"][i]), f"{t['session_throughput_per_s'][i]:.3g}"])
    headers = ["context", "KV/user", "max users", "prefill (1 user)", f"decode {decode_tokens} tok",
               "step @max users", "context switch", "sessions/s"]
    return table(headers, rows)


def run(args) -> int:
    scenario = scenario_from_args(args)
    t = long_context_table(scenario, args.contexts, args.decode_tokens)
    print(f"{scenario.model} on {scenario.hardware.num_gpus}x {scenario.hardware.gpu}, tp={scenario.tp}, "
          f"profile {scenario.calibration}\n")
    print(render(t, args.decode_tokens))
    return 0
