"""W8A8 fp8 GEMMs, measured and fitted as the optional ``gemm_fp8`` kind of a profile.

What an engine's ``--quantization fp8`` runs on a GPU with fp8 tensor cores (vLLM's per-tensor FP8
linear layer): ``torch._scaled_mm`` on cuBLASLt over fp8 e4m3 activations and weights, bf16 out. The
shapes are those of the bf16 cuBLAS sweep (``validation.sweeps.gemm_fp8_points``), and the bf16 GEMMs of
the same shapes are timed in the same run beside them, so that the two efficiencies compare on one
machine state. The fit (``validation.fit.fit_kind``) is against the GPU's dense fp8 peak and its HBM
bandwidth, with each point's FLOPs and bytes counted as the cost model counts the quantised GEMM
(``simulator.techniques.weights``), which prices fp8 GEMMs with this kind where a profile has it.

On the GPU: ``python -m validation.fp8_gemm run --out RAW.json``; then, anywhere,
``python -m validation.fp8_gemm merge hwmodels/profiles/h200-sxm.json RAW.json`` adds the kind and its
raw points to a profile, and ``python -m validation.fp8_gemm transfer SOURCE TARGET`` carries it to
another GPU's profile by the datasheet-ratio rule of ``simulator.stacks.resolve.transfer_profile``
(labelled as transferred).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from hwmodels import get_accelerator
from hwmodels.profile import Profile
from validation import sweeps
from validation.fit import fit_kind

KIND = "gemm_fp8"
ENGINE = "cublaslt"


def fit(points: list[sweeps.Point], gpu_name: str, device_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``gemm_fp8`` kind (its JSON form) and the fit's statistics, from measured fp8 points."""
    gpu = get_accelerator(gpu_name)
    ok = [p for p in points if p.kind == KIND and "time_s" in p.result]
    if len(ok) < 4:
        raise ValueError(f"{len(ok)} measured {KIND} points; the fit needs at least 4")
    kf = fit_kind([p.flops for p in ok], [p.bytes for p in ok], [p.result["time_s"] for p in ok],
                  gpu.peak_for("fp8"), gpu.hbm_bandwidth_bytes_per_s)
    basis = (f"measured: torch._scaled_mm (cuBLASLt, fp8 e4m3 activations and weights, per-tensor scales, bf16 "
             f"out) on {device_name}, {len(ok)} shapes, against the fp8 dense peak; median |error| of the fit "
             f"{kf.stats['median_abs_err']:.1%}")
    return kf.kind_efficiency(basis), kf.stats


def run(out: str, quick: bool = False, device_name: str | None = None) -> dict[str, Any]:
    """Time the fp8 and the bf16 GEMMs of the sweep's shapes on this GPU; write and return the raw file."""
    import torch

    from validation import env as envmod
    from validation.calibrate import _rows, measure_points
    from validation.kernels._common import fp8_supported

    if not fp8_supported():
        raise SystemExit("roofsim: error: fp8 GEMMs need a CUDA GPU of compute capability 8.9 or above")
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    env = envmod.environment()
    t0 = time.time()
    fp8 = sweeps.gemm_fp8_points(quick)
    bf16 = sweeps.gemm_points(quick, triton=False)
    measure_points(fp8, KIND)
    measure_points(bf16, "gemm")
    raw = {"environment": {**env, "catalog_name": envmod.accelerator_name(env, device_name)},
           "columns": _columns(), "points": _rows(fp8 + bf16), "run_time_s": round(time.time() - t0, 1),
           "command": "python -m validation.fp8_gemm run" + (" --quick" if quick else "")}
    Path(out).write_text(json.dumps(raw, indent=1))
    print(f"wrote {out}: {len(fp8)} fp8 and {len(bf16)} bf16 GEMMs in {raw['run_time_s']:.0f} s", file=sys.stderr)
    return raw


def _columns() -> list[str]:
    from validation.calibrate import POINT_COLUMNS

    return POINT_COLUMNS


def raw_points(raw: dict[str, Any]) -> list[sweeps.Point]:
    """The points of a raw file, with their results."""
    from validation.calibrate import points_from_profile

    groups = points_from_profile({"measurements": {"columns": raw["columns"], "points": raw["points"]}})
    return [p for group in groups.values() for p in group]


def merge_into_profile(profile_path: str | Path, raw_path: str | Path, out: str | Path | None = None) -> dict:
    """Add the fitted ``gemm_fp8`` kind to a profile JSON file, its fp8 points among the profile's raw
    points (so that ``roofsim calibrate --refit`` fits it again); the bf16 GEMMs timed beside them stay in
    the raw file, which ``measurements.fp8_gemm`` names."""
    from validation.calibrate import POINT_COLUMNS, dumps

    profile = json.loads(Path(profile_path).read_text())
    raw = json.loads(Path(raw_path).read_text())
    if raw["columns"] != POINT_COLUMNS:
        raise ValueError(f"{raw_path}: columns {raw['columns']} are not a profile's {POINT_COLUMNS}")
    env = raw["environment"]
    kind, stats = fit(raw_points(raw), profile.get("device") or env["catalog_name"], env["device_name"])
    profile["kinds"][KIND] = kind
    profile.setdefault("environment", {}).setdefault("engines", {})[KIND] = ENGINE
    meas = profile.setdefault("measurements", {})
    meas["points"] = [r for r in meas.get("points", []) if r[0] != KIND] + [r for r in raw["points"] if r[0] == KIND]
    meas.setdefault("fit", {})[KIND] = stats
    meas["fp8_gemm"] = {
        "date": env.get("date"), "device": env["device_name"], "driver": env.get("driver"), "torch": env.get("torch"),
        "raw": str(raw_path), "run_time_s": raw.get("run_time_s"),
        "command": f"{raw['command']} (on the GPU), then python -m validation.fp8_gemm merge PROFILE RAW.json",
    }
    Profile.model_validate(profile)
    Path(out or profile_path).write_text(dumps(profile))
    return profile


def transfer(source_path: str | Path, target_path: str | Path, out: str | Path | None = None) -> dict:
    """Carry the measured ``gemm_fp8`` kind of the profile at ``source_path`` into the profile at
    ``target_path`` (another GPU's) by ``simulator.stacks.resolve.transfer_profile``; labelled as transferred."""
    from validation.calibrate import transfer_kinds

    return transfer_kinds(source_path, target_path, [KIND], "fp8_gemm", "fp8 GEMMs",
                          f"python -m validation.fp8_gemm transfer {source_path} {target_path}", out)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m validation.fp8_gemm")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time fp8 and bf16 GEMMs on this GPU (needs compute capability 8.9+)")
    r.add_argument("--out", required=True)
    r.add_argument("--quick", action="store_true")
    r.add_argument("--device", help="catalog name of this GPU (default: recognised)")
    m = sub.add_parser("merge", help="fit the gemm_fp8 kind from a raw file into a profile")
    t = sub.add_parser("transfer", help="carry a profile's gemm_fp8 kind to another GPU's profile")
    for p in (m, t):
        p.add_argument("profile" if p is m else "source")
        p.add_argument("raw" if p is m else "target")
        p.add_argument("--out")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.out, args.quick, args.device)
    elif args.cmd == "merge":
        merge_into_profile(args.profile, args.raw, args.out)
    else:
        transfer(args.source, args.target, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
