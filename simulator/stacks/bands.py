"""Error bands: every latency and throughput with the 10-90% range the calibration in use has earned.

A band is built from log residuals r = log(measured / predicted) of the profile in use, per phase:

* a stack profile: its leave-one-model-out residuals (in-sample where it was fitted on one model),
  ``StackProfile.residuals``;
* a GPU's measured profile: the end-to-end steps ``roofsim validate`` measured with it, and for
  ``default``, ``peak`` and a profile carried from another GPU (``transferred``) the same steps predicted
  with those (``data/base_residuals.json``, written by ``python -m validation.stacks.transfer``);
* a user's own profile file: the ``default`` profile's residuals (nothing else is known about it).

``band = latency * exp([min(q10, -1%), max(q90, +1%)] * w)``, q the residuals' 10th and 90th percentiles.
``w = 1 + d`` widens it for extrapolation: d is how many decades the step's tokens (prefill: batch x
prompt; decode: batch) and context lie outside the range the residuals were measured on. A stack
used on a GPU it was not fitted on adds the transfer residuals' quantiles in quadrature. Generate:
TTFT from prefill, TPOT from decode, end to end = TTFT band + (output - 1) x TPOT band; throughput
bands are the latency bands inverted.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "base_residuals.json"
QUANTILES = (10.0, 90.0)
MIN_HALF_WIDTH = 0.01


@lru_cache(maxsize=1)
def base_residuals() -> dict:
    return json.loads(DATA.read_text())["profiles"]


def _quantiles(res) -> tuple[float, float]:
    return _quantiles_of(tuple(float(r) for r in res))


@lru_cache(maxsize=256)
def _quantiles_of(res: tuple[float, ...]) -> tuple[float, float]:
    """The clamped 10th/90th percentiles of a residual set (configuration-only: cached per set)."""
    q_lo, q_hi = np.percentile(np.asarray(res, dtype=float), QUANTILES)
    return min(float(q_lo), -MIN_HALF_WIDTH), max(float(q_hi), MIN_HALF_WIDTH)


def band_source(calibration, gpu_name: str, phase: str) -> dict:
    """Quantiles, the shape range they cover and a sentence saying where they come from."""
    base = base_residuals()
    stack = calibration.stack if calibration is not None else None
    kind = calibration.base_kind if calibration is not None else "default"
    if stack is not None and stack.residuals.phases.get(phase):
        held = stack.residuals.held_out.get(phase) or []
        res = held if len(held) >= 3 else stack.residuals.phases[phase]
        lo, hi = _quantiles(res)
        basis = (f"stack {stack.name}: {len(res)} {phase} rows, "
                 f"{'each model held out' if res is held else 'in sample'}")
        out = {"lo": lo, "hi": hi, "tokens": stack.residuals.log10_tokens[phase],
               "context": stack.residuals.log10_context[phase], "basis": basis}
        if gpu_name not in stack.residuals.gpus:
            t_lo, t_hi = _quantiles(base["transferred"][phase]["log_residuals"])
            out["lo"], out["hi"] = -float(np.hypot(lo, t_lo)), float(np.hypot(hi, t_hi))
            out["basis"] += f"; fitted on {', '.join(stack.residuals.gpus)}, widened by the transfer error"
        return out
    key = {"measured": gpu_name, "transferred": "transferred", "peak": "peak"}.get(kind, "default")
    entry = base.get(key, base["default"])[phase]
    lo, hi = _quantiles(entry["log_residuals"])
    what = {"measured": f"{gpu_name}'s measured profile", "transferred": f"a profile carried from "
            f"{calibration.source if calibration is not None else 'another GPU'}", "peak": "the peak profile",
            "default": "the default profile", "user": "a user profile (the default profile's residuals)"}
    basis = f"{what.get(kind, what['user'])}: {len(entry['log_residuals'])} validated {phase} steps"
    if key == gpu_name and calibration is not None and calibration.stack is not None:
        basis += f" (stack {calibration.stack.name} has no {phase} rows)"
    return {"lo": lo, "hi": hi, "tokens": entry["log10_tokens"], "context": entry["log10_context"], "basis": basis}


def _outside(x, lo_hi) -> np.ndarray:
    lo, hi = lo_hi
    x = np.asarray(x, dtype=float)
    return np.maximum(0.0, np.maximum(lo - x, x - hi))


def _decades_outside(x, lo_hi):
    """Decades ``x`` (a size, at least 1) lies outside ``lo_hi`` (log10 bounds); floats for a point."""
    if isinstance(x, float | int):
        lo, hi = lo_hi
        d = math.log10(x if x > 1.0 else 1.0)
        return max(0.0, lo - d, d - hi)
    return _outside(np.log10(np.maximum(x, 1.0)), lo_hi)


def band_factors(tokens, context, src: dict) -> tuple:
    """(lo, hi) factors of a phase's latency band: exp(q · w) for the 10/90% residual quantiles q, widened
    by w = 1 + the decades ``tokens`` and ``context`` lie outside the measured ranges, as
    exp(q · (1 + d_tokens)) · exp(q · d_context): each widening at its own (small) shape, so that a
    sweep's grid is touched once per factor."""
    wt = _decades_outside(tokens, src["tokens"])
    wc = _decades_outside(context, src["context"])
    if isinstance(wt, float) and isinstance(wc, float):
        return tuple(math.exp(q * (1.0 + wt)) * math.exp(q * wc) for q in (src["lo"], src["hi"]))
    return tuple(np.exp(q * (1.0 + wt)) * np.exp(q * wc) for q in (src["lo"], src["hi"]))


def band_arrays(ev, work) -> tuple[dict[str, np.ndarray], str]:
    """Band arrays of an evaluation (``simulator.engine.Evaluation``) and the sentence describing them."""
    a, dep, phase = ev.arrays, ev.dep, ev.phase
    cal = getattr(dep, "calibration", None)
    b, prompt, ctx = _floats(work["batch_size"]), _floats(work["prompt_len"]), _floats(work["context_len"])
    out: dict[str, np.ndarray] = {}
    bases = []
    if phase in ("prefill", "generate"):
        src = dep.cached(("band_source", "prefill"), band_source, cal, dep.gpu.name, "prefill")
        bases.append(src["basis"])
        pre = ev.steps["prefill"].latency_s
        f_lo, f_hi = band_factors(b * prompt, prompt, src)
        out["prefill_lo_s"], out["prefill_hi_s"] = pre * f_lo, pre * f_hi
    if phase in ("decode", "generate"):
        src = dep.cached(("band_source", "decode"), band_source, cal, dep.gpu.name, "decode")
        bases.append(src["basis"])
        context = ctx if phase == "decode" else prompt + _floats(work["output_len"]) / 2.0
        dec = a["latency_s"] if phase == "decode" else a["tpot_s"]
        f_lo, f_hi = band_factors(b, context, src)
        out["decode_lo_s"], out["decode_hi_s"] = dec * f_lo, dec * f_hi
    if phase == "generate":
        out_len = _floats(work["output_len"])
        steps = max(out_len - 1.0, 0.0) if type(out_len) is float else np.maximum(out_len - 1.0, 0.0)
        lo, hi = out["prefill_lo_s"] + steps * out["decode_lo_s"], out["prefill_hi_s"] + steps * out["decode_hi_s"]
        rate = a["tokens_per_s"] * a["latency_s"]
        tps_lo, tps_hi = rate / hi, rate / lo
    else:  # one step: the latency band is latency x factor, so the throughput band is throughput / factor
        lo, hi = out[f"{phase}_lo_s"], out[f"{phase}_hi_s"]
        tps = a["tokens_per_s"]
        tps_lo, tps_hi = _divided(tps, f_hi), _divided(tps, f_lo)
    bands = {"latency_band_lo_s": lo, "latency_band_hi_s": hi, "tokens_per_s_band_lo": tps_lo,
             "tokens_per_s_band_hi": tps_hi}
    if phase == "generate":
        bands.update({"ttft_band_lo_s": out["prefill_lo_s"], "ttft_band_hi_s": out["prefill_hi_s"],
                      "tpot_band_lo_s": out["decode_lo_s"], "tpot_band_hi_s": out["decode_hi_s"]})
    basis = dep.cached(("band_basis", phase), lambda: "; ".join(bases)
                       + " (10-90% of log residuals, widened outside the measured shapes)")
    return bands, basis


def _divided(x, factor):
    """``x / factor``, in ``factor``'s own array where it already has the result's shape (the factors are
    this module's: a sweep's grid is not allocated again)."""
    if isinstance(factor, np.ndarray) and factor.ndim and np.broadcast_shapes(factor.shape, np.shape(x)) == factor.shape:
        return np.divide(x, factor, out=factor)
    return x / factor


def _floats(x):
    """A workload value as a float (a point) or a float array."""
    return float(x) if isinstance(x, int | float) else np.asarray(x, dtype=float)


def train_band(calibration, gpu_name: str, step_time_s: float) -> tuple[float, float, str]:
    """A training step's band: the stack's training residuals (each model held out) where it was fitted on
    train rows; a GPU's measured profile whose training steps were validated (``base_residuals.json``'s
    ``train`` phase), those steps' residuals; otherwise no training step has been validated with this
    profile, and the band is its prefill band (forward GEMMs and attention, as a training step's are) at
    twice its width (backward, optimizer and communication are not in those residuals)."""
    stack = calibration.stack if calibration is not None else None
    if stack is not None and stack.residuals.phases.get("train"):
        src = band_source(calibration, gpu_name, "train")
        return step_time_s * float(np.exp(src["lo"])), step_time_s * float(np.exp(src["hi"])), src["basis"]
    measured = calibration is not None and calibration.base_kind == "measured"
    entry = base_residuals().get(gpu_name, {}).get("train") if measured else None
    if entry is not None:
        lo, hi = _quantiles(entry["log_residuals"])
        basis = (f"{gpu_name}'s measured profile: {len(entry['log_residuals'])} validated training steps "
                 "(CUDA-graph replays, in sample and held out)")
        return step_time_s * float(np.exp(lo)), step_time_s * float(np.exp(hi)), basis
    src = band_source(calibration, gpu_name, "prefill")
    lo, hi = step_time_s * float(np.exp(2.0 * src["lo"])), step_time_s * float(np.exp(2.0 * src["hi"]))
    return lo, hi, f"{src['basis']}, doubled: no training step validated"
