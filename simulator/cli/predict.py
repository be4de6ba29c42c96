"""``roofsim predict``: one scenario, as a table or as the JSON contract."""

from __future__ import annotations

import json

from simulator.api import predict
from simulator.cli.format import count, seconds, size, table
from simulator.prediction import Prediction
from simulator.scenario import Scenario

# flag -> (dotted scenario field, type)
OVERRIDES = {
    "model": ("model", str),
    "gpu": ("hardware.gpu", str),
    "num_gpus": ("hardware.num_gpus", int),
    "tp": ("parallelism.tp", int),
    "pp": ("parallelism.pp", int),
    "phase": ("workload.phase", str),
    "batch": ("workload.batch_size", int),
    "prompt_len": ("workload.prompt_len", int),
    "context": ("workload.context_len", int),
    "output_len": ("workload.output_len", int),
    "weights_dtype": ("precision.weights", str),
    "kv_dtype": ("precision.kv_cache", str),
    "compute_dtype": ("precision.compute", str),
    "calibration": ("calibration", str),
    "memory_utilization": ("memory_utilization", float),
    "overlap": ("overlap", str),
}


def add_scenario_flags(parser) -> None:
    parser.add_argument("scenario", nargs="?", help="scenario file (YAML or JSON); flags override its fields")
    for flag, (field, kind) in OVERRIDES.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, help=f"sets {field}")


def scenario_from_args(args) -> Scenario:
    scenario = Scenario.from_file(args.scenario) if args.scenario else Scenario()
    overrides = {field: getattr(args, flag) for flag, (field, _) in OVERRIDES.items()
                 if getattr(args, flag, None) is not None}
    return scenario.with_overrides(**overrides) if overrides else scenario


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="predict latency, throughput and memory of one scenario")
    add_scenario_flags(p)
    p.add_argument("--json", action="store_true", help="print the JSON contract")
    p.set_defaults(run=run)


def render(pred: Prediction) -> str:
    head = (f"{pred.model} on {pred.num_gpus}x {pred.gpu} (tp={pred.tp}, pp={pred.pp}, replicas={pred.replicas}), "
            f"profile {pred.calibration}, {pred.phase}")
    lines = [head, ""]
    if pred.phase == "generate":
        lines.append(f"TTFT {seconds(pred.ttft_s)}   TPOT {seconds(pred.tpot_s)}   end-to-end {seconds(pred.e2e_s)}")
    else:
        lines.append(f"step latency {seconds(pred.latency_s)}")
    mem = pred.memory
    lines += [
        f"throughput {pred.tokens_per_s:,.0f} tokens/s   bound: {pred.bound}   MFU {pred.mfu:.1%}   MBU {pred.mbu:.1%}",
        f"memory/GPU {size(mem.total_bytes)} of {size(mem.capacity_bytes)} ({'fits' if mem.fits else 'DOES NOT FIT'}): "
        f"weights {size(mem.weights_bytes)}, KV {size(mem.kv_cache_bytes)}, activations {size(mem.activation_bytes)}, "
        f"workspace {size(mem.workspace_bytes)}",
        f"max concurrency at this context: {pred.max_concurrency} requests "
        f"(KV {size(mem.kv_bytes_per_request)} per request)",
        "",
    ]
    rows = [[op.name + (f" [{op.phase}]" if pred.phase == "generate" else ""), str(op.count), count(op.flops),
             size(op.bytes + op.link_bytes), seconds(op.time_s), op.bound] for op in pred.breakdown]
    lines.append(table(["operator", "count", "FLOPs", "bytes", "time", "bound"], rows))
    return "\n".join(lines)


def run(args) -> int:
    pred = predict(scenario_from_args(args))
    print(json.dumps(pred.contract(), indent=2) if args.json else render(pred))
    return 0
