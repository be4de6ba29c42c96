"""Reading what a calibration profile (and a validation run) keeps, whatever its layout.

Profiles written by ``roofsim calibrate`` keep raw launches as ``measurements.columns`` +
``measurements.points`` (flops, bytes, time per launch) beside the datasheet peaks they were measured
against; hand-made or older profiles may keep (size, efficiency) pairs per kind, or nothing at all.
Validation runs (``roofsim validate``) are separate JSON files with predicted and measured times.
Everything here is tolerant: what it cannot read it leaves out.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from simulator.metrics import compute_bound_at_peak

SIZE_KEYS = ("size", "flops", "bytes", "size_flops", "size_bytes", "x")
EFF_KEYS = ("efficiency", "eff", "fraction", "y")
MEMORY_KINDS = ("memory", "collective", "host_transfer")
SCALARS = (int, float, str, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _point(p: Any) -> tuple[float, float] | None:
    if isinstance(p, (list, tuple)) and len(p) == 2 and all(_number(v) for v in p):
        return float(p[0]), float(p[1])
    if isinstance(p, dict):
        eff = next((p[k] for k in EFF_KEYS if _number(p.get(k))), None)
        if _number(p.get("log10_size")) and eff is not None:
            return 10.0 ** p["log10_size"], float(eff)
        size = next((p[k] for k in SIZE_KEYS if _number(p.get(k))), None)
        if size is not None and eff is not None:
            return float(size), float(eff)
    return None


def _series(value: Any) -> list[tuple[float, float]]:
    """Points from a list of points, or from parallel lists {size|log10_size: [...], efficiency: [...]}."""
    if isinstance(value, list):
        return [pt for pt in map(_point, value) if pt is not None]
    if isinstance(value, dict):
        eff = next((value[k] for k in EFF_KEYS if isinstance(value.get(k), list)), None)
        if eff is not None and isinstance(value.get("log10_size"), list):
            return [(10.0 ** s, float(e)) for s, e in zip(value["log10_size"], eff) if _number(s) and _number(e)]
        sizes = next((value[k] for k in SIZE_KEYS if isinstance(value.get(k), list)), None)
        if eff is not None and sizes is not None:
            return [(float(s), float(e)) for s, e in zip(sizes, eff) if _number(s) and _number(e)]
        if isinstance(value.get("points"), list):
            return _series(value["points"])
    return []


def _launch_rows(profile, acc) -> list[dict]:
    """Raw launches (columns + points) as achieved fractions of the peaks they were measured against."""
    meas = profile.measurements or {}
    cols, rows = meas.get("columns"), meas.get("points")
    if not (isinstance(cols, list) and isinstance(rows, list)):
        return []
    sheet = meas.get("datasheet") if isinstance(meas.get("datasheet"), dict) else {}
    peak_flops = sheet.get("bf16_flops_per_s") or (acc.peak_for("bf16") if acc else None)
    peak_bw = sheet.get("hbm_bytes_per_s") or (acc.hbm_bandwidth_bytes_per_s if acc else None)
    host_bw = acc.host_link.bandwidth_bytes_per_s if acc else None
    engines = (profile.environment or {}).get("engines", {})
    records = [dict(zip(cols, row)) for row in rows if isinstance(row, list) and len(row) == len(cols)]
    measured_engines: dict[str, set] = {}
    for r in records:
        measured_engines.setdefault(r.get("kind"), set()).add(r.get("engine"))
    out = []
    for r in records:
        kind, flops, nbytes, t = r.get("kind"), r.get("flops"), r.get("bytes"), r.get("time_s")
        if kind not in profile.kinds or not (_number(flops) and _number(nbytes) and _number(t)) or t <= 0:
            continue
        if engines.get(kind) in measured_engines[kind] and r.get("engine") != engines[kind]:
            continue  # another engine than the one the profile describes
        if kind == "host_transfer":
            if host_bw:
                out.append({"kind": kind, "resource": "memory", "size": nbytes, "efficiency": nbytes / t / host_bw})
            continue
        if not (peak_flops and peak_bw):
            continue
        compute = kind not in MEMORY_KINDS and bool(compute_bound_at_peak(flops, nbytes, peak_flops, peak_bw))
        size, peak = (flops, peak_flops) if compute else (nbytes, peak_bw)
        if size > 0:
            out.append({"kind": kind, "resource": "compute" if compute else "memory", "size": size,
                        "efficiency": size / t / peak, "engine": r.get("engine", ""), "op": r.get("op", "")})
    return out


def raw_points(profile, acc=None) -> list[dict]:
    """Measured (size, efficiency) points per kind and resource, from whatever layout they are kept in."""
    out = _launch_rows(profile, acc)
    for kind, value in (profile.measurements or {}).items():
        if kind not in profile.kinds or not isinstance(value, (dict, list)):
            continue
        per_resource = {r: value[r] for r in ("compute", "memory") if isinstance(value, dict) and r in value}
        if not per_resource:
            per_resource = {"memory" if kind in MEMORY_KINDS else "compute": value}
        for resource, series in per_resource.items():
            out += [{"kind": kind, "resource": resource, "size": s, "efficiency": e} for s, e in _series(series)]
    return [p for p in out if p["size"] > 0 and 0 < p["efficiency"] <= 1.5]


def _scalar_columns(records: list[dict]) -> list[dict]:
    keys = [k for k in dict.fromkeys(k for r in records for k in r)
            if all(isinstance(r.get(k), SCALARS) or r.get(k) is None for r in records)]
    return [{k: r.get(k) for k in keys} for r in records]


def comparison_tables(node: Any, path: str = "") -> list[tuple[str, list[dict]]]:
    """Lists of records that carry a predicted (or calibrated) and a measured value, wherever they sit;
    only their scalar columns are kept."""
    if isinstance(node, list) and node and all(isinstance(r, dict) for r in node):
        keys = set().union(*node)
        predicted = any("predicted" in k or k.startswith("calibrated") for k in keys)
        measured = any("measured" in k or k == "time_s" for k in keys)
        return [(path or "table", _scalar_columns(node))] if predicted and measured else []
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            found += comparison_tables(v, f"{path}.{k}" if path else str(k))
    return found


def _scalars(node: dict) -> dict:
    return {c: x for c, x in node.items() if isinstance(x, SCALARS)}


def scalar_tables(node: Any, path: str = "", skip: tuple[str, ...] = ()) -> list[tuple[str, dict[str, dict]]]:
    """Statistics kept as dicts of dicts of scalars (e.g. error per kind, or per kind and profile), each as
    one table {row: {column: value}}; a second level of nesting becomes rows named 'outer / inner'."""
    if not isinstance(node, dict) or not node:
        return []
    if all(isinstance(v, dict) for v in node.values()):
        rows = {}
        for k, v in node.items():
            if _scalars(v):
                rows[k] = _scalars(v)
            else:
                rows.update({f"{k} / {k2}": _scalars(v2) for k2, v2 in v.items() if isinstance(v2, dict) and _scalars(v2)})
        if rows:
            return [(path or "table", rows)]
    found = []
    for k, v in node.items():
        if k not in skip:
            found += scalar_tables(v, f"{path}.{k}" if path else str(k), skip)
    return found


def validation_results(profile) -> tuple[str, dict] | None:
    """The shipped ``roofsim validate`` results for the profile's device, if the source tree has them."""
    if not profile.device:
        return None
    try:  # the results are data files installed with the validation package; no code of it is imported
        path = Path(str(resources.files("validation"))) / "results" / f"{profile.device}.validation.json"
    except ModuleNotFoundError:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return (f"validation/results/{path.name}", data) if isinstance(data, dict) else None
