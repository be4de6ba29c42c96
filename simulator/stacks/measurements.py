"""The measurement CSV a stack profile is fitted to: one row per timed step.

Header row, then one row per step. Columns (``docs/calibration.md``): ``model`` (preset name or a
config.json path, relative to the CSV), ``gpu`` (catalog name), ``num_gpus``, ``tp``, ``phase``
(``prefill``, ``decode`` or ``train``), ``batch`` (sequences; the micro-batch for train),
``prompt_len`` (prefill), ``context_len`` (decode: tokens cached before the step), ``seq_len``
(train), ``precision`` (bf16, fp16, fp8...), ``recompute`` (train), ``latency_s`` (the step),
``peak_memory_bytes`` (optional). Empty cells mean not applicable; other columns (``stack``,
``mode``...) are kept as they are. Anything else malformed is one ``InputError`` naming the row (1 =
the first data row) and the column.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from hwmodels.dtypes import DTYPES
from hwmodels.errors import InputError

MAX_CSV_BYTES = 8 * 2**20  # a measurement file is kilobytes; the cap keeps a wrong path from being slurped
REQUIRED = ("model", "gpu", "phase", "batch", "latency_s")
PHASES = ("prefill", "decode", "train")


class Measurement(BaseModel):
    model_config = ConfigDict(frozen=True)

    row: int
    model: str
    gpu: str
    num_gpus: int = 1
    tp: int = 1
    phase: str
    batch: int
    prompt_len: int | None = None
    context_len: int | None = None
    seq_len: int | None = None
    precision: str = "bf16"
    recompute: str | None = None
    latency_s: float
    peak_memory_bytes: float | None = None
    mode: str | None = None
    stack: str | None = None

    @property
    def length(self) -> int:
        return {"prefill": self.prompt_len, "decode": self.context_len, "train": self.seq_len}[self.phase] or 0


def read_bounded(path: str | Path, field: str, max_bytes: int = MAX_CSV_BYTES) -> str:
    """A text file read through a size cap (one line naming the file when too large or unreadable)."""
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(field, f"cannot read {str(path)!r}: {exc.__class__.__name__}") from None
    if len(raw) > max_bytes:
        raise InputError(field, f"{str(path)!r} is larger than {max_bytes} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(field, f"{str(path)!r} is not UTF-8 text") from None


def _int(text: str, where: str, minimum: int = 1) -> int:
    try:
        value = float(text)
    except ValueError:
        raise InputError(where, f"expected an integer, got {text!r}") from None
    if not math.isfinite(value) or value != int(value) or value < minimum:
        raise InputError(where, f"expected an integer >= {minimum}, got {text!r}")
    return int(value)


def _float(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(where, f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(where, f"expected a positive finite number, got {text!r}")
    return value


def _model(text: str, base: Path | None) -> str:
    if base is not None and (text.endswith(".json") or "/" in text):
        candidate = base / text
        if candidate.exists():
            return str(candidate)
    return text


def parse_measurements(text: str, base: Path | None = None, field: str = "measurements") -> list[Measurement]:
    """Rows of a measurement CSV (``base``: the CSV's folder, for relative config.json paths)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(f"{field} header", f"missing column {missing[0]!r} (need {', '.join(REQUIRED)})")
    reader.fieldnames = header
    rows = []
    for i, raw in enumerate(reader, start=1):
        if None in raw:
            raise InputError(f"{field} row {i}", "more cells than header columns")
        cell = {k: (v or "").strip() for k, v in raw.items()}
        if not any(cell.values()):
            continue

        def where(col: str) -> str:
            return f"{field} row {i} column {col}"

        for col in REQUIRED:
            if not cell.get(col):
                raise InputError(where(col), "is empty")
        phase = cell["phase"]
        if phase not in PHASES:
            raise InputError(where("phase"), f"expected one of {', '.join(PHASES)}, got {phase!r}")
        length_col = {"prefill": "prompt_len", "decode": "context_len", "train": "seq_len"}[phase]
        if not cell.get(length_col):
            raise InputError(where(length_col), f"is empty; a {phase} row needs it")
        precision = cell.get("precision") or "bf16"
        if precision not in DTYPES:
            raise InputError(where("precision"), f"unknown dtype {precision!r}")
        opt = {c: _int(cell[c], where(c), 0 if c == "context_len" else 1)
               for c in ("prompt_len", "context_len", "seq_len") if cell.get(c)}
        rows.append(Measurement(
            row=i, model=_model(cell["model"], base), gpu=cell["gpu"],
            num_gpus=_int(cell["num_gpus"], where("num_gpus")) if cell.get("num_gpus") else 1,
            tp=_int(cell["tp"], where("tp")) if cell.get("tp") else 1, phase=phase,
            batch=_int(cell["batch"], where("batch")), precision=precision, recompute=cell.get("recompute") or None,
            latency_s=_float(cell["latency_s"], where("latency_s")),
            peak_memory_bytes=_float(cell["peak_memory_bytes"], where("peak_memory_bytes"))
            if cell.get("peak_memory_bytes") else None,
            mode=cell.get("mode") or None, stack=cell.get("stack") or None, **opt))
    if not rows:
        raise InputError(field, "no data rows")
    return rows


def read_measurements(path: str | Path, field: str = "--from-measurements") -> list[Measurement]:
    return parse_measurements(read_bounded(path, field), Path(path).parent, field)
