"""Closed-form operator counts against hand calculations."""

import numpy as np
import pytest

from costmodels.attention import attended_pairs, attention_flops, decode_attention_bytes, prefill_attention_bytes
from costmodels.collectives import collective_time_s, collective_traffic
from costmodels.gemm import gemm_bytes, gemm_flops
from costmodels.host_transfer import context_switch_time_s
from costmodels.memory import kv_cache_bytes, max_concurrency
from costmodels.roofline import COMPUTE, MEMORY, OVERHEAD, OpCost, floor_time, price
from hwmodels import load_profile


def test_gemm_counts_by_hand():
    # [4 x 8] @ [8 x 16]: 2*4*8*16 = 1024 FLOPs; bytes 4*8*2 + 8*16*1 + 4*16*2 = 64 + 128 + 128
    assert gemm_flops(4, 8, 16) == 1024
    assert gemm_bytes(4, 8, 16, act_bytes=2, weight_bytes=1) == 320
    assert gemm_bytes(4, 8, 16, act_bytes=2, weight_bytes=1, bias=True) == 320 + 16 * 2


def test_causal_pairs_by_hand():
    # 4 new tokens, nothing cached: 1+2+3+4 = 10 pairs
    assert attended_pairs(4, 0) == 10
    # 3 new tokens after 5 cached: 6+7+8 = 21
    assert attended_pairs(3, 5) == 21
    # decode: one token after 100 cached sees 101 keys
    assert attended_pairs(1, 100) == 101


@pytest.mark.parametrize("new,past,window", [(10, 0, 4), (10, 3, 4), (3, 10, 4), (7, 2, 100), (1, 50, 8), (5, 0, 5)])
def test_sliding_window_pairs_match_brute_force(new, past, window):
    brute = sum(min(past + i, window) for i in range(1, new + 1))
    assert attended_pairs(new, past, window) == brute


def test_attention_flops_follow_flashattention_convention():
    # FA-2 benchmark: causal forward = 4*b*s^2*h*d / 2 (pairs ~ s^2/2); here exact pairs s(s+1)/2
    s, heads, d = 1024, 8, 128
    pairs = attended_pairs(s, 0)
    assert attention_flops(pairs, heads, d) == pytest.approx(4 * heads * d * s * (s + 1) / 2)


def test_attention_bytes():
    # prefill: Q and O for 16 tokens x 4 heads x 64 dims in bf16, KV for 16 tokens x 2*2*64 elements in fp8
    b = prefill_attention_bytes(1, 16, 16, 4, 64, 64, 2 * 2 * 64, 2, 1)
    assert b == 16 * 4 * 128 * 2 + 16 * 256 * 1
    # decode: 3 sequences over 1000 cached tokens
    d = decode_attention_bytes(3, 1000, 4, 64, 64, 256, 2, 2)
    assert d == 3 * (1000 * 256 * 2 + 4 * 128 * 2)


def test_ring_collectives_by_hand():
    traffic, steps = collective_traffic("all_reduce", 8e6, 4)
    assert traffic == pytest.approx(2 * 3 / 4 * 8e6) and steps == 6
    traffic, steps = collective_traffic("all_gather", 8e6, 4)
    assert traffic == pytest.approx(3 / 4 * 8e6) and steps == 3
    assert collective_time_s("all_reduce", 8e6, 1, 1e9, 1e-6) == 0.0
    # 8 GPUs, 1 MB, 100 GB/s, 5 us: 14*5us + 1.75 MB / 100 GB/s
    assert collective_time_s("all_reduce", 1e6, 8, 100e9, 5e-6) == pytest.approx(14 * 5e-6 + 1.75e6 / 100e9)


def test_context_switch_is_out_plus_in_over_link():
    assert context_switch_time_s(12e9, 12e9, 32e9) == pytest.approx(0.75)


def test_kv_and_concurrency():
    assert kv_cache_bytes(2, 1000, 4096, 2) == 2 * 1000 * 4096 * 2
    assert max_concurrency(80e9, 68e9, 1e9) == 12
    assert max_concurrency(60e9, 68e9, 1e9) == 0  # weights alone do not fit


def _kernel(flops, nbytes, kind="gemm"):
    return OpCost("op", kind, 2, flops=flops, hbm_bytes=nbytes, peak_flops_per_s=100e12, hbm_bandwidth_bytes_per_s=2e12)


def test_roofline_at_peak():
    peak = load_profile("peak")
    t = price(_kernel(1e12, 1e9), peak)  # compute 10 ms vs memory 0.5 ms, two launches
    assert float(t.time_s) == pytest.approx(2 * 1e12 / 100e12)
    assert int(t.bound) == COMPUTE
    t = price(_kernel(1e9, 1e10), peak)
    assert float(t.time_s) == pytest.approx(2 * 1e10 / 2e12) and int(t.bound) == MEMORY


def test_default_profile_is_slower_than_peak_and_labels_overhead():
    default = load_profile("default")
    op = _kernel(1e12, 1e9)
    assert float(price(op, default).time_s) > float(floor_time(op))
    tiny = _kernel(10.0, 10.0, kind="memory")
    assert int(price(tiny, default).bound) == OVERHEAD


def test_transfer_pricing():
    op = OpCost("ar", "collective", 3, link_bytes=np.array([0.0, 1e6]), link_latency_s=2e-6,
                link_bandwidth_bytes_per_s=1e11)
    t = price(op, load_profile("peak"))
    assert t.time_s[0] == 0.0
    assert t.time_s[1] == pytest.approx(3 * (2e-6 + 1e6 / 1e11))
