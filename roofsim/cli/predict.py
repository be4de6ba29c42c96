"""``roofsim predict``: one scenario, as a table or as the JSON contract."""

from __future__ import annotations

import json

from hwmodels.errors import InputError
from simulator.api import predict
from roofsim.cli.format import count, seconds, size, table
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
    parser.add_argument("--technique", dest="technique", action="append", default=[], metavar="NAME[:k=v,...]",
                        help="add a technique (repeatable), e.g. kv_quant:bits=4; see `roofsim techniques list`")


def _scalar(text: str):
    """A flag value: an int, a float, true/false, none/null, or the text itself (e.g. 2:4, w4a16)."""
    low = text.lower()
    if low in ("", "none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_technique(text: str) -> dict:
    """``NAME[:k=v,...]`` -> ``{"name": NAME, k: v, ...}``; values are ints, floats, booleans, none or text."""
    name, _, rest = text.partition(":")
    entry: dict = {"name": name.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError("--technique", f"{text!r}: expected NAME[:key=value,...], got {item!r}")
        entry[key.strip()] = _scalar(value.strip())
    if not entry["name"]:
        raise InputError("--technique", f"{text!r}: no technique name")
    return entry


def scenario_from_args(args) -> Scenario:
    scenario = Scenario.from_file(args.scenario) if args.scenario else Scenario()
    overrides = {field: getattr(args, flag) for flag, (field, _) in OVERRIDES.items()
                 if getattr(args, flag, None) is not None}
    added = [parse_technique(t) for t in getattr(args, "technique", None) or []]
    if added:
        overrides["techniques"] = [*scenario.techniques, *added]
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
        f"max concurrency at this context (decode, KV in memory): {pred.max_concurrency} requests"
        + (f" per replica, {pred.max_concurrency_total} over {pred.replicas} replicas" if pred.replicas > 1 else "")
        + f" (KV {size(mem.kv_bytes_per_request)} per request)",
        f"sparsity-aware S-MBU {pred.s_mbu:.1%}   S-MFU {pred.s_mfu:.1%}   NanoFlow optimum "
        f"{pred.optimal_tokens_per_s_per_gpu:,.0f} tokens/s/GPU, reached {pred.optimal_fraction:.1%}",
        "",
    ]
    if pred.tokens_per_step != 1.0:
        lines.insert(3, f"{pred.tokens_per_step:.3g} output tokens per decode step per sequence")
    rows = [[op.name + (f" [{op.phase}]" if pred.phase == "generate" else ""), str(op.count), count(op.flops),
             size(op.bytes + op.link_bytes), seconds(op.time_s), op.bound] for op in pred.breakdown]
    lines.append(table(["operator", "count", "FLOPs", "bytes", "time", "bound"], rows))
    if pred.techniques:
        lines += ["", "techniques (with / without each; combined: with all / with none):", render_effects(pred)]
    return "\n".join(lines)


def _x(value) -> str:
    return "-" if value is None else f"{value:.3g}x"


def render_effects(pred: Prediction) -> str:
    rows = []
    for e in [*pred.techniques, pred.techniques_combined]:
        conc = f"{e.max_concurrency_before if e.max_concurrency_before is not None else '-'} -> {e.max_concurrency_after}"
        rows.append([e.name, _x(e.kv_bytes_ratio), _x(e.weight_bytes_ratio), _x(e.memory_ratio), conc,
                     _x(e.prefill_latency_ratio), _x(e.decode_latency_ratio), _x(e.throughput_ratio)])
    return table(["technique", "KV", "weights", "memory", "max concurrency", "prefill", "decode/token", "throughput"],
                 rows)


def run(args) -> int:
    pred = predict(scenario_from_args(args))
    print(json.dumps(pred.contract(), indent=2) if args.json else render(pred))
    return 0
