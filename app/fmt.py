"""How the explorer writes numbers: the same formatters as the CLI, so both faces print the same strings."""

from __future__ import annotations

import math

from simulator.humanize import count, seconds, size

__all__ = ["count", "delta", "percent", "rate", "seconds", "size"]


def rate(tokens_per_s: float) -> str:
    """Tokens per second, grouped (as ``roofsim predict`` prints them)."""
    return f"{tokens_per_s:,.0f} tok/s"


def percent(fraction: float) -> str:
    return f"{fraction:.1%}"


def delta(value: float, base: float) -> str:
    """Relative change of ``value`` against ``base``, signed."""
    if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
        return "-"
    return f"{(value - base) / base:+.1%}"
