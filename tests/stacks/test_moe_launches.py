"""A stack's MoE layer and launches as its code runs them: the passes' bytes by hand, the combine it
replaces, the sort-size switch, and the launch counts against the census of the H200 steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.stacks.fit import build_groups, structure_stack
from simulator.stacks.measurements import Measurement
from simulator.stacks.presets import STRUCTURES
from simulator.stacks.profile import Implementation, MoEImplementation, RowPass, StackProfile
from simulator.stacks.transform import apply_ops
from simulator.step import StepShape, build_step

CENSUS = Path(__file__).resolve().parents[2] / "validation" / "results" / "stacks" / "census"


def _ops(stack, shape, model="olmoe-1b-7b"):
    dep = resolve(Scenario.from_dict({"model": model, "hardware": {"gpu": "h200-sxm"}}), {})[0]
    return apply_ops(stack, build_step(dep, shape), shape, dep)


def _stack(**moe):
    return StackProfile(name="s", implementation=Implementation(moe=MoEImplementation(**moe)))


def test_passes_have_the_bytes_of_their_rows_and_width():
    # olmoe-1b-7b: 2,048 tokens routed top-8 = 16,384 rows; hidden 2,048, expert intermediate 1,024
    stack = _stack(passes=[RowPass(name="mask", width="expert_gate_up", bytes_per_element=4.0, kind="strided"),
                           RowPass(name="zero", rows="tokens", bytes_per_element=2.0)])
    ops = {op.name: op for op in _ops(stack, StepShape(1.0, 2048.0, 0.0, "prefill"))}
    mask, zero = ops["moe.mask"], ops["moe.zero"]
    assert mask.kind == "strided" and mask.count == 16
    assert float(mask.hbm_bytes) == pytest.approx(16384 * 2 * 1024 * 4.0)
    assert float(zero.hbm_bytes) == pytest.approx(2048 * 2048 * 2.0)
    assert "moe.unpermute" in ops  # kept unless the passes replace it


def test_a_stack_combine_replaces_the_fused_one():
    stack = _stack(passes=[RowPass(name="combine.index_add", bytes_per_element=4.0, kind="atomic")],
                   replaces_combine=True)
    names = [op.name for op in _ops(stack, StepShape(1.0, 512.0, 0.0, "prefill"))]
    assert "moe.unpermute" not in names and "moe.combine.index_add" in names
    assert names.index("moe.combine.index_add") == names.index("moe.expert.down_proj") + 1


@pytest.mark.parametrize("tokens, launches", [(512, 5.0), (513, 9.0)])
def test_extra_launches_follow_the_sort_of_the_routed_rows(tokens, launches):
    """Up to 4,096 routed rows (512 tokens x top-8) PyTorch sorts in one in-place kernel; more take the radix sort."""
    stack = _stack(extra_launches_small_sort=5.0, extra_launches_radix_sort=9.0)
    op = next(op for op in _ops(stack, StepShape(1.0, float(tokens), 0.0, "prefill")) if op.name == "moe.extra_launches")
    assert float(np.asarray(op.count)) == 16 * launches and float(np.asarray(op.hbm_bytes)) == 0.0


def _census_rows():
    for path in sorted(CENSUS.glob("census*.json")):
        stack = path.stem.split("-", 1)[1]
        structure = {"hf-eager": "hf-eager", "hf-graph": "hf-graph", "torch-unfused-eager": "torch-unfused"}[stack]
        for r in json.loads(path.read_text()):
            if r["phase"] != "train":
                yield pytest.param(structure, r, id=f"{path.stem}-{r['model']}-{r['phase']}-{r['batch']}x{r['length']}")


@pytest.mark.parametrize("structure, row", list(_census_rows()))
def test_launches_match_the_census_of_the_h200_steps(structure, row):
    """Kernels per step as roofsim counts them under the preset, against the profiler's count of the same
    step (validation/results/stacks/census): the per-layer counts were taken from the 16-layer
    llama-3.2-1b and olmoe-1b-7b; the 28-layer llama-3.2-3b is an independent check."""
    length = "prompt_len" if row["phase"] == "prefill" else "context_len"
    m = Measurement(row=1, model=row["model"], gpu="h200-sxm", phase=row["phase"], batch=row["batch"], latency_s=1.0,
                    **{length: row["length"]})
    got = float(build_groups([m], structure_stack(structure, "s", None))[0].launches[0])
    assert got == pytest.approx(row["launches"], rel=0.04 if row["model"] != "llama-3.2-3b" else 0.09)


def test_presets_know_every_structure():
    assert set(STRUCTURES) == {"fused", "torch-unfused", "hf-eager", "hf-graph"}
    assert STRUCTURES["torch-unfused"][0].moe.passes[-1].kind == "atomic"
