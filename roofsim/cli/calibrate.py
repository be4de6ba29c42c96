"""``roofsim calibrate [--out PATH] [--quick]``: measure this GPU and write a calibration profile.

``--train`` measures the kernels training adds (``validation.training.kernels``) and fits their kinds
into a profile; ``--train-from RAW`` does the fitting alone, from a saved measurement (no GPU).

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
    p.add_argument("--train", action="store_true",
                   help="measure the training kernels (backward GEMMs, attention backward, fused AdamW, cross-entropy) "
                        "and add their kinds to --profile")
    p.add_argument("--train-from", metavar="RAW", help="add training kinds fitted to a saved training_raw.json (no GPU)")
    p.add_argument("--profile", help="with --train/--train-from: the profile to extend (default: the shipped one)")
    p.set_defaults(run=run)


def _train_kinds(args, raw_path: str) -> int:
    """Fit the training kinds of ``raw_path`` into a profile and say where it went."""
    from pathlib import Path

    from hwmodels.profile import PROFILE_DIR
    from validation.training.fit import merge_into_profile

    import json

    raw = json.loads(Path(raw_path).read_text())
    name = args.device or raw["environment"]["catalog_name"]
    profile = args.profile or str(PROFILE_DIR / f"{name}.json")
    out = args.out or profile
    merge_into_profile(profile, raw_path, out)
    print(f"training kinds fitted to {len(raw['kernels'])} points written to {out}")
    return 0


def gpu_missing(command: str) -> int | None:
    """Exit status 2 with one line when this machine cannot run GPU work, else None."""
    from validation.env import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason:
        print(f"roofsim {command}: error: needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    return None


def run(args) -> int:
    if args.train_from:
        return _train_kinds(args, args.train_from)
    if args.refit:
        from validation.calibrate import refit

        refit(args.refit, args.out)
        return 0
    status = gpu_missing("calibrate")
    if status is not None:
        return status
    if args.train:
        from validation.training.run import main as measure_training

        out_dir = "calibrate-train-out"
        measure_training(["--out", out_dir, "--skip-steps"])
        return _train_kinds(args, f"{out_dir}/training_raw.json")
    from validation.calibrate import run as calibrate

    command = "roofsim calibrate " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "roofsim calibrate"
    calibrate(out=args.out, quick=args.quick, device_name=args.device, progress=not args.no_progress,
              triton_gemm=not args.no_triton_gemm, command=command.strip())
    return 0
