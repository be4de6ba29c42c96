"""The replica's scheduler rules: budgets, preemption, prefix caching, prefill-first, rejections."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import predict, serve
from simulator.serving.kvcache import BlockPool

SC = {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm"}}
# 0.25 x 80 GB leaves ~2.6 GB for KV after 16 GB of weights: ~20k tokens, so long requests preempt.
TIGHT = dict(SC, memory_utilization=0.25)
BURST = {"rate": 1000.0, "num_requests": 48, "prompt_len": 1000, "output_len": 1200, "seed": 2}


def kv_blocks(res):
    return res.replicas[0].kv_blocks


def test_budget_and_sequence_limits_hold_every_step():
    res = serve(SC, {"rate": 40.0, "num_requests": 300, "prompt_len": "lognormal:1500,0.8", "output_len": 64},
                {"max_num_seqs": 24, "max_num_batched_tokens": 1024})
    tl = res.timeline
    assert np.all(tl["decode"] + tl["chunk_tokens"] <= 1024)
    assert np.all(tl["running"] <= 24)
    assert np.any((tl["decode"] > 0) & (tl["chunk_tokens"] > 0))  # chunked prefill mixes prompts into decodes


def test_prefill_first_never_mixes():
    res = serve(SC, {"rate": 20.0, "num_requests": 200, "prompt_len": 700, "output_len": 50},
                {"chunked_prefill": False, "max_num_batched_tokens": 4096})
    tl = res.timeline
    assert not np.any((tl["decode"] > 0) & (tl["chunk_tokens"] > 0))
    assert res.completed == 200
    # every prompt runs whole in one step
    assert set(np.unique(tl["chunk_tokens"][tl["chunk_tokens"] > 0]) % 700) == {0}


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_preemption_frees_blocks_and_loses_nothing(mode):
    res = serve(TIGHT, BURST, {"preemption": mode})
    rec, tl = res.records, res.timeline
    assert res.preemptions > 0
    assert res.completed == BURST["num_requests"]
    assert np.all(tl["kv_blocks_used"] <= kv_blocks(res))
    assert tl["tokens_out"].sum() == rec["output_tokens"].sum()
    extra = tl["chunk_tokens"].sum() - rec["prompt_tokens"].sum()
    if mode == "swap":  # decoding requests' KV comes back from the host; only a prompt cut short mid-prefill
        assert 0 <= extra < 2048  # is computed again (one budget at most here)
    else:  # recompute prefills prompt + generated tokens again
        assert extra > 2048


def test_swap_costs_host_link_time():
    recompute = serve(TIGHT, BURST, {"preemption": "recompute"})
    swap = serve(TIGHT, BURST, {"preemption": "swap"})
    # same first decisions, so the first preemption happens at the same step; swap's steps then carry
    # the PCIe copy: at least one step is longer than any step of the same batch without it
    assert swap.preemptions > 0 and recompute.preemptions > 0
    kv_per_token = predict(TIGHT, **{"workload.context_len": 1000}).memory.kv_bytes_per_token
    one_swap_s = 1000 * kv_per_token / 64e9  # H100 host link: PCIe Gen5 x16, 64 GB/s
    assert swap.timeline["duration_s"].max() > one_swap_s


def test_prefix_cache_hits_every_request_after_the_first():
    wl = {"rate": 5.0, "num_requests": 100, "prompt_len": 64, "output_len": 8, "seed": 1,
          "prefixes": [{"length": 2048, "popularity": 1.0}]}
    cold = serve(SC, wl)
    warm = serve(SC, wl, {"prefix_caching": True})
    assert cold.cached_prompt_tokens == 0
    assert warm.cached_prompt_tokens == 99 * 2048  # 128 full blocks of 16, cached after the first request
    assert warm.ttft_s.mean < 0.5 * cold.ttft_s.mean
    assert warm.timeline["chunk_tokens"].sum() == 100 * (2048 + 64) - 99 * 2048


def test_block_pool_evicts_least_recently_freed_prefix_tail_first():
    pool = BlockPool(10, 16, prefix_caching=True)
    assert pool.acquire_prefix(0, 4) == (0, True)
    assert pool.acquire_prefix(1, 4) == (0, True)
    pool.release_prefix(0)
    pool.release_prefix(1)  # both idle; group 0 freed first
    assert pool.free == 2 and pool.used == 0
    assert pool.allocate(5)  # 2 free + 3 evicted from group 0's tail
    assert pool.resident == {0: 1, 1: 4}
    assert pool.acquire_prefix(0, 4) == (1, True)  # 1 cached block hit; 3 more taken from idle group 1
    assert pool.resident == {0: 4, 1: 1}
    assert pool.acquire_prefix(1, 4) == (0, False)  # needs 3 blocks; nothing free or idle but its own
    assert pool.resident == {0: 4, 1: 1} and pool.used == 9
    assert not pool.allocate(2)
    assert pool.allocate(1)  # evicts group 1's last cached block
    assert pool.resident[1] == 0 and pool.free == 0


def test_requests_that_can_never_fit_are_rejected_with_a_reason():
    res = serve(SC, {"rate": 2.0, "num_requests": 20, "prompt_len": "uniform:100,200000", "output_len": 10},
                {"max_model_len": 131072})
    assert res.completed + res.rejected == 20
    assert res.rejected > 0
    assert all("max_model_len" in reason for reason in res.rejections)
    rec = res.records
    assert np.all(rec["finish_s"][rec["rejected"]] < 0)
    assert np.all(rec["prompt_tokens"][rec["rejected"]] + 10 > 131072)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seqs=st.integers(1, 40), budget=st.integers(40, 3000), chunked=st.booleans(), swap=st.booleans(),
       rate=st.floats(1.0, 200.0), seed=st.integers(0, 1000))
def test_invariants_under_random_configurations(seqs, budget, chunked, swap, rate, seed):
    wl = {"rate": rate, "num_requests": 40, "prompt_len": "lognormal:600,1.0", "output_len": "lognormal:80,1.0",
          "seed": seed}
    cfg = {"max_num_seqs": seqs, "max_num_batched_tokens": max(budget, seqs), "chunked_prefill": chunked,
           "preemption": "swap" if swap else "recompute"}
    res = serve(TIGHT, wl, cfg)
    rec, tl = res.records, res.timeline
    assert res.completed + res.rejected == 40
    done = rec["finish_s"] >= 0
    assert np.all(rec["first_token_s"][done] >= rec["arrival_s"][done])
    assert np.all(rec["finish_s"][done] >= rec["first_token_s"][done])
    assert np.all(tl["decode"] + tl["chunk_tokens"] <= cfg["max_num_batched_tokens"])
    assert np.all(tl["running"] <= seqs)
    assert np.all(tl["kv_blocks_used"] <= kv_blocks(res))
    assert tl["tokens_out"].sum() == rec["output_tokens"][done].sum()


def test_speculative_decoding_commits_its_expected_tokens_per_step():
    wl = {"rate": 5.0, "num_requests": 200, "prompt_len": "lognormal:800,0.7", "output_len": "lognormal:100,0.7"}
    plain = serve(SC, wl)
    spec = serve(dict(SC, techniques=[{"name": "speculative", "method": "medusa", "gamma": 3}]), wl)
    assert spec.timeline["tokens_out"].sum() == pytest.approx(spec.records["output_tokens"].sum(), rel=1e-12)
    assert spec.timeline["decode"].sum() < plain.timeline["decode"].sum()  # fewer decode passes
    assert spec.tpot_s.p50 < plain.tpot_s.p50
