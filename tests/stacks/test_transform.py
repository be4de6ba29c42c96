"""A stack's operator transform and host pace, against hand counts."""

from __future__ import annotations

import pytest

from simulator.engine import run_step
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.stacks.presets import STRUCTURES
from simulator.stacks.profile import EfficiencyCorrection, Elementwise, FixedCosts, Implementation, StackProfile
from simulator.stacks.transform import apply_ops, corrected_profile
from simulator.step import StepShape, build_step


def _dep(model="llama-3.2-1b", gpu="h200-sxm"):
    return resolve(Scenario.from_dict({"model": model, "hardware": {"gpu": gpu}}), {})[0]


def _ops(stack, shape, dep):
    return {op.name: op for op in apply_ops(stack, build_step(dep, shape), shape, dep)}


def test_unfused_norm_has_its_launches_and_bytes():
    dep = _dep()
    shape = StepShape(4.0, 128.0, 0.0, "prefill")
    stack = StackProfile(name="s", implementation=Implementation(norm=Elementwise(launches=8, bytes_per_element=36)))
    op = _ops(stack, shape, dep)["attn_norm"]
    elems = 4 * 128 * 2048  # tokens x hidden of llama-3.2-1b
    assert op.count == 16 * 8
    assert float(op.hbm_bytes) * 8 == pytest.approx(elems * 36)


def test_separate_qkv_reads_the_input_three_times_and_keeps_the_flops():
    dep = _dep()
    shape = StepShape(1.0, 512.0, 0.0, "prefill")
    fused = _ops(StackProfile(name="f"), shape, dep)["attn.qkv_proj"]
    split = _ops(StackProfile(name="s", implementation=Implementation(separate_qkv=True)), shape, dep)
    parts = [split[f"attn.{p}_proj"] for p in ("q", "k", "v")]
    assert sum(float(p.flops) for p in parts) == pytest.approx(float(fused.flops))
    input_bytes = 512 * 2048 * 2
    assert sum(float(p.hbm_bytes) for p in parts) == pytest.approx(float(fused.hbm_bytes) + 2 * input_bytes)
    # q has 32 heads of 64, k and v 8 each: q's share of the weights is 32 / 48
    assert float(parts[0].weight_elems) == pytest.approx(2048 * 32 * 64)


def test_concatenated_cache_copies_the_whole_cache_each_step():
    dep = _dep()
    shape = StepShape(8.0, 1.0, 1024.0, "decode")
    op = _ops(StackProfile(name="s", implementation=Implementation(kv_append="concat")), shape, dep)["kv_cache_write"]
    per_token = 2 * 8 * 64 * 2  # K and V, 8 KV heads of 64, bf16
    assert op.count == 32  # 16 layers, a cat for K and one for V
    assert float(op.hbm_bytes) * 2 == pytest.approx(8 * (1024 + 1025) * per_token)


def test_repeat_kv_copies_and_attention_reads_every_head():
    dep = _dep()
    shape = StepShape(2.0, 1.0, 4096.0, "decode")
    base = _ops(StackProfile(name="f"), shape, dep)["attention.full"]
    ops = _ops(StackProfile(name="s", implementation=Implementation(gqa_expand_kv="decode")), shape, dep)
    kv = float(base.kv_read_bytes)
    assert kv == pytest.approx(2 * 4097 * 2 * 8 * 64 * 2)
    assert float(ops["attn.repeat_kv.full"].hbm_bytes) == pytest.approx(kv * (1 + 4))  # group of 4
    assert float(ops["attention.full"].hbm_bytes) == pytest.approx(float(base.hbm_bytes) + 3 * kv)


def test_correction_scales_efficiency_at_the_reference_size_and_caps_at_one():
    dep = _dep()
    stack = StackProfile(name="s", efficiency={"gemm": EfficiencyCorrection(scale=0.5, slope_per_decade=0.1)})
    prof = corrected_profile(dep.profile, stack)
    base = dep.profile.kind("gemm")
    assert prof.kind("gemm").compute(1e9) == pytest.approx(0.5 * base.compute(1e9), rel=1e-4)
    assert prof.kind("gemm").compute(1e11) == pytest.approx(min(1.0, 0.5 * 10 ** 0.2 * base.compute(1e11)), rel=1e-3)
    big = StackProfile(name="b", efficiency={"memory": EfficiencyCorrection(scale=5.0)})
    assert max(corrected_profile(dep.profile, big).kind("memory").memory.efficiency) <= 1.0


def test_eager_step_takes_the_hosts_time_when_the_host_is_slower():
    dep = _dep()
    shape = StepShape(1.0, 1.0, 512.0, "decode")
    gpu = float(run_step(dep, shape, "serial").latency_s)
    fixed = FixedCosts(execution="eager", host_launch_s=50e-6, host_layer_s=10e-6, host_step_s=1e-4, step_s=2e-5)
    stack = StackProfile(name="s", fixed=fixed)
    step = run_step(_with_stack(dep, stack), shape, "serial")
    launches = sum(op.count for op in step.ops if op.kind not in ("collective", "host_transfer"))
    host = launches * 50e-6 + 16 * 10e-6 + 1e-4
    assert host > gpu
    assert float(step.latency_s) == pytest.approx(host + 2e-5)
    graph = StackProfile(name="g", fixed=fixed.model_copy(update={"execution": "graph"}))
    assert float(run_step(_with_stack(dep, graph), shape, "serial").latency_s) == pytest.approx(gpu + 2e-5)


def _with_stack(dep, stack):
    from dataclasses import replace

    return replace(dep, stack=stack, profile=corrected_profile(dep.profile, stack))


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_every_structure_is_no_faster_than_fused(structure):
    impl, fixed = STRUCTURES[structure]
    for model in ("llama-3.2-1b", "olmoe-1b-7b"):
        dep = _dep(model)
        for shape in (StepShape(1.0, 512.0, 0.0, "prefill"), StepShape(8.0, 1.0, 1024.0, "decode")):
            fused = float(run_step(dep, shape, "serial").latency_s)
            stack = StackProfile(name=structure, implementation=impl, fixed=fixed)
            assert float(run_step(_with_stack(dep, stack), shape, "serial").latency_s) >= fused * (1 - 1e-9)
