"""``roofsim validate``: time a real decoder on the GPU and compare with roofsim's predictions.

Two levels:

* **kernels** — GEMM, grouped (MoE expert) GEMM, memory-bound, prefill-attention and decode-attention
  launches at shapes the calibration sweep did not use (off its grid), timed exactly as calibration
  times them, against ``costmodels.roofline.price`` with the profile;
* **end to end** — one prefill step (several prompt lengths) and one decode step (a batch x context
  grid) of three models run by ``validation.decoder`` (Llama-3.1-8B: GQA; Llama-2-7B: MHA;
  OLMoE-1B-7B: MoE, 64 experts, top-8), each step captured in a CUDA graph, against
  ``simulator.predict`` for the same model spec, batch, lengths, dtypes and profile.

Every prediction is made with the calibrated profile and with the uncalibrated ``default`` profile.
Outputs: ``validation.json``, ``validation.md`` and ``validation.html`` (plotly) in ``--out``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from costmodels.roofline import OpCost, price
from hwmodels import get_accelerator, load_profile
from hwmodels.io import PROFILE_LIMIT_BYTES, read_text_bounded
from simulator.api import predict
from simulator.engine import evaluate
from simulator.scenario import Scenario
from validation import sweeps
from validation.report import write_reports

# Inline specs (the preset schema), so that validation does not depend on the preset files.
MODELS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": {
        "name": "llama-3.1-8b", "family": "llama", "num_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
        "num_kv_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 128256,
    },
    "llama-2-7b": {
        "name": "llama-2-7b", "family": "llama", "num_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
        "num_kv_heads": 32, "head_dim": 128, "intermediate_size": 11008, "vocab_size": 32000,
    },
    # OLMoE-1B-7B's shape without its q/k norms (the step has no operator for them)
    "olmoe-1b-7b": {
        "name": "olmoe-1b-7b", "family": "olmoe", "num_layers": 16, "hidden_size": 2048, "num_attention_heads": 16,
        "num_kv_heads": 16, "head_dim": 128, "intermediate_size": 1024, "vocab_size": 50304,
        "moe": {"num_experts": 64, "top_k": 8, "expert_intermediate_size": 1024},
    },
}
KIND_OF = {"llama-3.1-8b": "dense GQA", "llama-2-7b": "dense MHA", "olmoe-1b-7b": "MoE"}

PREFILL_CASES = [(1, 128), (1, 512), (1, 2048), (1, 8192), (4, 1024)]
DECODE_CASES = {
    "llama-3.1-8b": [(1, 512), (1, 8192), (8, 2048), (32, 1024), (32, 4096), (64, 2048), (128, 1024), (256, 256)],
    "llama-2-7b": [(1, 512), (1, 4096), (8, 2048), (32, 1024), (64, 512), (16, 2048)],
    "olmoe-1b-7b": [(1, 512), (1, 4096), (8, 1024), (32, 1024), (64, 2048), (128, 512)],
}
QUICK_PREFILL = [(1, 512), (1, 4096)]
QUICK_DECODE = [(1, 1024), (32, 1024), (128, 512)]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stats(errs: list[float]) -> dict[str, float]:
    a = np.abs(np.asarray(errs, dtype=float))
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "max": float(a.max()),
            "bias": float(np.median(errs))}


# --- kernel level ------------------------------------------------------------------------------------

def heldout_points(engines: dict[str, str], quick: bool = False) -> list[sweeps.Point]:
    pts: list[sweeps.Point] = []
    shapes = [s for s in sweeps.LAYER_SHAPES if s[0] in ("llama-3.1-8b", "llama-2-7b", "olmoe-1b-7b")]
    ms = [3, 24, 96, 192, 384, 1536, 3072, 6144] if not quick else [3, 96, 1536]
    gemm_engine = engines.get("gemm", "cublas")
    for model, layer, K, N in shapes:
        for M in ms:
            if M * N * 2 > 2e9:
                continue
            pts.append(sweeps.gemm_point(M, K, N, gemm_engine, f"{model}.{layer}"))
    toks = [2, 32, 512, 2048, 8192, 32768] if not quick else [2, 512, 8192]
    for t in toks:
        pts.append(sweeps.memory_point("rmsnorm", t, 4096, "triton"))
        pts.append(sweeps.memory_point("swiglu", t, 11008, "triton"))
        pts.append(sweeps.memory_point("add", t, 2048, "torch"))
        pts.append(sweeps.memory_point("rotary", t, 32 * 128, "triton"))
        pts.append(sweeps.memory_point("kv_write", t, 2 * 16 * 128, "triton"))
    grouped_engine = engines.get("grouped_gemm")
    if grouped_engine:
        pts += sweeps.grouped_gemm_points(engine=grouped_engine,
                                          tokens=[3, 24, 96, 384, 1536, 3072] if not quick else [3, 96, 1536])
    heads = [(32, 8), (32, 32), (16, 16)]
    for H, Hkv in heads:
        for S in ([384, 1536, 3072, 6144] if not quick else [1536]):
            pts.append(sweeps.prefill_point(1, S, H, Hkv, 128, engines.get("attention_prefill", "sdpa-flash")))
        for B, ctx in ([(2, 1000), (8, 3000), (24, 1500), (48, 6000), (128, 700)] if not quick else [(8, 3000)]):
            if Hkv == 32 and B * ctx > 2 ** 19:
                continue
            pts.append(sweeps.decode_point(B, ctx, H, Hkv, 128, engines.get("attention_decode", "triton")))
    return pts


def price_point(p: sweeps.Point, profile, gpu) -> float:
    op = OpCost(p.op, p.kind, 1.0, flops=p.flops, hbm_bytes=p.bytes, peak_flops_per_s=gpu.peak_for("bf16"),
                hbm_bandwidth_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s)
    return float(price(op, profile).time_s)


def kernel_level(profile, default, gpu, quick: bool, progress: bool) -> dict[str, Any]:
    from validation.calibrate import measure_points

    engines = dict(profile.environment.get("engines", {}))
    if "grouped_gemm" not in engines:  # a profile measured before the kind existed: time the decoder's engine
        from validation.decoder import _grouped_mm_available

        engines["grouped_gemm"] = "grouped_mm" if _grouped_mm_available("cuda") else "loop"
    pts = heldout_points(engines, quick)
    measure_points(pts, "kernels", progress)
    rows = []
    for p in pts:
        if "time_s" not in p.result:
            rows.append({"kind": p.kind, "op": p.op, "engine": p.engine, "shape": p.shape,
                         "failed": p.result.get("error")})
            continue
        rows.append({"kind": p.kind, "op": p.op, "engine": p.engine, "shape": p.shape, "flops": p.flops,
                     "bytes": p.bytes, "measured_s": p.result["time_s"]})
    return kernel_summary(rows, profile, default, gpu)


def kernel_summary(rows: list[dict[str, Any]], profile, default, gpu) -> dict[str, Any]:
    """Price every measured kernel row with both profiles and summarise the errors per kind."""
    for r in rows:
        if "measured_s" not in r:
            continue
        p = sweeps.Point(r["kind"], r["op"], r["engine"], r["shape"], r["flops"], r["bytes"])
        t = r["measured_s"]
        pc, pd = price_point(p, profile, gpu), price_point(p, default, gpu)
        r.update({"predicted_s": pc, "error": pc / t - 1.0, "default_s": pd, "default_error": pd / t - 1.0})
    summary = {}
    ok = [r for r in rows if "measured_s" in r]
    for kind in ("gemm", "grouped_gemm", "memory", "attention_prefill", "attention_decode"):
        sel = [r for r in ok if r["kind"] == kind]
        if not sel:
            continue
        summary[kind] = {"calibrated": _stats([r["error"] for r in sel]),
                         "default": _stats([r["default_error"] for r in sel])}
    summary["all"] = {"calibrated": _stats([r["error"] for r in ok]),
                      "default": _stats([r["default_error"] for r in ok])}
    return {"rows": rows, "summary": summary}


# --- end to end --------------------------------------------------------------------------------------

def _scenario(spec: dict, gpu_name: str, calibration, phase: str, batch: int, length: int,
              parallelism: dict[str, int] | None = None) -> dict[str, Any]:
    """The scenario of one measured case; ``parallelism`` (e.g. ``{"tp": 4}``) spans ``num_gpus`` =
    the product of its degrees."""
    wl = {"phase": phase, "batch_size": batch}
    wl["prompt_len" if phase == "prefill" else "context_len"] = length
    sc = {"model": spec, "hardware": {"gpu": gpu_name, "num_gpus": 1}, "calibration": calibration, "workload": wl}
    if parallelism:
        sc["parallelism"] = dict(parallelism)
        sc["hardware"]["num_gpus"] = int(np.prod([v for k, v in parallelism.items() if k in ("tp", "pp", "cp")]))
    return sc


def _by_kind(sc: dict[str, Any]) -> dict[str, float]:
    ev = evaluate(Scenario.from_dict(sc))
    step = ev.steps[sc["workload"]["phase"]]
    out: dict[str, float] = {}
    for op, t in zip(step.ops, step.times):
        out[op.kind] = out.get(op.kind, 0.0) + float(np.mean(t.time_s))
    out["launches"] = float(sum(op.count for op, t in zip(step.ops, step.times) if float(np.mean(t.time_s)) > 0))
    return out


def predict_row(row: dict[str, Any], profile_ref, gpu_name: str) -> dict[str, Any]:
    """Fill a case's predictions (calibrated, default, peak) and errors against its measured time."""
    for label, calib in (("calibrated", profile_ref), ("default", "default"), ("peak", "peak")):
        sc = _scenario(row["spec"], gpu_name, calib, row["phase"], row["batch"], row["length"], row.get("parallelism"))
        p = predict(sc)
        row[f"{label}_s"] = p.latency_s
        if "time_s" in row:
            row[f"{label}_error"] = p.latency_s / row["time_s"] - 1.0
        if label != "peak":
            row[f"{label}_by_kind"] = _by_kind(sc)
    return row


MOE_TOKENS = [1, 8, 32, 128, 512, 4096]
# The decoder's MoE pieces (as ``moe_breakdown`` times them) and the step's operators that price each.
MOE_PIECES: dict[str, tuple[str, ...]] = {
    "router": ("moe.router",),
    "route (softmax + top-k)": ("moe.route",),
    "sort (by expert, offsets)": ("moe.sort",),
    "permute (gather rows)": ("moe.permute",),
    "experts (2 grouped GEMMs + SwiGLU)": ("moe.expert.gate_up_proj", "moe.expert.act", "moe.expert.down_proj"),
    "unpermute (weighted sum) + residual add": ("moe.unpermute", "moe_residual"),
}


def moe_predictions(spec: dict[str, Any], gpu_name: str, profile_ref, tokens: int) -> dict[str, Any]:
    """The step's per-layer price of each MoE operator at ``tokens`` tokens (decode, 16 cached), and
    their sums per piece of the decoder's MoE layer (``MOE_PIECES``)."""
    pred = predict(_scenario(spec, gpu_name, profile_ref, "decode", tokens, 16))
    per_layer = {}
    for op in pred.breakdown:
        if (op.name.startswith("moe.") or op.name == "moe_residual") and op.name != "moe.all_reduce":
            per_layer[op.name] = op.time_s / max(op.count, 1)
    by_piece = {piece: float(sum(per_layer.get(n, 0.0) for n in names)) for piece, names in MOE_PIECES.items()}
    return {"predicted_s": per_layer, "predicted_by_piece_s": by_piece,
            "predicted_total_s": float(sum(per_layer.values()))}


def moe_breakdown(model, spec: dict[str, Any], gpu_name: str, profile_ref, tokens: list[int]) -> list[dict[str, Any]]:
    """Per-layer time of each piece of the decoder's MoE layer (timed alone, back to back in a graph)
    beside the cost model's per-layer price of the operators it has for them."""
    import torch

    from validation import bench

    a = model.arch
    arange_e = torch.arange(a.experts, device="cuda", dtype=torch.int32)
    rows = []
    for T in tokens:
        hn = bench.randn((T, a.hidden))
        x = bench.randn((T, a.hidden))
        arange_tk = torch.arange(T * a.top_k, device="cuda")
        logits = model.moe_router(hn, 0)
        weights, ids = model.moe_route(logits)
        tok, offs, inv = model.moe_sort(ids, arange_e, arange_tk)
        xs = model.moe_permute(hn, tok)
        y = model.moe_experts(xs, offs, 0)
        layers = list(range(a.layers))  # rotate over the layers' weights, as a step reads them
        pieces = {
            "router": [lambda i=i: model.moe_router(hn, i) for i in layers],
            "route (softmax + top-k)": [lambda: model.moe_route(logits)],
            "sort (by expert, offsets)": [lambda: model.moe_sort(ids, arange_e, arange_tk)],
            "permute (gather rows)": [lambda: model.moe_permute(hn, tok)],
            "experts (2 grouped GEMMs + SwiGLU)": [lambda i=i: model.moe_experts(xs, offs, i) for i in layers],
            "unpermute (weighted sum) + residual add": [lambda: model.moe_unpermute(y, weights, inv, x)],
        }
        meas = {}
        for name, fns in pieces.items():
            try:
                meas[name] = bench.time_launches(fns, target_s=2e-3, repeats=7).time_s
            except Exception as exc:  # noqa: BLE001
                meas[name] = float("nan")
                _log(f"  moe breakdown {name} T={T}: {exc.__class__.__name__}")
        measured_total = float(sum(v for v in meas.values() if v == v))
        rows.append({"tokens": T, "measured_s": meas, "measured_total_s": measured_total,
                     **moe_predictions(spec, gpu_name, profile_ref, T)})
    return rows


def end_to_end(profile_ref, gpu_name: str, engines: dict[str, str], models: list[str], quick: bool, layers: int | None,
               progress: bool, moe_rows: list | None = None) -> list[dict[str, Any]]:
    import torch

    from validation import bench
    from validation.decoder import Arch, Decoder, StepRunner, time_step

    rows = []
    cases_all = []
    for name in models:
        pre = QUICK_PREFILL if quick else PREFILL_CASES
        dec = QUICK_DECODE if quick else DECODE_CASES[name]
        cases_all += [(name, "prefill", b, s) for b, s in pre] + [(name, "decode", b, c) for b, c in dec]
    bar = bench.Progress(len(cases_all), "end to end", enabled=progress)
    for name in models:
        spec = dict(MODELS[name])
        if layers:
            spec["num_layers"] = min(layers, spec["num_layers"])
        arch = Arch.from_spec(spec)
        max_pos = max(s for n, _, _, s in cases_all if n == name) + 2
        t0 = time.time()
        model = Decoder(arch, attention_prefill=engines.get("attention_prefill", "sdpa-flash"),
                        attention_decode=engines.get("attention_decode", "triton"), max_positions=max_pos)
        _log(f"  {name}: {arch.layers} layers, {arch.weight_bytes() / 1e9:.1f} GB of weights"
             f"{'' if not arch.experts else f', grouped GEMM {model.grouped_mm}'} ({time.time() - t0:.0f} s)")
        for n, phase, b, length in [c for c in cases_all if c[0] == name]:
            row = {"model": name, "type": KIND_OF[name], "layers": arch.layers, "phase": phase, "batch": b,
                   "length": length}
            try:
                runner = StepRunner(model, phase, b, length)
                meas = time_step(runner)
                del runner
            except Exception as exc:  # noqa: BLE001
                meas = {"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}
            torch.cuda.empty_cache()
            row.update({k: v for k, v in meas.items()})
            row["spec"] = spec
            predict_row(row, profile_ref, gpu_name)
            rows.append(row)
            bar.update(1, f"{name} {phase} {b}x{length}")
        if arch.experts and model.grouped_mm and moe_rows is not None:
            try:
                moe_rows += moe_breakdown(model, spec, gpu_name, profile_ref, MOE_TOKENS[:3] if quick else MOE_TOKENS)
            except Exception as exc:  # noqa: BLE001
                _log(f"  moe breakdown failed: {exc.__class__.__name__}: {exc}")
        del model
        torch.cuda.empty_cache()
    bar.close()
    return rows


def e2e_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ok = [r for r in rows if "time_s" in r]
    for label in ("calibrated", "default", "peak"):
        out[label] = {}
        for phase in ("prefill", "decode"):
            out[label][phase] = _stats([r[f"{label}_error"] for r in ok if r["phase"] == phase])
        out[label]["all"] = _stats([r[f"{label}_error"] for r in ok])
        for phase in ("prefill", "decode"):
            out[label][f"dense {phase}"] = _stats([r[f"{label}_error"] for r in ok
                                                   if r["phase"] == phase and not r["spec"].get("moe")])
        for model in sorted({r["model"] for r in ok}):
            for phase in ("prefill", "decode"):
                out[label][f"{model} {phase}"] = _stats([r[f"{label}_error"] for r in ok
                                                         if r["model"] == model and r["phase"] == phase])
    return out


# --- entry point -------------------------------------------------------------------------------------

def repredict(path: str, profile: str | None = None, out: str | None = None) -> dict[str, Any]:
    """Predict again, with this code and ``profile``, the cases a ``validation.json`` measured (no GPU)."""
    result = json.loads(read_text_bounded(path, PROFILE_LIMIT_BYTES, "--from"))
    gpu_name = result["gpu"]
    gpu = get_accelerator(gpu_name)
    profile_ref = profile or "auto"
    prof = load_profile(profile_ref, gpu=gpu_name)
    result["kernels"] = kernel_summary(result["kernels"]["rows"], prof, load_profile("default"), gpu)
    for row in result["e2e"]:
        predict_row(row, profile_ref, gpu_name)
    result["e2e_summary"] = e2e_summary(result["e2e"])
    moe_spec = next((r["spec"] for r in result["e2e"] if r["spec"].get("moe")), None)
    for row in result.get("moe_breakdown") or []:
        if moe_spec is not None:
            row.pop("predicted_by_piece_s", None)
            row.update(moe_predictions(moe_spec, gpu_name, profile_ref, row["tokens"]))
    result["profile"] = profile_ref if profile else f"auto ({prof.name})"
    outdir = write_reports(result, out or "validation-out")  # the current directory, never beside the input
    _log(f"re-predicted {path} -> {outdir}/validation.{{json,md,html}}")
    return result


def run(profile: str | None = None, out: str = "validation-out", quick: bool = False, models: list[str] | None = None,
        layers: int | None = None, device_name: str | None = None, progress: bool = True, skip_kernels: bool = False,
        command: str = "") -> dict[str, Any]:
    import torch

    from validation import env as envmod

    t_start = time.time()
    torch.manual_seed(0)
    env = envmod.environment()
    gpu_name = envmod.accelerator_name(env, device_name)
    gpu = get_accelerator(gpu_name)
    profile_ref = profile or "auto"
    prof = load_profile(profile_ref, gpu=gpu_name)
    if prof.name in ("default", "peak"):
        _log(f"note: no measured profile for {gpu_name}; validating the {prof.name!r} profile")
    engines = dict(prof.environment.get("engines", {})) or {"gemm": "cublas", "attention_prefill": "sdpa-flash",
                                                            "attention_decode": "triton"}
    default = load_profile("default")
    _log(f"validating profile {prof.name!r} on {env['device_name']} as {gpu_name}; engines {engines}")
    timings: dict[str, float] = {}
    kern = {"rows": [], "summary": {}}
    if not skip_kernels:
        t0 = time.time()
        kern = kernel_level(prof, default, gpu, quick, progress)
        timings["kernels"] = round(time.time() - t0, 1)
    t0 = time.time()
    moe_rows: list[dict[str, Any]] = []
    rows = end_to_end(profile_ref if profile else "auto", gpu_name, engines, models or list(MODELS), quick, layers,
                      progress, moe_rows)
    timings["end_to_end"] = round(time.time() - t0, 1)
    timings["total"] = round(time.time() - t_start, 1)
    result = {"gpu": gpu_name, "profile": profile_ref if profile else f"auto ({prof.name})", "engines": engines,
              "environment": env, "run_time_s": timings, "command": command or "roofsim validate",
              "kernels": kern, "e2e": rows, "e2e_summary": e2e_summary(rows), "moe_breakdown": moe_rows}
    outdir = write_reports(result, out)
    _log(f"wrote {outdir}/validation.{{json,md,html}} in {timings['total']:.0f} s")
    return result
