"""Helpers shared by the kernel modules: argument checks, launch configs, device queries."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import torch
import triton

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreter_active() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    try:
        return bool(triton.knobs.runtime.interpret)
    except AttributeError:  # older Triton without knobs
        return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def _fix_interpreter_scalar_index() -> None:
    """Let the Triton 3.6 interpreter run loops with runtime bounds under NumPy >= 2.4.

    The interpreter turns every scalar into a one-element array and converts it back with
    ``int(array)``, which NumPy 2.4 rejects, so ``for i in range(0, n)`` with a runtime ``n`` fails
    (triton-lang/triton#9171, fixed upstream after 3.6). Wrap the interpreter's tensor patching so
    that ``__index__`` squeezes first. Only applied in interpreter mode and only if NumPy rejects
    the conversion; on a GPU nothing changes.
    """
    import numpy as np

    try:
        int(np.zeros(1, dtype=np.int32))
        return
    except TypeError:
        pass
    try:
        from triton.runtime import interpreter as _interp
    except ImportError:
        return
    orig = getattr(_interp, "_patch_lang_tensor", None)
    if orig is None or getattr(orig, "_roofsim_fixed", False):
        return

    def _patch_lang_tensor(tensor, scope):
        orig(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    _patch_lang_tensor._roofsim_fixed = True
    _interp._patch_lang_tensor = _patch_lang_tensor


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def check_tensor(t: Any, name: str, *, ndim: int | None = None, dtypes=None) -> None:
    require(isinstance(t, torch.Tensor), f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None:
        require(t.dim() == ndim, f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if dtypes is not None:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        require(t.dtype in dtypes, f"{name} has dtype {t.dtype}; supported: {names}")


def check_device(*named: tuple[str, torch.Tensor]) -> torch.device:
    """All tensors on one device, and that device can run Triton kernels in this process."""
    dev = named[0][1].device
    for name, t in named[1:]:
        require(t.device == dev, f"{name} is on {t.device} but {named[0][0]} is on {dev}")
    if interpreter_active():
        require(dev.type == "cpu", f"under TRITON_INTERPRET=1 tensors must be on the CPU, got {dev}")
    else:
        require(dev.type == "cuda", f"Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 with CPU tensors), got {dev}")
    return dev


def check_last_dim_contiguous(t: torch.Tensor, name: str) -> None:
    require(
        t.shape[-1] <= 1 or t.stride(-1) == 1,
        f"{name} must be contiguous in its last dimension (stride {t.stride(-1)})",
    )


def check_out(out: torch.Tensor | None, name: str, shape, dtype, device) -> None:
    if out is None:
        return
    check_tensor(out, name)
    require(tuple(out.shape) == tuple(shape), f"{name} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    require(out.dtype == dtype, f"{name} has dtype {out.dtype}, expected {dtype}")
    require(out.device == device, f"{name} is on {out.device}, expected {device}")


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors on a CUDA device; a small stand-in for the CPU interpreter."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def dot_precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    """``input_precision`` for ``tl.dot``: exact fp32 products unless TF32 is asked for."""
    return "tf32" if (dtype != torch.float32 or allow_tf32) else "ieee"


def interpreter_upcast_dot(dtype: torch.dtype) -> bool:
    """Whether kernels should cast ``tl.dot`` operands to fp32 before the product.

    The Triton interpreter stores bf16 as uint16 and its ``tl.dot`` multiplies the raw bit patterns
    (bf16 arithmetic is unsupported there; the documented workaround is an fp32 cast). Products of
    bf16 values are exact in fp32, so the upcast gives what a bf16 MMA with fp32 accumulation gives.
    Always False on a GPU, where the kernels feed bf16 straight to the tensor cores.
    """
    return dtype == torch.bfloat16 and interpreter_active()


def fp8_supported(device: torch.device | str | None = None) -> bool:
    """float8_e4m3fn GEMM inputs: needs the torch dtype and a CUDA device of compute capability >= 8.9."""
    if not hasattr(torch, "float8_e4m3fn") or interpreter_active():
        return False
    if not torch.cuda.is_available():
        return False
    device = torch.device("cuda") if device is None else torch.device(device)
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def parse_config(cls, spec: Any):
    """Build the dataclass ``cls`` from an instance, a mapping, or a string ``"KEY=VAL,KEY=VAL"``.

    Fields left out keep their defaults; unknown keys and non-integer values raise ValueError.
    """
    if isinstance(spec, cls):
        return spec
    names = {f.name for f in dataclasses.fields(cls)}
    if isinstance(spec, str):
        items: dict[str, Any] = {}
        for part in spec.replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            require("=" in part, f"bad {cls.__name__} entry {part!r}: expected KEY=VALUE")
            key, val = (s.strip() for s in part.split("=", 1))
            items[key] = val
    elif isinstance(spec, Mapping):
        items = dict(spec)
    else:
        raise ValueError(f"cannot build {cls.__name__} from {type(spec).__name__}")
    unknown = set(items) - names
    require(not unknown, f"unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for key, val in items.items():
        try:
            kwargs[key] = int(val)
        except (TypeError, ValueError):
            raise ValueError(f"{cls.__name__}.{key} must be an integer, got {val!r}") from None
    try:
        cfg = cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"incomplete {cls.__name__} {spec!r}: {exc}") from None
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


if interpreter_active():
    _fix_interpreter_scalar_index()


def is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0
