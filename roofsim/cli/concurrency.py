"""``roofsim concurrency``: the seed paper's four limits over context lengths for one scenario."""

from __future__ import annotations

import numpy as np

from hwmodels.errors import InputError
from roofsim.cli.format import seconds, size, table
from roofsim.cli.predict import add_scenario_flags, scenario_from_args
from simulator.bounds import MAX_TOKENS, check_counts
from simulator.checks import context_warning
from simulator.long_context import long_context_table
from simulator.models import get_model

DEFAULT_CONTEXTS = "4096,16384,32768,50000,131072,262144,1048576"


def counts(flag: str, text: str) -> list[int]:
    """Comma-separated whole token counts in [1, 2^24] (1e5 and 131072 alike), or a one-line ``InputError``."""
    items = [x.strip() for x in str(text).split(",") if x.strip()]
    try:
        values = [float(x) for x in items]
    except ValueError:
        raise InputError(flag, f"expected comma-separated whole numbers, got {text!r}") from None
    return [int(v) for v in check_counts(flag, values, MAX_TOKENS, "tokens")]


def add_parser(sub) -> None:
    p = sub.add_parser("concurrency", help="prefill, concurrency, decode and context switch over context lengths")
    add_scenario_flags(p)
    p.add_argument("--contexts", default=DEFAULT_CONTEXTS,
                   help=f"comma-separated token counts, each 1 to 2^24 (default {DEFAULT_CONTEXTS})")
    p.add_argument("--decode-tokens", default="250", help="tokens decoded per user, 1 to 2^24 (default 250)")
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
    contexts = counts("--contexts", args.contexts)
    decode = counts("--decode-tokens", args.decode_tokens)
    if len(decode) != 1:
        raise InputError("--decode-tokens", f"expected one number, got {args.decode_tokens!r}")
    decode_tokens = decode[0]
    scenario = scenario_from_args(args)
    t = long_context_table(scenario, contexts, decode_tokens)
    print(f"{scenario.model} on {scenario.hardware.num_gpus}x {scenario.hardware.gpu}, tp={scenario.tp}, "
          f"profile {scenario.calibration}")
    beyond = context_warning(get_model(scenario.model), np.asarray(contexts) + decode_tokens, "--contexts + decode")
    print(f"warning: {beyond}\n" if beyond else "")
    print(render(t, decode_tokens))
    return 0
