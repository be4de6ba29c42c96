"""The harness every multi-GPU script shares: the process group, timing, the environment, results files.

A script is a module with ``NAME`` and ``run(ctx, opts) -> dict`` (its ``cases`` and any extra keys);
``python -m validation.multigpu`` starts them under ``torchrun`` (one process per GPU, NCCL) or, for
the CPU tests, under ``torch.multiprocessing.spawn`` with gloo. Rank 0 writes ``<out>/<NAME>.json``.

Timing: every sample starts after a barrier of the case's group; each rank times it with CUDA events
(CPU: ``perf_counter``); the per-sample times are reduced with MAX over the group, so a sample is the
slowest rank's; a case reports the median and the 90th percentile of those samples.

NVLink multicast stays off (NVLS, symmetric-memory multicast, NVSHMEM NVLS): the lent machines do not
support it, and a run with it on would measure a different algorithm than the shipped profile.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
SCHEMA = 1
DEGREES = (2, 4, 8)


@dataclass
class Ctx:
    """One rank's view of the run."""

    rank: int
    world: int
    backend: str
    device: Any  # torch.device
    tiny: bool = False
    groups: dict[int, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def degrees(self, wanted: tuple[int, ...] = DEGREES) -> list[int]:
        """The group sizes this world can run: those of ``wanted`` that fit, else 1 (a one-GPU group)."""
        return [d for d in wanted if d <= self.world] or [1]

    def group(self, size: int):
        """The process group of ranks 0..size-1 (made once; every rank must ask, in the same order)."""
        import torch.distributed as dist

        if size not in self.groups:
            self.groups[size] = dist.new_group(list(range(size)))
        return self.groups[size]

    def barrier(self, size: int | None = None) -> None:
        import torch.distributed as dist

        if size is None or size == self.world:
            dist.barrier()
        else:
            dist.barrier(group=self.group(size))

    def reduce_max(self, values, size: int | None = None) -> list[float]:
        """Element-wise MAX over the ranks 0..size-1 (the whole world by default)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=None if size in (None, self.world) else self.group(size))
        return [float(v) for v in t.tolist()]

    def all_agree(self, flag: bool, size: int | None = None) -> bool:
        """True when ``flag`` holds on every rank of the group."""
        return self.reduce_max([0.0 if flag else 1.0], size)[0] == 0.0


def chosen(opts: dict[str, Any], known: tuple[str, ...]) -> list[str]:
    """The models of ``--models`` this script runs (those in ``known``), or all of ``known``."""
    wanted = opts.get("models")
    return list(known) if not wanted else [m for m in wanted if m in known]


def init(tiny: bool = False, backend: str | None = None, rank: int | None = None, world: int | None = None,
         init_method: str | None = None) -> Ctx:
    """Join the process group: from torchrun's environment, or from the arguments (spawned tests)."""
    import torch
    import torch.distributed as dist

    os.environ.update(MULTICAST_OFF)
    if rank is None:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        init_method = "env://"
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        dist.init_process_group("nccl", init_method=init_method, rank=rank, world_size=world, device_id=device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # one process per core: no oversubscription
        dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    return Ctx(rank=rank, world=world, backend=backend, device=device, tiny=tiny)


def capture(ctx: Ctx, fn: Callable[[], Any], size: int, iters: int = 1):
    """A CUDA graph of ``iters`` calls of ``fn`` if every rank of the group captured one, else None
    (CPU, or a call that cannot be captured): callers then time ``fn`` eagerly."""
    graph = None
    if ctx.cuda:
        from validation.collectives import capture_graph

        graph = capture_graph(fn, iters)
    return graph if ctx.all_agree(graph is not None, size) else None


def time_samples(ctx: Ctx, fn: Callable[[], Any], size: int, repeats: int, inner: int = 1, warmup: int = 2
                 ) -> dict[str, float]:
    """Median and p90 over ``repeats`` samples of ``fn`` (each ``inner`` calls, time divided by
    ``inner``), each sample the slowest rank's of the group ranks 0..size-1 (one sample, no warm-up,
    in a tiny run)."""
    import torch

    if ctx.tiny:  # the CPU tests check that the path runs, not how fast
        repeats, warmup = 1, 0
    for _ in range(warmup):
        fn()
    if ctx.cuda:
        torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        ctx.barrier(size)
        if ctx.cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(inner):
                fn()
            e.record()
            e.synchronize()
            samples.append(s.elapsed_time(e) * 1e-3 / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    worst = np.asarray(ctx.reduce_max(samples, size))
    return {"median_s": float(np.median(worst)), "p90_s": float(np.percentile(worst, 90)),
            "min_s": float(worst.min()), "repeats": int(repeats)}


def topology() -> str | None:
    """``nvidia-smi topo -m``: which GPU pairs talk over NVLink/NVSwitch (NV#) or PCIe (PIX, SYS...)."""
    try:
        out = subprocess.run(["nvidia-smi", "topo", "-m"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def environment(ctx: Ctx) -> dict[str, Any]:
    """Device and software versions (``validation.env`` on a GPU), world, backend, NCCL, topology."""
    import torch

    if ctx.cuda:
        from validation import env as envmod

        env = envmod.environment(ctx.device.index or 0)
        env["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
    else:
        env = {"device_name": "cpu", "catalog_name": None, "torch": torch.__version__,
               "python": platform.python_version(),
               "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    env.update({"world": ctx.world, "backend": ctx.backend, "platform": platform.platform(),
                "multicast": {k: os.environ.get(k) for k in MULTICAST_OFF},
                "nccl_env": {k: v for k, v in os.environ.items() if k.startswith("NCCL_")},
                "topology": topology() if ctx.cuda else None})
    return env


def command_line() -> str:
    """The command that started this run (the launcher passes it down; else this process's argv)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("multigpu", "__main__.py")):
        argv[:1] = ["-m", "validation.multigpu"]
    return os.environ.get("ROOFSIM_MULTIGPU_COMMAND") or " ".join(["python", *argv])


def write(ctx: Ctx, out: str | Path, name: str, result: dict[str, Any], env: dict[str, Any]) -> Path | None:
    """Rank 0 writes ``<out>/<name>.json``: the script, command, environment and cases."""
    if ctx.rank != 0:
        return None
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "script": name, "command": command_line(), "tiny": ctx.tiny, "environment": env,
           **result}
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return path


def torchrun_command(nproc: int, scripts: list[str], out: str, extra: list[str] | None = None) -> list[str]:
    """The torchrun line for ``scripts`` on ``nproc`` GPUs of this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "validation.multigpu", *scripts, "--out", out, *(extra or [])]


def launch(nproc: int, scripts: list[str], out: str, extra: list[str] | None = None) -> int:
    """Run ``scripts`` under torchrun with NVLink multicast off; returns torchrun's exit status."""
    cmd = torchrun_command(nproc, scripts, out, extra)
    shown = f"torchrun --standalone --nproc-per-node={nproc} -m validation.multigpu {' '.join(scripts)} --out {out}"
    shown += "".join(f" {e}" for e in extra or [])
    env = {**os.environ, **MULTICAST_OFF, "ROOFSIM_MULTIGPU_COMMAND": shown}
    return subprocess.run(cmd, env=env).returncode
