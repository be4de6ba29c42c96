"""``python -m validation.multigpu SCRIPT... --out DIR``: run multi-GPU validation scripts.

Under ``torchrun`` (one process per GPU) the process group comes from its environment; ``--launch N``
starts torchrun on N GPUs of this machine with NVLink multicast off; ``--spawn N`` starts N local
processes with ``torch.multiprocessing`` (gloo on a CPU: how the tests run the scripts, with ``--tiny``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from validation.multigpu import SCRIPTS, launch
from validation.multigpu.runner import run_scripts, spawn


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m validation.multigpu", description=__doc__.splitlines()[0])
    p.add_argument("scripts", nargs="+", choices=[*SCRIPTS, "all"], help="what to measure")
    p.add_argument("--out", required=True, help="folder for <script>.json")
    p.add_argument("--tiny", action="store_true", help="toy shapes (the CPU tests)")
    p.add_argument("--models", help="comma-separated models; each script runs those it knows (its MODELS)")
    p.add_argument("--layers", type=int, help="at most this many layers per model (tp, pp, dp)")
    p.add_argument("--torch-kernels", action="store_true",
                   help="with --spawn on a CPU: torch references instead of the Triton interpreter (fast tests)")
    p.add_argument("--device", help="accelerator catalog name to predict with (default: the GPU's; h200-sxm on a CPU)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--launch", type=int, metavar="N", help="start torchrun on N GPUs of this machine")
    mode.add_argument("--spawn", type=int, metavar="N", help="start N local processes (gloo on a CPU)")
    args = p.parse_args(argv)
    if "all" in args.scripts:
        args.scripts = list(SCRIPTS)
    return args


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {"models": args.models.split(",") if args.models else None, "layers": args.layers, "device": args.device,
            "torch_kernels": args.torch_kernels}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.launch:
        extra = (["--models", args.models] if args.models else []) + (["--layers", str(args.layers)] if args.layers else [])
        extra += (["--device", args.device] if args.device else []) + (["--tiny"] if args.tiny else [])
        return launch.launch(args.launch, args.scripts, args.out, extra)
    if args.spawn:
        spawn(args.spawn, args.scripts, args.out, options(args), tiny=args.tiny, backend="gloo")
        return 0
    if "RANK" not in os.environ:
        print("python -m validation.multigpu: error: run under torchrun, or pass --launch N / --spawn N",
              file=sys.stderr)
        return 2
    import torch.distributed as dist

    ctx = launch.init(tiny=args.tiny)
    try:
        run_scripts(ctx, args.scripts, args.out, options(args))
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
