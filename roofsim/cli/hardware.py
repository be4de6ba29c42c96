"""``roofsim hardware list|show NAME``."""

from __future__ import annotations

import yaml

from hwmodels import get_accelerator, get_node, list_accelerators, list_nodes
from hwmodels.errors import unknown_name
from roofsim.cli.format import table


def add_parser(sub) -> None:
    p = sub.add_parser("hardware", help="the accelerator and node catalog")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every built-in accelerator and node").set_defaults(run=run_list)
    show = verbs.add_parser("show", help="one accelerator or node with its sources")
    show.add_argument("name", help="an accelerator (" + ", ".join(list_accelerators()) + ") or a node ("
                                   + ", ".join(list_nodes()) + ")")
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
    nodes = []
    for name in list_nodes():
        n = get_node(name)
        nodes.append([name, f"{n.accelerators_per_node}x {n.accelerator}", f"{n.host_memory.capacity_bytes / 2**40:.1f} TiB",
                      f"{n.host_memory.bandwidth_bytes_per_s / 1e9:,.0f}"])
    print("\nnodes\n" + table(["name", "accelerators", "host memory", "host GB/s"], nodes))
    return 0


def run_show(args) -> int:
    if args.name in list_nodes():
        data = get_node(args.name).model_dump(mode="json")
    elif args.name in list_accelerators() or args.name.endswith((".yaml", ".yml", ".json")):
        data = get_accelerator(args.name).model_dump(mode="json")  # a catalog name or a spec file
    else:
        raise unknown_name("hardware.gpu", args.name, [*list_accelerators(), *list_nodes()])
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0
