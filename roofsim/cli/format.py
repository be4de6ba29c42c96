"""Plain-text tables for the CLI; numbers are formatted by ``simulator.humanize``."""

from __future__ import annotations

from simulator.humanize import count, seconds, size

__all__ = ["count", "seconds", "size", "table"]


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned others."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
