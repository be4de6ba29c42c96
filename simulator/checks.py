"""Checks of a resolved scenario that need the model and the GPU: errors for what cannot run, and
warnings for what runs but is not what the user likely meant.

* Compute formats: a matmul runs at a low-precision tensor-core rate only on a chip that has that
  format (Hopper and Ada have FP8, Blackwell FP4; Ampere has neither: A100 datasheet,
  https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf).
  ``precision.compute`` in fp8/fp4/int8/int4 on a chip whose catalog entry lacks that peak is an error
  naming the chip's formats. *Weights* stored in fp8 or fp4 on such a chip are fine: they are
  dequantised to the compute format in the GEMM's prologue (weight-only quantisation, as vLLM's
  Marlin kernels run FP8 checkpoints on Ampere), so the bytes are the stored format's and the
  FLOP/s the compute format's.
* Context length: beyond the model's ``max_position_embeddings`` the model was not trained (its
  positional encoding does not reach); the cost is still computed, with a warning.
* Idle GPUs: ``num_gpus // (tp * pp)`` replicas run; the remainder idles, and is said (a warning,
  not an error: the per-replica numbers are right, and a sweep over tp passes through such counts).
* Checkpoint format: an imported config's ``quantization_config`` (``simulator.models.quantization``)
  is the format the weights ship in; ``precision.weights`` is what is priced. A difference, or a
  method that is not read, is said.
"""

from __future__ import annotations

import numpy as np

from hwmodels.devices import Accelerator
from hwmodels.errors import InputError
from simulator.bounds import show

# Formats whose tensor-core rate only some chips have; the wider formats fall back (tf32 -> fp32 ...).
NATIVE_ONLY = ("fp8", "fp4", "int8", "int4")


def check_compute_format(gpu: Accelerator, compute) -> None:
    """``InputError`` when a compute dtype (or any of an array of them) has no tensor-core peak on ``gpu``."""
    for dtype in dict.fromkeys(np.ravel(np.asarray(compute)).tolist()):
        if dtype in NATIVE_ONLY and dtype not in gpu.peak_flops_per_s:
            formats = ", ".join(gpu.peak_flops_per_s)
            raise InputError("precision.compute", f"{gpu.name} has no {dtype} tensor-core format (it has {formats}); "
                                                  f"compute in bf16 (weights stored as {dtype} are dequantised)")


def sequence_tokens(scenario) -> tuple[str, int]:
    """(what, tokens): the positions the longest sequence of a scenario's phase reaches."""
    wl = scenario.workload
    if wl.phase == "prefill":
        return "workload.prompt_len", wl.prompt_len
    if wl.phase == "decode":
        return "workload.context_len (+1 new token)", wl.context_len + 1
    return "workload.prompt_len + output_len", wl.prompt_len + wl.output_len


def context_warning(model, tokens, what: str = "workload.context_len") -> str | None:
    """A warning when ``tokens`` positions (a number, or the largest of an array) exceed the model's trained ones."""
    limit = model.max_position_embeddings
    longest = float(tokens) if isinstance(tokens, int | float) else float(np.max(tokens))
    if limit is None or longest <= limit:
        return None
    return (f"{what}: {show(longest)} positions exceed {model.name}'s max_position_embeddings ({limit:,}); "
            "the model was not trained that long (costs are extrapolated)")


def idle_gpus_warning(num_gpus: int, tp: int, pp: int, cp: int = 1) -> str | None:
    """A warning when ``num_gpus`` is not a multiple of the GPUs one replica takes (tp x pp x cp)."""
    per_replica = tp * pp * cp
    idle = num_gpus - (num_gpus // per_replica) * per_replica
    if not idle:
        return None
    shape = "tp x pp" + (" x cp" if cp > 1 else "")
    return (f"hardware.num_gpus: {num_gpus} GPUs hold {num_gpus // per_replica} replica(s) of {shape} = "
            f"{per_replica}; {idle} GPU(s) stay idle and are not counted in throughput")


def checkpoint_warning(model, weights: str) -> str | None:
    """A warning when the checkpoint's quantization is not read, or differs from ``precision.weights``."""
    if model.quantization and model.weights_dtype is None:
        return (f"model: {model.name}'s quantization_config ({model.quantization}) is ignored; "
                f"weights are priced as precision.weights = {weights}")
    if model.weights_dtype and model.weights_dtype != weights:
        return (f"precision.weights: {model.name}'s checkpoint stores {model.weights_dtype} weights "
                f"({model.quantization}); priced as {weights} here; set precision.weights: {model.weights_dtype} "
                "to price the checkpoint as shipped")
    return None


def scenario_warnings(scenario, dep) -> list[str]:
    """Warnings for a point scenario once resolved (``dep``: its ``Deployment``)."""
    what, tokens = sequence_tokens(scenario)
    # the deployment is resolved from everything of the scenario but its workload: the GPU count, layout
    # and weight format give the same warnings every time (``Deployment.cached``)
    fixed = dep.cached("configuration_warnings", _configuration_warnings, scenario, dep)
    return [w for w in (context_warning(dep.model, tokens, what), *fixed) if w]


def _configuration_warnings(scenario, dep) -> list[str | None]:
    tp = dep.tp if type(dep.tp) is int else int(np.max(dep.tp))
    return [idle_gpus_warning(scenario.hardware.num_gpus, tp, dep.pp, int(getattr(scenario.parallelism, "cp", 1))),
            checkpoint_warning(dep.model, scenario.precision.weights)]
