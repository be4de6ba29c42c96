"""``roofsim calibrate --stack hf`` / ``--stack-module pkg.module:factory``: time a stack on this GPU.

Resolves the models (presets or config.json paths) into roofsim specs, makes the stack for each with
its factory and times the grid of :mod:`validation.stacks.measure`, appending to one CSV. The fit of
that CSV is ``simulator.stacks.fit`` (no GPU needed), called by the CLI afterwards.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Callable

from hwmodels.errors import InputError
from simulator.models import get_model


def load_factory(target: str) -> Callable:
    """``pkg.module:factory`` -> the factory callable (imported from the current Python path)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise InputError("--stack-module", f"{target!r}: expected pkg.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError("--stack-module", f"cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError("--stack-module", f"{module_name!r} has no callable {attr!r}")
    return factory


def factory_for(stack: str | None, stack_module: str | None, mode: str, device, dtype) -> Callable[[dict], object]:
    """``spec -> stack object`` for ``--stack`` / ``--stack-module``."""
    if stack_module:
        factory = load_factory(stack_module)
        return lambda spec: factory(spec, device, dtype)
    if stack == "hf":
        from validation.stacks import hf

        return lambda spec: hf.factory(spec, device, dtype, mode)
    if stack == "torch-unfused":
        from validation.stacks import unfused

        return lambda spec: unfused.factory(spec, device, dtype)
    raise InputError("--stack", f"unknown stack {stack!r}; choose hf or torch-unfused, or pass --stack-module")


def run(*, stack: str | None, stack_module: str | None, models: list[str], mode: str, out_csv: str | Path,
        gpu: str, quick: bool = False, budget_s: float = 600.0, phases=("prefill", "decode"), rounds: int = 1) -> dict:
    """Measure every model; returns the CSV path, the rows and the wall time."""
    import torch

    from validation.stacks import measure

    specs = {name: get_model(name, "--model").model_dump(mode="json") for name in models}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    make = factory_for(stack, stack_module, mode, device, dtype)
    t0 = time.perf_counter()
    rows = measure.measure(make, specs, gpu=gpu, mode=mode, out=out_csv, quick=quick, device=device,
                           precision="bf16" if dtype == torch.bfloat16 else "fp32", budget_s=budget_s,
                           phases=phases, rounds=rounds)
    return {"csv": str(out_csv), "rows": rows, "wall_s": time.perf_counter() - t0}
