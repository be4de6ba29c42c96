"""The wait of an M/G/1 queue, for prompts prefilled whole (prefill-first scheduling, the prefill pool of
a prefill/decode split) and for the decode a prefill leaves behind: at utilisation rho and service S of
squared coefficient of variation c_s^2, the Pollaczek-Khinchine mean wait
E[W] = rho S (1 + c_s^2) / (2 (1 - rho)) (Kleinrock 1975, Queueing Systems I eq. 5.105), 0 with
probability 1 - rho and a delayed request's wait exponential with mean E[W] / rho (Kingman 1962); its
quantiles, and those of the wait plus a service of two values, in closed form.
"""

from __future__ import annotations

import numpy as np


def _mean_wait(rho, service, cv2):
    """The Pollaczek-Khinchine mean wait E[W] at utilisation ``rho`` of a service of mean ``service`` and
    squared coefficient of variation ``cv2``."""
    return rho * service * (1.0 + cv2) / (2.0 * np.maximum(1.0 - rho, 1e-12))


def _wait_percentile(mean_wait, rho, p):
    """The p-quantile of an M/G/1 wait with an exponential tail for delayed requests."""
    rho_c = np.clip(rho, 1e-12, 1.0 - 1e-12)
    tail = mean_wait / rho_c * np.log(np.maximum(rho_c / (1.0 - p), 1.0))
    return np.where(rho_c > 1.0 - p, tail, 0.0)


def _mixture_quantile(p: float, q, s_short, s_long, mean_wait, rho):
    """The p-quantile of S + W, exactly: S = s_long with probability q else s_short; W the M/G/1 wait,
    0 with probability 1 - rho, else exponential with mean m = E[W] / rho. The mixture's CDF
    F(t) = (1 - q) G(t - s_short) + q G(t - s_long) is piecewise: an atom at s_short, one exponential
    between the branches, an atom at s_long, and a sum of two exponentials above, each inverted in
    closed form."""
    rho = np.clip(rho, 1e-12, 1.0 - 1e-12)
    m = np.maximum(mean_wait / rho, 1e-300)
    gap = np.maximum(s_long - s_short, 0.0) / m
    short = 1.0 - q
    before = short * (1.0 - rho * np.exp(-gap))  # F just below s_long
    between = s_short + m * np.log(np.maximum(short * rho / np.maximum(short - p, 1e-300), 1.0))
    # above s_long: 1 - p = rho e^{-(t - s_short)/m} ((1 - q) + q e^{gap}), log-sum-exp for large gaps
    above = s_short + m * (gap + np.log(np.maximum(rho * (q + short * np.exp(-gap)) / (1.0 - p), 1e-300)))
    return np.where(p <= short * (1.0 - rho), s_short,
                    np.where(p < before, between, np.where(p <= before + q * (1.0 - rho), s_long, above)))
