"""Tables as the explorer shows them: each column in text a person compares (the CSV downloads keep
the raw numbers). Times get one unit per column and 4 significant digits, relative errors percent,
FLOPs and bytes the CLI's humanised form, missing cells a dash."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.fmt import count, size

ERROR_WORDS = ("error", "err", "median", "p90", "max", "bias")  # relative errors and their statistics
TIME_UNITS = (("us", 1e-6), ("ms", 1e-3), ("s", 1.0))


def _number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _column(name: str, values: pd.Series) -> tuple[str, list[str]]:
    """A column as text a person compares: times in one unit per column with 4 significant digits,
    errors in percent, FLOPs and bytes humanised, missing cells as '–'."""
    numbers = [float(v) for v in values if _number(v) and np.isfinite(v)]
    missing = "–"

    def each(fmt):
        return [fmt(float(v)) if _number(v) and np.isfinite(v) else (missing if v is None or _number(v) else str(v))
                for v in values]

    is_time = name.endswith("_s") and not name.endswith("_per_s")
    if name.lower() in ("flops", "size_flops"):
        return "FLOPs", each(count)
    if name.lower() in ("bytes", "size_bytes"):
        return "bytes", each(size)
    if not numbers:
        return name, each(str)
    if all(v.is_integer() for v in numbers) and not is_time:
        return name, each(lambda v: f"{int(v):,}" if abs(v) >= 1e4 else f"{int(v)}")
    if is_time:
        typical = float(np.median(np.abs(numbers))) or 1.0
        unit, scale = next(((u, s) for u, s in TIME_UNITS if typical < s * 1000), TIME_UNITS[-1])
        return f"{name.removesuffix('_s') or 'time'} ({unit})", each(lambda v: f"{v / scale:.4g}")
    if any(word in name.lower() for word in ERROR_WORDS):
        return f"{name} (%)", each(lambda v: f"{v * 100:+.2f}" if "bias" in name or name.endswith("error")
                                   else f"{v * 100:.2f}")
    return name, each(lambda v: f"{v:.4g}")


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: every column through ``_column`` (the CSV keeps the raw numbers)."""
    shown = {}
    for name in frame.columns:
        label, texts = _column(str(name), frame[name])
        shown[label] = texts
    return pd.DataFrame(shown, index=frame.index)
