"""``roofsim serve``: a request stream through replicas scheduled like vLLM, as a report or JSON."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from hwmodels.errors import InputError
from roofsim.cli.format import seconds, table
from roofsim.cli.predict import OVERRIDES, parse_technique
from simulator.scenario import Scenario
from simulator.serving import ServeResult, serve

SCENARIO_FLAGS = ("model", "gpu", "num_gpus", "tp", "pp", "weights_dtype", "kv_dtype", "compute_dtype", "calibration",
                  "memory_utilization", "overlap")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="simulate serving a request stream: TTFT, TPOT, throughput, SLOs")
    p.add_argument("scenario", nargs="?", help="scenario file (YAML or JSON); flags override its fields")
    for flag in SCENARIO_FLAGS:
        field, kind = OVERRIDES[flag]
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, help=f"sets {field}")
    p.add_argument("--technique", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="add a technique to the step model (repeatable)")
    w = p.add_argument_group("workload")
    w.add_argument("--rate", type=float, help="mean arrival rate, requests/s (a trace may omit it)")
    w.add_argument("--num-requests", type=int, default=1000)
    w.add_argument("--arrival", default="poisson", help="poisson, gamma:CV, fixed or trace:FILE")
    w.add_argument("--prompt-len", default=None, help="N, uniform:A,B, lognormal:MEDIAN,SIGMA or trace (default 1024)")
    w.add_argument("--output-len", default=None, help="N, uniform:A,B, lognormal:MEDIAN,SIGMA or trace (default 256)")
    w.add_argument("--prefix", action="append", default=[], metavar="LENGTH:POPULARITY",
                   help="a shared prompt prefix group (repeatable), e.g. 2048:0.5")
    w.add_argument("--seed", type=int, default=0)
    s = p.add_argument_group("engine")
    s.add_argument("--max-batch", type=int, help="max_num_seqs (default 256)")
    s.add_argument("--max-batched-tokens", type=int, help="max_num_batched_tokens (default 2048)")
    s.add_argument("--chunked-prefill", action=argparse.BooleanOptionalAction, default=None,
                   help="mix prompt chunks with decodes (default) or schedule prefill-first")
    s.add_argument("--block-size", type=int, help="tokens per KV block (default 16)")
    s.add_argument("--prefix-cache", action="store_true", help="reuse cached blocks of shared prefixes")
    s.add_argument("--preemption", choices=["recompute", "swap"])
    s.add_argument("--max-model-len", type=int)
    s.add_argument("--router", choices=["round_robin", "least_outstanding", "prefix_affinity"])
    s.add_argument("--disaggregate", metavar="P:D", help="P prefill and D decode replicas")
    s.add_argument("--decode-gpu", help="GPU of the decode replicas (disaggregation), e.g. a100-80gb-sxm")
    s.add_argument("--decode-tp", type=int, help="tensor-parallel degree of the decode replicas")
    s.add_argument("--kv-transfer", choices=["whole", "layerwise"])
    s.add_argument("--kv-link", choices=["auto", "nvlink", "network"])
    s.add_argument("--cascade", metavar="SMALL_MODEL:FRACTION", help="answer with SMALL_MODEL first, escalate FRACTION")
    s.add_argument("--slo-ttft", type=float, metavar="SECONDS")
    s.add_argument("--slo-tpot", type=float, metavar="SECONDS")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print the JSON contract")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--records", metavar="FILE.csv", help="write one row per request")
    p.set_defaults(run=run)


def _prefix(text: str) -> dict:
    length, sep, pop = text.partition(":")
    try:
        return {"length": int(length), "popularity": float(pop)}
    except ValueError:
        raise InputError("--prefix", f"{text!r}: expected LENGTH:POPULARITY, e.g. 2048:0.5") from None


def scenario_from_args(args) -> Scenario:
    scenario = Scenario.from_file(args.scenario) if args.scenario else Scenario()
    overrides = {OVERRIDES[f][0]: getattr(args, f) for f in SCENARIO_FLAGS if getattr(args, f) is not None}
    added = [parse_technique(t) for t in args.technique]
    if added:
        overrides["techniques"] = [*scenario.techniques, *added]
    return scenario.with_overrides(**overrides) if overrides else scenario


def workload_from_args(args) -> dict:
    trace = args.arrival.startswith("trace:")
    data = {"num_requests": args.num_requests, "arrival": args.arrival, "seed": args.seed,
            "prompt_len": args.prompt_len or ("trace" if trace else 1024),
            "output_len": args.output_len or ("trace" if trace else 256),
            "prefixes": [_prefix(t) for t in args.prefix]}
    if args.rate is not None:
        data["rate"] = args.rate
    return data


def config_from_args(args) -> dict:
    flags = {"max_batch": "max_num_seqs", "max_batched_tokens": "max_num_batched_tokens",
             "chunked_prefill": "chunked_prefill", "block_size": "block_size", "preemption": "preemption",
             "max_model_len": "max_model_len", "router": "router", "disaggregate": "disaggregate",
             "kv_transfer": "kv_transfer", "kv_link": "kv_link", "slo_ttft": "slo_ttft_s", "slo_tpot": "slo_tpot_s"}
    cfg = {key: getattr(args, flag) for flag, key in flags.items() if getattr(args, flag) is not None}
    if args.prefix_cache:
        cfg["prefix_caching"] = True
    decode = {"hardware.gpu": args.decode_gpu, "parallelism.tp": args.decode_tp}
    if any(v is not None for v in decode.values()):
        cfg["decode_overrides"] = {k: v for k, v in decode.items() if v is not None}
    if args.cascade:
        model, sep, fraction = args.cascade.rpartition(":")
        try:
            cfg["cascade"] = {"small_model": model, "escalate_fraction": float(fraction)}
        except ValueError:
            raise InputError("--cascade", f"{args.cascade!r}: expected SMALL_MODEL:FRACTION") from None
        if not sep or not model:
            raise InputError("--cascade", f"{args.cascade!r}: expected SMALL_MODEL:FRACTION")
    return cfg


class ProgressBar:
    """A one-line bar on stderr, redrawn at most once per percent."""

    def __init__(self, width: int = 30):
        self.width, self.shown = width, -1

    def __call__(self, fraction: float) -> None:
        pct = int(fraction * 100)
        if pct == self.shown:
            return
        self.shown = pct
        filled = int(fraction * self.width)
        sys.stderr.write(f"\rsimulating [{'#' * filled}{'.' * (self.width - filled)}] {pct:3d}%")
        if pct >= 100:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _stat_row(name: str, stats) -> list[str]:
    return [name] + [seconds(getattr(stats, k)) if getattr(stats, k) is not None else "-"
                     for k in ("mean", "p50", "p90", "p99")]


def render(res: ServeResult, head: str) -> str:
    lines = [head, ""]
    lines.append(f"{res.completed} completed, {res.rejected} rejected in {res.duration_s:,.1f} s "
                 f"(offered {res.request_rate:.3g} req/s, served {res.requests_per_s:.3g} req/s"
                 f"{', SATURATED' if res.saturated else ''})")
    for reason, n in res.rejections.items():
        lines.append(f"  rejected {n}: {reason}")
    lines.append(f"throughput {res.throughput_tokens_per_s:,.0f} tokens/s "
                 f"(input {res.input_tokens_per_s:,.0f}, output {res.output_tokens_per_s:,.0f})")
    slo = "-" if res.slo_attainment is None else f"{res.slo_attainment:.1%}"
    lines.append(f"SLO attainment {slo}   goodput {res.goodput_req_per_s:.3g} req/s   preemptions {res.preemptions}")
    lines.append(f"mean batch {res.mean_batch_size:.1f} sequences   mean KV occupancy {res.mean_kv_occupancy:.1%}   "
                 f"cached prompt tokens {res.cached_prompt_tokens:,}   energy {res.energy_j / 3.6e6:.3g} kWh")
    if res.escalated:
        lines.append(f"cascade: {res.escalated} requests escalated to the large model")
    lines.append("")
    rows = [_stat_row(*item) for item in (("TTFT", res.ttft_s), ("TPOT", res.tpot_s), ("ITL", res.itl_s),
                                          ("end-to-end", res.e2e_s), ("queueing", res.queue_s))]
    if res.kv_transfer_s.mean is not None:
        rows.append(_stat_row("KV transfer", res.kv_transfer_s))
    lines.append(table(["latency", "mean", "p50", "p90", "p99"], rows))
    lines.append("")
    rep_rows = [[f"{r.index} {r.group}", f"{r.model} on {r.gpus}x {r.gpu}", f"{r.kv_blocks:,}", f"{r.steps:,}",
                 f"{r.mean_batch_size:.1f}", f"{r.mean_kv_occupancy:.1%}", str(r.preemptions)] for r in res.replicas]
    lines.append(table(["replica", "serves", "KV blocks", "steps", "batch", "KV used", "preempted"], rep_rows))
    return "\n".join(lines)


def write_records(res: ServeResult, path: str) -> None:
    rec = res.records
    try:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(rec.dtype.names)
            writer.writerows(row.tolist() for row in rec)
    except OSError as exc:
        raise InputError("--records", f"cannot write {path!r}: {exc.__class__.__name__}") from None


def run(args) -> int:
    scenario = scenario_from_args(args)
    workload = workload_from_args(args)
    config = config_from_args(args)
    bar = None if (args.json or args.quiet) else ProgressBar()
    res = serve(scenario, workload, config, progress=bar)
    if args.records:
        write_records(res, args.records)
    if args.json:
        print(json.dumps(res.contract(), indent=2))
    else:
        first = res.replicas[0]
        gpus = sum(r.gpus for r in res.replicas)
        n = len(res.replicas)
        print(render(res, f"{first.model} on {gpus}x {first.gpu} ({n} replica{'s' if n > 1 else ''}), "
                          f"{res.completed + res.rejected} requests, {workload['arrival']}"))
    return 0

