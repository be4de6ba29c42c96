"""A Hugging Face ``quantization_config``: the format a checkpoint stores its weights in.

Read formats (``weights_dtype`` of the ``ModelSpec``; ``hwmodels.dtypes`` has their bytes per value):

* ``quant_method: fp8`` -- FP8 E4M3 with one fp32 scale per ``weight_block_size`` block, 128x128 in
  DeepSeek-V3 and Kimi K2 (DeepSeek-V3 report, arXiv 2412.19437, section 3.3.2); the scales add
  4 / 16384 bytes per weight (0.02%), left out.
* ``quant_method: mxfp4`` -- OCP Microscaling FP4: E2M1 values with one E8M0 scale per 32 (OCP MX
  spec v1.0, https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf);
  gpt-oss quantises only the MoE experts (``modules_to_not_convert`` lists the rest, ~1.5% of
  gpt-oss-120b's weights), so pricing every matrix at fp4 understates them by about that much.
* ``quant_method: awq`` / ``gptq`` with ``bits: 4`` or ``8`` -- integer weights with a scale (and zero
  point) per ``group_size`` inputs (AWQ, arXiv 2306.00978; GPTQ, arXiv 2210.17323).

Any other method (bitsandbytes, compressed-tensors, ...) is recorded in ``quantization`` as not read;
``simulator.checks`` warns about it, as it warns when the scenario's ``precision.weights`` differs from
the checkpoint's format.
"""

from __future__ import annotations

from typing import Any

from hwmodels.errors import InputError

INTEGER_BITS = {4: "int4", 8: "int8"}


def quantization(config: Any, field: str = "model") -> dict[str, Any]:
    """``{"weights_dtype": ..., "quantization": ...}`` (ModelSpec fields) from a ``quantization_config``."""
    if config is None:
        return {}
    where = f"{field}.quantization_config"
    if not isinstance(config, dict):
        raise InputError(where, "expected a mapping")
    method = str(config.get("quant_method", "")).lower()
    if method == "fp8":
        block = config.get("weight_block_size")
        scale = (f", one scale per {block[0]}x{block[1]} block" if isinstance(block, list) and len(block) == 2
                 else ", per-tensor or per-channel scales")
        return {"weights_dtype": "fp8", "quantization": f"fp8 {config.get('fmt', 'e4m3')}{scale}"}
    if method == "mxfp4":
        kept = config.get("modules_to_not_convert") or []
        note = "; not converted: " + ", ".join(sorted({str(m).split(".")[-1] for m in kept})) if kept else ""
        return {"weights_dtype": "fp4", "quantization": f"mxfp4 (e2m1 values, one e8m0 scale per 32){note}"}
    if method in ("awq", "gptq"):
        bits = config.get("bits")
        if bits not in INTEGER_BITS:
            return {"quantization": f"{method} {bits}-bit (not read: roofsim has no {bits}-bit integer format)"}
        group = config.get("group_size")
        return {"weights_dtype": INTEGER_BITS[bits],
                "quantization": f"{method} int{bits}" + (f", one scale per {group} inputs" if group else "")}
    return {"quantization": f"{method or 'unnamed method'} (not read)"}
