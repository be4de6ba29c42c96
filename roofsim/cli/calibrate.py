"""``roofsim calibrate``: measure this GPU's kernels (a calibration profile), or fit a stack profile.

* ``roofsim calibrate [--out PATH] [--quick]``: time the kernels on this GPU and write a profile
  (``validation.calibrate``; needs a CUDA GPU with torch and triton);
* ``roofsim calibrate --from-measurements FILE.csv --out STACK.json``: fit a stack profile to step
  times the user measured on their own engine (``simulator.stacks``; no GPU);
* ``roofsim calibrate --stack hf --model M`` / ``--stack-module pkg.module:factory``: time those steps
  on this GPU (``validation.stacks``), write the CSV, then fit it as above;
* ``--train`` measures the kernels training adds (``validation.training.kernels``) and fits their kinds
  into a profile; ``--train-from RAW`` does the fitting alone, from a saved measurement (no GPU).

Without a GPU the GPU forms exit with status 2 and one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from roofsim.cli.format import table


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="measure kernels on this GPU and fit an efficiency profile (needs a GPU), "
                                         "or fit a stack profile to measured steps (--from-measurements)")
    p.add_argument("--out", help="profile JSON to write (default: ./<gpu>.json, e.g. h100-sxm.json; with a stack: "
                                 "./stack.json)")
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
    g = p.add_argument_group("stack profiles (docs/calibration.md)")
    g.add_argument("--from-measurements", metavar="CSV", help="fit a stack profile to this measurement CSV (no GPU)")
    g.add_argument("--stack", choices=["hf", "torch-unfused"], help="time this stack on the GPU, then fit it")
    g.add_argument("--stack-module", metavar="PKG.MODULE:FACTORY", help="time your own torch model on the GPU")
    g.add_argument("--model", action="append", default=[], help="model to time (repeatable; preset or config.json)")
    g.add_argument("--mode", choices=["eager", "graph"], default="eager",
                   help="run steps eagerly or replay CUDA graphs (default eager)")
    g.add_argument("--measurements", metavar="CSV", help="where the timed steps go (default: <out>.csv)")
    g.add_argument("--structure", default=None,
                   help="implementation the stack starts from: fused (roofsim's kernels), hf-eager, hf-graph, "
                        "torch-unfused, or a stack JSON (default: the stack's own, else fused)")
    g.add_argument("--evaluate", metavar="STACK", help="with --from-measurements: predict the CSV's rows with this "
                                                       "fitted stack profile instead of fitting one (another GPU, "
                                                       "tensor-parallel rows, other models)")
    g.add_argument("--freeze", action="append", default=[], metavar="PARAM",
                   help="keep this parameter at its prior instead of fitting it (repeatable)")
    g.add_argument("--budget-s", type=float, default=600.0, help="stop timing after this many seconds")
    g.add_argument("--phases", default="prefill,decode",
                   help="steps to time, comma-separated: prefill, decode, train (train: a stack whose factory has "
                        "train(); default prefill,decode)")
    g.add_argument("--rounds", type=int, default=1,
                   help="visit the grid this many times, models interleaved, and keep each point's median (for "
                        "host-bound eager stacks; keeps every model in memory)")
    g.add_argument("--json", action="store_true", help="print the fit report as JSON")
    p.set_defaults(run=run)


def _train_kinds(args, raw_path: str) -> int:
    """Fit the training kinds of ``raw_path`` into a profile and say where it went."""
    import json

    from hwmodels.io import PROFILE_LIMIT_BYTES, read_text_bounded
    from hwmodels.profile import PROFILE_DIR
    from validation.training.fit import merge_into_profile

    raw = json.loads(read_text_bounded(raw_path, PROFILE_LIMIT_BYTES, "--from-measurements"))
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


def _fit_and_report(csv_path: str, args, structure: str | None) -> int:
    from simulator.stacks import fit_measurements

    report = fit_measurements(csv_path, structure=structure, freeze=args.freeze, name=Path(args.out).stem)
    Path(args.out).write_text(json.dumps(report.stack.model_dump(mode="json"), indent=2) + "\n")
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
        return 0
    print(render_report(report))
    print(f"\nwrote {args.out}")
    return 0


def _evaluate_and_report(csv_path: str, args) -> int:
    from simulator.stacks.profile import read_json, stack_from_dict
    from simulator.stacks.report import evaluate_measurements

    stack = stack_from_dict(read_json(args.evaluate, "--evaluate"), "--evaluate")
    report = evaluate_measurements(csv_path, stack)
    print(json.dumps(report.model_dump(mode="json"), indent=2) if args.json else render_report(report))
    return 0


def render_report(report) -> str:
    lines = [f"stack profile {report.stack.name}: {len(report.rows)} rows, {report.nfev} model evaluations", ""]
    rows = [[p.name, f"{p.value:.4g}", f"{p.prior:.4g}", p.unit, p.meaning] for p in report.parameters]
    lines += [table(["parameter", "fitted", "prior", "unit", "meaning"], rows), ""]
    stat_rows = [[s.label, s.phase, str(s.rows), f"{s.median_abs:.1%}", f"{s.p90_abs:.1%}", f"{s.max_abs:.1%}"]
                 for s in report.errors]
    lines += [table(["sample", "phase", "rows", "median", "p90", "max"], stat_rows), ""]
    res = [[r.model, r.phase, str(r.batch), str(r.length), f"{r.measured_s * 1e3:.3f}", f"{r.predicted_s * 1e3:.3f}",
            f"{r.error:+.1%}", "-" if r.held_out_error is None else f"{r.held_out_error:+.1%}"] for r in report.rows]
    lines.append(table(["model", "phase", "batch", "length", "measured ms", "fitted ms", "in-sample",
                        "model held out"], res))
    return "\n".join(lines)


def run(args) -> int:
    if args.train_from:
        return _train_kinds(args, args.train_from)
    if args.refit:
        from validation.calibrate import refit

        refit(args.refit, args.out)
        return 0
    if args.from_measurements and args.evaluate:
        return _evaluate_and_report(args.from_measurements, args)
    if args.from_measurements:
        args.out = args.out or "stack.json"
        return _fit_and_report(args.from_measurements, args, args.structure)
    if args.stack or args.stack_module:
        return _measure_stack(args)
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


def _measure_stack(args) -> int:
    from hwmodels.errors import InputError

    if not args.model:
        raise InputError("--model", "name at least one model to time (--model llama-3.2-1b)")
    status = gpu_missing("calibrate")
    if status is not None:
        return status
    from validation import env as envmod
    from validation.stacks.run import run as measure_stack

    gpu = envmod.accelerator_name(envmod.environment(), args.device)
    args.out = args.out or "stack.json"
    csv_path = args.measurements or str(Path(args.out).with_suffix(".csv"))
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    bad = [p for p in phases if p not in ("prefill", "decode", "train")]
    if bad or not phases:
        raise InputError("--phases", f"expected prefill, decode and/or train, got {args.phases!r}")
    if args.rounds < 1:
        raise InputError("--rounds", f"expected an integer >= 1, got {args.rounds}")
    result = measure_stack(stack=args.stack, stack_module=args.stack_module, models=args.model, mode=args.mode,
                           out_csv=csv_path, gpu=gpu, quick=args.quick, budget_s=args.budget_s, phases=phases,
                           rounds=args.rounds)
    print(f"timed {len(result['rows'])} steps in {result['wall_s']:.1f} s -> {csv_path}", file=sys.stderr)
    structure = args.structure or (f"hf-{args.mode}" if args.stack == "hf" else args.stack)
    return _fit_and_report(csv_path, args, structure)
