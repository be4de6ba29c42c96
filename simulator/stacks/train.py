"""Training rows of a measurement CSV: predicted by ``simulator.training`` under the stack, the training
corrections fitted to them (``StackProfile.train``), and the peak memory compared.

A training step under a stack (``simulator.training.engine.evaluate``) is the step priced with the
stack's corrected profile and its implementation (the unfused forward operators and their backward),
then ``simulator.stacks.transform.train_step_time``: its backward x ``backward_scale``, optimizer x
``optimizer_scale``, paced by the host at ``host_launch_s x host_launch_scale`` per kernel for eager
stacks, plus ``train.step_s``. The inference fit comes first and is kept; these four are then fitted to
the train rows (least squares on log error, priors as in ``simulator.stacks.fit``), each held at its prior
when no row's time depends on it. Peak memory is not fitted: the engine's training memory plus what the
stack's implementation saves for backward (``Implementation.train_saved_*``), against
``peak_memory_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from simulator.stacks.fit import SIGMA_DATA, US, Param, identified
from simulator.stacks.measurements import Measurement
from simulator.stacks.profile import StackProfile, TrainCorrections
from simulator.stacks.transform import train_step_time

TRAIN_PARAMS = [
    Param("train.backward_scale", "x", "backward time relative to its priced time (fitted as log)", 0.0, 0.3,
          float(np.log(0.2)), float(np.log(5.0))),
    Param("train.optimizer_scale", "x", "optimizer step time relative to its priced time (fitted as log)", 0.0, 0.3,
          float(np.log(0.2)), float(np.log(5.0))),
    Param("train.host_launch_scale", "x", "host time per kernel of a training step relative to inference's (log)",
          0.0, 0.5, float(np.log(0.2)), float(np.log(5.0))),
    Param("train.step_s", "s", "fixed time per training step", 0.0, 1000.0, 0.0, 1e6),
]


@dataclass
class TrainTerms:
    """Per train row, the engine's terms under the stack (its training corrections not applied)."""

    gpu_step_s: np.ndarray
    backward_s: np.ndarray
    optimizer_s: np.ndarray
    launches: np.ndarray
    layers: np.ndarray
    memory_bytes: np.ndarray


def train_terms(rows: list[Measurement], stack: StackProfile) -> TrainTerms:
    from simulator.training.engine import evaluate
    from simulator.training.scenario import TrainScenario

    plain = stack.model_copy(update={"train": TrainCorrections()}).model_dump(mode="json")
    cols: dict[str, list[float]] = {k: [] for k in TrainTerms.__dataclass_fields__}
    for m in rows:
        sc = TrainScenario.from_dict({
            "model": m.model, "gpu": m.gpu, "num_gpus": m.num_gpus, "tp": m.tp, "precision": m.precision,
            "recompute": m.recompute or "none", "micro_batch": m.batch, "seq_len": m.length, "calibration": plain})
        out = evaluate(sc)
        t = out["stack_terms"]
        for k in ("gpu_step_s", "backward_s", "optimizer_s", "launches", "layers"):
            cols[k].append(float(np.asarray(t[k])))
        cols["memory_bytes"].append(float(np.asarray(out["memory"]["total_bytes"])))
    return TrainTerms(**{k: np.array(v) for k, v in cols.items()})


def _with(stack: StackProfile, theta) -> StackProfile:
    b, o, h, s = theta
    return stack.model_copy(update={"train": TrainCorrections(
        backward_scale=float(np.exp(b)), optimizer_scale=float(np.exp(o)), host_launch_scale=float(np.exp(h)),
        step_s=float(s * US))})


def predict_train(terms: TrainTerms, stack: StackProfile) -> np.ndarray:
    return np.asarray(train_step_time(stack, terms.gpu_step_s, terms.backward_s, terms.optimizer_s, terms.launches,
                                      terms.layers), dtype=float)


def fit_train(rows: list[Measurement], stack: StackProfile, terms: TrainTerms | None = None, freeze=()):
    """(stack with fitted training corrections, in-sample log errors, parameter values, free names, notes)."""
    terms = terms or train_terms(rows, stack)
    measured = np.array([m.latency_s for m in rows])
    theta0 = np.array([p.prior for p in TRAIN_PARAMS])
    sensitive = identified(TRAIN_PARAMS, lambda theta: predict_train(terms, _with(stack, theta)), freeze)
    free, notes = [], []
    for j, p in enumerate(TRAIN_PARAMS):
        if p.name in freeze:
            notes.append(f"{p.name} frozen at its prior")
            continue
        if sensitive[j]:
            free.append(j)
        else:
            notes.append(f"{p.name} held at its prior (no train row's time depends on it)")

    def full(x):
        theta = theta0.copy()
        theta[free] = x
        return theta

    def residuals(x):
        pred = predict_train(terms, _with(stack, full(x)))
        prior = [SIGMA_DATA * (t - TRAIN_PARAMS[j].prior) / TRAIN_PARAMS[j].sigma for j, t in zip(free, x)]
        return np.concatenate([np.log(pred / measured), prior])

    theta = theta0
    if free:
        ps = [TRAIN_PARAMS[j] for j in free]
        lo, hi, sig = (np.array([getattr(p, a) for p in ps]) for a in ("lo", "hi", "sigma"))
        x0 = np.clip(theta0[free], lo + 0.05 * sig, hi - 0.05 * sig)
        res = least_squares(residuals, x0, bounds=(lo, hi), x_scale=sig, max_nfev=100 * (len(free) + 1))
        theta = full(res.x)
    fitted = _with(stack, theta)
    log_err = np.log(predict_train(terms, fitted) / measured)
    return fitted, log_err, theta, [TRAIN_PARAMS[j].name for j in free], notes


def memory_errors(rows: list[Measurement], terms: TrainTerms) -> list[float | None]:
    """predicted / measured - 1 of each train row's peak memory (None where the row has none)."""
    return [None if m.peak_memory_bytes is None else float(pred / m.peak_memory_bytes - 1.0)
            for m, pred in zip(rows, terms.memory_bytes)]


def value(p: Param, theta: float) -> float:
    return float(theta * US) if p.unit == "s" else float(np.exp(theta))
