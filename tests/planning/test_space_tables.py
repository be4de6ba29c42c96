"""The planner's step tables are the serving fast path's (one home: ``simulator.serving.tables``), and
its KV sizing is the simulation's (``simulator.serving.kvcache.kv_blocks``)."""

from __future__ import annotations

import numpy as np
import pytest

import simulator
from simulator.planning.space import build
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.serving.kvcache import kv_blocks
from simulator.serving.tables import holds_one, kv_sequences, step_tables


def test_planner_tables_equal_the_serving_tables_of_each_kind():
    """Every kind of a space with PP 1 and 2 (TP 1, 2) has exactly the tables ``step_tables`` prices for
    the simulation's comparison: decode, one chunk, a full budget, a prompt alone, KV sequences, lanes."""
    space = build("llama-3.1-8b", ["h100-sxm"], [], 1024, 256, pp_options=(1, 2), max_tp=2, chunk_tokens=2048)
    assert {(k.tp, k.pp) for k in space.kinds} == {(1, 1), (2, 1), (1, 2), (2, 2)}
    t = space.tables
    for i, kind in enumerate(space.kinds):
        ref = step_tables(kind.scenario("llama-3.1-8b", 1, "auto"), 1024, 256)
        for name in ("decode_s", "mixed_s", "full_s"):
            np.testing.assert_allclose(getattr(t, name)[i], getattr(ref, name)[0], rtol=1e-12, err_msg=name)
        assert t.prefill_s[i] == pytest.approx(ref.prefill_s[0], rel=1e-12)
        assert t.kv_capacity[i] == ref.kv_capacity[0]
        assert t.lane_count()[i] == ref.lane_count()[0] == kind.pp


@pytest.mark.parametrize("model, gpu", [("llama-3.1-70b", "h100-sxm"), ("qwen3-30b-a3b", "h100-sxm")])
def test_kv_blocks_over_tp_equal_what_predict_reports(model, gpu):
    """Blocks over a TP axis in one call against the memory ``predict`` reports for each TP alone:
    floor((capacity - weights - workspace - the larger activations of a 2,048-token prefill and a decode
    step of 256 sequences) / (16 tokens x KV bytes per token))."""
    tps = np.array([2, 4, 8])
    sc = Scenario.from_dict({"model": model, "hardware": {"gpu": gpu, "num_gpus": 8}, "parallelism": {"tp": 8}})
    dep, _ = resolve(sc, {"tp": tps.reshape(1, -1)})
    got = kv_blocks(dep, 16, 256, 2048, 4096)["blocks"].ravel()
    for tp, blocks in zip(tps, got):
        one = {"model": model, "hardware": {"gpu": gpu, "num_gpus": int(tp)}, "parallelism": {"tp": int(tp)}}
        pre = simulator.predict({**one, "workload": {"phase": "prefill", "batch_size": 1, "prompt_len": 2048}}).memory
        dec = simulator.predict({**one, "workload": {"phase": "decode", "batch_size": 256, "context_len": 4096}}).memory
        free = pre.capacity_bytes - pre.weights_bytes - pre.workspace_bytes - max(pre.activation_bytes, dec.activation_bytes)
        assert blocks == np.floor(free / (16 * dec.kv_bytes_per_token))


def test_steady_state_kv_rule_by_hand():
    """1,000 blocks of 16 tokens, 1,000-token prompts and 200 output tokens: a running sequence holds
    (1,000 + 100) / 16 + 1/2 = 69.25 blocks on average, so 14 fit (at the full 1,200 tokens, 75 blocks
    each, only 13 would); one request needs ceil(1,200 / 16) = 75 blocks to finish."""
    assert kv_sequences(1000, 1000, 200, 16) == 14
    assert bool(holds_one(75, 1000, 200, 16)) and not bool(holds_one(74, 1000, 200, 16))
