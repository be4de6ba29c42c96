"""``roofsim hardware list|show NAME``."""

from __future__ import annotations

import yaml

from hwmodels import get_accelerator, list_accelerators
from roofsim.cli.format import table


def add_parser(sub) -> None:
    p = sub.add_parser("hardware", help="the accelerator catalog")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every built-in accelerator").set_defaults(run=run_list)
    show = verbs.add_parser("show", help="one accelerator with its sources")
    show.add_argument("name")
    show.set_defaults(run=run_show)


def run_list(args) -> int:
    rows = []
    for name in list_accelerators():
        a = get_accelerator(name)
        bf16 = a.peak_for("bf16")
        fp8 = a.peak_flops_per_s.get("fp8")
        rows.append([name, a.display_name, f"{bf16 / 1e12:,.0f}", f"{fp8 / 1e12:,.0f}" if fp8 else "-",
                     f"{a.hbm_capacity_bytes / 2**30:.0f} GiB", f"{a.hbm_bandwidth_bytes_per_s / 1e12:.2f}",
                     f"{a.intra_node_link.bandwidth_bytes_per_s / 1e9:,.0f}"])
    print(table(["name", "device", "bf16 TFLOP/s", "fp8 TFLOP/s", "HBM", "HBM TB/s", "link GB/s/dir"], rows))
    return 0


def run_show(args) -> int:
    print(yaml.safe_dump(get_accelerator(args.name).model_dump(mode="json"), sort_keys=False), end="")
    return 0
