"""``roofsim calibrate``: measure the kernels, fit the efficiency profile, write it as JSON.

Runs on a CUDA GPU (torch + triton). The sweeps (``validation.sweeps``) time every point with the
Triton kernel and the vendor library beside it; per kind the faster engine over the shared shapes is
the one the profile describes (its name goes to ``environment.engines``), and its points are fitted
(``validation.fit``). Every raw point, of every engine, is kept under ``measurements``; fits of the
other engines are kept under ``measurements.alternatives`` so that a profile describing them can be
made without measuring again. The routed experts' grouped GEMMs are measured with the engine the
validation decoder runs (``torch._grouped_mm``, else a per-expert loop) and fitted as the optional
``grouped_gemm`` kind; on a GPU with fp8 tensor cores the W8A8 fp8 GEMMs of the GEMM shapes are fitted as
the optional ``gemm_fp8`` kind (``validation.fp8_gemm``). With more than one GPU the NCCL collectives are
swept as well (``validation.collectives``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwmodels import get_accelerator, load_profile
from hwmodels.io import PROFILE_LIMIT_BYTES, read_text_bounded
from hwmodels.profile import SCHEMA_VERSION, Profile
from validation import fit as fitmod
from validation import fp8_gemm, measure, sweeps

MEMORY_ENGINE = "decoder"  # Triton norm/activation/rotary/cache-write kernels, torch add and embedding
_DECODER_MEMORY = {("rmsnorm", "triton"), ("swiglu", "triton"), ("rotary", "triton"), ("kv_write", "triton"),
                   ("add", "torch"), ("embedding", "torch"), ("copy", "triton"), ("read", "triton")}

POINT_COLUMNS = ["kind", "op", "engine", "shape", "flops", "bytes", "time_s", "spread", "method"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure_points(points: list[sweeps.Point], desc: str, progress: bool = True) -> None:
    import torch

    from validation import bench

    l2 = bench.l2_bytes()
    bar = bench.Progress(len(points), desc, enabled=progress)
    for p in points:
        try:
            p.result = measure.measure(p, l2=l2)
        except Exception as exc:  # noqa: BLE001 - a backend may not support a shape; keep going
            p.result = {"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}
            torch.cuda.synchronize()
        torch.cuda.empty_cache()
        bar.update(1, p.op + "/" + p.engine)
    bar.close()


def _shape_key(p: sweeps.Point) -> tuple:
    return (p.kind, p.op, tuple(sorted(p.shape.items())))


def choose_engine(points: list[sweeps.Point], kind: str) -> tuple[str, dict[str, float]]:
    """The engine with the lowest geometric-mean time over the shapes every candidate ran."""
    by_engine: dict[str, dict[tuple, float]] = {}
    for p in points:
        if p.kind == kind and "time_s" in p.result:
            by_engine.setdefault(p.engine, {})[_shape_key(p)] = p.result["time_s"]
    wanted = {p.engine for p in points if p.kind == kind}
    # engines that failed on more than a tenth of their shapes are not candidates
    counts = {e: sum(1 for p in points if p.kind == kind and p.engine == e) for e in wanted}
    cands = {e: t for e, t in by_engine.items() if len(t) >= 0.9 * counts[e]}
    if not cands:
        cands = by_engine
    if not cands:
        raise RuntimeError(f"no successful {kind} measurements")
    common = set.intersection(*(set(t) for t in cands.values()))
    if not common:
        best = max(cands, key=lambda e: len(cands[e]))
        return best, {}
    geo = {e: float(np.exp(np.mean([np.log(t[k]) for k in common]))) for e, t in cands.items()}
    best = min(geo, key=geo.get)
    return best, {e: geo[e] / geo[best] for e in geo}


def _fit_points(points: list[sweeps.Point], peak_flops: float, peak_bw: float) -> fitmod.KindFit:
    ok = [p for p in points if "time_s" in p.result]
    return fitmod.fit_kind([p.flops for p in ok], [p.bytes for p in ok], [p.result["time_s"] for p in ok],
                           peak_flops, peak_bw)


def _rows(points: list[sweeps.Point]) -> list[list[Any]]:
    rows = []
    for p in points:
        r = p.result
        shape = ",".join(f"{k}={v}" for k, v in p.shape.items())
        if "time_s" in r:
            rows.append([p.kind, p.op, p.engine, shape, p.flops, p.bytes, float(f"{r['time_s']:.5g}"),
                         round(r.get("spread", 0.0), 4), r.get("method", "")])
        else:
            rows.append([p.kind, p.op, p.engine, shape, p.flops, p.bytes, None, None, r.get("error", "failed")])
    return rows


def _achieved(points: list[sweeps.Point], engines: dict[str, str]) -> dict[str, float]:
    def best(sel, num):
        vals = [num(p) / p.result["time_s"] for p in points if sel(p) and "time_s" in p.result]
        return float(max(vals)) if vals else float("nan")

    out = {
        "gemm_bf16_flops_per_s": best(lambda p: p.kind == "gemm" and p.engine == engines["gemm"], lambda p: p.flops),
        "gemm_bf16_triton_flops_per_s": best(lambda p: p.kind == "gemm" and p.engine == "triton", lambda p: p.flops),
        "grouped_gemm_bf16_flops_per_s": best(lambda p: p.kind == "grouped_gemm", lambda p: p.flops),
        "hbm_copy_bytes_per_s": best(lambda p: p.kind == "memory" and p.op == "copy" and p.bytes >= 2e8,
                                     lambda p: p.bytes),
        "hbm_read_bytes_per_s": best(lambda p: p.kind == "memory" and p.op == "read" and p.bytes >= 2e8,
                                     lambda p: p.bytes),
        "attention_prefill_flops_per_s": best(
            lambda p: p.kind == "attention_prefill" and p.engine == engines["attention_prefill"], lambda p: p.flops),
        "attention_decode_bytes_per_s": best(
            lambda p: p.kind == "attention_decode" and p.engine == engines["attention_decode"], lambda p: p.bytes),
        "host_to_device_bytes_per_s": best(lambda p: p.kind == "host_transfer", lambda p: p.bytes),
    }
    return {k: (float(f"{v:.4g}") if math.isfinite(v) else None) for k, v in out.items() if math.isfinite(v)}


def build_profile(groups: dict[str, list[sweeps.Point]], env: dict[str, Any], name: str, *, quick: bool,
                  timings: dict[str, float], workspace: float, collective_data: dict[str, Any] | None = None,
                  command: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose engines, fit every kind and assemble the profile dict (no GPU needed: points carry results)."""
    gpu = get_accelerator(name)
    peak_flops = gpu.peak_for("bf16")
    peak_bw = gpu.hbm_bandwidth_bytes_per_s
    engines: dict[str, str] = {}
    ratios: dict[str, dict[str, float]] = {}
    for kind in ("gemm", "attention_prefill", "attention_decode"):
        engines[kind], ratios[kind] = choose_engine(groups[kind], kind)
    engines["memory"] = MEMORY_ENGINE
    engines["host_transfer"] = "cudaMemcpy"

    default = load_profile("default")
    kinds: dict[str, Any] = {}
    fits_stats: dict[str, Any] = {}
    alternatives: dict[str, Any] = {}
    for kind in ("gemm", "attention_prefill", "attention_decode"):
        pts = [p for p in groups[kind] if p.engine == engines[kind]]
        kf = _fit_points(pts, peak_flops, peak_bw)
        others = {e: round(r, 3) for e, r in ratios[kind].items() if e != engines[kind]}
        kinds[kind] = kf.kind_efficiency(
            f"measured: {engines[kind]} on {env['device_name']}, {len(pts)} shapes; median |error| of the fit "
            f"{kf.stats['median_abs_err']:.1%}; other engines' geometric-mean time relative to it: {others}")
        fits_stats[kind] = kf.stats
        for e in {p.engine for p in groups[kind]} - {engines[kind]}:
            alt = [p for p in groups[kind] if p.engine == e and "time_s" in p.result]
            if len(alt) >= 4:
                akf = _fit_points(alt, peak_flops, peak_bw)
                alternatives.setdefault(kind, {})[e] = {**akf.kind_efficiency(f"measured: {e}"), "stats": akf.stats}
    grouped = [p for p in groups.get("grouped_gemm", []) if "time_s" in p.result]
    if len(grouped) >= 4:
        engines["grouped_gemm"] = grouped[0].engine
        kf = _fit_points(grouped, peak_flops, peak_bw)
        kinds["grouped_gemm"] = kf.kind_efficiency(
            f"measured: {engines['grouped_gemm']} (the routed experts' grouped GEMMs of OLMoE-1B-7B, Mixtral-8x7B and "
            f"Qwen3-30B-A3B, uniform top-k routing) on {env['device_name']}, {len(grouped)} shapes; sizes are those of "
            f"the whole grouped launch; median |error| of the fit {kf.stats['median_abs_err']:.1%}")
        fits_stats["grouped_gemm"] = kf.stats
    fp8 = [p for p in groups.get(fp8_gemm.KIND, []) if "time_s" in p.result]
    if len(fp8) >= 4:
        kinds[fp8_gemm.KIND], fits_stats[fp8_gemm.KIND] = fp8_gemm.fit(fp8, name, env["device_name"])
        engines[fp8_gemm.KIND] = fp8_gemm.ENGINE
    mem = [p for p in groups["memory"] if (p.op, p.engine) in _DECODER_MEMORY]
    kf = _fit_points(mem, peak_flops, peak_bw)
    kinds["memory"] = kf.kind_efficiency(
        f"measured: Triton copy/read/RMSNorm/SwiGLU/rotary/KV-write and torch add/embedding on {env['device_name']}, "
        f"{len(mem)} shapes; median |error| of the fit {kf.stats['median_abs_err']:.1%}")
    fits_stats["memory"] = kf.stats
    vendor_mem = [p for p in groups["memory"] if p.engine == "torch" and p.op in ("rmsnorm", "swiglu", "copy")]
    if vendor_mem:
        akf = _fit_points(vendor_mem, peak_flops, peak_bw)
        alternatives["memory"] = {"torch": {**akf.kind_efficiency("measured: torch rms_norm, silu*mul, copy_"),
                                            "stats": akf.stats}}

    host = [p for p in groups["host_transfer"] if "time_s" in p.result]
    if len(host) >= 3:
        link = gpu.host_link
        hk, ab = fitmod.fit_link([p.bytes for p in host], [p.result["time_s"] for p in host],
                                 link.bandwidth_bytes_per_s, link.latency_s)
        kinds["host_transfer"] = hk.kind_efficiency(
            f"measured: pinned host-to-device cudaMemcpy, {len(host)} sizes; alpha {ab['alpha_s'] * 1e6:.1f} us, "
            f"beta {ab['beta_bytes_per_s'] / 1e9:.1f} GB/s")
        fits_stats["host_transfer"] = {**hk.stats, **ab}
    else:
        kinds["host_transfer"] = default.kinds["host_transfer"].model_dump()

    collective_raw: dict[str, Any] = {}
    if collective_data is not None:
        from validation import collectives

        kinds["collective"], collective_raw = collectives.fit(collective_data, gpu)
        fits_stats["collective"] = {**collective_raw["all_reduce"]["fit"],
                                    **{f"{c}_alpha_s": collective_raw[c]["alpha_s"] for c in collectives.COLLECTIVES},
                                    **{f"{c}_beta_bytes_per_s": collective_raw[c]["beta_bytes_per_s"]
                                       for c in collectives.COLLECTIVES}}
    else:
        c = default.kinds["collective"].model_dump()
        c["basis"] = ("not measured (one GPU on the calibration machine); the default profile's values: "
                      + c["basis"])
        kinds["collective"] = c

    achieved = _achieved([p for g in groups.values() for p in g], engines)
    grouped_note = f"; grouped (MoE expert) GEMMs: {engines['grouped_gemm']}" if "grouped_gemm" in engines else ""
    env = dict(env)
    env["engines"] = engines
    env["run_time_s"] = timings
    env["mode"] = "quick" if quick else "full"
    profile = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "description": (f"Measured on {env['device_name']} ({env['sm_count']} SMs, driver {env['driver']}, "
                        f"torch {env['torch']}, triton {env['triton']}) on {env['date'][:10]} by roofsim calibrate"
                        f"{' --quick' if quick else ''}. GEMMs: {engines['gemm']}{grouped_note}; attention: "
                        f"{engines['attention_prefill']} (prefill), {engines['attention_decode']} (decode); "
                        "memory-bound ops: Triton fused kernels. Efficiencies are fractions of the datasheet peaks "
                        "of the catalog entry; per-launch times were taken back to back in CUDA graphs."),
        "device": name,
        "kinds": kinds,
        "workspace_bytes": workspace,
        "environment": env,
        "achieved_peaks": achieved,
        "measurements": {
            "datasheet": {"bf16_flops_per_s": peak_flops, "hbm_bytes_per_s": peak_bw},
            "timing": "median per-launch time of back-to-back launches captured in a CUDA graph, rotating input "
                      "sets larger than 3x L2, random normal bf16 data",
            "fit": fits_stats,
            "engine_time_ratios": ratios,
            "alternatives": alternatives,
            "collectives": collective_raw,
            "columns": POINT_COLUMNS,
            "points": _rows([p for g in groups.values() for p in g]),
        },
        "command": command or ("roofsim calibrate" + (" --quick" if quick else "")),
    }
    Profile.model_validate(profile)  # fails loudly rather than writing an unloadable file
    return profile, fits_stats


def run(out: str | None = None, quick: bool = False, device_name: str | None = None, progress: bool = True,
        triton_gemm: bool = True, command: str = "") -> dict[str, Any]:
    """Measure, fit and write a profile; returns the profile as a dict."""
    import torch

    from validation import env as envmod

    t_start = time.time()
    torch.manual_seed(0)
    env = envmod.environment()
    name = envmod.accelerator_name(env, device_name)
    gpu = get_accelerator(name)
    peak_flops = gpu.peak_for("bf16")
    peak_bw = gpu.hbm_bandwidth_bytes_per_s
    torch.backends.cuda.matmul.allow_tf32 = False
    _log(f"calibrating {env['device_name']} as {name} ({'quick' if quick else 'full'}): bf16 peak "
         f"{peak_flops / 1e12:.0f} TFLOP/s, HBM {peak_bw / 1e12:.2f} TB/s (datasheet)")

    sdpa = list(measure.sdpa_backends())
    from validation.decoder import _grouped_mm_available

    grouped_engine = "grouped_mm" if _grouped_mm_available("cuda") else "loop"
    groups = {
        "gemm": sweeps.gemm_points(quick, triton=triton_gemm),
        "memory": sweeps.memory_points(quick),
        "attention_prefill": sweeps.attention_prefill_points(["triton", *sdpa], quick),
        "attention_decode": sweeps.attention_decode_points(["triton", *[e for e in sdpa if e != "sdpa-cudnn"]], quick),
        "host_transfer": sweeps.host_points(quick),
        "grouped_gemm": sweeps.grouped_gemm_points(quick, grouped_engine),
    }
    from validation.kernels._common import fp8_supported

    if fp8_supported():  # W8A8 fp8 GEMMs (compute capability 8.9 and above)
        groups[fp8_gemm.KIND] = sweeps.gemm_fp8_points(quick)
    timings: dict[str, float] = {}
    for kind, pts in groups.items():
        t0 = time.time()
        measure_points(pts, kind, progress)
        timings[kind] = round(time.time() - t0, 1)
        failed = sum(1 for p in pts if "time_s" not in p.result)
        _log(f"  {kind}: {len(pts) - failed}/{len(pts)} points in {timings[kind]:.0f} s")

    collective_data = None
    if torch.cuda.device_count() > 1:
        from validation import collectives

        t0 = time.time()
        try:
            collective_data = collectives.run(quick=quick)
        except Exception as exc:  # noqa: BLE001 - keep the kernel calibration when NCCL fails
            _log(f"  collectives failed ({exc.__class__.__name__}: {exc}); keeping the default profile's values")
        timings["collective"] = round(time.time() - t0, 1)
        if collective_data:
            _log(f"  collectives: {torch.cuda.device_count()} GPUs in {timings['collective']:.0f} s")
    workspace = _workspace_bytes(torch)
    timings["total"] = round(time.time() - t_start, 1)
    profile, fits_stats = build_profile(groups, env, name, quick=quick, timings=timings, workspace=workspace,
                                        collective_data=collective_data, command=command)
    path = Path(out or f"{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(profile))
    _log(f"wrote {path} in {timings['total']:.0f} s; engines {profile['environment']['engines']}")
    for kind, st in fits_stats.items():
        _log(f"  fit {kind:18s} points {st.get('points', 0):4d}  median |err| {st.get('median_abs_err', float('nan')):6.1%}"
             f"  p90 {st.get('p90_abs_err', float('nan')):6.1%}  overhead "
             f"{profile['kinds'][kind]['overhead_s'] * 1e6:5.2f} us")
    return profile


def dumps(profile: dict[str, Any]) -> str:
    """Indented JSON with one raw measurement per line."""
    points = profile["measurements"]["points"]
    shell = {**profile, "measurements": {**profile["measurements"], "points": "@POINTS@"}}
    text = json.dumps(shell, indent=1)
    rows = ",\n  ".join(json.dumps(r) for r in points)
    return text.replace('"@POINTS@"', "[\n  " + rows + "\n ]" if points else "[]") + "\n"


def transfer_kinds(source_path: str | Path, target_path: str | Path, kinds, record: str, what: str,
                   command: str, out: str | Path | None = None) -> dict[str, Any]:
    """Carry the fitted ``kinds`` of the profile at ``source_path`` (those it has) into the profile at
    ``target_path``, another GPU's, by ``simulator.stacks.resolve.transfer_profile``: each kind's ``basis``
    says it was transferred, ``measurements[record]`` from where, by which rule and command, and the
    description that ``what`` was not measured there."""
    from simulator.stacks.resolve import transfer_profile

    source = Profile.model_validate(json.loads(Path(source_path).read_text()))
    target = json.loads(Path(target_path).read_text())
    src_gpu, dst_gpu = get_accelerator(source.device), get_accelerator(target["device"])
    carried = transfer_profile(source, src_gpu, dst_gpu)
    present = [k for k in kinds if k in source.kinds]
    if not present:
        raise ValueError(f"{source_path} has none of the kinds {', '.join(kinds)} to transfer")
    for kind in present:
        eff = carried.kinds[kind].model_dump(mode="json")
        eff["compute"], eff["memory"] = _rounded(eff["compute"]), _rounded(eff["memory"])
        eff["basis"] = f"transferred from {src_gpu.name}, not measured on {dst_gpu.name}: {eff['basis']}"
        target["kinds"][kind] = eff
    target.setdefault("measurements", {})[record] = {
        "transferred_from": src_gpu.name, "source_date": source.measurements.get(record, {}).get("date"),
        "kinds": present,
        "rule": f"simulator.stacks.resolve.transfer_profile: {carried.description}; efficiencies and per-launch "
                "overheads kept",
        "command": command,
    }
    note = f" {what} transferred from {src_gpu.name}, not measured here (measurements.{record})."
    if note not in target.get("description", ""):
        target["description"] = target.get("description", "") + note
    Profile.model_validate(target)
    Path(out or target_path).write_text(dumps(target))
    return target


def _rounded(curve: dict[str, Any]) -> dict[str, Any]:
    return {"log10_size": [round(x, 4) for x in curve["log10_size"]], "efficiency": list(curve["efficiency"])}


def points_from_profile(data: dict[str, Any]) -> dict[str, list[sweeps.Point]]:
    """The raw points of a profile written by :func:`run`, grouped by kind, with their results."""
    meas = data.get("measurements", {})
    cols = meas.get("columns", POINT_COLUMNS)
    groups: dict[str, list[sweeps.Point]] = {k: [] for k in ("gemm", "grouped_gemm", "memory", "attention_prefill",
                                                               "attention_decode", "host_transfer")}
    for row in meas.get("points", []):
        r = dict(zip(cols, row))
        shape = {}
        for part in str(r["shape"]).split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                shape[k] = int(v) if v.lstrip("-").isdigit() else v
        p = sweeps.Point(r["kind"], r["op"], r["engine"], shape, float(r["flops"]), float(r["bytes"]))
        if r.get("time_s") is not None:
            p.result = {"time_s": float(r["time_s"]), "spread": r.get("spread") or 0.0, "method": r.get("method", "")}
        else:
            p.result = {"error": r.get("method") or "failed"}
        groups.setdefault(p.kind, []).append(p)
    return groups


def collective_data(data: dict[str, Any]) -> dict[str, Any] | None:
    """The collective sweep a profile keeps (``measurements.collectives``), as ``collectives.fit`` reads it."""
    coll = data.get("measurements", {}).get("collectives") or None
    if coll and "cases" in coll:  # a multi-GPU sweep (validation.multigpu.collectives)
        return {k: coll[k] for k in ("world", "cases", "environment", "command") if k in coll}
    if coll and "world" in coll:
        return {"world": coll["world"], "results": {k: v["points"] for k, v in coll.items()
                                                    if isinstance(v, dict) and "points" in v},
                "methods": coll.get("methods", {}), "eager": coll.get("eager", {})}
    return None


def refit(path: str, out: str | None = None) -> dict[str, Any]:
    """Fit a profile again from the raw points it keeps (no GPU needed)."""
    data = json.loads(read_text_bounded(path, PROFILE_LIMIT_BYTES, "--refit"))
    groups = points_from_profile(data)
    env = {k: v for k, v in data.get("environment", {}).items() if k not in ("engines", "mode", "run_time_s")}
    timings = data.get("environment", {}).get("run_time_s", {})
    coll_data = collective_data(data)
    quick = data.get("environment", {}).get("mode") == "quick"
    profile, stats = build_profile(groups, env, data["device"] or data["name"], quick=quick, timings=timings,
                                   workspace=float(data.get("workspace_bytes", 0.0)), collective_data=coll_data,
                                   command=data.get("command", ""))
    target = Path(out or path)
    target.write_text(dumps(profile))
    _log(f"refitted {path} -> {target}")
    for kind, st in stats.items():
        _log(f"  fit {kind:18s} points {st.get('points', 0):4d}  median |err| {st.get('median_abs_err', float('nan')):6.1%}"
             f"  p90 {st.get('p90_abs_err', float('nan')):6.1%}  overhead {profile['kinds'][kind]['overhead_s'] * 1e6:5.2f} us")
    return profile


def _workspace_bytes(torch) -> float:
    """Device memory held outside PyTorch's allocator (CUDA context, library handles), plus the
    cuBLAS workspace PyTorch keeps, rounded up to 64 MiB."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    outside = total - free - torch.cuda.memory_reserved()
    cublas_ws = 32 * 2**20  # PyTorch's default CUBLAS_WORKSPACE_CONFIG on Hopper: 4096 KiB x 8
    step = 64 * 2**20
    return float(math.ceil((outside + cublas_ws) / step) * step)
