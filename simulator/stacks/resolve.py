"""One function for every command: a scenario's ``calibration`` -> the profile to price with, and the stack.

``calibration`` is what ``hwmodels.load_profile`` takes (``auto``, ``peak``, ``default``, a GPU's
measured profile, a path or a dict), or a **stack profile** (a JSON path or dict with
``stack_schema_version``; or ``{"stack": <path or dict>, "base": <profile>}``), or ``transfer:<gpu>``
(that GPU's measured profile carried to this one). A stack sits on the GPU's own base profile: the
measured one shipped for it, else -- new here -- the nearest measured profile of the same architecture
carried over by datasheet ratios (:func:`transfer_profile`), else ``default``.

Carrying a profile from GPU S to GPU T keeps its efficiencies (fractions of each GPU's own peaks) and
moves each curve along its size axis by the ratio of the resource that sets how much work a launch
needs to fill the chip: compute curves by the SM count (a launch of F FLOPs on T has the per-SM work
of F * sm_S / sm_T on S: the same waves, hence the same efficiency), memory curves by the HBM
bandwidth (bytes in flight to cover the memory latency grow with bandwidth, Little's law). Per-launch
overheads and the workspace are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwmodels import get_accelerator, load_profile
from hwmodels.errors import InputError
from hwmodels.profile import Curve, KindEfficiency, Profile, builtin_profiles
from simulator.stacks.profile import StackProfile, is_stack_data, read_json, stack_from_dict
from simulator.stacks.transform import corrected_profile


@dataclass(frozen=True)
class Calibration:
    """The profile to price with (stack corrections applied), the stack (or None) and where the base came
    from: ``measured`` (this GPU's shipped profile), ``transferred`` (from ``source``), ``default``,
    ``peak`` or ``user`` (a profile file or dict)."""

    profile: Profile
    stack: StackProfile | None
    base: str
    base_kind: str
    source: str | None = None


def measured_profiles() -> dict[str, Profile]:
    """Shipped measured profiles by the GPU they were measured on."""
    out = {}
    for name in builtin_profiles():
        prof = load_profile(name)
        if prof.device:
            out[prof.device] = prof
    return out


def nearest_measured(gpu) -> str | None:
    """The measured GPU of ``gpu``'s architecture nearest by datasheet (log ratios of bf16 peak and HBM
    bandwidth), or None when its architecture has none."""
    best, best_d = None, math.inf
    for name in measured_profiles():
        src = get_accelerator(name)
        if src.architecture != gpu.architecture or src.vendor != gpu.vendor:
            continue
        d = abs(math.log(src.peak_for("bf16") / gpu.peak_for("bf16"))) + abs(
            math.log(src.hbm_bandwidth_bytes_per_s / gpu.hbm_bandwidth_bytes_per_s))
        if d < best_d:
            best, best_d = name, d
    return best


def _shift(curve: Curve, decades: float) -> Curve:
    if decades == 0.0:
        return curve
    return Curve.model_construct(log10_size=[x + decades for x in curve.log10_size], efficiency=list(curve.efficiency))


def transfer_profile(source: Profile, source_gpu, target_gpu) -> Profile:
    """``source`` (measured on ``source_gpu``) carried to ``target_gpu`` by datasheet ratios."""
    dc = math.log10(target_gpu.sm_count / source_gpu.sm_count)
    dm = math.log10(target_gpu.hbm_bandwidth_bytes_per_s / source_gpu.hbm_bandwidth_bytes_per_s)
    kinds = {}
    for kind, eff in source.kinds.items():
        if kind in ("collective", "host_transfer"):
            kinds[kind] = eff  # links, not the chip: the default's or the source's alpha-beta curves stand
            continue
        kinds[kind] = KindEfficiency.model_construct(compute=_shift(eff.compute, dc), memory=_shift(eff.memory, dm),
                                                     overhead_s=eff.overhead_s,
                                                     basis=f"{eff.basis} | carried from {source_gpu.name}")
    return source.model_copy(update={
        "kinds": kinds, "name": f"{source.name}->{target_gpu.name}", "device": target_gpu.name,
        "description": f"{source.name} carried to {target_gpu.name}: compute curves shifted {dc:+.3f} decades "
                       f"(SM count), memory curves {dm:+.3f} decades (HBM bandwidth)"})


def _base(spec: Any, gpu, field: str) -> tuple[Profile, str, str | None]:
    """(profile, kind, source) for a base-profile spec on ``gpu``."""
    if isinstance(spec, str) and spec.startswith("transfer:"):
        src = spec.split(":", 1)[1]
        measured = measured_profiles()
        if src not in measured:
            raise InputError(field, f"no measured profile for {src!r}; measured: {', '.join(sorted(measured))}")
        return transfer_profile(measured[src], get_accelerator(src), gpu), "transferred", src
    if spec == "auto":
        if gpu.name in builtin_profiles():
            return load_profile(gpu.name, gpu=gpu.name), "measured", None
        src = nearest_measured(gpu)
        if src is not None:
            return transfer_profile(measured_profiles()[src], get_accelerator(src), gpu), "transferred", src
        return load_profile("default"), "default", None
    profile = load_profile(spec, gpu=gpu.name, field=field)
    kind = "measured" if profile.device else (profile.name if profile.name in ("default", "peak") else "user")
    return profile, kind, None


def _stack_spec(spec: Any, field: str) -> tuple[StackProfile | None, Any]:
    """(stack, base spec) when ``spec`` names a stack profile, else (None, spec)."""
    if isinstance(spec, StackProfile):
        return spec, "auto"
    if isinstance(spec, dict) and "stack" in spec and not is_stack_data(spec):
        extra = set(spec) - {"stack", "base"}
        if extra:
            raise InputError(f"{field}.{sorted(extra)[0]}", "unknown key; a calibration mapping takes stack and base")
        stack, _ = _stack_spec(spec["stack"], f"{field}.stack")
        if stack is None:
            raise InputError(f"{field}.stack", "is not a stack profile (no stack_schema_version)")
        return stack, spec.get("base", "auto")
    if is_stack_data(spec):
        return stack_from_dict(spec, field), "auto"
    if isinstance(spec, str) and spec.endswith(".json") and Path(spec).exists():
        data = read_json(spec, field)
        if is_stack_data(data):
            return stack_from_dict(data, field), "auto"
    return None, spec


def resolve_calibration(spec: Any, gpu, field: str = "calibration") -> Calibration:
    """The calibration a scenario asks for on ``gpu`` (an ``Accelerator``): see the module docstring."""
    stack, base_spec = _stack_spec(spec, field)
    base, kind, source = _base(base_spec, gpu, field)
    profile = corrected_profile(base, stack) if stack is not None else base
    return Calibration(profile=profile, stack=stack, base=base.name, base_kind=kind, source=source)
