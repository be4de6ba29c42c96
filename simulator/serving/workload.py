"""Request streams for the serving simulator: when requests arrive and how long they are.

Arrivals: ``poisson`` (exponential gaps, mean 1/rate), ``gamma:CV`` (gamma gaps with coefficient of
variation CV, shape 1/CV², scale CV²/rate: CV = 1 is Poisson, CV > 1 bursty), ``fixed`` (gaps of exactly
1/rate) or ``trace:FILE`` (a CSV of arrival times and lengths). A trace is either roofsim's
``arrival_s,prompt_tokens,output_tokens`` or the Azure LLM inference trace published with Splitwise
(Patel et al. 2024, arXiv 2311.18677; https://github.com/Azure/AzurePublicDataset):
``TIMESTAMP,ContextTokens,GeneratedTokens`` with date-time stamps. With a ``rate``, a trace's gaps are
rescaled to that mean rate.

Lengths: an integer, ``uniform:A,B`` (integers, inclusive), ``lognormal:MEDIAN,SIGMA`` (exp of a normal
with mean ln MEDIAN and standard deviation SIGMA, rounded, at least 1) or ``trace``.

Prefix groups model shared prompt prefixes (system prompts, few-shot templates) for prefix caching: a
request joins group g with probability ``popularity_g`` (the remainder join none) and its prompt is the
group's ``length`` shared tokens followed by its own sampled prompt tokens.

Everything is drawn from one ``numpy.random.default_rng(seed)`` in a fixed order: same seed, same stream.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from hwmodels.errors import InputError, validated
from hwmodels.io import read_text_bounded

MAX_TRACE_BYTES = 256 * 2**20  # a trace file larger than this is refused (Azure's week-long code trace is ~1 GB)
REQUEST_DTYPE = np.dtype([("arrival_s", "f8"), ("prompt_tokens", "i8"), ("output_tokens", "i8"),
                          ("prefix_group", "i4"), ("prefix_tokens", "i8")])


class PrefixGroup(BaseModel):
    """A prompt prefix shared by a share ``popularity`` of the requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    length: PositiveInt = Field(description="shared tokens at the start of the prompt")
    popularity: float = Field(gt=0.0, le=1.0, description="share of requests that start with this prefix")


def _parse_length(spec: str | int) -> tuple[str, tuple[float, ...]]:
    """('fixed', (n,)), ('uniform', (a, b)), ('lognormal', (median, sigma)) or ('trace', ())."""
    text = str(spec).strip()
    kind, _, args = text.partition(":")
    try:
        if not args and kind.isdigit() and int(kind) > 0:
            return "fixed", (int(kind),)
        if kind == "trace" and not args:
            return "trace", ()
        values = tuple(float(v) for v in args.split(","))
    except ValueError:
        values = ()
    if kind == "uniform" and len(values) == 2 and 1 <= values[0] <= values[1] and all(v == int(v) for v in values):
        return kind, values
    if kind == "lognormal" and len(values) == 2 and values[0] >= 1 and values[1] >= 0:
        return kind, values
    raise ValueError(f"{text!r} is not a length: use N, uniform:A,B, lognormal:MEDIAN,SIGMA or trace")


def _parse_arrival(spec: str) -> tuple[str, str]:
    kind, _, arg = spec.strip().partition(":")
    if kind in ("poisson", "fixed") and not arg:
        return kind, ""
    if kind == "gamma":
        try:
            if float(arg) > 0 and np.isfinite(float(arg)):
                return kind, arg
        except ValueError:
            pass
        raise ValueError(f"{spec!r}: gamma needs a positive coefficient of variation, e.g. gamma:2")
    if kind == "trace" and arg:
        return kind, arg
    raise ValueError(f"{spec!r} is not an arrival process: use poisson, gamma:CV, fixed or trace:FILE")


class Workload(BaseModel):
    """The request stream a deployment serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float | None = Field(None, gt=0.0, description="mean arrival rate, requests/s (a trace may omit it)")
    num_requests: PositiveInt = Field(1000, le=10_000_000)
    arrival: str = Field("poisson", description="poisson, gamma:CV, fixed or trace:FILE")
    prompt_len: str | int = Field(1024, description="N, uniform:A,B, lognormal:MEDIAN,SIGMA or trace")
    output_len: str | int = Field(256, description="N, uniform:A,B, lognormal:MEDIAN,SIGMA or trace")
    prefixes: list[PrefixGroup] = Field(default_factory=list, max_length=10_000)
    seed: int = 0

    @field_validator("arrival")
    @classmethod
    def _arrival(cls, value: str) -> str:
        _parse_arrival(value)
        return value

    @field_validator("prompt_len", "output_len")
    @classmethod
    def _length(cls, value: str | int) -> str | int:
        _parse_length(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Workload":
        trace = self.arrival.startswith("trace:")
        if not trace and self.rate is None:
            raise ValueError("rate is required unless arrivals come from a trace")
        for name in ("prompt_len", "output_len"):
            if _parse_length(getattr(self, name))[0] == "trace" and not trace:
                raise ValueError(f"{name}=trace needs arrival=trace:FILE")
        if sum(p.popularity for p in self.prefixes) > 1.0 + 1e-9:
            raise ValueError("prefix popularities add up to more than 1")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "Workload":
        return validated(cls, data, "workload")

    def requests(self) -> np.ndarray:
        """The stream as a structured array (``REQUEST_DTYPE``), sorted by arrival."""
        rng = np.random.default_rng(self.seed)
        n = self.num_requests
        kind, arg = _parse_arrival(self.arrival)
        trace = _read_trace(Path(arg), n) if kind == "trace" else None
        if trace is not None:
            n = len(trace)
            arrival = trace["arrival_s"] - trace["arrival_s"][0]
            if self.rate is not None and n > 1 and arrival[-1] > 0:
                arrival = arrival * ((n - 1) / arrival[-1] / self.rate)
        else:
            rate = float(self.rate)
            if kind == "poisson":
                gaps = rng.exponential(1.0 / rate, n)
            elif kind == "gamma":
                cv2 = float(arg) ** 2
                gaps = rng.gamma(1.0 / cv2, cv2 / rate, n)
            else:
                gaps = np.full(n, 1.0 / rate)
            arrival = np.cumsum(gaps)
        out = np.zeros(n, dtype=REQUEST_DTYPE)
        out["arrival_s"] = arrival
        out["prompt_tokens"] = _lengths(self.prompt_len, n, rng, None if trace is None else trace["prompt_tokens"])
        out["output_tokens"] = _lengths(self.output_len, n, rng, None if trace is None else trace["output_tokens"])
        out["prefix_group"] = -1
        if self.prefixes:
            probs = np.array([p.popularity for p in self.prefixes] + [0.0])
            probs[-1] = max(0.0, 1.0 - probs[:-1].sum())
            group = rng.choice(len(probs), size=n, p=probs / probs.sum())
            has = group < len(self.prefixes)
            lengths = np.array([p.length for p in self.prefixes] + [0])
            out["prefix_group"] = np.where(has, group, -1)
            out["prefix_tokens"] = lengths[group]
            out["prompt_tokens"] += out["prefix_tokens"]
        return out


def _lengths(spec: str | int, n: int, rng: np.random.Generator, from_trace: np.ndarray | None) -> np.ndarray:
    kind, args = _parse_length(spec)
    if kind == "fixed":
        return np.full(n, int(args[0]), dtype=np.int64)
    if kind == "uniform":
        return rng.integers(int(args[0]), int(args[1]) + 1, n).astype(np.int64)
    if kind == "lognormal":
        draw = np.exp(rng.normal(np.log(args[0]), args[1], n))
        return np.maximum(np.rint(np.minimum(draw, 1e9)), 1).astype(np.int64)
    assert from_trace is not None
    return np.maximum(from_trace, 1).astype(np.int64)


_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_PLAIN = ("arrival_s", "prompt_tokens", "output_tokens")


def _read_trace(path: Path, limit: int) -> np.ndarray:
    """The first ``limit`` rows of a trace CSV, sorted by arrival (times in seconds, any origin)."""
    field = "workload.arrival"
    text = read_text_bounded(path, MAX_TRACE_BYTES, field)
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    for names in (_AZURE, _PLAIN):
        if all(name in header for name in names):
            cols = [header.index(name) for name in names]
            break
    else:
        raise InputError(field, f"{str(path)!r}: header needs {','.join(_PLAIN)} or {','.join(_AZURE)}")
    times, prompts, outputs = [], [], []
    for line, row in enumerate(reader, start=2):
        if len(times) >= limit:
            break
        if not row:
            continue
        try:
            stamp, prompt, output = (row[c].strip() for c in cols)
            times.append(float(stamp) if names is _PLAIN else _seconds(stamp))
            prompts.append(int(prompt))
            outputs.append(int(output))
        except (IndexError, ValueError):
            raise InputError(field, f"{str(path)!r} line {line}: expected a time and two token counts") from None
    if not times:
        raise InputError(field, f"{str(path)!r} has no requests")
    arr = np.zeros(len(times), dtype=[("arrival_s", "f8"), ("prompt_tokens", "i8"), ("output_tokens", "i8")])
    arr["arrival_s"], arr["prompt_tokens"], arr["output_tokens"] = times, prompts, outputs
    if not np.all(np.isfinite(arr["arrival_s"])):
        raise InputError(field, f"{str(path)!r}: arrival times must be finite")
    return np.sort(arr, order="arrival_s", kind="stable")


def _seconds(stamp: str) -> float:
    """An Azure trace time stamp ('2023-11-16 18:15:46.6805900') in seconds since the epoch."""
    date, _, frac = stamp.replace(" ", "T").partition(".")
    whole = np.datetime64(date, "s").astype(np.int64)
    return float(whole) + (float("0." + frac) if frac else 0.0)
