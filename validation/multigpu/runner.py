"""Run scripts in this process's group (under torchrun) or in spawned local processes (the CPU tests)."""

from __future__ import annotations

import importlib
import os
import tempfile
from typing import Any

from validation.multigpu import launch


def gpu_name(ctx: launch.Ctx, device: str | None) -> str:
    """The catalog name predictions use: ``--device``, else the GPU's, else h200-sxm (CPU test runs)."""
    if device:
        return device
    if ctx.cuda:
        import torch

        from validation import env as envmod

        name = envmod.catalog_name(torch.cuda.get_device_name(ctx.device))
        if name:
            return name
    return "h200-sxm"


def run_scripts(ctx: launch.Ctx, scripts: list[str], out: str, opts: dict[str, Any]) -> None:
    env = launch.environment(ctx)
    for name in scripts:
        mod = importlib.import_module(f"validation.multigpu.{name}")
        result = mod.run(ctx, opts)
        result["gpu"] = gpu_name(ctx, opts.get("device"))
        launch.write(ctx, out, mod.NAME, result, env)
        ctx.barrier()


def _spawned(rank: int, world: int, init_file: str, scripts: list[str], out: str, opts: dict[str, Any],
             tiny: bool, backend: str | None) -> None:
    import torch.distributed as dist

    ctx = launch.init(tiny=tiny, backend=backend, rank=rank, world=world, init_method=f"file://{init_file}")
    if opts.get("torch_kernels") and not ctx.cuda:
        from validation.multigpu import cpu_kernels

        cpu_kernels.use()
    try:
        run_scripts(ctx, scripts, out, opts)
    finally:
        dist.destroy_process_group()


def spawn(nproc: int, scripts: list[str], out: str, opts: dict[str, Any] | None = None, tiny: bool = False,
          backend: str | None = None) -> None:
    """Run ``scripts`` on ``nproc`` local processes (gloo unless ``backend`` says otherwise)."""
    import torch.multiprocessing as mp

    os.environ.update(launch.MULTICAST_OFF)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_spawned, args=(nproc, os.path.join(tmp, "init"), scripts, out, opts or {}, tiny, backend),
                 nprocs=nproc, join=True)
