"""``roofsim plan-train``: the fastest (or cheapest) training layout that fits, and what bounds it."""

from __future__ import annotations

import json

from roofsim.cli.format import table
from roofsim.cli.train import add_train_flags, scenario_from_args
from simulator.humanize import seconds, size
from simulator.training.plan import plan_train


def add_parser(sub) -> None:
    p = sub.add_parser("plan-train", help="search TP x PP x DP x CP x EP, micro-batch, recompute and ZeRO for a "
                                          "training layout")
    add_train_flags(p)
    p.add_argument("--objective", choices=["fastest", "cheapest"], default="fastest")
    p.add_argument("--top", type=int, default=5, help="layouts to list")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    res = plan_train(scenario_from_args(args), objective=args.objective, top=args.top)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    rows = [[str(r["tp"]), str(r["pp"]), str(r["cp"]), str(r["ep"]), str(r["dp"]), str(r["micro_batch"]),
             r["recompute"], str(r["zero"]), str(r["num_gpus"]), seconds(r["step_time_s"]), f"{r['mfu']:.1%}",
             size(r["memory_bytes"])] for r in res["top"]]
    print(f"{res['evaluated']:,} layouts evaluated ({res['feasible']:,} fit) in {res['search_s']:.3f} s "
          f"({res['configs_per_s']:,.0f}/s), objective: {res['objective']}")
    print(table(["tp", "pp", "cp", "ep", "dp", "mb", "recompute", "zero", "gpus", "step", "MFU", "memory/GPU"], rows))
    print(res["explanation"])
    return 0
