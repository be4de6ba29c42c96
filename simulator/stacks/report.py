"""``fit_measurements``: the whole fit of a measurement CSV -- the stack profile, per-row residuals and the
median / p90 / max error in sample and with each model held out (fitted on the others, predicting it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from hwmodels.errors import InputError
from simulator.stacks.fit import _value, build_groups, fit_rows, predict_groups, structure_stack
from simulator.stacks.measurements import Measurement, read_measurements
from simulator.stacks.profile import Residuals, StackProfile
from simulator.stacks.train import TRAIN_PARAMS, fit_train, memory_errors, predict_train, train_terms
from simulator.stacks.train import value as train_value


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ParamReport(_Out):
    name: str
    value: float
    prior: float
    unit: str
    meaning: str
    fitted: bool


class RowReport(_Out):
    row: int
    model: str
    gpu: str
    phase: str
    batch: int
    length: int
    measured_s: float
    predicted_s: float
    error: float  # predicted / measured - 1, in sample
    held_out_error: float | None = None  # the same with the row's model left out of the fit
    peak_memory_error: float | None = None  # train rows: predicted / measured peak memory - 1 (not fitted)


class ErrorStats(_Out):
    label: str
    phase: str
    rows: int
    median_abs: float
    p90_abs: float
    max_abs: float


class FitReport(_Out):
    stack: StackProfile
    parameters: list[ParamReport]
    rows: list[RowReport]
    errors: list[ErrorStats]
    nfev: int
    notes: list[str] = []


def error_stats(label: str, phase: str, errors) -> ErrorStats | None:
    e = np.abs(np.asarray([x for x in errors if x is not None], dtype=float))
    if e.size == 0:
        return None
    return ErrorStats(label=label, phase=phase, rows=int(e.size), median_abs=float(np.median(e)),
                      p90_abs=float(np.percentile(e, 90)), max_abs=float(e.max()))


def held_out(rows: list[Measurement], stack: StackProfile, freeze=()) -> tuple[list[float | None], list[str]]:
    """Log errors of each row predicted by a fit on the other models' rows (None where that fit refuses).
    Train rows: the other models' inference fit, then their train rows' training corrections."""
    models = sorted({m.model for m in rows})
    out: list[float | None] = [None] * len(rows)
    notes = []
    if len(models) < 2:
        return out, ["one model only: no held-out errors"]
    for model in models:
        train = [m for m in rows if m.model != model and m.phase != "train"]
        try:
            fitted = fit_rows(train, stack, freeze)[0]
        except InputError as exc:
            notes.append(f"holding out {model}: {exc}")
            continue
        test_idx = [i for i, m in enumerate(rows) if m.model == model and m.phase != "train"]
        if test_idx:
            test = [rows[i] for i in test_idx]
            pred = predict_groups(build_groups(test, stack), fitted, len(test))
            for i, p in zip(test_idx, pred):
                out[i] = float(np.log(p / rows[i].latency_s))
        train_idx = [i for i, m in enumerate(rows) if m.model == model and m.phase == "train"]
        others = [m for m in rows if m.model != model and m.phase == "train"]
        if train_idx and others:
            fitted = fit_train(others, fitted, freeze=freeze)[0]
            test = [rows[i] for i in train_idx]
            pred = predict_train(train_terms(test, fitted), fitted)
            for i, p in zip(train_idx, pred):
                out[i] = float(np.log(p / rows[i].latency_s))
    return out, notes


def _residuals(rows, log_err, held) -> Residuals:
    phases, hold, tokens, ctx = {}, {}, {}, {}
    for phase in sorted({m.phase for m in rows}):
        idx = [i for i, m in enumerate(rows) if m.phase == phase]
        phases[phase] = [round(float(-log_err[i]), 5) for i in idx]  # log(measured / predicted)
        hold[phase] = [round(-h, 5) for i in idx if (h := held[i]) is not None]
        t = [np.log10(rows[i].batch * (rows[i].length if phase != "decode" else 1)) for i in idx]
        c = [np.log10(max(rows[i].length, 1)) for i in idx]
        tokens[phase], ctx[phase] = [float(min(t)), float(max(t))], [float(min(c)), float(max(c))]
    return Residuals(phases=phases, held_out=hold, log10_tokens=tokens, log10_context=ctx,
                     gpus=sorted({m.gpu for m in rows}), models=sorted({m.model for m in rows}))


def fit_measurements(path: str | Path | list[Measurement], structure: str | None = None, freeze=(),
                     name: str = "stack", cross_validate: bool = True) -> FitReport:
    rows = read_measurements(path) if not isinstance(path, list) else path
    inference = [m for m in rows if m.phase != "train"]
    trains = [m for m in rows if m.phase == "train"]
    if not inference:
        raise InputError("--from-measurements", "no prefill or decode rows to fit (train rows are fitted on top "
                                                "of an inference fit)")
    modes = {m.mode for m in inference if m.mode}
    if len(modes) > 1:
        raise InputError("--from-measurements", f"rows mix execution modes {sorted(modes)}; fit one mode per stack")
    rows = inference + trains
    stack = structure_stack(structure, name, modes.pop() if modes else None)
    fitted, log_err, params, theta, free, notes, nfev, _ = fit_rows(inference, stack, freeze)
    reports = [ParamReport(name=p.name, value=_value(p, t), prior=_value(p, p.prior), unit=p.unit, meaning=p.meaning,
                           fitted=p in free) for p, t in zip(params, theta)]
    mem_err: list[float | None] = [None] * len(inference)
    if trains:
        terms = train_terms(trains, fitted)
        fitted, t_err, t_theta, t_free, t_notes = fit_train(trains, fitted, terms, freeze)
        log_err = np.concatenate([log_err, t_err])
        notes += t_notes
        free = [*free, *[p for p in TRAIN_PARAMS if p.name in t_free]]
        reports += [ParamReport(name=p.name, value=train_value(p, t), prior=train_value(p, p.prior), unit=p.unit,
                                meaning=p.meaning, fitted=p.name in t_free) for p, t in zip(TRAIN_PARAMS, t_theta)]
        mem_err += memory_errors(trains, terms)
    held, hold_notes = held_out(rows, stack, freeze) if cross_validate else ([None] * len(rows), [])
    notes += hold_notes
    err = np.expm1(log_err)
    row_reports = [RowReport(row=m.row, model=m.model, gpu=m.gpu, phase=m.phase, batch=m.batch, length=m.length,
                             measured_s=m.latency_s, predicted_s=m.latency_s * float(np.exp(e)), error=float(x),
                             held_out_error=None if h is None else float(np.expm1(h)), peak_memory_error=me)
                   for m, e, x, h, me in zip(rows, log_err, err, held, mem_err)]
    stats = []
    for phase in [p for p in ("prefill", "decode", "train") if any(m.phase == p for m in rows)]:
        sel = [r for r in row_reports if r.phase == phase]
        for label, vals in (("in sample", [r.error for r in sel]), ("model held out", [r.held_out_error for r in sel])):
            if (s := error_stats(label, phase, vals)) is not None:
                stats.append(s)
    if (s := error_stats("peak memory", "train", [r.peak_memory_error for r in row_reports])) is not None:
        stats.append(s)
    fitted = fitted.model_copy(update={
        "residuals": _residuals(rows, log_err, held),
        "fit": {"rows": len(rows), "structure": structure or "fused", "free": [p.name for p in free],
                "notes": notes, "errors": [s.model_dump() for s in stats]}})
    return FitReport(stack=fitted, parameters=reports, rows=row_reports, errors=stats, nfev=int(nfev), notes=notes)


def evaluate_measurements(path: str | Path | list[Measurement], stack: StackProfile) -> FitReport:
    """Every row of a measurement CSV predicted by an already fitted ``stack`` (no fit): how it carries to
    the rows' GPU, parallel layout or models (``roofsim calibrate --from-measurements CSV --evaluate STACK``)."""
    rows = read_measurements(path) if not isinstance(path, list) else path
    inference = [m for m in rows if m.phase != "train"]
    trains = [m for m in rows if m.phase == "train"]
    rows = inference + trains
    pred = list(predict_groups(build_groups(inference, stack), stack, len(inference))) if inference else []
    mem_err: list[float | None] = [None] * len(inference)
    if trains:
        terms = train_terms(trains, stack)
        pred += list(predict_train(terms, stack))
        mem_err += memory_errors(trains, terms)
    row_reports = [RowReport(row=m.row, model=m.model, gpu=m.gpu, phase=m.phase, batch=m.batch, length=m.length,
                             measured_s=m.latency_s, predicted_s=float(p), error=float(p / m.latency_s - 1.0),
                             peak_memory_error=me) for m, p, me in zip(rows, pred, mem_err)]
    stats = [s for phase in ("prefill", "decode", "train") if any(m.phase == phase for m in rows)
             if (s := error_stats(f"{stack.name} on these rows", phase, [r.error for r in row_reports
                                                                        if r.phase == phase])) is not None]
    if (s := error_stats("peak memory", "train", [r.peak_memory_error for r in row_reports])) is not None:
        stats.append(s)
    return FitReport(stack=stack, parameters=[], rows=row_reports, errors=stats, nfev=0,
                     notes=[f"evaluated with {stack.name} (fitted on {', '.join(stack.residuals.gpus) or '?'}), "
                            f"no fit"])
