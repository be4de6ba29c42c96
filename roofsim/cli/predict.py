"""``roofsim predict``: one scenario, as a table or as the JSON contract."""

from __future__ import annotations

import json
from typing import Literal, get_args, get_origin

from hwmodels.errors import InputError
from simulator.api import predict
from roofsim.cli.format import count, seconds, size, table
from simulator.prediction import Prediction
from hwmodels import DTYPES, builtin_profiles, list_accelerators
from simulator.bounds import MAX_BATCH
from simulator.models import list_models
from simulator.scenario import OverlapPolicy, Phase, Scenario
from simulator.techniques import REGISTRY

# flag -> (dotted scenario field, type)
OVERRIDES = {
    "model": ("model", str),
    "gpu": ("hardware.gpu", str),
    "num_gpus": ("hardware.num_gpus", int),
    "tp": ("parallelism.tp", int),
    "pp": ("parallelism.pp", int),
    "node": ("hardware.node", str),
    "network": ("hardware.network", str),
    "num_nodes": ("hardware.num_nodes", int),
    "microbatches": ("parallelism.microbatches", int),
    "ep": ("parallelism.ep", int),
    "expert_tp": ("parallelism.expert_tp", int),
    "cp": ("parallelism.cp", int),
    "cp_method": ("parallelism.cp_method", str),
    "sp": ("parallelism.sp", lambda text: text.lower() in ("1", "true", "yes", "on")),
    "collective_algorithm": ("parallelism.collective_algorithm", str),
    "order": ("parallelism.order", lambda text: [part.strip() for part in text.split(",")]),
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


def allowed_values() -> dict[str, str]:
    """Flag -> the values it takes, for ``--help``."""
    dtypes = ", ".join(DTYPES)
    return {
        "model": "a preset (" + ", ".join(list_models()) + ") or a config.json path",
        "gpu": "a catalog name (" + ", ".join(list_accelerators()) + ") or a YAML/JSON spec path",
        "phase": ", ".join(get_args(Phase)), "overlap": ", ".join(get_args(OverlapPolicy)),
        "weights_dtype": dtypes, "kv_dtype": dtypes, "compute_dtype": dtypes,
        "calibration": ", ".join(["auto", *builtin_profiles()]) + " or a profile JSON path",
        "batch": f"1 to {MAX_BATCH:,}", "prompt_len": "1 to 2^24", "context": "1 to 2^24", "output_len": "1 to 2^24",
        "memory_utilization": "in (0, 1]",
    }


def add_scenario_flags(parser) -> None:
    parser.add_argument("scenario", nargs="?", help="scenario file (YAML or JSON); flags override its fields")
    allowed = allowed_values()
    for flag, (field, kind) in OVERRIDES.items():
        choices = f": {allowed[flag]}" if flag in allowed else ""
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, help=f"sets {field}{choices}")
    parser.add_argument("--technique", dest="technique", action="append", default=[], metavar="NAME[:k=v,...]",
                        help="add a technique (repeatable), e.g. kv_quant:bits=4; one of " + ", ".join(REGISTRY)
                             + "; parameters: `roofsim techniques show NAME`")


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


def _literals(annotation) -> set:
    """Every value a ``Literal[...]`` inside ``annotation`` allows (through Optional, Annotated, unions)."""
    if get_origin(annotation) is Literal:
        return set(get_args(annotation))
    return set().union(*(_literals(arg) for arg in get_args(annotation))) if get_args(annotation) else set()


def parse_technique(text: str) -> dict:
    """``NAME[:k=v,...]`` -> ``{"name": NAME, k: v, ...}``; values are ints, floats, booleans, none or text,
    except that a value the parameter lists by name (``flash_attention:version=none``) stays that text."""
    name, _, rest = text.partition(":")
    entry: dict = {"name": name.strip()}
    fields = getattr(REGISTRY.get(name.strip()), "model_fields", {})
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError("--technique", f"{text!r}: expected NAME[:key=value,...], got {item!r}")
        named = key.strip() in fields and value.strip() in _literals(fields[key.strip()].annotation)
        entry[key.strip()] = value.strip() if named else _scalar(value.strip())
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
    lines = [head, *(f"warning: {w}" for w in pred.warnings), ""]
    if pred.phase == "generate":
        lines.append(f"TTFT {seconds(pred.ttft_s)}   TPOT {seconds(pred.tpot_s)}   end-to-end {seconds(pred.e2e_s)}")
    else:
        lines.append(f"step latency {seconds(pred.latency_s)}")
    if pred.latency_band_s is not None:
        lo, hi = pred.latency_band_s
        what = "end-to-end" if pred.phase == "generate" else "latency"
        lines.append(f"10-90% band: {what} {seconds(lo)} - {seconds(hi)}, throughput "
                     f"{pred.tokens_per_s_band[0]:,.0f} - {pred.tokens_per_s_band[1]:,.0f} tokens/s ({pred.band_basis})")
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
