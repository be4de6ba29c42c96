"""Training precisions, each defined by what is stored per parameter and what the GEMMs run at.

| precision | parameters | gradients | master copy | states (each) | GEMMs |
|---|---|---|---|---|---|
| ``bf16`` | bf16 (2) | bf16 (2) | none | bf16 (2) | bf16 |
| ``amp`` | fp32 (4), the master weights | fp32 (4) | none | fp32 (4) | bf16 under autocast, each weight cast per use |
| ``mixed`` | bf16 (2) | bf16 (2), or fp32 (4) as Megatron's main grad | fp32 (4) | fp32 (4) | bf16 |
| ``fp8`` | bf16 (2) + an fp8 copy (1) | fp32 main grad (4) | fp32 (4) | fp32 (4) | fp8 (GPUs with fp8) |

``mixed`` with AdamW is the ZeRO paper's 2 + 2 + 12 bytes per parameter (Rajbhandari et al. 2019,
arXiv 1910.02054, §3.1); Megatron-LM keeps fp32 main gradients that the wgrad GEMMs accumulate into
(``--accumulate-allreduce-grads-in-fp32``, the default of its distributed optimizer), 2 + 4 + 12.
``amp`` is PyTorch automatic mixed precision (``torch.autocast``): fp32 parameters and optimizer, a bf16
copy of each GEMM weight made at its use and kept for its backward (``simulator.training.memory``), each
bf16 weight gradient cast back to fp32 (PyTorch docs, "Automatic Mixed Precision", autocast op
reference). ``fp8`` follows NVIDIA Transformer Engine: GEMM inputs cast to fp8 with delayed scaling,
bf16 weights with an fp8 copy, fp32 master weights and main gradients (Micikevicius et al. 2022,
"FP8 Formats for Deep Learning", arXiv 2209.05433).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwmodels.errors import InputError

PRECISIONS = ("bf16", "amp", "mixed", "fp8")


@dataclass(frozen=True)
class Precision:
    name: str
    param_bytes: float
    grad_bytes: float
    master_bytes: float
    state_bytes: float  # per optimizer state element
    compute: str  # the dtype whose tensor-core peak the GEMMs run at
    act_bytes: float = 2.0
    cast_weights: bool = False  # amp: each weight cast to bf16 per use, cached for the step
    extra_weight_bytes: float = 0.0  # fp8: the fp8 weight copy


def precision(name: str, main_grad_fp32: bool = False, gpu=None) -> Precision:
    """The storage of ``name``; ``main_grad_fp32`` gives ``mixed`` Megatron's fp32 main gradients."""
    if name == "bf16":
        return Precision("bf16", 2.0, 2.0, 0.0, 2.0, "bf16")
    if name == "amp":
        return Precision("amp", 4.0, 4.0, 0.0, 4.0, "bf16", cast_weights=True)
    if name == "mixed":
        return Precision("mixed", 2.0, 4.0 if main_grad_fp32 else 2.0, 4.0, 4.0, "bf16")
    if name == "fp8":
        if gpu is not None and "fp8" not in gpu.peak_flops_per_s:
            raise InputError("precision", f"{gpu.name} has no fp8 tensor cores; choose bf16, amp or mixed")
        return Precision("fp8", 2.0, 4.0, 4.0, 4.0, "fp8", extra_weight_bytes=1.0)
    raise InputError("precision", f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
