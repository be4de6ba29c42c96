"""``roofsim plan``: the cheapest deployments that serve a request rate within TTFT/TPOT SLOs."""

from __future__ import annotations

import json
import re

from hwmodels.errors import InputError
from roofsim.cli.format import seconds, table
from roofsim.cli.predict import parse_technique
from simulator.planning import PlanResult, plan


def _positive_int(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InputError(flag, f"{text!r}: expected a positive integer") from None
    if value <= 0:
        raise InputError(flag, "expected a positive integer")
    return value


def _length(flag: str, text: str) -> int | str:
    """A token count, or a length spec the serving workload reads (uniform:A,B, lognormal:MEDIAN,SIGMA)."""
    return _positive_int(flag, text) if text.strip().lstrip("-").isdigit() else text.strip()


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="the cheapest GPUs, layout and techniques for a traffic and an SLO")
    p.add_argument("--model", default="llama-3.1-8b")
    p.add_argument("--rate", type=float, required=True, help="requests/s")
    p.add_argument("--prompt-len", default="1024", help="tokens per prompt: N, uniform:A,B or lognormal:MEDIAN,SIGMA")
    p.add_argument("--output-len", default="256", help="tokens per response, as --prompt-len")
    p.add_argument("--slo-ttft", type=float, default=2.0, metavar="S", help="TTFT SLO in seconds")
    p.add_argument("--slo-tpot", type=float, default=0.05, metavar="S", help="TPOT SLO in seconds")
    p.add_argument("--percentile", type=float, default=90.0, help="SLO percentile (default 90)")
    p.add_argument("--gpus", help="comma-separated catalog GPUs (default: every one with a price)")
    p.add_argument("--max-gpus", type=int, default=64)
    p.add_argument("--max-nodes", type=int, default=2,
                   help="nodes one replica may span (TP over the nodes, or TP in a node x PP; default 2)")
    p.add_argument("--pp", default="1", help="pipeline-parallel degrees to search, e.g. 1,2")
    p.add_argument("--techniques", default="", help="switches the plan may use: fp8_weights,fp8_kv,speculative,prefix_cache")
    p.add_argument("--technique", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="a switch with parameters, e.g. prefix_cache:hit_rate=0.3 (repeatable)")
    p.add_argument("--no-disaggregate", action="store_true", help="co-located replicas only")
    p.add_argument("--budget", type=float, help="max $/hour")
    p.add_argument("--power-budget", type=float, help="max provisioned watts")
    p.add_argument("--power-provisioning", choices=["observed", "tdp"], default="observed",
                   help="provision at the observed draw with capping (POLCA) or at TDP")
    p.add_argument("--verify", type=int, default=3, metavar="K", help="simulate the K cheapest plans with the DES")
    p.add_argument("--refine", action="store_true",
                   help="then search fewer replicas of the cheapest verified layout with the DES (bisection)")
    p.add_argument("--num-requests", type=int, default=2000, help="requests per verification run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local instance)")
    p.add_argument("--prices", metavar="FILE", help="YAML of contract prices (gpu: usd_per_gpu_hour)")
    p.add_argument("--calibration", default="auto")
    p.add_argument("--json", action="store_true", help="print the JSON contract")
    p.set_defaults(run=run)


def request_from_args(args) -> dict:
    techniques = [{"name": n.strip()} for n in args.techniques.split(",") if n.strip()]
    techniques += [parse_technique(t) for t in args.technique]
    out = {
        "model": args.model, "rate": args.rate, "prompt_len": _length("--prompt-len", args.prompt_len),
        "output_len": _length("--output-len", args.output_len), "slo_ttft_s": args.slo_ttft,
        "slo_tpot_s": args.slo_tpot, "percentile": args.percentile, "max_gpus": args.max_gpus,
        "max_nodes": args.max_nodes,
        "pp_options": [_positive_int("--pp", t) for t in args.pp.split(",") if t.strip()],
        "techniques": techniques, "disaggregate": not args.no_disaggregate, "budget_usd_per_hour": args.budget,
        "power_budget_w": args.power_budget, "power_provisioning": args.power_provisioning, "verify": args.verify,
        "refine": args.refine,
        "num_requests": args.num_requests, "seed": args.seed, "backend": args.backend,
        "ray_address": args.ray_address, "prices": args.prices, "calibration": args.calibration,
    }
    if args.gpus:
        out["gpus"] = [g.strip() for g in args.gpus.split(",") if g.strip()]
    return out


def contract(result: PlanResult) -> dict:
    """The stable JSON: plans (sorted by $/hour), the Pareto set, the search's size and time."""
    data = result.model_dump(mode="json")
    return {"plans": data["plans"], "pareto": data["pareto"], "cheapest": data["cheapest"],
            "searched_configs": data["searched_configs"], "search_time_s": data["search_time_s"],
            "verify_time_s": data["verify_time_s"], "backend": data["backend"],
            "rejected_cheaper": data["rejected_cheaper"], "request": data["request"], "why_none": data["why_none"],
            "refined": data["refined"], "refine_time_s": data["refine_time_s"]}


def _gpus(p) -> str:
    """The plan's GPUs, per pool for a prefill/decode split ('4x h100-sxm + 4x a100-80gb-sxm')."""
    split = re.fullmatch(r"(\d+)P(\d+)D", p.disaggregate or "")
    if split is None:
        return f"{p.num_gpus}x {p.gpu}"
    prefill = int(split.group(1)) * p.tp * p.pp
    return f"{prefill}x {p.gpu} + {p.num_gpus - prefill}x {p.decode_gpu or p.gpu}"


def _verdict(p) -> str:
    return "-" if p.verified is None else ("meets SLO" if p.verified else "misses SLO")


def render(result: PlanResult) -> str:
    req = result.request
    pct = f"p{req.percentile:g}"
    lines = [f"{req.model} at {req.rate:g} req/s ({req.prompt_len} / {req.output_len} tokens), "
             f"{pct} TTFT <= {seconds(req.slo_ttft_s)}, {pct} TPOT <= {seconds(req.slo_tpot_s)}",
             f"searched {result.searched_configs:,} configurations in {result.search_time_s:.2f} s; "
             f"verified with the DES in {result.verify_time_s:.1f} s ({result.backend})"]
    if result.refined:
        runs = ", ".join(f"{p.replicas} {'meets' if p.verified else 'misses'}" for p in result.refined)
        lines.append(f"refined with the DES in {result.refine_time_s:.1f} s over fewer replicas of the cheapest "
                     f"verified layout: {runs}")
    lines.append("")
    rows = []
    for p in result.plans:
        layout = p.layout()
        des = p.verification
        rows.append([_gpus(p),
                     layout, ",".join(p.techniques) or "-", str(p.max_num_seqs), f"${p.usd_per_hour:,.2f}",
                     f"${p.usd_per_million_tokens:.3f}", seconds(p.ttft_p90_s), seconds(p.tpot_p90_s),
                     seconds(des.ttft_pct_s) if des else "-", seconds(des.tpot_pct_s) if des else "-",
                     f"{p.load:.0%}", _verdict(p)])
    lines.append(table(["GPUs", "layout", "techniques", "max seqs", "$/hour", "$/M tok", f"TTFT {pct}",
                        f"TPOT {pct}", "DES TTFT", "DES TPOT", "load", "verified"], rows))
    best = result.cheapest
    if best is None:
        lines += ["", "no plan meets the SLOs in this space: " + result.why_none]
        lines += ["", "nearest misses:"] + [f"  {r['config']}: {r['reason']}" for r in result.rejected_cheaper[:5]]
        return "\n".join(lines)
    lines += ["", f"cheapest: {_gpus(best)} ({best.layout(nodes='')}) "
              f"${best.usd_per_hour:,.2f}/hour, ${best.usd_per_million_input_tokens:.3f}/M input and "
              f"${best.usd_per_million_output_tokens:.3f}/M output tokens, {best.joules_per_token:.3f} J/token, "
              f"{best.energy_kwh_per_day:,.0f} kWh/day",
              f"bound by {best.bound}", f"cheaper if {best.cheaper_if}", "", "vLLM:", best.vllm_command, "",
              "SGLang:", best.sglang_command, "", "simulate it (the plan's scenario saved as scenario.json):",
              best.serve_command]
    return "\n".join(lines)


def run(args) -> int:
    result = plan(request_from_args(args))
    print(json.dumps(contract(result), indent=2) if args.json else render(result))
    return 0
