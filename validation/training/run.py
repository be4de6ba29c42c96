"""Measure everything training validation needs in one GPU session: ``python -m validation.training.run
--out DIR`` writes ``training_raw.json`` (environment, step cases, kernel points), rewritten after each
step case and after the kernels, so a run cut short keeps what it measured. ``--cases held-out`` times
the steps held out of every fit (``validation.training.steps.HELD_OUT``) instead of the validation
cases."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--skip-kernels", action="store_true")
    ap.add_argument("--skip-steps", action="store_true")
    ap.add_argument("--cases", choices=("validation", "held-out"), default="validation")
    args = ap.parse_args(argv)
    from validation.env import environment
    from validation.training import kernels, steps

    t0 = time.time()
    out = {"environment": environment(), "cases": args.cases, "kernels": [], "steps": []}
    path = Path(args.out) / "training_raw.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out["run_time_s"] = time.time() - t0
        path.write_text(json.dumps(out, indent=1))

    if not args.skip_steps:
        steps.run(steps.CASE_SETS[args.cases], log=lambda line: print(line, flush=True), results=out["steps"],
                  save=save)
    if not args.skip_kernels:
        out["kernels"] = kernels.run()
    save()
    print(f"wrote {path} in {out['run_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
