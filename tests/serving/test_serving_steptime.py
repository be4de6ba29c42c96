"""The simulator's step time is roofsim's step model for the same batch (``predict``)."""

import pytest

from simulator import predict
from simulator.serving import Batch, StepTimer, step_time
from simulator.serving.steptime import chunk_pairs

SCENARIOS = [
    {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm"}},
    {"model": "llama-3.1-70b", "hardware": {"gpu": "h200-sxm", "num_gpus": 4}, "precision": {"weights": "fp8"}},
    {"model": "qwen3-30b-a3b", "hardware": {"gpu": "h100-sxm"}},
]
# The fast path interpolates a table (see steptime's docstring); its measured worst case over random
# batches is 3.4e-4, so 0.5% leaves room for other models and profiles without hiding a wrong shape.
FAST_RTOL = 5e-3


def mixed_prediction(sc, b, ctx, chunk, past):
    return predict(sc, **{"workload.phase": "decode", "workload.batch_size": b, "workload.context_len": ctx,
                          "techniques": [{"name": "chunked_prefill", "chunk_tokens": chunk, "chunk_context": past}]})


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s["model"])
@pytest.mark.parametrize("b, ctx, chunk, past", [(1, 100, 16, 1), (8, 1000, 512, 4096), (96, 3000, 1900, 64),
                                                 (255, 700, 256, 1)])
def test_mixed_step_equals_predict(sc, b, ctx, chunk, past):
    expected = mixed_prediction(sc, b, ctx, chunk, past).latency_s
    timer = StepTimer(sc)
    assert timer.exact(Batch([ctx] * b, [chunk], [past])) == pytest.approx(expected, rel=1e-12)
    fast = timer.seconds(b, b * ctx, chunk, chunk_pairs(chunk, past), 1)
    assert fast == pytest.approx(expected, rel=FAST_RTOL)


@pytest.mark.parametrize("sc", SCENARIOS[:2], ids=lambda s: s["model"])
@pytest.mark.parametrize("b, ctx", [(1, 17), (37, 1234), (256, 8000)])
def test_decode_step_equals_predict(sc, b, ctx):
    expected = predict(sc, **{"workload.phase": "decode", "workload.batch_size": b,
                              "workload.context_len": ctx}).latency_s
    timer = StepTimer(sc)
    assert timer.exact(Batch([ctx] * b)) == pytest.approx(expected, rel=1e-12)
    assert timer.seconds(b, b * ctx) == pytest.approx(expected, rel=FAST_RTOL)


@pytest.mark.parametrize("k, prompt", [(1, 512), (3, 700), (8, 129)])
def test_prefill_step_equals_predict(k, prompt):
    sc = SCENARIOS[0]
    expected = predict(sc, **{"workload.phase": "prefill", "workload.batch_size": k,
                              "workload.prompt_len": prompt}).latency_s
    timer = StepTimer(sc)
    assert timer.exact(Batch([], [prompt] * k, [0] * k)) == pytest.approx(expected, rel=1e-12)
    assert timer.seconds(0, 0, k * prompt, k * chunk_pairs(prompt, 0), k) == pytest.approx(expected, rel=FAST_RTOL)


def test_heterogeneous_decode_contexts_price_as_their_mean():
    """Decode attention is linear in each sequence's context, so a batch prices as its mean context."""
    sc = SCENARIOS[0]
    assert step_time(sc, Batch([100, 3000, 8000])) == pytest.approx(step_time(sc, Batch([3700] * 3)), rel=1e-12)


def test_speculative_decoding_acts_through_the_step_model():
    sc = dict(SCENARIOS[0], techniques=[{"name": "speculative", "method": "medusa", "gamma": 3}])
    timer = StepTimer(sc)
    assert timer.tokens_per_step > 1.0
    expected = predict(sc, **{"workload.phase": "decode", "workload.batch_size": 16, "workload.context_len": 900})
    assert timer.exact(Batch([900] * 16)) == pytest.approx(expected.latency_s, rel=1e-12)


def test_scheduler_techniques_are_left_to_the_scheduler():
    sc = dict(SCENARIOS[0], techniques=[{"name": "chunked_prefill", "chunk_tokens": 64}, {"name": "prefix_cache"}])
    assert step_time(sc, Batch([500] * 4)) == step_time(SCENARIOS[0], Batch([500] * 4))


def test_breakdown_sums_to_the_step():
    seconds, parts = step_time(SCENARIOS[0], Batch([1000] * 8, [256], [0]), breakdown=True)
    assert sum(parts.values()) == pytest.approx(seconds, rel=1e-9)
    assert any(name.endswith(".chunk") for name in parts)
