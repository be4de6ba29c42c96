"""Pipeline parallelism inside a serving replica: pp batches in flight (simulator.serving.lanes), in the
request-level simulation and the fast path."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import serve
from simulator.serving import Batch, StepTimer
from simulator.serving.analytic import colocated
from simulator.serving.tables import step_tables

MODEL = "llama-3.1-8b"
PP2 = {"model": MODEL, "hardware": {"gpu": "h100-sxm", "num_gpus": 2}, "parallelism": {"tp": 1, "pp": 2}}
DP2 = {"model": MODEL, "hardware": {"gpu": "h100-sxm", "num_gpus": 2}, "parallelism": {"tp": 1}}
ONE = {"model": MODEL, "hardware": {"gpu": "h100-sxm", "num_gpus": 1}}
P, O = 1024, 256


def _run(sc, rate, n, config=None, output=O):
    return serve(sc, {"rate": rate, "num_requests": n, "prompt_len": P, "output_len": output, "seed": 3},
                 {"router": "least_outstanding", **(config or {})})


@pytest.fixture(scope="module")
def overloaded():
    """Far beyond capacity, so that every deployment serves at its limit."""
    return {name: _run(sc, 80.0, 3000) for name, sc in (("pp2", PP2), ("dp2", DP2), ("one", ONE))}


def test_pp2_serves_near_two_data_parallel_replicas_at_high_load(overloaded):
    """Two lanes keep both stages busy: the pipeline's output rate is near that of two whole replicas
    (the shortfall is the pipe waiting for its slowest batch in flight) and well above one replica's."""
    pp2, dp2, one = (overloaded[k].output_tokens_per_s for k in ("pp2", "dp2", "one"))
    assert all(overloaded[k].saturated for k in overloaded)
    assert pp2 >= 0.85 * dp2
    assert pp2 >= 1.6 * one


def test_tpot_is_at_least_one_batch_trip_through_all_stages():
    """One request at a time: each token takes a batch's trip through both stages and the send between
    them (one micro-batch of one sequence, priced by the step model), more than the one-GPU step."""
    res = _run(PP2, 0.2, 40, output=64)
    trip = StepTimer({**PP2, "parallelism": {"tp": 1, "pp": 2, "microbatches": 1}}).exact(Batch([P + 32.0]))
    step = StepTimer(ONE).exact(Batch([P + 32.0]))
    tpot = (res.records["finish_s"] - res.records["first_token_s"]) / 63.0
    assert trip > step
    assert np.all(tpot >= 0.99 * trip)
    assert res.tpot_s.p50 == pytest.approx(trip, rel=0.03)


def test_at_most_pp_batches_in_flight(overloaded):
    """Lane batches overlap in time (the pipe holds two), never more than two at once."""
    tl = overloaded["pp2"].timeline
    start, end = tl["start_s"], tl["start_s"] + tl["duration_s"]
    times = np.concatenate([start, end])
    delta = np.concatenate([np.ones(start.size), -np.ones(end.size)])
    order = np.lexsort((delta, times))  # at a tie the batch that ends leaves before the next enters
    in_flight = np.cumsum(delta[order])
    span = np.diff(times[order])
    assert in_flight.max() == 2
    assert np.sum(span[in_flight[:-1] == 2]) > 0.9 * np.sum(span)  # overloaded: the pipe is full


def test_fast_path_prices_the_pipeline_like_the_simulation():
    """Capacity (the lanes' batches in one cycle that waits for its slowest) within 10% of the simulated
    limit, and p50 TPOT and TTFT within 10% at half of it."""
    tables = step_tables(PP2, P, O)
    assert tables.lanes[0] == 2
    capacity = colocated(tables, 0, 1, 256, 1e-3, P, O)["capacity_req_per_s"][()]
    limit = _run(PP2, 80.0, 3000).requests_per_s
    assert capacity == pytest.approx(limit, rel=0.10)
    fast = colocated(tables, 0, 1, 256, 0.5 * capacity, P, O)
    des = _run(PP2, 0.5 * capacity, 2000)
    assert fast["tpot_p50_s"][()] == pytest.approx(des.tpot_s.p50, rel=0.10)
    assert fast["ttft_p50_s"][()] == pytest.approx(des.ttft_s.p50, rel=0.10)
