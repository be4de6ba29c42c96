"""``roofsim calibrate [--out PATH] [--quick]``: measure this GPU and write a calibration profile.

Needs a CUDA GPU with torch and triton; the work is done by ``validation.calibrate`` (imported only
once a GPU is known to be there). Without one it exits with status 2 and one line.
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="measure kernels on this GPU and fit an efficiency profile (needs a GPU)")
    p.add_argument("--out", help="profile JSON to write (default: ./<gpu>.json, e.g. h100-sxm.json)")
    p.add_argument("--quick", action="store_true", help="fewer shapes (under 3 minutes on an H100)")
    p.add_argument("--device", help="accelerator catalog name, when the GPU's name is not recognised")
    p.add_argument("--no-triton-gemm", action="store_true", help="skip the (slow to autotune) Triton GEMM sweep")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--refit", metavar="PROFILE", help="fit again from the raw points a profile keeps (no GPU needed)")
    p.set_defaults(run=run)


def gpu_missing(command: str) -> int | None:
    """Exit status 2 with one line when this machine cannot run GPU work, else None."""
    from validation.env import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason:
        print(f"roofsim {command}: error: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    return None


def run(args) -> int:
    if args.refit:
        from validation.calibrate import refit

        refit(args.refit, args.out)
        return 0
    status = gpu_missing("calibrate")
    if status is not None:
        return status
    from validation.calibrate import run as calibrate

    command = "roofsim calibrate " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "roofsim calibrate"
    calibrate(out=args.out, quick=args.quick, device_name=args.device, progress=not args.no_progress,
              triton_gemm=not args.no_triton_gemm, command=command.strip())
    return 0
