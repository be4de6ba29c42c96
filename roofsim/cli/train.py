"""``roofsim train``: one training step (and time to train), as a report or as the JSON contract."""

from __future__ import annotations

import json

from roofsim.cli.format import table
from simulator.humanize import seconds, size
from simulator.training.api import train
from simulator.training.report import TrainReport
from simulator.training.scenario import TrainScenario

# flag -> (scenario field, type, choices)
FLAGS = {
    "model": (str, None), "gpu": (str, None), "num_gpus": (int, None), "node": (str, None),
    "tp": (int, None), "pp": (int, None), "cp": (int, None), "ep": (int, None), "seq_len": (int, None),
    "micro_batch": (int, None), "global_batch": (int, None), "zero": (int, [0, 1, 2, 3]),
    "recompute": (str, ["none", "selective", "full"]), "precision": (str, ["bf16", "amp", "mixed", "fp8"]),
    "optimizer": (str, ["adamw", "sgd", "adafactor"]), "offload": (str, ["none", "optimizer", "params", "nvme"]),
    "offload_policy": (str, ["serial", "overlapped"]), "lora_rank": (int, None), "tokens": (float, None),
    "schedule": (str, ["gpipe", "1f1b", "interleaved"]), "virtual_stages": (int, None),
    "grad_overlap": (str, ["none", "bucketed"]), "usd_per_gpu_hour": (float, None),
    "downtime_fraction": (float, None), "comm_inflation": (float, None), "calibration": (str, None),
    "memory_utilization": (float, None), "network": (str, None), "inter_node_bandwidth_bytes_per_s": (float, None),
    "nvme_bandwidth_bytes_per_s": (float, None),
}
SWITCHES = {"vocab_parallel": "spread vocabulary layers over all pipeline stages",
            "hsdp": "ZeRO shards within a node, replicas across nodes", "main_grad_fp32": "mixed: fp32 main grads",
            "dropout": "dropout after attention and MLP"}


def add_train_flags(p) -> None:
    p.add_argument("scenario", nargs="?", help="training scenario file (YAML or JSON); flags override its fields")
    for flag, (kind, choices) in FLAGS.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind, choices=choices, help=f"sets {flag}")
    for flag, text in SWITCHES.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, action="store_true", default=None, help=text)


def scenario_from_args(args) -> TrainScenario:
    sc = TrainScenario.from_file(args.scenario) if args.scenario else TrainScenario()
    fields = {f: getattr(args, f) for f in (*FLAGS, *SWITCHES) if getattr(args, f, None) is not None}
    return sc.with_overrides(**fields) if fields else sc


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="predict a training step: time, memory, MFU and time to train")
    add_train_flags(p)
    p.add_argument("--json", action="store_true", help="print the JSON contract")
    p.set_defaults(run=run)


def render(r: TrainReport) -> str:
    m = r.memory
    lines = [
        f"{r.model} on {r.num_gpus}x {r.gpu}: tp={r.tp} pp={r.pp} cp={r.cp} ep={r.ep} dp={r.dp}, "
        f"micro-batch {r.micro_batch} x {r.microbatches} = {r.global_batch} sequences of {r.seq_len}, "
        f"{r.precision}, recompute {r.recompute}, ZeRO {r.zero}, {r.optimizer}, profile {r.calibration}",
        "",
        f"step {seconds(r.step_time_s)}   {r.tokens_per_s:,.0f} tokens/s   MFU {r.mfu:.1%}   HFU {r.hfu:.1%}   "
        f"bound: {r.bound}",
        f"FLOPs per step: model {r.model_flops_per_step:.3g}, hardware {r.hardware_flops_per_step:.3g}",
        f"memory/GPU {size(m.total_bytes)} + workspace {size(m.workspace_bytes)} of {size(m.capacity_bytes)} "
        f"({'fits' if m.fits else 'DOES NOT FIT'})",
    ]
    if r.time_to_train_s is not None:
        line = f"time to train {r.time_to_train_s / 86400:,.1f} days, {r.gpu_hours:,.0f} GPU-hours"
        if r.cost_usd is not None:
            line += f", ${r.cost_usd:,.0f}"
        lines.append(line)
    lines.append("")
    mem_rows = [[k.removesuffix("_bytes"), size(getattr(m, k))] for k in
                ("weights_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes", "loss_bytes",
                 "bucket_bytes", "workspace_bytes", "host_bytes") if getattr(m, k)]
    lines.append(table(["memory", "per GPU"], mem_rows))
    lines.append("")
    rows = [[k, seconds(v), f"{v / r.step_time_s:.1%}"] for k, v in sorted(r.breakdown.items(), key=lambda x: -x[1]) if v]
    lines.append(table(["step time", "seconds", "share"], rows))
    lines.append(f"gradient reduction overlap: {r.grad_overlap}; pipeline schedule: {r.schedule}")
    return "\n".join(lines)


def run(args) -> int:
    r = train(scenario_from_args(args))
    print(json.dumps(r.contract(), indent=2) if args.json else render(r))
    return 0
