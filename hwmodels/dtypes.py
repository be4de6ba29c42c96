"""Numeric formats: their storage size and the peak-FLOP/s key they compute with.

Storage sizes are the format definitions (IEEE 754 for fp64/fp32/fp16, bfloat16, OCP FP8/MX FP4).
``int4`` and ``fp4`` are 0.5 byte per element before any block-scale overhead, which techniques add.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

DType = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp64": 8.0,
    "fp32": 4.0,
    "tf32": 4.0,  # stored as fp32; tf32 is only a tensor-core math mode
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}

DTYPES: tuple[str, ...] = tuple(BYTES_PER_ELEMENT)


def bytes_per_element(dtype) -> np.ndarray | float:
    """Bytes per element of a dtype name, or an array of names (vectorised lookup)."""
    if isinstance(dtype, str):
        return BYTES_PER_ELEMENT[dtype]
    names = np.asarray(dtype)
    return np.vectorize(BYTES_PER_ELEMENT.__getitem__, otypes=[float])(names)
