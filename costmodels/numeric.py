"""Scalars stay Python floats, arrays become float arrays: the cost formulas broadcast over numpy
workload axes, and a single point is evaluated without numpy's per-call cost (a 0-d array operation
costs about twenty times a float one)."""

from __future__ import annotations

import numpy as np


def num(x):
    """``x`` as a Python float when it is a scalar (int, float, numpy scalar or 0-d array), else as a
    float ndarray."""
    if isinstance(x, float):
        return x
    if isinstance(x, (int, np.integer, np.floating)):
        return float(x)
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a
