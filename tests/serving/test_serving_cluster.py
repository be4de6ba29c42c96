"""Replicas behind a router, prefill/decode disaggregation and model cascades."""

import numpy as np
import pytest

from simulator import predict, serve
from simulator.serving.cluster import NETWORK

TWO_H100 = {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "num_gpus": 2}, "parallelism": {"tp": 1}}
LONG = {"rate": 2.0, "num_requests": 200, "prompt_len": 8192, "output_len": 256, "seed": 1}


@pytest.fixture(scope="module")
def colocated():
    return serve(TWO_H100, LONG, {"router": "least_outstanding"})


@pytest.fixture(scope="module")
def disaggregated():
    return serve(TWO_H100, LONG, {"disaggregate": "1:1"})


def test_disaggregation_cuts_tpot_p99(colocated, disaggregated):
    """8K prompts interleaved with decodes stretch co-located decode steps; a decode-only replica's do not."""
    assert disaggregated.completed == colocated.completed == 200
    assert disaggregated.tpot_s.p99 < 0.9 * colocated.tpot_s.p99
    rec = disaggregated.records
    assert set(rec["replica"]) == {1} and set(rec["decode_replica"]) == {1}


def test_kv_transfer_is_no_faster_than_bytes_over_the_link(disaggregated):
    kv_per_token = predict(TWO_H100, **{"parallelism.tp": 1, "hardware.num_gpus": 1,
                                        "workload.context_len": 8192}).memory.kv_bytes_per_token
    nvlink = 450e9  # H100 SXM NVLink 4, per direction (hwmodels catalog)
    floor = 8192 * kv_per_token / nvlink
    t = disaggregated.records["kv_transfer_s"]
    assert np.all(t >= floor)
    assert np.all(t <= floor * 1.01 + 1e-5)  # an idle link at 2 req/s: no queueing behind other transfers
    assert disaggregated.kv_transfer_s.mean == pytest.approx(floor + 3e-6, rel=1e-6)


def test_decode_admission_waits_for_the_transfer(disaggregated):
    rec = disaggregated.records
    # the second token cannot come before the first token plus the transfer plus one decode step
    second = rec["first_token_s"] + rec["kv_transfer_s"]
    tpot_floor = rec["finish_s"] - second
    assert np.all(tpot_floor > 0)


def test_layerwise_transfer_hides_most_of_it():
    whole = serve(TWO_H100, dict(LONG, num_requests=40), {"disaggregate": "1:1"})
    layer = serve(TWO_H100, dict(LONG, num_requests=40), {"disaggregate": "1:1", "kv_transfer": "layerwise"})
    assert layer.kv_transfer_exposed_s.mean < 0.1 * whole.kv_transfer_exposed_s.mean
    assert whole.kv_transfer_exposed_s.mean == pytest.approx(whole.kv_transfer_s.mean, rel=1e-9)


def test_network_link_across_nodes_is_slower():
    nv = serve(TWO_H100, dict(LONG, num_requests=20), {"disaggregate": "1:1"})
    net = serve(TWO_H100, dict(LONG, num_requests=20), {"disaggregate": "1:1", "kv_link": "network"})
    ratio = net.kv_transfer_s.mean / nv.kv_transfer_s.mean
    assert ratio == pytest.approx(450e9 / NETWORK.bandwidth_bytes_per_s, rel=0.01)


def test_disaggregation_needs_enough_replicas():
    from hwmodels.errors import InputError
    with pytest.raises(InputError) as exc:
        serve(TWO_H100, dict(LONG, num_requests=5), {"disaggregate": "2:1"})
    assert exc.value.field == "serve.disaggregate"


def test_round_robin_alternates_and_least_outstanding_balances():
    sc = dict(TWO_H100, hardware={"gpu": "h100-sxm", "num_gpus": 4})
    wl = {"rate": 30.0, "num_requests": 400, "prompt_len": "lognormal:800,0.8", "output_len": "lognormal:150,0.8"}
    rr = serve(sc, wl, {"router": "round_robin"}).records
    done_order = np.argsort(rr["arrival_s"], kind="stable")
    assert rr["replica"][done_order].tolist() == [i % 4 for i in range(400)]
    lo = serve(sc, wl, {"router": "least_outstanding"}).records
    counts = np.bincount(lo["replica"], minlength=4)
    assert counts.min() >= 0.8 * counts.max()


def test_prefix_affinity_keeps_a_group_where_its_blocks_are():
    sc = dict(TWO_H100, hardware={"gpu": "h100-sxm", "num_gpus": 4})
    wl = {"rate": 8.0, "num_requests": 400, "prompt_len": 64, "output_len": 32, "seed": 4,
          "prefixes": [{"length": 1024, "popularity": 0.25}] * 4}
    aff = serve(sc, wl, {"router": "prefix_affinity", "prefix_caching": True})
    rr = serve(sc, wl, {"router": "round_robin", "prefix_caching": True})
    rec = aff.records
    for g in range(4):
        homes = np.bincount(rec["replica"][rec["prefix_group"] == g], minlength=4)
        assert homes.max() >= 0.9 * homes.sum()
    assert aff.cached_prompt_tokens > rr.cached_prompt_tokens


def test_cascade_escalates_the_configured_share_and_counts_energy():
    sc = {"model": "llama-3.1-70b", "hardware": {"gpu": "h100-sxm", "num_gpus": 4}}
    wl = {"rate": 2.0, "num_requests": 600, "prompt_len": 512, "output_len": 128, "seed": 3}
    res = serve(sc, wl, {"cascade": {"small_model": "llama-3.1-8b", "small_gpus": 1, "escalate_fraction": 0.3}})
    rec = res.records
    assert res.completed == 600
    share = rec["escalated"].mean()
    assert abs(share - 0.3) < 3 * np.sqrt(0.3 * 0.7 / 600)
    small = [r for r in res.replicas if r.group == "small"]
    large = [r for r in res.replicas if r.group == "main"]
    assert small[0].model == "llama-3.1-8b" and large[0].model == "llama-3.1-70b"
    tdp = 700.0  # H100 SXM
    assert res.energy_j == pytest.approx(sum(r.busy_s * r.gpus * tdp for r in res.replicas), rel=1e-9)
    e2e = rec["finish_s"] - rec["arrival_s"]
    assert e2e[rec["escalated"]].mean() > e2e[~rec["escalated"]].mean()


def test_decodes_pay_for_the_prompt_chunk_they_share_a_step_with(colocated):
    """Co-located, a decode step that carries a prompt chunk is priced as that whole mixed batch: it lasts
    longer than a decode-only step of the same decodes at the longest context they can have, and every
    decode in it waits for all of it (its inter-token gap is the mixed step's duration)."""
    from simulator.serving import StepTimer

    tl = colocated.timeline
    mixed = (tl["decode"] > 0) & (tl["chunk_tokens"] > 0)
    alone = (tl["decode"] > 0) & (tl["chunk_tokens"] == 0)
    assert mixed.sum() > 50 and alone.sum() > 50
    timer = StepTimer({**TWO_H100, "hardware": {"gpu": "h100-sxm", "num_gpus": 1}})
    for i in np.flatnonzero(mixed):
        b = int(tl["decode"][i])
        assert tl["duration_s"][i] > timer.seconds(b, b * (8192.0 + 256.0))
    # each decode's gap is its step's duration, so the slowest gaps are mixed steps'
    assert colocated.itl_s.p99 > np.max(tl["duration_s"][alone])
