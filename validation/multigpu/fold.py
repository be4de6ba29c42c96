"""``python -m validation.multigpu.fold PROFILE COLLECTIVES_JSON [--out PATH]``: put a multi-GPU
collectives sweep into a calibration profile.

The sweep's cases are fitted by ``validation.collectives.fit`` (per collective and group size; the
profile's ``collective`` kind from all-reduce at the largest group), and replace the profile's
``kinds.collective`` and ``measurements.collectives``, with the sweep's device, versions, topology and
command. The kernels' measurements are kept as they are. No GPU needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hwmodels import get_accelerator
from hwmodels.profile import Profile
from validation import collectives
from validation.calibrate import dumps

def fold(profile: dict[str, Any], sweep: dict[str, Any]) -> dict[str, Any]:
    """``profile`` with its collectives replaced by those of ``sweep`` (a ``collectives.json``)."""
    if sweep.get("script") != "collectives":
        raise ValueError("not a collectives.json of validation.multigpu")
    gpu = get_accelerator(profile["device"])
    kind, raw = collectives.fit(sweep, gpu)
    out = json.loads(json.dumps(profile))
    out["kinds"]["collective"] = kind
    meas = out.setdefault("measurements", {})
    meas["collectives"] = raw
    meas.setdefault("fit", {})["collective"] = {
        **raw["all_reduce"]["fit"],
        **{f"{c}_alpha_s": raw[c]["alpha_s"] for c in collectives.COLLECTIVES if c in raw},
        **{f"{c}_beta_bytes_per_s": raw[c]["beta_bytes_per_s"] for c in collectives.COLLECTIVES if c in raw}}
    out["command"] = f"{profile.get('command', '')}; {sweep['command']} (collectives folded in)".lstrip("; ")
    Profile.model_validate(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m validation.multigpu.fold", description=__doc__.splitlines()[0])
    p.add_argument("profile")
    p.add_argument("collectives_json")
    p.add_argument("--out", help="where to write (default: over PROFILE)")
    args = p.parse_args(argv)
    prof = json.loads(Path(args.profile).read_text())
    out = fold(prof, json.loads(Path(args.collectives_json).read_text()))
    Path(args.out or args.profile).write_text(dumps(out))
    print(f"folded {args.collectives_json} into {args.out or args.profile}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
