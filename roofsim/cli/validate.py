"""``roofsim validate [--profile PATH] [--out DIR]``: time a real decoder on this GPU against predictions.

``--multi-gpu N`` runs ``validation.multigpu``'s scripts on N GPUs instead; ``--from FOLDER``
re-predicts such a results folder on any machine.

Needs a CUDA GPU with torch and triton (``validation.validate`` does the work); without one it exits
with status 2 and one line.
"""

from __future__ import annotations

import os
import sys

from roofsim.cli.calibrate import gpu_missing


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="compare predictions with a decoder timed on this GPU (needs a GPU)")
    p.add_argument("--profile", help="profile to validate: a path or a name (default: the shipped one for this GPU)")
    p.add_argument("--out", default="validation-out",
                   help="folder for validation.{json,md,html} (default ./validation-out, also with --from)")
    p.add_argument("--quick", action="store_true", help="fewer cases")
    p.add_argument("--models", help="comma-separated subset of llama-3.1-8b, llama-2-7b, olmoe-1b-7b")
    p.add_argument("--layers", type=int, help="run (and predict) the models with at most this many layers")
    p.add_argument("--device", help="accelerator catalog name, when the GPU's name is not recognised")
    p.add_argument("--skip-kernels", action="store_true", help="end-to-end cases only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--from", dest="from_json", metavar="JSON",
                   help="predict again the cases of an earlier validation.json, or of a --multi-gpu results "
                        "folder (no GPU needed)")
    p.add_argument("--train", action="store_true",
                   help="time real training steps of a torch Llama-style model against `roofsim train` "
                        "(with --from: re-predict a saved training validation)")
    p.add_argument("--multi-gpu", type=int, metavar="N",
                   help="run the multi-GPU scripts (collectives, TP, PP, EP, DDP/FSDP) on N GPUs of this machine "
                        "under torchrun, NVLink multicast off; results in --out")
    p.set_defaults(run=run)


def _train(args) -> int:
    from validation.training.report import markdown, repredict, summary

    if args.from_json:
        raw_path = args.from_json
    else:
        status = gpu_missing("validate")
        if status is not None:
            return status
        from validation.training.run import main as measure_training

        measure_training(["--out", args.out, "--skip-kernels"])
        raw_path = f"{args.out}/training_raw.json"
    rows = repredict(raw_path, args.profile or "auto")
    print(markdown(rows))
    s = summary(rows)
    print(f"\n{s['n']} steps: time median |err| {s['time_err']['median']:.1%} (p90 {s['time_err']['p90']:.1%}), "
          f"peak memory median |err| {s['memory_err']['median']:.1%} (p90 {s['memory_err']['p90']:.1%}); "
          f"fits/out-of-memory agree on {s['fits_agree']} of {s['cases']}")
    return 0


def _multi_gpu(args) -> int:
    from pathlib import Path

    from validation.multigpu import repredict

    if args.multi_gpu:
        status = gpu_missing("validate")
        if status is not None:
            return status
        from validation.multigpu.launch import launch

        extra = ["--models", args.models] if args.models else []
        extra += ["--layers", str(args.layers)] if args.layers else []
        rc = launch(args.multi_gpu, ["all"], args.out, extra + (["--device", args.device] if args.device else []))
        if rc:
            return rc
    folder = Path(args.from_json or args.out)
    report = repredict.repredict_dir(folder, args.profile or "auto")
    if not report:
        print(f"roofsim validate: error: no multi-GPU results in {str(folder)!r}", file=sys.stderr)
        return 2
    text = repredict.markdown(report)
    (folder / "multigpu.md").write_text(text)
    print(text)
    return 0


def run(args) -> int:
    if args.train:
        return _train(args)
    if args.multi_gpu or (args.from_json and os.path.isdir(args.from_json)):
        return _multi_gpu(args)
    if args.from_json:
        from validation.validate import repredict

        _summary(repredict(args.from_json, args.profile, args.out))
        return 0
    status = gpu_missing("validate")
    if status is not None:
        return status
    from validation.validate import MODELS, run as validate

    models = [m.strip() for m in args.models.split(",")] if args.models else None
    unknown = [m for m in models or [] if m not in MODELS]
    if unknown:
        print(f"roofsim validate: error: unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    command = "roofsim validate " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "roofsim validate"
    result = validate(profile=args.profile, out=args.out, quick=args.quick, models=models, layers=args.layers,
                      device_name=args.device, progress=not args.no_progress, skip_kernels=args.skip_kernels,
                      command=command.strip())
    _summary(result)
    return 0


def _summary(result) -> None:
    es = result["e2e_summary"]
    for label in ("calibrated", "default"):
        for phase in ("prefill", "decode"):
            s = es[label][phase]
            if s.get("n"):
                print(f"{label:10s} {phase:7s} n={s['n']:2d}  median |err| {s['median']:6.1%}  p90 {s['p90']:6.1%}  "
                      f"max {s['max']:6.1%}")
    ks = result["kernels"]["summary"].get("all", {}).get("calibrated", {})
    if ks.get("n"):
        print(f"kernels    n={ks['n']}  median |err| {ks['median']:6.1%}  p90 {ks['p90']:6.1%}")
