"""Sweep axes (issue 8, item 13): every output spans every axis listed in ``.axes``, and the
configuration axes num_gpus, gpu and model sweep like the others."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import InputError
from simulator import predict, sweep


def test_an_axis_the_phase_ignores_is_broadcast_not_collapsed():
    r = sweep({"workload": {"phase": "prefill"}}, batch_size=[1, 4], context_len=[1024, 2048, 4096])
    assert list(r.axes) == ["batch_size", "context_len"]
    for key, value in r.items():
        assert value.shape == (2, 3), key
    assert np.all(r["latency_s"][:, 0:1] == r["latency_s"])  # prefill does not read context_len


@pytest.mark.parametrize("axis, values, field", [
    ("gpu", ["h100-sxm", "h200-sxm", "a100-80gb-sxm"], "hardware.gpu"),
    ("model", ["llama-3.1-8b", "qwen2.5-7b"], "model"),
    ("num_gpus", [1, 2, 4], "hardware.num_gpus"),
])
def test_configuration_axes_match_one_prediction_per_point(axis, values, field):
    batches = [1, 16]
    r = sweep({"workload": {"phase": "decode"}}, batch_size=batches, **{axis: values})
    assert list(r.axes) == ["batch_size", axis] and list(r.axes[axis]) == values
    assert r["latency_s"].shape == (2, len(values))
    for i, b in enumerate(batches):
        for j, v in enumerate(values):
            p = predict(**{"workload.batch_size": b, field: v})
            assert r["latency_s"][i, j] == pytest.approx(p.latency_s, rel=1e-12)
            assert r["tokens_per_s"][i, j] == pytest.approx(p.tokens_per_s, rel=1e-12)


def test_configuration_axis_first_and_two_of_them():
    r = sweep(None, gpu=["h100-sxm", "h200-sxm"], context_len=[1000, 2000, 3000], num_gpus=[1, 2])
    assert r["latency_s"].shape == (2, 3, 2)
    p = predict(**{"hardware.gpu": "h200-sxm", "workload.context_len": 3000, "hardware.num_gpus": 2})
    assert r["latency_s"][1, 2, 1] == pytest.approx(p.latency_s, rel=1e-12)


def test_a_bad_configuration_value_names_the_axis_value():
    with pytest.raises(InputError, match="gpu=no-such-gpu"):
        sweep(None, gpu=["h100-sxm", "no-such-gpu"])
    with pytest.raises(InputError, match="num_gpus"):
        sweep(None, num_gpus=[0])
