"""Workload streams: arrival processes against their distributions, length specs, traces, errors."""

import numpy as np
import pytest

from hwmodels.errors import InputError
from simulator.serving import Workload


def gaps(w: Workload) -> np.ndarray:
    return np.diff(np.concatenate([[0.0], w.requests()["arrival_s"]]))


def test_poisson_gaps_are_exponential():
    g = gaps(Workload(rate=4.0, num_requests=40_000, seed=3))
    assert abs(g.mean() - 0.25) < 0.25 * 0.02
    assert abs(g.std() / g.mean() - 1.0) < 0.03  # exponential: CV = 1


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_gaps_have_the_requested_cv(cv):
    g = gaps(Workload(rate=2.0, num_requests=60_000, arrival=f"gamma:{cv}", seed=1))
    assert abs(g.mean() - 0.5) < 0.5 * 0.05
    assert abs(g.std() / g.mean() - cv) < cv * 0.06


def test_fixed_gaps_are_exact():
    r = Workload(rate=5.0, num_requests=10, arrival="fixed").requests()
    np.testing.assert_allclose(r["arrival_s"], 0.2 * np.arange(1, 11))


def test_length_specs():
    w = Workload(rate=1.0, num_requests=50_000, prompt_len="uniform:10,20", output_len="lognormal:300,0.8")
    r = w.requests()
    assert r["prompt_tokens"].min() == 10 and r["prompt_tokens"].max() == 20
    assert abs(r["prompt_tokens"].mean() - 15.0) < 0.1
    assert abs(np.median(r["output_tokens"]) - 300) < 300 * 0.03
    # lognormal: sd of log length is sigma
    assert abs(np.log(r["output_tokens"]).std() - 0.8) < 0.02


def test_same_seed_same_stream_other_seed_differs():
    a = Workload(rate=3.0, num_requests=500, prompt_len="lognormal:500,1", seed=7).requests()
    b = Workload(rate=3.0, num_requests=500, prompt_len="lognormal:500,1", seed=7).requests()
    c = Workload(rate=3.0, num_requests=500, prompt_len="lognormal:500,1", seed=8).requests()
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_prefix_groups_join_by_popularity_and_lengthen_the_prompt():
    w = Workload(rate=1.0, num_requests=20_000, prompt_len=100,
                 prefixes=[{"length": 64, "popularity": 0.3}, {"length": 512, "popularity": 0.2}])
    r = w.requests()
    share = [np.mean(r["prefix_group"] == g) for g in (0, 1, -1)]
    np.testing.assert_allclose(share, [0.3, 0.2, 0.5], atol=0.015)
    assert set(r["prompt_tokens"][r["prefix_group"] == 1]) == {612}
    assert set(r["prompt_tokens"][r["prefix_group"] == -1]) == {100}


def test_azure_trace(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:46.6805900,374,44\n"
                    "2023-11-16 18:15:50.9951690,396,109\n"
                    "2023-11-16 18:16:01.0000000,879,1\n")
    r = Workload(arrival=f"trace:{path}", prompt_len="trace", output_len="trace", num_requests=10).requests()
    np.testing.assert_allclose(r["arrival_s"], [0.0, 50.9951690 - 46.6805900, 61.0 - 46.6805900], atol=1e-6)
    assert r["prompt_tokens"].tolist() == [374, 396, 879]
    assert r["output_tokens"].tolist() == [44, 109, 1]


def test_plain_trace_rescaled_to_a_rate(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n2,20,6\n4,30,7\n")
    r = Workload(arrival=f"trace:{path}", rate=2.0, prompt_len="trace", output_len=3).requests()
    np.testing.assert_allclose(r["arrival_s"], [0.0, 0.5, 1.0])
    assert r["output_tokens"].tolist() == [3, 3, 3]


@pytest.mark.parametrize("data, field", [
    ({"rate": 1, "arrival": "gamma:-1"}, "workload.arrival"),
    ({"rate": 1, "arrival": "weibull"}, "workload.arrival"),
    ({"rate": 1, "prompt_len": "uniform:5,2"}, "workload.prompt_len"),
    ({"rate": 1, "output_len": "trace"}, "workload"),
    ({"arrival": "poisson"}, "workload"),
    ({"rate": 1, "prefixes": [{"length": 8, "popularity": 0.7}, {"length": 8, "popularity": 0.6}]}, "workload"),
])
def test_bad_input_is_one_line_naming_the_field(data, field):
    with pytest.raises(InputError) as exc:
        Workload.from_dict(data)
    assert exc.value.field == field
    assert "\n" not in str(exc.value)


def test_missing_trace_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as exc:
        Workload(arrival=f"trace:{tmp_path / 'nope.csv'}").requests()
    assert exc.value.field == "workload.arrival"
