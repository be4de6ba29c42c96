"""Upper bounds on every size a user writes, far above any real deployment and far below where the
arithmetic breaks (int64 products, per-layer lists that take minutes to build).

Each limit is one to two orders of magnitude above the largest published figure:

* ``MAX_TOKENS`` = 2^24 = 16,777,216 tokens of prompt, context or output per sequence; the longest
  context a released model advertises is 10M tokens (Llama 4 Scout,
  https://ai.meta.com/blog/llama-4-multimodal-intelligence/).
* ``MAX_BATCH`` = 1,000,000 sequences per replica (vLLM's default ``max_num_seqs`` is 256-1024).
* ``MAX_GPUS`` = 2^20 = 1,048,576 GPUs (the largest clusters announced hold ~200K GPUs).
* ``MAX_LAYERS`` = 1,000 layers (Llama 3.1 405B has 126; DeepSeek-V3 61).
* ``MAX_WIDTH`` = 2^20 elements for hidden, intermediate and head sizes (Llama 3.1 405B: 16,384
  hidden, 53,248 intermediate), ``MAX_VOCAB`` = 2^24 (Gemma 3: 262,208), ``MAX_HEADS`` and
  ``MAX_EXPERTS`` = 2^16 (DeepSeek-V3: 128 heads, 256 experts).

``at_most(limit, unit)`` is a pydantic before-validator: a number above the limit (or not finite)
is refused with a message that states the limit; everything else goes on to the field's own type.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import BeforeValidator, PositiveInt

from hwmodels.errors import InputError

MAX_TOKENS = 2**24
MAX_BATCH = 1_000_000
MAX_GPUS = 2**20
MAX_LAYERS = 1_000
MAX_WIDTH = 2**20
MAX_VOCAB = 2**24
MAX_HEADS = 2**16
MAX_EXPERTS = 2**16
# Numeric sweep axes (``simulator.sweep``) -> (limit, unit).
AXIS_LIMITS = {"batch_size": (MAX_BATCH, "sequences"), "prompt_len": (MAX_TOKENS, "tokens"),
               "context_len": (MAX_TOKENS, "tokens"), "output_len": (MAX_TOKENS, "tokens"), "tp": (MAX_GPUS, "GPUs")}


def show(value) -> str:
    """A number as a person reads it: 16,777,216 or 1e+30."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return repr(value)
    if math.isfinite(number) and abs(number) < 1e12 and number == int(number):
        return f"{int(number):,}"
    return f"{number:.4g}"


def limit_message(value, limit: int, unit: str) -> str:
    return f"{show(value)} is above the limit of {limit:,} {unit}"


def at_most(limit: int, unit: str):
    """A pydantic before-validator refusing numbers (or numeric strings) above ``limit`` or not finite."""
    def check(value):
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return value  # not a number: the field's own type says so
        if isinstance(number, (int, float, np.integer, np.floating)) and not isinstance(number, bool):
            if not math.isfinite(float(number)):
                raise ValueError(f"{value!r} is not a finite number")
            if number > limit:
                raise ValueError(limit_message(value, limit, unit))
        return value
    return BeforeValidator(check)


Tokens = Annotated[PositiveInt, at_most(MAX_TOKENS, "tokens")]
Batch = Annotated[PositiveInt, at_most(MAX_BATCH, "sequences")]
GPUs = Annotated[PositiveInt, at_most(MAX_GPUS, "GPUs")]


def check_counts(field: str, values, limit: int, unit: str) -> np.ndarray:
    """Whole numbers in [1, limit] as a float array (exact up to 2^53), or a one-line ``InputError``."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError, OverflowError):
        raise InputError(field, f"expected whole numbers, got {values!r}"[:120]) from None
    if arr.size == 0:
        raise InputError(field, "give at least one value")
    if not np.all(np.isfinite(arr)):
        raise InputError(field, f"{show(arr[~np.isfinite(arr)].flat[0])} is not a finite number")
    if np.any(arr != np.round(arr)):
        raise InputError(field, f"{show(arr[arr != np.round(arr)].flat[0])} is not a whole number")
    if np.any(arr < 1):
        raise InputError(field, f"{show(arr[arr < 1].flat[0])} is below 1")
    if np.any(arr > limit):
        raise InputError(field, limit_message(arr[arr > limit].flat[0], limit, unit))
    return arr
