"""The fast paths of a point evaluation (issue 8, item 17) give the same numbers as the array path, and
configuration-only work is done once per deployment. No timings here (see ``benchmarks/``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwmodels.profile
from hwmodels.errors import InputError
from simulator import predict, sweep
from simulator.api import _operator_reports
from simulator.engine import evaluate, run_step
from simulator.prediction import OperatorReport, Prediction
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.step import StepShape

SCENARIOS = [
    {"workload.batch_size": 32},
    {"workload.phase": "prefill", "workload.batch_size": 4, "workload.prompt_len": 3000},
    {"workload.phase": "generate", "model": "mixtral-8x7b", "hardware.num_gpus": 2},
    {"workload.phase": "generate", "techniques": [{"name": "chunked_prefill", "chunk_tokens": 256}]},
    {"workload.phase": "decode", "overlap": "overlapped", "hardware.num_gpus": 2, "model": "qwen2.5-7b"},
    {"workload.phase": "decode", "techniques": [{"name": "speculative"}, {"name": "kv_quant"}]},
]


@pytest.mark.parametrize("kw", SCENARIOS)
def test_point_path_equals_array_path(kw):
    """predict (Python floats) and a one-point sweep (numpy arrays) agree on every output."""
    sc = Scenario().with_overrides(**kw)
    wl = sc.workload
    point = evaluate(sc).arrays
    grid = sweep(sc, batch_size=[wl.batch_size], context_len=[wl.context_len])
    for key, value in point.items():
        assert np.ravel(grid[key])[0] == pytest.approx(float(value), rel=1e-12, abs=1e-300), key


def test_a_point_step_is_priced_in_floats():
    dep, _ = resolve(Scenario(), {})
    step = run_step(dep, StepShape(8, 1.0, 1000, "decode"), "serial")
    assert all(type(t.time_s) is float and type(t.bound) is int for t in step.times)
    assert type(step.latency_s) is float


def test_configuration_work_is_cached_per_deployment(monkeypatch):
    sc = Scenario().with_overrides(**{"workload.batch_size": 3})
    first = predict(sc)
    # no profile directory glob, no re-resolution once the configuration has been seen
    monkeypatch.setattr(hwmodels.profile, "builtin_profiles", lambda: pytest.fail("profiles globbed again"))
    again = predict(sc.with_overrides(**{"workload.batch_size": 5}))
    assert resolve(sc, {})[0] is resolve(sc.with_overrides(**{"workload.context_len": 7}), {})[0]
    assert again.latency_s > first.latency_s


def test_a_changed_configuration_is_not_served_from_the_cache():
    a = predict(**{"precision.kv_cache": "bf16"})
    b = predict(**{"precision.kv_cache": "fp8"})
    assert b.memory.kv_cache_bytes == pytest.approx(a.memory.kv_cache_bytes / 2)


@pytest.mark.parametrize("kw", SCENARIOS)
def test_trusted_predictions_equal_validated_ones(kw):
    """``predict`` builds its result without re-validation; validating its JSON gives the same object
    and the same JSON (every field present, of its declared type)."""
    p = predict(**kw)
    text = p.model_dump_json()
    again = Prediction.model_validate_json(text)
    assert again == p and again.model_dump_json() == text
    assert set(p.__dict__) == set(Prediction.model_fields)
    for row in p.breakdown:
        assert OperatorReport.model_validate(row.model_dump()) == row
    # a point's rows share one fields-set; pydantic copies it before a change, so one row's copy leaves the
    # others be
    before = [set(row.model_fields_set) for row in p.breakdown]
    copied = p.breakdown[0].model_copy(update={"name": "renamed", "unknown_field": 1})
    assert copied.name == "renamed" and p.breakdown[0].name != "renamed"
    assert [row.model_fields_set for row in p.breakdown] == before


@pytest.mark.parametrize("phase", ["decode", "prefill", "generate"])
def test_sweep_bounds_and_times_equal_point_predictions(phase):
    """Every point of a sweep whose operators change bound over the grid (attention overhead-, memory-
    and compute-bound by size) reports the bound and latency of its own point prediction."""
    batches, contexts = [1, 8, 64, 512], [128, 4096, 65536]
    sc = Scenario().with_overrides(**{"workload.phase": phase, "model": "llama-3.2-1b", "workload.output_len": 16})
    r = sweep(sc, batch_size=batches, context_len=contexts, prompt_len=[64, 2048])
    for i, b in enumerate(batches):
        for j, c in enumerate(contexts):
            for k, s in enumerate([64, 2048]):
                p = predict(sc, **{"workload.batch_size": b, "workload.context_len": c, "workload.prompt_len": s})
                assert ["compute", "memory", "communication", "overhead"][int(r["bound"][i, j, k])] == p.bound
                assert r["latency_s"][i, j, k] == pytest.approx(p.latency_s, rel=1e-12)


# --- the fast paths against a reference evaluation, on random scenarios -------------------------------

MODELS = ["llama-3.1-8b", "mixtral-8x7b", "deepseek-v2-lite", "gemma-2-27b", "qwen3-30b-a3b", "llama-3.2-1b"]
TECHNIQUES = [[], [{"name": "kv_quant"}], [{"name": "speculative"}], [{"name": "chunked_prefill", "chunk_tokens": 256}],
              [{"name": "prefix_cache", "hit_rate": 0.5, "read_once": True}], [{"name": "weight_quant", "format": "fp8"}],
              [{"name": "yoco"}], [{"name": "kv_eviction"}, {"name": "kv_quant"}]]


def _reference(sc: Scenario):
    """The same point through the array path on a deployment resolved afresh (a precision axis of one value
    bypasses the deployment cache, and arrays take numpy's branches of pricing, sums and bounds)."""
    ev = evaluate(sc, {"compute": [sc.precision.compute]})
    return ev, {k: np.ravel(v)[0] for k, v in ev.arrays.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), phase=st.sampled_from(["prefill", "decode", "generate"]),
       batch=st.integers(1, 512), context=st.integers(1, 65536), prompt=st.integers(1, 16384),
       output=st.integers(1, 2048), gpus=st.sampled_from([1, 2, 4, 8]), techniques=st.sampled_from(TECHNIQUES),
       calibration=st.sampled_from(["auto", "default", "peak"]), overlap=st.sampled_from(["serial", "overlapped"]),
       kv=st.sampled_from(["bf16", "fp8"]))
def test_cached_fast_paths_equal_a_fresh_array_evaluation(model, phase, batch, context, prompt, output, gpus,
                                                           techniques, calibration, overlap, kv):
    """Every output and breakdown row of ``predict`` (a deployment from the cache, operators priced and
    summed in Python floats, rows without validation) equals a fresh array-path evaluation of the same point
    to 1e-12, on random models, phases, sizes, GPU counts, techniques, profiles and overlap policies. The
    cache is shared across examples, so a stale deployment or memo would show up here."""
    kw = {"model": model, "workload.phase": phase, "workload.batch_size": batch, "workload.context_len": context,
          "workload.prompt_len": prompt, "workload.output_len": output, "hardware.num_gpus": gpus,
          "techniques": techniques, "calibration": calibration, "overlap": overlap, "precision.kv_cache": kv}
    try:
        sc = Scenario().with_overrides(**kw)
        fast = predict(sc)
    except InputError:  # a combination the model refuses (tp over the KV heads, a technique's limits)
        return
    point = evaluate(sc).arrays
    ev, ref = _reference(sc)
    assert set(point) == set(ref)
    for key, value in ref.items():
        assert point[key] == pytest.approx(float(value), rel=1e-12, abs=1e-300), key
    rows = [r for name, step in ev.steps.items() for r in _operator_reports(name, step)]
    assert [r.name for r in fast.breakdown] == [r.name for r in rows]
    for got, want in zip(fast.breakdown, rows):
        for field, value in want.model_dump().items():
            if isinstance(value, float):
                assert getattr(got, field) == pytest.approx(value, rel=1e-12, abs=1e-300), (got.name, field)
            else:
                assert getattr(got, field) == value, (got.name, field)


@settings(max_examples=60, deadline=None)
@given(first=st.floats(-2.0, 3.0), steps=st.lists(st.floats(0.1, 3.0), min_size=1, max_size=6),
       effs=st.lists(st.floats(0.05, 1.0), min_size=7, max_size=7), factor=st.floats(1e-15, 1e-3),
       sizes=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e16)), min_size=1, max_size=20))
def test_curve_size_over_equals_size_times_factor_over_efficiency(first, steps, effs, factor, sizes):
    """A sweep's one-array ``size * factor / curve(size)`` equals the formula, sizes 0 and below 1 included,
    for curves that start below and above a size of 1."""
    xs = [first]
    for step in steps:
        xs.append(xs[-1] + step)
    curve = hwmodels.profile.Curve(log10_size=xs, efficiency=effs[:len(xs)])
    size = np.asarray(sizes, dtype=float)
    expected = size * factor / curve(size)
    np.testing.assert_allclose(curve.size_over(size, factor), expected, rtol=1e-12, atol=0.0)
    assert not np.shares_memory(curve.size_over(size, factor), size)  # a new array: the size is not written


def test_a_sweep_keeps_no_operators_and_equals_the_evaluation_that_does():
    """``sweep`` evaluates without keeping its steps' operators (their arrays freed early); the outputs equal
    those of an evaluation that keeps them."""
    sc = Scenario().with_overrides(**{"workload.phase": "generate",
                                      "techniques": [{"name": "chunked_prefill", "chunk_tokens": 256}]})
    axes = {"batch_size": np.array([1, 8, 64]), "context_len": np.array([512, 4096]), "prompt_len": [256, 2048]}
    kept = evaluate(sc, axes)
    assert kept.steps["decode"].ops
    grid = sweep(sc, **axes)
    for key, value in kept.arrays.items():
        np.testing.assert_array_equal(grid[key], value, err_msg=key)


@settings(max_examples=15, deadline=None)
@given(first=st.floats(-2.0, 3.0), steps=st.lists(st.floats(0.1, 3.0), min_size=1, max_size=6),
       effs=st.lists(st.floats(0.05, 1.0), min_size=7, max_size=7), factor=st.floats(1e-15, 1e-3),
       inside=st.floats(0.0, 0.45), seed=st.integers(0, 2**31))
def test_curve_size_over_past_the_flat_top_is_the_same_to_the_bit(first, steps, effs, factor, inside, seed):
    """A large array mostly beyond the last knot (a sweep's attention over long contexts) takes the masked
    path: its result equals the whole-array interpolation bit for bit, and the formula."""
    xs = [first]
    for step in steps:
        xs.append(xs[-1] + step)
    curve = hwmodels.profile.Curve(log10_size=xs, efficiency=effs[:len(xs)])
    rng = np.random.default_rng(seed)
    n = hwmodels.profile._FLAT_TOP_MIN_SIZE + 123
    low = rng.uniform(xs[0] - 1.0, xs[-1], size=n)
    high = rng.uniform(xs[-1], xs[-1] + 4.0, size=n)
    size = 10.0 ** np.where(rng.random(n) < inside, low, high)
    size[:3] = (0.0, 10.0 ** xs[-1], 10.0 ** xs[0])  # zero, and exactly at the knots
    got = curve.size_over(size, factor)
    np.testing.assert_array_equal(got, curve._size_over_all(size, factor))
    np.testing.assert_allclose(got, size * factor / curve(size), rtol=1e-12, atol=0.0)
