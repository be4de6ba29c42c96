"""One home per formula (issue 8, item 15): prediction, techniques, calibration and the explorer call the
``costmodels`` function of an operator's FLOPs, bytes or time, so changing it there changes all of
them (a copy elsewhere would not follow). Each test swaps one costmodels function for a marked one."""

from __future__ import annotations

import numpy as np
import pytest

import costmodels.attention
import costmodels.gemm
import costmodels.moe
import costmodels.roofline
from simulator.engine import evaluate
from simulator.scenario import Scenario


def _ops(**kw):
    ev = evaluate(Scenario().with_overrides(**kw))
    return {op.name: op for step in ev.steps.values() for op in step.ops}


def _marked(fn, factor=3.0):
    return lambda *a, **k: factor * fn(*a, **k)


def test_decode_attention_bytes_come_from_costmodels(monkeypatch):
    before = float(_ops()["attention.full"].hbm_bytes)
    monkeypatch.setattr(costmodels.attention, "decode_attention_bytes",
                        _marked(costmodels.attention.decode_attention_bytes))
    assert float(_ops()["attention.full"].hbm_bytes) == pytest.approx(3 * before)


def test_grouped_gemm_bytes_come_from_costmodels_in_prediction_and_calibration(monkeypatch):
    from validation import sweeps

    kw = {"model": "mixtral-8x7b", "hardware.num_gpus": 2}
    before = float(_ops(**kw)["moe.expert.gate_up_proj"].hbm_bytes)
    point = sweeps.grouped_gemm_point(64, 8, 2, 4096, 2 * 14336, "grouped_mm").bytes
    monkeypatch.setattr(costmodels.gemm, "grouped_gemm_bytes", _marked(costmodels.gemm.grouped_gemm_bytes))
    assert float(_ops(**kw)["moe.expert.gate_up_proj"].hbm_bytes) == pytest.approx(3 * before)
    assert sweeps.grouped_gemm_point(64, 8, 2, 4096, 2 * 14336, "grouped_mm").bytes == pytest.approx(3 * point)


def test_the_fit_prices_launches_with_the_roofline_of_costmodels(monkeypatch):
    from validation.fit import predict_times

    args = (np.array([1e9, 1e12]), np.array([1e8, 1e6]), 1e15, 3e12, [6.0, 12.0], [0.2, 0.8], [5.0, 9.0],
            [0.3, 0.9], 2e-6)
    before = predict_times(*args)
    monkeypatch.setattr(costmodels.roofline, "roofline_time_s", _marked(costmodels.roofline.roofline_time_s))
    assert predict_times(*args) == pytest.approx(3 * before)


def test_expected_distinct_experts_has_one_home(monkeypatch):
    kw = {"model": "mixtral-8x7b", "hardware.num_gpus": 2, "workload.batch_size": 1}
    weights = float(_ops(**kw)["moe.expert.gate_up_proj"].weight_bytes)
    monkeypatch.setattr(costmodels.moe, "expected_distinct_experts", lambda t, e, k: 1.0 + 0.0 * np.asarray(t))
    assert float(_ops(**kw)["moe.expert.gate_up_proj"].weight_bytes) == pytest.approx(weights / 2)


def test_kv_offload_recompute_is_a_costmodels_gemm(monkeypatch):
    kw = {"techniques": [{"name": "kv_offload", "policy": "recompute"}]}
    before = _ops(**kw)["kv_offload.recompute_kv"]
    monkeypatch.setattr(costmodels.gemm, "gemm_flops", _marked(costmodels.gemm.gemm_flops))
    assert float(_ops(**kw)["kv_offload.recompute_kv"].flops) == pytest.approx(3 * float(before.flops))
