"""Calibration profiles: how much of each datasheet peak a kind of kernel reaches.

A profile maps an operation kind (``gemm``, ``attention_prefill``, ``attention_decode``,
``memory``, ``collective``, ``host_transfer``, and optionally ``grouped_gemm``) to two efficiency
curves and a fixed per-kernel overhead:

* ``compute``: fraction of peak FLOP/s, as a function of log10(FLOPs of one kernel launch);
* ``memory``: fraction of peak HBM bandwidth, as a function of log10(bytes of one kernel launch).

Kernel size is the shape variable because it is what a roofline model knows about every operator,
and because small launches are what fall short of the peaks (tail effects, too few CTAs to fill the
SMs, launch latency). Curves are piecewise linear in log space (``np.interp``), so evaluation is
vectorised over any number of shapes. ``peak`` is 1.0 everywhere with no overhead (the seed paper's
theoretical peak); ``default`` holds documented generic efficiencies; measured profiles are written
by ``roofsim calibrate`` and keep their raw points.

``grouped_gemm`` (the routed experts of a mixture-of-experts layer, run as one grouped GEMM launch per
projection: vLLM's fused_moe, MegaBlocks' grouped kernels, ``torch._grouped_mm``) is optional: a profile
without it, such as ``peak``, ``default`` or one measured before the kind existed, prices grouped GEMMs
with its ``gemm`` efficiencies (:data:`KIND_FALLBACK`). Its curves are over the size of the whole
grouped launch (the FLOPs and bytes of all its groups together), as for any other launch.

Collectives have one ``collective`` kind (all-reduce at the largest group measured), and a measured
profile may also keep a curve per collective and group size in ``measurements.collectives.groups``
(``{collective: {group size: KindEfficiency}}``, written by ``roofsim calibrate`` on a multi-GPU machine
and by ``validation.collectives.refit_groups``). ``Profile.collective_efficiency`` picks the curve a
collective is priced with, in this order:

1. the collective's own curve at the measured group size nearest the ranks it runs on (nearest in
   log2; a tie goes to the larger group);
2. all-reduce's curve at the nearest group size;
3. the ``collective`` kind.
"""

from __future__ import annotations

import bisect
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PrivateAttr, ValidationError, model_validator

from hwmodels.errors import InputError, unknown_name, validated
from hwmodels.io import PROFILE_LIMIT_BYTES, read_text_bounded

_LN10 = math.log(10.0)
_FLAT_TOP_MIN_SIZE = 1 << 16  # below this a mask costs more than the logarithms it saves
_bisect_right = bisect.bisect_right
SCHEMA_VERSION = 1
PROFILE_DIR = Path(__file__).parent / "profiles"

OpKind = Literal["gemm", "attention_prefill", "attention_decode", "memory", "collective", "host_transfer",
                 "grouped_gemm", "gemm_dgrad", "gemm_wgrad", "attention_backward", "optimizer", "optimizer_bf16",
                 "cross_entropy", "cross_entropy_backward", "gemm_fp8"]
# Kinds every profile must have.
OP_KINDS: tuple[str, ...] = ("gemm", "attention_prefill", "attention_decode", "memory", "collective", "host_transfer")
# Kinds a profile may leave out, and the kind whose efficiencies stand in for them.
# Training kinds (simulator.training) fall back to the forward kind they resemble: the backward GEMMs to
# ``gemm``, FlashAttention's backward to ``attention_prefill``, the fused optimizer step and the fp32
# cross-entropy to ``memory``; the optimizer step over bf16 parameters and states (``optimizer_bf16``:
# PyTorch's fused AdamW moves bf16 lists at 2.7-2.8 TB/s on an H200 against 3.4-3.5 TB/s for fp32 ones,
# its per-element work no longer hidden behind half the bytes) to the optimizer's own curve; the loss's
# backward (``cross_entropy_backward``: 2.9-3.8 TB/s on an H200 against the bytes it is counted, where its
# forward runs at 2.0-2.3 TB/s) to the loss's.
# W8A8 fp8 GEMMs (``gemm_fp8``: ``torch._scaled_mm`` on cuBLASLt, ``validation.fp8_gemm``), against the fp8
# peak, to ``gemm``'s bf16 efficiencies (``simulator.techniques.weights`` reprices fp8 GEMMs with them).
# A stack's element-wise kernels on PyTorch's non-vectorised strided loop (``strided``) and its atomic
# scatter-adds (``atomic``, ``index_add_``) take the memory curve, which the stack corrects
# (simulator.stacks).
KIND_FALLBACK: dict[str, str] = {"grouped_gemm": "gemm", "gemm_dgrad": "gemm", "gemm_wgrad": "gemm",
                                 "attention_backward": "attention_prefill", "optimizer": "memory",
                                 "optimizer_bf16": "optimizer", "cross_entropy_backward": "cross_entropy",
                                 "cross_entropy": "memory", "strided": "memory", "atomic": "memory",
                                 "gemm_fp8": "gemm"}
OPTIONAL_KINDS: tuple[str, ...] = tuple(KIND_FALLBACK)
# Collectives a profile may hold its own curves for (``measurements.collectives.groups``); a missing one
# falls back to its own curve at the nearest group size, then all-reduce's, then the ``collective`` kind.
COLLECTIVES: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
# Kinds that are matrix multiplies (techniques that change GEMMs change both).
GEMM_KINDS: tuple[str, ...] = ("gemm", "grouped_gemm")


class Curve(BaseModel):
    """Efficiency (0, 1] against log10 of a size, linear in between, flat beyond the ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log10_size: list[float] = Field(min_length=1)
    efficiency: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> "Curve":
        if len(self.log10_size) != len(self.efficiency):
            raise ValueError("log10_size and efficiency differ in length")
        if any(b <= a for a, b in zip(self.log10_size, self.log10_size[1:])):
            raise ValueError("log10_size must be strictly increasing")
        if not all(0.0 < e <= 1.0 for e in self.efficiency):
            raise ValueError("efficiency values must lie in (0, 1]")
        return self

    def __call__(self, size) -> np.ndarray:
        """Efficiency at ``size`` (scalar or array, in FLOPs or bytes)."""
        x = np.maximum(np.asarray(size, dtype=float), 1.0)
        x = np.log(x, out=x) if isinstance(x, np.ndarray) else np.log(x)  # in place: a new array
        return np.interp(x, self._ln_size(), self.efficiency)

    def _ln_size(self) -> list[float]:
        """The knots as natural logs: numpy's ``log`` is vectorised where ``log10`` is not (a third
        faster on a sweep's grid), and interpolating ln(size) between ln(knots) is the same line."""
        return [x * _LN10 for x in self.log10_size]

    def size_over(self, size: np.ndarray, factor: float) -> np.ndarray:
        """``size * factor / self(size)`` for an array ``size`` and a scalar ``factor``, in one new array
        (a sweep's grid is allocated once and passed over three times): the knots are divided by
        ``factor`` before interpolating, and sizes are not clamped to 1 where the first knot is at 1 or
        above (the log of a size below 1, or -inf at 0, is then below every knot, as the log of 1 is).

        Where most of a large array lies beyond the last knot (the curve's flat top: a sweep's attention
        over long contexts), those sizes are divided by the top efficiency as they are, and only the
        others pay for the logarithm and the interpolation: the same values, bit for bit."""
        if size.size >= _FLAT_TOP_MIN_SIZE and len(self.log10_size) > 1:
            # beyond ``top`` ln(size) is above the last knot however it rounds, so interp gives the last value
            top = math.exp(self.log10_size[-1] * _LN10) * (1.0 + 1e-12)
            inside = size < top
            n_inside = int(np.count_nonzero(inside))
            if 2 * n_inside < size.size:
                out = np.divide(size, self.efficiency[-1] / factor)
                if n_inside:
                    out[inside] = self._size_over_all(size[inside], factor)
                return out
        return self._size_over_all(size, factor)

    def _size_over_all(self, size: np.ndarray, factor: float) -> np.ndarray:
        xs = self._ln_size()
        if xs[0] >= 0.0:
            with np.errstate(divide="ignore"):
                x = np.log(size)
        else:
            x = np.maximum(size, 1.0)
            np.log(x, out=x)
        eff = np.interp(x, xs, [y / factor for y in self.efficiency])
        return np.divide(size, eff, out=x)

    def at(self, size: float) -> float:
        """``self(size)`` for one scalar size, in floats (no numpy call; the point path of pricing)."""
        xs, ys = self.log10_size, self.efficiency
        if len(xs) == 1:  # a constant
            return ys[0]
        x = math.log10(size) if size > 1.0 else 0.0
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        i = _bisect_right(xs, x)
        x0, y0 = xs[i - 1], ys[i - 1]
        return y0 + (ys[i] - y0) * (x - x0) / (xs[i] - x0)

    @classmethod
    def constant(cls, value: float) -> "Curve":
        return cls(log10_size=[0.0], efficiency=[value])


class KindEfficiency(BaseModel):
    """Efficiencies and launch overhead of one operation kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    compute: Curve = Curve.constant(1.0)
    memory: Curve = Curve.constant(1.0)
    overhead_s: NonNegativeFloat = 0.0
    basis: str = Field("", description="where these numbers come from")


class Profile(BaseModel):
    """A calibration profile (schema-versioned JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int
    name: str
    description: str = ""
    device: str | None = Field(None, description="accelerator name the profile was measured on, if any")
    kinds: dict[OpKind, KindEfficiency]
    workspace_bytes: NonNegativeFloat = Field(
        0.0, description="device memory the runtime holds besides weights, KV and activations"
    )
    environment: dict[str, Any] = Field(default_factory=dict, description="device, driver, versions, date")
    achieved_peaks: dict[str, float] = Field(default_factory=dict)
    measurements: dict[str, Any] = Field(default_factory=dict, description="raw points, kept for inspection")
    command: str = Field("", description="the command that produced this profile")
    _collective_curves: dict[str, dict[int, KindEfficiency]] | None = PrivateAttr(None)
    _collective_picks: dict[tuple, tuple[str, int] | None] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> "Profile":
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not supported (expected {SCHEMA_VERSION})")
        missing = [k for k in OP_KINDS if k not in self.kinds]
        if missing:
            raise ValueError(f"no efficiencies for {', '.join(missing)}")
        self._collective_curves = _collective_curves(self.measurements)
        return self

    def collective_efficiency(self, collective: str, ranks) -> KindEfficiency:
        """The efficiencies ``collective`` over ``ranks`` GPUs is priced with: its own curve at the measured
        group size nearest ``ranks`` (log2; ties to the larger), else all-reduce's, else the ``collective`` kind."""
        private = self.__pydantic_private__  # one lookup (private attributes are slow to reach one by one)
        if private["_collective_curves"] is None:  # a copy made without validation
            private["_collective_curves"] = _collective_curves(self.measurements)
        curves, picks, key = private["_collective_curves"], private["_collective_picks"], (collective, ranks)
        if key not in picks:  # (curve's collective, group size), or None: the kind
            name = "send_recv" if collective == "p2p" else collective
            name = name if name in curves else ("all_reduce" if "all_reduce" in curves else None)
            target = math.log2(max(float(ranks), 1.0))
            picks[key] = None if name is None else (name, min(curves[name],
                                                              key=lambda n: (abs(math.log2(n) - target), -n)))
        pick = picks[key]
        return self.kinds["collective"] if pick is None else curves[pick[0]][pick[1]]

    def kind(self, kind: str) -> KindEfficiency:
        """Efficiencies of ``kind``; an optional kind the profile lacks falls back (``KIND_FALLBACK``, in turn)."""
        while kind not in self.kinds and kind in KIND_FALLBACK:
            kind = KIND_FALLBACK[kind]
        return self.kinds[kind]

    def has_kind(self, kind: str) -> bool:
        """Whether the profile has its own efficiencies for ``kind`` (not a fallback's)."""
        return kind in self.kinds


def _collective_curves(measurements: dict[str, Any]) -> dict[str, dict[int, KindEfficiency]]:
    """``measurements.collectives.groups`` as {collective: {group size: KindEfficiency}}; entries without an
    ``efficiency`` (alpha-beta fits only) are skipped, a malformed one is an error naming it."""
    groups = (measurements.get("collectives") or {}).get("groups") or {}
    if not isinstance(groups, dict):
        raise ValueError("measurements.collectives.groups must map collectives to group sizes")
    out: dict[str, dict[int, KindEfficiency]] = {}
    for name, by_size in groups.items():
        if name not in COLLECTIVES or not isinstance(by_size, dict):
            raise ValueError(f"measurements.collectives.groups: unknown collective {name!r} "
                             f"(expected one of {', '.join(COLLECTIVES)})")
        for size, entry in by_size.items():
            if not isinstance(entry, dict) or "efficiency" not in entry:
                continue
            if not str(size).isdigit() or int(size) < 1:
                raise ValueError(f"measurements.collectives.groups.{name}: group size {size!r} is not a count")
            try:
                out.setdefault(name, {})[int(size)] = KindEfficiency.model_validate(entry["efficiency"])
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise ValueError(f"measurements.collectives.groups.{name}.{size}.efficiency"
                                 f"{'.' + where if where else ''}: {first['msg']}") from None
    return out


def builtin_profiles() -> list[str]:
    """Names of the shipped profiles (``peak``, ``default`` and measured ones named after a GPU)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def profile_from_dict(data: dict[str, Any], field: str = "calibration") -> Profile:
    return validated(Profile, data, field)


@lru_cache(maxsize=None)
def _load_path(path: str, field: str) -> Profile:
    text = read_text_bounded(path, PROFILE_LIMIT_BYTES, field)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(field, f"cannot read profile {path!r}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise InputError(field, f"profile {path!r} is not a JSON object")
    return profile_from_dict(data, field)


def load_profile(spec: str | dict[str, Any] | Profile, gpu: str | None = None, field: str = "calibration") -> Profile:
    """A profile by name (``peak``, ``default``, a GPU name), path, dict, or ``auto``.

    ``auto`` picks the measured profile shipped for ``gpu`` when there is one, else ``default``.
    A measured profile used for a different GPU is rejected: its efficiencies describe another chip.
    """
    if isinstance(spec, Profile):
        profile = spec
    elif isinstance(spec, dict):
        profile = profile_from_dict(spec, field)
    elif spec == "auto":
        name = gpu if gpu in builtin_profiles() else "default"
        profile = _load_path(str(PROFILE_DIR / f"{name}.json"), field)
    elif spec in builtin_profiles():
        profile = _load_path(str(PROFILE_DIR / f"{spec}.json"), field)
    elif isinstance(spec, str) and (spec.endswith(".json") or Path(spec).exists()):
        profile = _load_path(spec, field)
    else:
        raise unknown_name(field, str(spec), [*builtin_profiles(), "auto"])
    if profile.device and gpu and profile.device != gpu:
        raise InputError(field, f"profile {profile.name!r} was measured on {profile.device}, not {gpu}")
    return profile
