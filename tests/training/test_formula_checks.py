"""Paper checks of the closed-form training counts: Megatron FLOPs and days, Korthikanti activations,
ZeRO model states, PaLM model FLOPs. Expected values are the papers' published numbers."""

import numpy as np
import pytest

from costmodels.pipeline import bubble_fraction, inflight_microbatches
from costmodels.training_flops import (SECONDS_PER_DAY, megatron_iteration_flops, megatron_training_time_s,
                                       palm_flops_per_token)
from costmodels.training_memory import korthikanti_activation_bytes, zero_model_state_bytes
from gpt_models import GPT3_175B
from simulator.models import get_model
from simulator.training.memory import activation_bytes_per_token_layer


def test_megatron_gpt3_iteration_flops():
    # Narayanan et al. 2021, §5.1: GPT-3 175B, B = 1536, s = 2048, full recompute: 4.51e18 FLOPs per iteration
    f = megatron_iteration_flops(1536, 2048, 96, 12288, 51200, recompute=True)
    assert f == pytest.approx(4.51e18, rel=2e-3)
    # no recompute is 3/4 of the layers' work plus the same logit layer: 72 (1 + s/6h + V/12Lh)
    assert megatron_iteration_flops(1536, 2048, 96, 12288, 51200, recompute=False) < f


def test_megatron_training_days():
    # §5.1: 175B on 300B tokens, 1024 A100 at 140 TFLOP/s: 34 days; 1T on 450B tokens, 3072 GPUs at 163: 84 days
    d175 = megatron_training_time_s(300e9, 175e9, 1024, 140e12) / SECONDS_PER_DAY
    d1t = megatron_training_time_s(450e9, 1e12, 3072, 163e12) / SECONDS_PER_DAY
    assert round(d175) == 34 and d175 == pytest.approx(33.9, abs=0.05)
    assert round(d1t) == 83 and d1t == pytest.approx(83.2, abs=0.05)  # the paper rounds 83.2 up to "84 days"


def test_palm_flops_equal_megatron_without_recompute():
    # 6N + 12LHQT per token with N = 12Lh^2 + Vh reproduces 72BsLh^2(1 + s/6h + V/12Lh) / (Bs)
    L, h, V, s = 96, 12288, 51200, 2048
    n = 12 * L * h * h + V * h
    per_token = palm_flops_per_token(n, L, 96, 128, s)
    assert per_token * 1536 * s == pytest.approx(megatron_iteration_flops(1536, s, L, h, V, recompute=False), rel=1e-12)


@pytest.mark.parametrize("tp, sp, recompute, expected_gb", [
    (1, False, "none", 2.87), (8, False, "none", 0.579), (8, True, "selective", 0.107)])
def test_korthikanti_gpt3_activations(tp, sp, recompute, expected_gb):
    # Korthikanti et al. 2022: sbh(34 + 5as/h) = 2.87 GB/layer; TP 8: 0.579 GB; TP 8 + SP + selective: 107 MB
    got = korthikanti_activation_bytes(2048, 1, 12288, 96, tp, sp, recompute) / 1e9
    assert got == pytest.approx(expected_gb, rel=3e-3)


@pytest.mark.parametrize("tp, sp, recompute", [(1, False, 0), (8, False, 0), (8, True, 0), (8, True, 1), (8, True, 2)])
def test_general_activation_formula_is_korthikanti_on_gpt3(tp, sp, recompute):
    spec = get_model(GPT3_175B)
    saved, _ = activation_bytes_per_token_layer(spec, tp, sp, recompute, flash=False, dropout=True, seq_len=2048)
    name = ("none", "selective", "full")[recompute]
    assert saved * 2048 == pytest.approx(korthikanti_activation_bytes(2048, 1, 12288, 96, tp, sp, name), rel=1e-12)


def test_flash_attention_removes_the_s2_term():
    spec = get_model(GPT3_175B)
    flash, _ = activation_bytes_per_token_layer(spec, 1, False, 0, flash=True, dropout=True, seq_len=2048)
    # 34 h bytes per token and the fp32 log-sum-exp of each of the 96 heads
    assert flash == pytest.approx(34 * 12288 + 4 * 96)


def test_zero_figure_1():
    # Rajbhandari et al. 2019, Fig. 1: Psi = 7.5B, N_d = 64, K = 12: 120 / 31.4 / 16.6 / 1.9 GB
    got = [zero_model_state_bytes(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert got == pytest.approx([120.0, 31.4, 16.6, 1.9], abs=0.05)


def test_zero_closed_forms_any_model():
    psi, n = 3.3e9, 16
    assert zero_model_state_bytes(psi, n, 0) == pytest.approx(16 * psi)
    assert zero_model_state_bytes(psi, n, 1) == pytest.approx((4 + 12 / n) * psi)
    assert zero_model_state_bytes(psi, n, 2) == pytest.approx((2 + 14 / n) * psi)
    assert zero_model_state_bytes(psi, n, 3) == pytest.approx(16 * psi / n)


def test_pipeline_bubble_and_inflight():
    # (p - 1)/(m + p - 1) for GPipe and 1F1B; interleaving divides the bubble slots by v
    assert bubble_fraction("1f1b", 8, 32) == pytest.approx(7 / 39)
    assert bubble_fraction("gpipe", 4, 4) == pytest.approx(3 / 7)
    assert bubble_fraction("interleaved", 8, 32, 4) == pytest.approx((7 / 4) / (32 + 7 / 4))
    assert inflight_microbatches("gpipe", 8, 32) == 32
    assert inflight_microbatches("1f1b", 8, 32) == 8
    assert inflight_microbatches("interleaved", 8, 32, 2) == pytest.approx(8 * (1 + 7 / 16))
    assert np.all(bubble_fraction("1f1b", 1, np.array([1, 8])) == 0.0)
