"""``roofsim train`` under a stack profile: the stack's implementation, host pace and training corrections
enter the step, its saved activations the memory (hand counts), and the breakdown still adds up."""

from __future__ import annotations

import pytest

from simulator.stacks.fit import structure_stack
from simulator.stacks.profile import TrainCorrections
from simulator.training.api import train

SCENARIO = {"model": "llama-3.2-1b", "gpu": "h200-sxm", "precision": "bf16", "micro_batch": 1, "seq_len": 1024}


def _train(stack=None):
    return train({**SCENARIO, **({"calibration": stack.model_dump(mode="json")} if stack is not None else {})})


def test_unfused_saved_activations_are_counted_per_token_and_layer():
    stack = structure_stack("torch-unfused", "tu", "graph")
    bare = stack.model_copy(update={"implementation": stack.implementation.model_copy(update={
        "train_saved_hidden_bytes": 0.0, "train_saved_intermediate_bytes": 0.0, "train_saved_routed_bytes": 0.0})})
    # fp32 RMSNorm: +4 bytes per norm, 2 norms, per hidden element (2,048); silu(gate) * up: +2 per
    # intermediate element (8,192): 32,768 bytes per token and layer, 1,024 tokens, 16 layers
    extra = (8 * 2048 + 2 * 8192) * 1024 * 16
    assert _train(stack).memory.total_bytes - _train(bare).memory.total_bytes == pytest.approx(extra)


def test_an_eager_stack_paces_the_step_by_its_host_and_the_breakdown_adds_up():
    stack = structure_stack("torch-unfused", "tu", "eager")
    slow = stack.model_copy(update={"fixed": stack.fixed.model_copy(update={"host_launch_s": 100e-6})})
    r = _train(slow)
    # every kernel of the step (priced forward and backward, the census's others, the optimizer) at 100 us
    launches = 2096  # the census of this step on the H200 (validation/results/stacks/census)
    assert r.step_time_s == pytest.approx(launches * 100e-6, rel=0.03)
    assert sum(r.breakdown.values()) == pytest.approx(r.step_time_s)
    assert r.breakdown["stack"] > 0


def test_training_corrections_scale_the_backward_and_add_a_step_cost():
    stack = structure_stack("torch-unfused", "tu", "graph")
    base = _train(stack).step_time_s
    plain = _train(None)
    assert base > plain.step_time_s  # the unfused forward and its backward cost more than the fused kernels
    slower = stack.model_copy(update={"train": TrainCorrections(backward_scale=2.0, step_s=1e-3)})
    bwd = sum(op.time_s for op in _train(stack).operators if op.phase != "forward")
    assert _train(slower).step_time_s == pytest.approx(base + bwd + 1e-3, rel=1e-3)
