"""Replicas over more than one node: Llama-3.1-405B in bf16 (810 GB of weights) does not fit the 640 GB
of one 8x H100 node, so the planner must go to TP 16 over two nodes or TP 8 x PP 2, each priced on the
links its groups span."""

from __future__ import annotations

import pytest

import simulator
from hwmodels.errors import InputError
from simulator.planning import plan
from simulator.planning.space import build, layouts
from simulator.planning.verify import des_available

REQUEST = dict(model="llama-3.1-405b", rate=1.0, prompt_len=2048, output_len=256, slo_ttft_s=3.0, slo_tpot_s=0.1,
               gpus=["h100-sxm"], verify=1, num_requests=300)


def test_layouts_add_two_forms_per_node_count():
    """TP 1..8 inside a node, then per n nodes TP 8 x PP n and TP 8n (the 405B's 128 heads and 8 KV heads
    allow TP 16 and 32); none beyond ``max_nodes``."""
    assert layouts("llama-3.1-405b", 8, 8, [1], 1) == [(1, 1), (2, 1), (4, 1), (8, 1)]
    assert layouts("llama-3.1-405b", 8, 8, [1], 2) == [(1, 1), (2, 1), (4, 1), (8, 1), (16, 1), (8, 2)]
    four = layouts("llama-3.1-405b", 8, 8, [1, 2], 4)
    assert {(32, 1), (8, 4), (16, 1), (8, 2), (4, 2)} <= set(four) and all(tp * pp <= 32 for tp, pp in four)


@pytest.mark.parametrize("tp, pp", [(16, 1), (8, 2)])
def test_two_node_kinds_are_priced_as_predict_prices_them(tp, pp):
    """The search's vectorised tables equal a scalar `predict` of the same two-node scenario, whose TP
    (TP 16) or PP (TP 8 x PP 2) group runs over InfiniBand; a PP kind's step is one micro-batch's trip
    through both stages (its lanes keep two batches in flight, as the simulation runs them)."""
    space = build("llama-3.1-405b", ["h100-sxm"], [], 2048, 256, chunk_tokens=2048, max_nodes=2)
    (k, kind), = [(i, kd) for i, kd in enumerate(space.kinds) if (kd.tp, kd.pp) == (tp, pp)]
    assert kind.nodes == 2
    j = 6  # the batch grid's 8 sequences
    scenario = {**kind.scenario("llama-3.1-405b", 1, "auto"),
                "workload": {"phase": "decode", "batch_size": int(space.tables.grid[j]), "context_len": 2048 + 128}}
    if pp > 1:
        scenario["parallelism"] = {**scenario["parallelism"], "microbatches": 1}
        assert space.tables.lanes[k] == pp
    pred = simulator.predict(scenario)
    assert space.tables.decode_s[k, j] == pytest.approx(pred.latency_s, rel=1e-12)
    links = {g["group"]: g["link"] for g in pred.parallelism["groups"]}
    assert pred.parallelism["num_nodes"] == 2
    assert links == ({"tp": "ib-ndr-400"} if pp == 1 else {"tp": "nvlink4", "pp": "ib-ndr-400"})


@pytest.fixture(scope="module")
def two_nodes():
    return plan(REQUEST)


def test_405b_bf16_on_h100_is_planned_over_two_nodes(two_nodes):
    best = two_nodes.cheapest
    assert best is not None and best.nodes == 2 and best.tp * best.pp == 16
    assert best.num_gpus == 16 * best.replicas == best.scenario["hardware"]["num_gpus"]
    assert simulator.predict(best.scenario).memory.fits
    one_node = [r for r in two_nodes.rejected_cheaper if r["config"] in {f"h100-sxm tp{t} pp1" for t in (1, 2, 4, 8)}]
    assert len(one_node) == 4 and all("does not fit" in r["reason"] for r in one_node)
    assert "--distributed-executor-backend ray" in best.vllm_command and "--nnodes 2" in best.sglang_command


@pytest.mark.skipif(not des_available(), reason="the request-level DES has not landed")
def test_two_node_plan_is_verified(two_nodes):
    best = two_nodes.cheapest
    assert best.verified and best.verification.rejected == 0
    assert best.verification.ttft_pct_s <= REQUEST["slo_ttft_s"] and best.verification.tpot_pct_s <= REQUEST["slo_tpot_s"]


@pytest.mark.parametrize("limit", [{"max_gpus": 8}, {"max_gpus": 15}])
def test_no_plan_when_max_gpus_forbids_two_nodes(limit):
    """The two-node layouts are in the space, and named as over the GPU limit; nothing else fits."""
    result = plan({**REQUEST, **limit, "verify": 0})
    assert result.cheapest is None and result.plans == []
    reasons = [r["reason"] for r in result.rejected_cheaper]
    assert sum("does not fit" in r for r in reasons) == 4
    assert sum("one replica needs 16 GPUs (2 nodes)" in r for r in reasons) == 2


def test_one_node_replicas_only_is_a_clear_error():
    with pytest.raises(InputError, match="up to 1 node"):
        plan({**REQUEST, "max_nodes": 1, "verify": 0})
