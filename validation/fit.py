"""Fit a kind's efficiency curves and launch overhead to measured kernel times (numpy + scipy only).

The cost model prices one launch as ``t = max(F / (P * eff_c(F)), B / (BW * eff_m(B))) + overhead``
with P and BW the datasheet peaks, ``eff_c`` a curve over log10(FLOPs per launch) and ``eff_m`` over
log10(bytes per launch) (``costmodels.roofline.price``). Fitting goes in three steps:

1. **overhead**: the small-size asymptote, the median of ``t - floor`` over the points whose
   peak-roofline floor ``max(F/P, B/BW)`` is smallest;
2. **initial curves**: each point is compute-side when its peak-roofline floor is compute-dominated
   (F/P >= B/BW), memory-side otherwise; its efficiency is ``floor / (t - overhead)``, clipped to
   (0, 1]. Efficiencies are binned by log size (quarter decades), the bin medians made monotone
   non-decreasing by isotonic regression (pool-adjacent-violators) and smoothed with a monotone
   PCHIP resampled on a regular grid;
3. **refinement**: the knot efficiencies and the overhead are adjusted jointly by least squares on
   log(predicted / measured time) through the same max() the cost model evaluates, with the curves
   kept monotone by construction (each knot adds a non-negative fraction of what is left to 1), a
   small penalty on curvature and a weak pull towards step 2's values where no point constrains a
   knot.

The result is what a :class:`hwmodels.profile.KindEfficiency` holds, plus fit statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from costmodels import roofline

EFF_FLOOR = 1e-3
GRID_STEP = 0.25  # knots every quarter decade


@dataclass
class KindFit:
    compute_log10: list[float]
    compute_eff: list[float]
    memory_log10: list[float]
    memory_eff: list[float]
    overhead_s: float
    stats: dict[str, Any] = field(default_factory=dict)

    def kind_efficiency(self, basis: str) -> dict[str, Any]:
        """The profile's JSON form (``KindEfficiency``)."""
        return {
            "compute": {"log10_size": self.compute_log10, "efficiency": self.compute_eff},
            "memory": {"log10_size": self.memory_log10, "efficiency": self.memory_eff},
            "overhead_s": self.overhead_s,
            "basis": basis,
        }


def isotonic_increasing(y: Sequence[float], w: Sequence[float] | None = None) -> np.ndarray:
    """Weighted least-squares non-decreasing fit (pool adjacent violators)."""
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
    vals: list[float] = []
    wts: list[float] = []
    cnt: list[int] = []
    for yi, wi in zip(y, w):
        vals.append(yi)
        wts.append(wi)
        cnt.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            c = cnt[-2] + cnt[-1]
            vals[-2:], wts[-2:], cnt[-2:] = [v], [wsum], [c]
    return np.repeat(vals, cnt)


def _binned_monotone(x: np.ndarray, e: np.ndarray, step: float = GRID_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Median efficiency per log-size bin, made non-decreasing; returns (bin centres, values)."""
    if x.size == 0:
        return np.array([]), np.array([])
    lo, hi = np.floor(x.min() / step) * step, np.ceil(x.max() / step) * step
    edges = np.arange(lo, hi + step * 1.001, step)
    idx = np.clip(np.digitize(x, edges) - 1, 0, len(edges) - 2)
    centres, meds, wts = [], [], []
    for b in np.unique(idx):
        sel = idx == b
        centres.append(float(np.median(x[sel])))
        meds.append(float(np.median(e[sel])))
        wts.append(float(sel.sum()))
    iso = isotonic_increasing(meds, wts)
    return np.asarray(centres), iso


def _pchip_grid(xc: np.ndarray, yc: np.ndarray, step: float = GRID_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Monotone PCHIP through (xc, yc) resampled every ``step`` decades over [xc.min, xc.max]."""
    if xc.size == 0:
        return xc, yc
    if xc.size == 1:
        return xc, yc
    from scipy.interpolate import PchipInterpolator

    # merge bins whose centres coincide (x must be strictly increasing)
    keep = np.concatenate([[True], np.diff(xc) > 1e-9])
    xc, yc = xc[keep], yc[keep]
    if xc.size == 1:
        return xc, yc
    grid = np.arange(np.floor(xc[0] / step) * step, xc[-1] + step * 0.999, step)
    grid = np.clip(grid, xc[0], xc[-1])
    grid = np.unique(np.concatenate([grid, [xc[0], xc[-1]]]))
    yg = PchipInterpolator(xc, yc, extrapolate=False)(grid)
    yg = np.maximum.accumulate(np.clip(yg, EFF_FLOOR, 1.0))
    return grid, yg


# --- the monotone parameterisation: e_i = 1 - (1 - e_0) * prod_{j<=i} (1 - s_j), s = sigmoid ---------

def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _encode(e: np.ndarray) -> np.ndarray:
    e = np.clip(np.asarray(e, dtype=float), EFF_FLOOR, 1 - 1e-6)
    z = [_logit(e[0])]
    for a, b in zip(e[:-1], e[1:]):
        frac = (b - a) / max(1 - a, 1e-9)  # fraction of the remaining gap to 1 closed at this knot
        z.append(_logit(np.clip(frac, 1e-6, 1 - 1e-6)))
    return np.asarray(z)


def _decode(z: np.ndarray) -> np.ndarray:
    e0 = _sig(z[0])
    gaps = np.cumprod(1.0 - _sig(z[1:])) if z.size > 1 else np.array([])
    return np.concatenate([[e0], 1.0 - (1.0 - e0) * gaps])


def predict_times(flops, nbytes, peak_flops, peak_bw, cx, ce, mx, me, overhead):
    """Per-launch time the cost model gives for these curves (same formula as roofline.price)."""
    flops = np.asarray(flops, dtype=float)
    nbytes = np.asarray(nbytes, dtype=float)
    ec = np.interp(np.log10(np.maximum(flops, 1.0)), cx, ce) if len(cx) else np.ones_like(flops)
    em = np.interp(np.log10(np.maximum(nbytes, 1.0)), mx, me) if len(mx) else np.ones_like(nbytes)
    return roofline.roofline_time_s(flops, nbytes, peak_flops, peak_bw, ec, em, overhead)


def fit_kind(flops: Sequence[float], nbytes: Sequence[float], times: Sequence[float], peak_flops: float,
             peak_bw: float, *, refine: bool = True, fixed_overhead: float | None = None) -> KindFit:
    """Fit one kind's curves and overhead to measured per-launch times (seconds)."""
    F = np.asarray(flops, dtype=float)
    B = np.asarray(nbytes, dtype=float)
    T = np.asarray(times, dtype=float)
    ok = np.isfinite(T) & (T > 0)
    F, B, T = F[ok], B[ok], T[ok]
    if T.size == 0:
        raise ValueError("no valid measurements to fit")
    tc, tm = F / peak_flops, B / peak_bw
    floor = roofline.roofline_time_s(F, B, peak_flops, peak_bw)

    # 1. overhead: small-size asymptote
    if fixed_overhead is not None:
        overhead = float(fixed_overhead)
    else:
        order = np.argsort(floor)
        n_small = max(3, int(np.ceil(0.1 * T.size)))
        small = order[:n_small]
        overhead = float(np.clip(np.median(T[small] - floor[small]), 0.0, None))
        overhead = min(overhead, 0.9 * float(np.min(T)))

    # 2. initial per-point efficiencies and monotone curves
    busy = np.maximum(T - overhead, 0.05 * T)
    eff = np.clip(floor / busy, EFF_FLOOR, 1.0)
    comp = tc >= tm
    xc = np.log10(np.maximum(F[comp], 1.0))
    xm = np.log10(np.maximum(B[~comp], 1.0))
    cx, ce = _pchip_grid(*_binned_monotone(xc, eff[comp]))
    mx, me = _pchip_grid(*_binned_monotone(xm, eff[~comp]))
    if cx.size == 0:  # nothing compute-bound at the peaks: compute never binds in the model either
        cx, ce = np.array([0.0]), np.array([1.0])
    if mx.size == 0:
        mx, me = np.array([0.0]), np.array([1.0])
    # a curve may also need to cover sizes only seen on the other side (e.g. FLOPs of memory-bound points)
    init = (cx.copy(), ce.copy(), mx.copy(), me.copy(), overhead)

    def stats(cx_, ce_, mx_, me_, ov):
        pred = predict_times(F, B, peak_flops, peak_bw, cx_, ce_, mx_, me_, ov)
        rel = pred / T - 1.0
        a = np.abs(rel)
        return {"points": int(T.size), "median_abs_err": float(np.median(a)), "p90_abs_err": float(np.percentile(a, 90)),
                "max_abs_err": float(a.max()), "bias": float(np.median(rel))}

    if refine and T.size >= 4:
        from scipy.optimize import least_squares

        zc0, zm0 = _encode(ce), _encode(me)
        nc = zc0.size
        ov_scale = max(float(np.min(T)), 1e-7)
        x0 = np.concatenate([zc0, zm0, [np.log(max(overhead, 1e-3 * ov_scale) / ov_scale)]])
        fit_ov = fixed_overhead is None
        smooth_w, prior_w = 0.05, 0.02

        def unpack(x):
            ce_ = np.clip(_decode(x[:nc]), EFF_FLOOR, 1.0)
            me_ = np.clip(_decode(x[nc:-1]), EFF_FLOOR, 1.0)
            ov = float(np.exp(x[-1]) * ov_scale) if fit_ov else overhead
            return ce_, me_, ov

        def resid(x):
            ce_, me_, ov = unpack(x)
            pred = predict_times(F, B, peak_flops, peak_bw, cx, ce_, mx, me_, ov)
            r = [np.log(pred / T)]
            for e_ in (ce_, me_):
                if e_.size >= 3:
                    r.append(smooth_w * np.diff(np.log(e_), 2))
            r.append(prior_w * (x[:-1] - np.concatenate([zc0, zm0])))
            return np.concatenate(r)

        try:
            sol = least_squares(resid, x0, method="trf", loss="soft_l1", f_scale=0.05, max_nfev=4000)
            ce_r, me_r, ov_r = unpack(sol.x)
            before = stats(*init)
            after = stats(cx, ce_r, mx, me_r, ov_r)
            if after["median_abs_err"] <= before["median_abs_err"] + 1e-4:
                ce, me, overhead = ce_r, me_r, ov_r
        except Exception:  # noqa: BLE001 - keep step 2's curves if the optimiser fails
            pass

    ce = np.maximum.accumulate(np.clip(ce, EFF_FLOOR, 1.0))
    me = np.maximum.accumulate(np.clip(me, EFF_FLOOR, 1.0))
    st = stats(cx, ce, mx, me, overhead)
    st["initial"] = stats(*init)
    st["compute_points"] = int(comp.sum())
    st["memory_points"] = int((~comp).sum())
    return KindFit([round(float(v), 4) for v in cx], [round(float(v), 5) for v in ce],
                   [round(float(v), 4) for v in mx], [round(float(v), 5) for v in me], float(overhead), st)


def fit_link(nbytes: Sequence[float], times: Sequence[float], link_bw: float, latency_s: float
             ) -> tuple[KindFit, dict[str, float]]:
    """A transfer kind (host copies, collectives): ``t = latency + bytes / (link_bw * eff(bytes)) + overhead``.

    Also returns the plain alpha-beta fit (``t = alpha + bytes / beta``) of the same points."""
    B = np.asarray(nbytes, dtype=float)
    T = np.asarray(times, dtype=float)
    ok = np.isfinite(T) & (T > 0) & (B > 0)
    B, T = B[ok], T[ok]
    A = np.stack([np.ones_like(B), B], axis=1)
    w = 1.0 / T  # relative least squares
    coef, *_ = np.linalg.lstsq(A * w[:, None], T * w, rcond=None)
    alpha = float(max(coef[0], 0.0))
    beta = float(1.0 / coef[1]) if coef[1] > 0 else float("inf")
    overhead = float(max(0.0, min(alpha - latency_s, 0.9 * T.min() - latency_s)))
    busy = T - latency_s - overhead
    # where the latency alone reaches the measured time the model cannot go lower: full efficiency
    eff = np.where(busy > 0, B / link_bw / np.maximum(busy, 1e-12), 1.0)
    eff = np.clip(eff, EFF_FLOOR, 1.0)
    mx, me = _pchip_grid(*_binned_monotone(np.log10(B), eff, step=0.5), step=0.5)
    pred = latency_s + B / (link_bw * np.interp(np.log10(B), mx, me)) + overhead
    a = np.abs(pred / T - 1.0)
    st = {"points": int(T.size), "median_abs_err": float(np.median(a)), "p90_abs_err": float(np.percentile(a, 90)),
          "max_abs_err": float(a.max())}
    kf = KindFit([0.0], [1.0], [round(float(v), 4) for v in mx], [round(float(v), 5) for v in me], overhead, st)
    return kf, {"alpha_s": alpha, "beta_bytes_per_s": beta}
