"""The explorer refuses sweep values that are not whole numbers, and shows the API's warnings."""

from __future__ import annotations

import pytest

from apphelpers import errors, run


@pytest.mark.parametrize("text,message", [
    ("1024, inf", "sweep.context_len: inf is not a finite number"),
    ("1024, 2.7", "sweep.context_len: 2.7 is not a whole number"),
    ("1e30", "sweep.context_len: 1e+30 is above the limit of 16,777,216 tokens"),
])
def test_sweep_values_that_are_not_whole_numbers_are_refused(text, message):
    at = run("sweep", {"sw.x": "batch_size", "sw.y": "context_len", "sw.yv": text})
    assert not at.exception, [e.value for e in at.exception]
    assert errors(at) == [message]


def test_the_scenario_page_shows_the_predictions_warnings():
    at = run("home", {"workload.context_len": "200000", "hardware.num_gpus": "3", "parallelism.tp": "2"})
    assert not at.exception
    shown = [w.value for w in at.warning]
    assert any(w.startswith("workload.context_len (+1 new token): 200,001 positions exceed") for w in shown), shown
    assert any(w.startswith("hardware.num_gpus: 3 GPUs hold 1 replica(s)") for w in shown), shown


def test_the_long_context_page_warns_past_the_trained_positions():
    at = run("long_context", {"lc.range": "[65536,1048576]", "lc.per_octave": "1"})
    assert not at.exception
    assert any("1,048,576 positions exceed llama-3.1-8b's max_position_embeddings (131,072)" in w.value
               for w in at.warning)
    quiet = run("long_context", {"lc.range": "[1024,65536]", "lc.per_octave": "1"})
    assert not [w.value for w in quiet.warning if "max_position_embeddings" in w.value]
