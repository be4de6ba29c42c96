"""A stack profile applied: a corrected base profile, a transformed operator list, the host's share.

* :func:`corrected_profile` multiplies each corrected kind's efficiency curves by
  ``scale * 10**(slope * (x - x_ref))`` (capped at 1) on a 0.05-decade grid joined with the base
  curve's own knots, and adds ``launch_overhead_s`` to every kernel kind's per-launch overhead;
* :func:`apply_ops` rewrites the step's operators as the implementation runs them (like a technique's
  ``apply_ops``): more launches and bytes for unfused element-wise operators, split GEMMs, K/V
  repeated per query head, a materialised mask, a cache grown by concatenation;
* :func:`finish_step` takes the larger of the GPU's time and the host's (eager), plus per-step costs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from costmodels import unfused
from costmodels.elementwise import GATED_ACT_FLOPS_PER_ELEMENT, NORM_FLOPS_PER_ELEMENT, ROTARY_FLOPS_PER_ELEMENT
from hwmodels.profile import Curve, KindEfficiency, Profile
from simulator.stacks.profile import CORRECTED_KINDS, REF_LOG10, StackProfile

_GRID = np.round(np.arange(0.0, 15.0001, 0.05), 4)
_KERNEL_KINDS = ("gemm", "grouped_gemm", "attention_prefill", "attention_decode", "memory", "strided", "atomic")
_NORMS = ("attn_norm", "mlp_norm", "moe_norm", "final_norm")
SMALL_SORT_KEYS = 4096  # PyTorch sorts up to this many keys in place in one kernel (ATen cuda/Sort.h)


def correction_factor(log10_size, scale: float, slope: float, side: str) -> np.ndarray:
    """The efficiency multiplier at a launch size (log10 FLOPs or bytes)."""
    return scale * 10.0 ** (slope * (np.asarray(log10_size, dtype=float) - REF_LOG10[side]))


def _corrected_curve(curve: Curve, scale: float, slope: float, side: str) -> Curve:
    if scale == 1.0 and slope == 0.0:
        return curve
    x = np.union1d(_GRID, np.asarray(curve.log10_size, dtype=float)) if slope else np.asarray(curve.log10_size)
    eff = np.interp(x, curve.log10_size, curve.efficiency) * correction_factor(x, scale, slope, side)
    return Curve.model_construct(log10_size=x.tolist(), efficiency=np.clip(eff, 1e-6, 1.0).tolist())


def corrected_profile(base: Profile, stack: StackProfile) -> Profile:
    """The base profile as the stack's kernels reach it (a new profile; the base is not changed)."""
    kinds = {}
    for kind in [*base.kinds, *[k for k in ("grouped_gemm", "strided", "atomic") if k not in base.kinds]]:
        eff = base.kind(kind)
        corr = stack.correction(kind) if kind in CORRECTED_KINDS else None
        overhead = eff.overhead_s + (stack.fixed.launch_overhead_s if kind in _KERNEL_KINDS else 0.0)
        if corr is None:
            kinds[kind] = eff.model_copy(update={"overhead_s": overhead}) if overhead != eff.overhead_s else eff
            continue
        kinds[kind] = KindEfficiency.model_construct(
            compute=_corrected_curve(eff.compute, corr.scale, corr.slope_per_decade, "compute"),
            memory=_corrected_curve(eff.memory, corr.scale, corr.slope_per_decade, "memory"),
            overhead_s=overhead, basis=f"{eff.basis} | stack {stack.name}")
    return base.model_copy(update={"kinds": kinds, "name": f"{base.name}+{stack.name}"})


def _phase_on(setting: str, phase: str) -> bool:
    return setting == "always" or setting == phase


def _base(name: str) -> str:
    return name.split(".", 1)[1] if name.startswith("cross.") else name


def _elementwise(op, spec, flops_per_element: float, act_bytes):
    """``op`` as ``spec.launches`` kernels moving ``spec.bytes_per_element`` bytes per element in all."""
    if spec.launches == 1.0 and spec.bytes_per_element is None:
        return op
    nbytes = op.hbm_bytes
    if spec.bytes_per_element is not None:
        elems = np.asarray(op.flops, dtype=float) / flops_per_element
        nbytes = elems * spec.bytes_per_element * np.asarray(act_bytes, dtype=float) / 2.0
    return replace(op, count=op.count * spec.launches, flops=np.asarray(op.flops) / spec.launches,
                   hbm_bytes=np.asarray(nbytes) / spec.launches)


def _split_gemm(op, fractions: dict[str, float], act_bytes):
    """A fused GEMM as one launch per part (fractions of its output width): each reads the whole input."""
    input_bytes = np.asarray(op.input_elems, dtype=float) * act_bytes
    rest = np.asarray(op.hbm_bytes, dtype=float) - input_bytes
    stem = op.name.rsplit(".", 1)[0]
    return [replace(op, name=f"{stem}.{part}", flops=np.asarray(op.flops) * f, hbm_bytes=input_bytes + rest * f,
                    weight_elems=np.asarray(op.weight_elems) * f, weight_bytes=np.asarray(op.weight_bytes) * f)
            for part, f in fractions.items()]


def _memory_op(template, name: str, count, nbytes, per_layer: bool = True):
    return replace(template, name=name, kind="memory", count=count, flops=0.0 * np.asarray(nbytes),
                   hbm_bytes=nbytes, per_layer=per_layer, rows=0.0, weight_elems=0.0, weight_bytes=0.0,
                   input_elems=0.0, kv_read_bytes=0.0)


def apply_ops(stack: StackProfile, ops: list, shape, dep) -> list:
    """The step's operators as the stack's implementation runs them."""
    impl = stack.implementation
    m = dep.model
    act = dep.act_bytes
    group = np.asarray(dep.q_heads_local, dtype=float) / np.asarray(dep.kv_heads_local, dtype=float)
    q_w = np.asarray(dep.q_heads_local, dtype=float)
    kv_w = np.asarray(dep.kv_heads_local, dtype=float)
    out: list = []
    mask_added = False
    for op in ops:
        name = _base(op.name)
        if name in _NORMS:
            out.append(_elementwise(op, impl.norm, NORM_FLOPS_PER_ELEMENT, act))
        elif name == "rotary":
            out.append(_elementwise(op, impl.rotary, ROTARY_FLOPS_PER_ELEMENT, act))
        elif name.endswith(".act"):
            out.append(_elementwise(op, impl.activation, GATED_ACT_FLOPS_PER_ELEMENT, act))
        elif name == "attn.qkv_proj" and impl.separate_qkv and not m.mla:
            total = q_w + 2.0 * kv_w
            out += _split_gemm(op, {"q_proj": q_w / total, "k_proj": kv_w / total, "v_proj": kv_w / total}, act)
        elif (name == "mlp.gate_up_proj" and impl.separate_gate_up) or (
                name == "moe.expert.gate_up_proj" and impl.separate_expert_gate_up):
            out += _split_gemm(op, {"gate_proj": 0.5, "up_proj": 0.5}, act)
        elif name in ("moe.route", "moe.sort") and impl.moe_routing_launches != 1.0:
            n = impl.moe_routing_launches
            out.append(replace(op, count=op.count * n, flops=np.asarray(op.flops) / n,
                               hbm_bytes=np.asarray(op.hbm_bytes) / n))
        elif name == "kv_cache_write" and impl.kv_append == "concat":
            nbytes = unfused.kv_concat_bytes(shape.batch, shape.past_tokens, shape.new_tokens,
                                             dep.kv_elems_per_token_layer_local, dep.kv_bytes)
            out.append(replace(op, count=op.count * 2, hbm_bytes=nbytes / 2.0))  # one cat for K, one for V
        elif op.kind in ("attention_prefill", "attention_decode") and name.startswith("attention."):
            phase = "prefill" if op.kind == "attention_prefill" else "decode"
            att = op
            if _phase_on(impl.gqa_expand_kv, phase) and np.any(group > 1) and not m.mla:
                kv_read = np.asarray(op.kv_read_bytes, dtype=float)
                expand = np.where(group > 1, unfused.kv_expand_bytes(kv_read, group), 0.0)
                # expand + reshape: a copy of a broadcast view, PyTorch's non-vectorised strided loop
                out.append(replace(_memory_op(op, op.name.replace("attention.", "attn.repeat_kv.", 1), op.count,
                                              expand), kind="strided"))
                att = replace(att, hbm_bytes=np.asarray(att.hbm_bytes) + kv_read * (group - 1.0),
                              kv_read_bytes=kv_read * group)
            if _phase_on(impl.materialized_mask, phase):
                mask = unfused.mask_bytes(shape.batch, shape.new_tokens, shape.total_tokens)
                if not mask_added:
                    out.append(_memory_op(op, "attn.mask", 1, mask, per_layer=False))
                    mask_added = True
                att = replace(att, hbm_bytes=np.asarray(att.hbm_bytes) + mask)
            out.append(att)
            if impl.attention_output_copy:
                tokens = np.asarray(shape.batch, dtype=float) * shape.new_tokens
                nbytes = 2.0 * tokens * q_w * m.head_dim * act
                out.append(_memory_op(op, op.name.replace("attention.", "attn.output_copy.", 1), op.count, nbytes))
        else:
            out.append(op)
    if impl.moe is not None:
        out = _moe_layer(impl.moe, out, act, m.moe.top_k if m.moe is not None else 1)
    if impl.layer_extra_launches:
        layer = next((op for op in out if _base(op.name) == "attn.o_proj"), None)  # one launch per layer
        if layer is not None:
            out.append(_memory_op(layer, "layer.extra_launches", layer.count * impl.layer_extra_launches,
                                  0.0 * np.asarray(layer.hbm_bytes)))
    return out


def _moe_layer(moe, ops: list, act_bytes, top_k: int) -> list:
    """The MoE layers' operators as the stack runs them: its element-wise passes over the routed rows
    (or tokens), its own combine in place of roofsim's fused unpermute, and its other launches."""
    down = next((op for op in ops if _base(op.name) == "moe.expert.down_proj"), None)
    combine = next((op for op in ops if _base(op.name) == "moe.unpermute"), None)
    if down is None or combine is None:
        return ops
    routed = np.asarray(down.rows, dtype=float)
    inter = np.asarray(down.input_elems, dtype=float) / np.maximum(routed, 1e-30)
    hidden = (np.asarray(down.hbm_bytes, dtype=float) - np.asarray(down.input_elems, dtype=float) * act_bytes
              - np.asarray(down.weight_bytes, dtype=float)) / act_bytes / np.maximum(routed, 1e-30)
    tokens = routed / top_k
    rows = {"routed": routed, "tokens": tokens}
    widths = {"hidden": hidden, "expert_intermediate": inter, "expert_gate_up": 2.0 * inter}
    extra = []
    for p in moe.passes:
        nbytes = rows[p.rows] * widths[p.width] * p.bytes_per_element * np.asarray(act_bytes, dtype=float) / 2.0
        extra.append(replace(_memory_op(combine, f"moe.{p.name}", combine.count, nbytes), kind=p.kind))
    launches = np.where(routed <= SMALL_SORT_KEYS, moe.extra_launches_small_sort, moe.extra_launches_radix_sort)
    extra.append(_memory_op(combine, "moe.extra_launches", combine.count * launches, 0.0 * routed))
    out = [op for op in ops if not (moe.replaces_combine and op is combine)]
    at = out.index(down) + 1
    return out[:at] + extra + out[at:]


def launches(ops: list, times: list) -> np.ndarray | float:
    """Kernel launches of a step: every kernel operator's count, collectives that move bytes."""
    total = 0.0
    for op, t in zip(ops, times):
        if op.kind in ("collective", "host_transfer"):
            total = total + np.where(np.asarray(t.time_s) > 0, op.count, 0.0)
        elif np.any(np.asarray(op.count) > 0):
            total = total + op.count + 0.0 * np.asarray(t.time_s)
    return total


def host_time_s(stack: StackProfile, n_launches, n_layers) -> np.ndarray | float:
    f = stack.fixed
    if f.execution != "eager":
        return 0.0 * np.asarray(n_launches, dtype=float)
    return np.asarray(n_launches, dtype=float) * f.host_launch_s + n_layers * f.host_layer_s + f.host_step_s


def finish_step(stack: StackProfile, ops: list, times: list, latency, overhead, dep):
    """(latency, overhead) of the step once the host's pace and the per-step costs are in."""
    host = host_time_s(stack, launches(ops, times), dep.model.num_layers / dep.pp)
    new = np.maximum(latency, host) + stack.fixed.step_s
    return new, overhead + (new - latency)


def train_step_time(stack: StackProfile, step_s, backward_s, optimizer_s, n_launches, n_layers):
    """A training step under ``stack`` (for ``simulator.training``): the step as priced with the corrected
    profile (``step_s``, of which ``backward_s`` is backward and ``optimizer_s`` the optimizer), its backward
    scaled by ``backward_scale`` and its optimizer by ``optimizer_scale``, paced by the host for eager stacks
    (``n_launches`` kernels), plus the per-step costs."""
    t = stack.train
    host_stack = stack.model_copy(update={"fixed": stack.fixed.model_copy(
        update={"host_launch_s": stack.fixed.host_launch_s * t.host_launch_scale})})
    gpu = (np.asarray(step_s) + (t.backward_scale - 1.0) * np.asarray(backward_s)
           + (t.optimizer_scale - 1.0) * np.asarray(optimizer_s))
    host = host_time_s(host_stack, n_launches, n_layers)
    return np.maximum(gpu, host) + stack.fixed.step_s + t.step_s


def train_extra_launches(stack: StackProfile, model) -> float:
    """Kernels of one training micro-batch beyond those of roofsim's forward and backward operators."""
    impl = stack.implementation
    moe_layers = sum(1 for k in model.mlp_kinds() if k == "moe") if model.moe is not None else 0
    moe = impl.moe.train_extra_launches if impl.moe is not None else 0.0
    return impl.train_layer_extra_launches * model.num_layers + moe * moe_layers


def train_saved_extra_bytes(stack: StackProfile, model) -> float:
    """Activation bytes per token and layer the stack's implementation saves for backward beyond what
    roofsim's fused kernels save (``Implementation.train_saved_*``): per hidden element, per intermediate
    element of the MLP (a MoE layer's k routed rows of the expert width), per hidden element of each routed row."""
    impl = stack.implementation
    if model.moe is not None:
        inter = model.moe.top_k * model.moe.expert_intermediate_size
        routed = model.moe.top_k * model.hidden_size
    else:
        inter, routed = model.intermediate_size or 0, 0.0
    return (impl.train_saved_hidden_bytes * model.hidden_size + impl.train_saved_intermediate_bytes * inter
            + impl.train_saved_routed_bytes * routed)
