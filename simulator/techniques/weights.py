"""Weights and kernels: quantised and sparse weights, quantised attention, FlashAttention versions.

Weight formats change the bytes each GEMM streams and, when the GPU runs the format natively, the
tensor-core rate; weight-only formats instead pay a dequantisation on the CUDA cores inside the GEMM
(fused, as AWQ/Marlin kernels do), modelled as a lower effective peak:
``1 / peak_eff = 1 / peak + c · weights / (flops · peak_vector)`` with c = 2 FLOPs per weight.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt, field_validator, model_validator

from hwmodels.profile import GEMM_KINDS, KindEfficiency
from simulator.priced import nominal_peak
from simulator.step import StepOp, attention_head_dims
from simulator.techniques import Technique, register

DEQUANT_FLOPS_PER_WEIGHT = 2.0  # scale multiply and zero-point subtract (one FMA)

# format -> (value bits, default group size, scale bits, zero point, native compute dtype or None)
WEIGHT_FORMATS = {
    "w8a8": (8, None, 16, False, "int8"),   # SmoothQuant: per-channel scales, int8 tensor cores
    "fp8": (8, None, 32, False, "fp8"),     # per-tensor scale, fp8 tensor cores
    "w4a16": (4, 128, 16, True, None),      # AWQ/GPTQ: fp16 scale + zero per 128 weights, bf16 math
    "nvfp4": (4, 16, 8, False, "fp4"),      # FP8 (E4M3) scale per 16 values
    "mxfp4": (4, 32, 8, False, "fp4"),      # E8M0 scale per 32 values (OCP microscaling)
}


def _vector_peak(dep) -> float:
    return dep.gpu.peak_for("fp32")


def _at_fp8_gemm_efficiency(op, profile):
    """``op`` (a GEMM at the fp8 peak) at the profile's measured fp8 GEMM efficiencies (``gemm_fp8``,
    ``validation.fp8_gemm``): its peak and bandwidth scaled by the fp8 curve over the bf16 one at the
    launch's size, so that pricing it as a ``gemm`` gives the fp8 curve's time. A profile without the kind
    prices fp8 GEMMs with its bf16 efficiencies (the op unchanged); the per-launch overhead stays gemm's."""
    fp8 = profile.kinds.get("gemm_fp8")
    if fp8 is None:
        return op
    own = profile.kind("gemm")
    if type(op.flops) is float and type(op.hbm_bytes) is float:  # a point: Python floats throughout
        compute = fp8.compute.at(op.flops) / own.compute.at(op.flops) if op.flops else 1.0
        memory = fp8.memory.at(op.hbm_bytes) / own.memory.at(op.hbm_bytes) if op.hbm_bytes else 1.0
    else:
        compute = fp8.compute(op.flops) / own.compute(op.flops)
        memory = fp8.memory(op.hbm_bytes) / own.memory(op.hbm_bytes)
    return replace(op, peak_flops_per_s=op.peak_flops_per_s * compute, format_peak_flops_per_s=op.peak_flops_per_s,
                   hbm_bandwidth_bytes_per_s=op.hbm_bandwidth_bytes_per_s * memory)


@register
class WeightQuant(Technique):
    """Weight quantisation: W8A8 (SmoothQuant), FP8, W4A16 with group scales (AWQ), NVFP4, MXFP4.

    bytes/weight = bits/8 + scale_bits · (1 + zero_point) / (8 · group_size). Formats the GPU computes
    natively (int8, fp8, fp4 where listed) run their GEMMs at that tensor-core peak and add a per-step
    activation-quantisation kernel (fp8 GEMMs at the profile's measured fp8 efficiencies, ``gemm_fp8``,
    where it has them); weight-only formats keep bf16 math and dequantise in the GEMM.
    The embedding table and LM head stay in the scenario's precision unless ``quantize_embeddings``."""

    name = "weight_quant"
    family = "weights and kernels"
    citation = ("Lin et al. 2024, AWQ: Activation-aware Weight Quantization, arXiv 2306.00978; Xiao et al. 2023, "
                "SmoothQuant, arXiv 2211.10438; Rouhani et al. 2023, Microscaling Data Formats, arXiv 2310.10537")
    summary = "weight bytes -> format bits + group scales; native formats at their tensor peak, else dequantise"

    format: Literal["w8a8", "fp8", "w4a16", "nvfp4", "mxfp4"] = Field("w4a16", description="weight format")
    group_size: PositiveInt | None = Field(None, description="weights per scale; none = the format's default")
    quantize_embeddings: bool = Field(False, description="also quantise the embedding table and LM head")

    @property
    def bytes_per_weight(self) -> float:
        bits, group, scale_bits, zero, _ = WEIGHT_FORMATS[self.format]
        group = self.group_size or group
        overhead = 0.0 if group is None else scale_bits * (1 + zero) / group
        return (bits + overhead) / 8.0

    def _native(self, dep) -> str | None:
        dtype = WEIGHT_FORMATS[self.format][4]
        return dtype if dtype in dep.gpu.peak_flops_per_s else None

    def apply_deployment(self, dep):
        emb = dep.emb_bytes if not self.quantize_embeddings else self.bytes_per_weight
        return replace(dep, weight_bytes=self.bytes_per_weight, embedding_bytes=emb)

    def apply_ops(self, ops, shape, dep):
        native = self._native(dep)
        act_bytes_q = WEIGHT_FORMATS[self.format][0] / 8.0
        out, quantised_inputs = [], 0.0
        for op in ops:
            if op.kind in GEMM_KINDS and isinstance(op, StepOp) and (op.per_layer or self.quantize_embeddings) \
                    and np.any(op.weight_elems):
                if native:
                    op = replace(op, peak_flops_per_s=dep.gpu.peak_for(native))
                    if native == "fp8" and op.kind == "gemm":
                        op = _at_fp8_gemm_efficiency(op, dep.profile)
                    quantised_inputs = quantised_inputs + np.asarray(op.input_elems, dtype=float) * op.count
                else:
                    flops = np.maximum(np.asarray(op.flops, dtype=float), 1.0)
                    seconds = flops / op.peak_flops_per_s + DEQUANT_FLOPS_PER_WEIGHT * op.weight_elems / _vector_peak(dep)
                    op = replace(op, peak_flops_per_s=flops / seconds)
            out.append(op)
        if native and np.any(quantised_inputs):
            out.append(StepOp("weight_quant.quantize_activations", "memory", 1.0, flops=2.0 * quantised_inputs,
                              hbm_bytes=quantised_inputs * (dep.act_bytes + act_bytes_q),
                              peak_flops_per_s=dep.peak_flops_per_s,
                              hbm_bandwidth_bytes_per_s=dep.hbm_bandwidth_bytes_per_s))
        return out


@register
class Sparsity(Technique):
    """Sparse weights: unstructured (Flash-LLM's Load-as-Sparse, Compute-as-Dense) or 2:4 structured.

    bytes/weight = (1 - s) · (value bytes + index bytes). Unstructured: an index of ``index_bits`` per
    non-zero (Flash-LLM's Tiled-CSL: 16), tiles expanded to dense in shared memory, so FLOPs stay dense
    and only the bytes drop (break-even at s = index / (value + index)). 2:4: s = 0.5, 2 bits of
    metadata per non-zero, and sparse tensor cores do half the FLOPs."""

    name = "sparsity"
    family = "weights and kernels"
    citation = ("Xia et al. 2023, Flash-LLM: Enabling Cost-Effective and Highly-Efficient Large Generative Model "
                "Inference with Unstructured Sparsity, arXiv 2309.10285; Mishra et al. 2021, Accelerating Sparse "
                "Deep Neural Networks (2:4), arXiv 2104.08378")
    summary = "layer weight bytes -> (1-s)(value + index); 2:4 halves GEMM FLOPs"

    pattern: Literal["unstructured", "2:4"] = Field("unstructured", description="sparsity pattern")
    sparsity: float = Field(0.8, gt=0.0, lt=1.0, description="share of zero weights (2:4: always 0.5)")
    index_bits: PositiveInt = Field(16, description="index bits per non-zero (unstructured; Tiled-CSL: 16)")

    @model_validator(mode="after")
    def _pattern(self) -> "Sparsity":
        if self.pattern == "2:4":
            if "sparsity" in self.model_fields_set and self.sparsity != 0.5:
                raise ValueError("2:4 sparsity is 0.5 by definition")
            object.__setattr__(self, "sparsity", 0.5)
        return self

    def apply_deployment(self, dep):
        index = 0.25 if self.pattern == "2:4" else self.index_bits / 8.0
        return replace(dep, embedding_bytes=dep.emb_bytes, weight_density=dep.weight_density * (1.0 - self.sparsity),
                       weight_index_bytes=index)

    def apply_ops(self, ops, shape, dep):
        if self.pattern != "2:4":
            return ops
        return [replace(op, flops=0.5 * np.asarray(op.flops, dtype=float))
                if op.kind in GEMM_KINDS and getattr(op, "per_layer", False) else op for op in ops]


def _is_softmax_attention(op, kind: str) -> bool:
    return op.kind == kind and ".linear" not in op.name and "attention." in op.name


@register
class AttentionQuant(Technique):
    """Quantised attention (SageAttention): QKᵀ in ``qk`` and PV in ``pv`` precision on the tensor cores,
    after smoothing and quantising Q and K per block.

    Prefill attention time = FLOPs_QK / peak(qk) + FLOPs_PV / peak(pv) (FLOPs split by head dims),
    plus a memory-bound kernel reading Q and K and writing their quantised copies. Decode is untouched
    (it is bound by reading the cache; see kv_quant)."""

    name = "attention_quant"
    family = "weights and kernels"
    citation = ("Zhang et al. 2024, SageAttention: Accurate 8-Bit Attention, arXiv 2410.02367; Zhang et al. 2024, "
                "SageAttention2, arXiv 2411.10958")
    summary = "prefill attention matmuls at INT8/INT4/FP8 tensor peaks; plus a Q/K quantisation kernel"

    qk: Literal["int8", "int4", "fp8"] = Field("int8", description="format of Q and K for QKᵀ (SageAttention2: int4)")
    pv: Literal["fp16", "fp8"] = Field("fp16", description="format of P and V for PV (SageAttention2: fp8)")

    def apply_ops(self, ops, shape, dep):
        m, gpu = dep.model, dep.gpu
        qk_dim, v_dim = attention_head_dims(m, "prefill")
        share_qk = qk_dim / (qk_dim + v_dim)
        peak = 1.0 / (share_qk / gpu.peak_for(self.qk) + (1.0 - share_qk) / gpu.peak_for(self.pv))
        out, layers = [], 0
        for op in ops:
            if _is_softmax_attention(op, "attention_prefill"):
                op = replace(op, peak_flops_per_s=peak)
                layers += 0 if op.name.endswith(".chunk") else op.count
            out.append(op)
        if layers:  # Q and K of the step's tokens, read once and written quantised, in every such layer
            tokens = np.asarray(shape.tokens, dtype=float)
            width = (dep.q_heads_local + (1 if m.mla else dep.kv_heads_local)) * qk_dim
            q_bytes = 0.5 if self.qk == "int4" else 1.0
            out.append(StepOp("attention_quant.quantize_qk", "memory", layers, flops=3.0 * tokens * width,
                              hbm_bytes=tokens * width * (dep.act_bytes + q_bytes), per_layer=True,
                              peak_flops_per_s=dep.peak_flops_per_s,
                              hbm_bandwidth_bytes_per_s=dep.hbm_bandwidth_bytes_per_s))
        return out


# Measured attention engines each version selects. A calibrated profile keeps every engine it measured:
# the one its kind describes (``environment.engines``) and the others' fitted curves
# (``measurements.alternatives``). FlashAttention-2 is PyTorch SDPA's flash backend (``sdpa-flash``,
# FA-2 kernels); on Hopper cuDNN's fused attention (``sdpa-cudnn``) is the FA3-class engine (warp-
# specialised, TMA-fed; FA3's paper compares against it, Shah et al. 2024, arXiv 2407.08608, §4.1);
# ``triton`` is the validation package's own FlashAttention kernel.
FA_ENGINES = {"2": "sdpa-flash", "3": "sdpa-cudnn", "triton": "triton"}
# Where no engine was measured (uncalibrated profiles; FA1): forward throughput relative to FA2, the
# ``default`` profile's basis. FA2 reaches 50-73% of A100 peak where FA1 reached 25-40% (Dao 2023,
# arXiv 2307.08691, abstract and §1), midpoints 0.615 vs 0.325; FA3 is 1.5-2.0x FA2 in FP16 on H100
# (Shah et al. 2024, arXiv 2407.08608, abstract).
FA_RELATIVE = {"1": 0.325 / 0.615, "2": 1.0, "3": 1.75, "triton": 1.0}
S_BYTES = 4.0  # scores kept in fp32 for the softmax when materialised


@register
class FlashAttention(Technique):
    """FlashAttention version as a choice of measured attention engine, or ``none``: standard attention
    that writes the score matrix S and the probabilities P to HBM and reads them back.

    On a calibrated profile a version selects the engine it measured (``FA_ENGINES``: 2 = SDPA's flash
    backend, 3 = cuDNN fused attention on Hopper, ``triton`` = our kernel) and its fitted curves price the
    attention kernels (as the ratio of its efficiency to the profile's own at each launch size). FA1, and
    versions an uncalibrated profile has no curves for, scale the FA2 rate by the papers' ratios (FA1
    0.53x, FA3 1.75x), never beyond the device peak; a kind whose selected engine was not measured keeps
    the profile's own engine. ``none`` adds (2·4 + 2·act) bytes per (query, key) pair and head."""

    name = "flash_attention"
    family = "weights and kernels"
    citation = ("Dao et al. 2022, FlashAttention, arXiv 2205.14135; Dao 2023, FlashAttention-2, arXiv 2307.08691; "
                "Shah et al. 2024, FlashAttention-3, arXiv 2407.08608")
    summary = "attention priced with the measured engine of a version (2: SDPA flash, 3: cuDNN, triton); none: S, P in HBM"

    version: Literal["none", "1", "2", "3", "triton"] = Field(
        "2", description="FlashAttention version (or our triton kernel), or none (standard attention)")

    @field_validator("version", mode="before")
    @classmethod
    def _as_text(cls, value):
        return str(value) if isinstance(value, int) else value

    def apply_deployment(self, dep):
        if self.version == "3" and dep.gpu.architecture != "hopper":
            raise self.error("version", f"FlashAttention-3 needs a Hopper GPU, not {dep.gpu.architecture}")
        return dep

    def engine(self, profile, kind: str):
        """(efficiencies, measured) of the engine this version selects for ``kind``: the profile's own when
        it describes that engine, a measured alternative's, or None when the profile has no such engine."""
        own = (profile.environment or {}).get("engines", {}).get(kind)
        want = FA_ENGINES.get("2" if self.version == "1" else self.version)
        if want is None or own is None:
            return None
        if own == want:
            return profile.kind(kind)
        alt = ((profile.measurements or {}).get("alternatives") or {}).get(kind, {}).get(want)
        if not isinstance(alt, dict):
            return None
        return KindEfficiency.model_validate({k: alt[k] for k in ("compute", "memory", "overhead_s") if k in alt})

    def _reprice(self, op, dep, kind: str):
        """``op`` at the selected engine's efficiencies (peak and bandwidth scaled by engine / own)."""
        own = dep.profile.kind(kind)
        eff = dep.cached(("flash_attention", self.version, kind), lambda: self.engine(dep.profile, kind))
        measured = eff is not None
        if measured and eff is not own:
            op = replace(op, peak_flops_per_s=op.peak_flops_per_s * eff.compute(op.flops) / own.compute(op.flops),
                         format_peak_flops_per_s=nominal_peak(op),
                         hbm_bandwidth_bytes_per_s=op.hbm_bandwidth_bytes_per_s * eff.memory(op.hbm_bytes)
                         / own.memory(op.hbm_bytes))
        ratio = FA_RELATIVE[self.version] if (self.version == "1" or not measured) else 1.0
        if ratio != 1.0 and kind == "attention_prefill":
            rate = eff if measured else own
            op = replace(op, peak_flops_per_s=op.peak_flops_per_s * np.minimum(ratio, 1.0 / rate.compute(op.flops)),
                         format_peak_flops_per_s=nominal_peak(op))
        return op

    def apply_ops(self, ops, shape, dep):
        out = []
        for op in ops:
            for kind in ("attention_prefill", "attention_decode"):
                if not _is_softmax_attention(op, kind):
                    continue
                if self.version == "none":
                    qk_dim, v_dim = attention_head_dims(dep.model, "decode" if kind == "attention_decode" else "prefill")
                    pair_heads = np.asarray(op.flops, dtype=float) / (2.0 * (qk_dim + v_dim))
                    op = replace(op, hbm_bytes=op.hbm_bytes + pair_heads * (2.0 * S_BYTES + 2.0 * dep.act_bytes))
                else:
                    op = self._reprice(op, dep, kind)
            out.append(op)
        return out
