"""Invariants of the training model (hypothesis): recompute trades time for memory one way only, and
ZeRO stages and data parallelism never add model-state memory per GPU."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.training.api import train_sweep

MODELS = ["llama-3.2-1b", "llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b"]
common = dict(model=st.sampled_from(MODELS), precision=st.sampled_from(["bf16", "mixed", "amp"]),
              seq=st.sampled_from([512, 2048, 8192]), mb=st.sampled_from([1, 2, 8]), flash=st.booleans())


@settings(max_examples=25, deadline=None)
@given(tp=st.sampled_from([1, 2, 4]), pp=st.sampled_from([1, 2]), sp=st.booleans(), **common)
def test_more_recompute_never_faster_nor_more_activations(model, precision, seq, mb, flash, tp, pp, sp):
    sw = train_sweep({"model": model, "gpu": "h100-sxm", "num_gpus": tp * pp, "tp": tp, "pp": pp, "seq_len": seq,
                      "micro_batch": mb, "precision": precision, "flash_attention": flash, "sequence_parallel": sp,
                      "global_batch": 4 * mb}, recompute=[0, 1, 2])
    t, a = sw["step_time_s"], sw["memory.activation_bytes"]
    assert np.all(np.diff(t) >= -1e-12 * t[:-1])
    assert np.all(np.diff(a) <= 1e-9 * a[:-1])


@settings(max_examples=25, deadline=None)
@given(dp=st.sampled_from([2, 4, 16, 64]), hsdp=st.booleans(), **common)
def test_higher_zero_stage_never_more_model_states(model, precision, seq, mb, flash, dp, hsdp):
    sw = train_sweep({"model": model, "gpu": "h100-sxm", "num_gpus": dp, "seq_len": seq, "micro_batch": mb,
                      "precision": precision, "flash_attention": flash, "hsdp": hsdp}, zero=[0, 1, 2, 3])
    states = sw["memory.weights_bytes"] + sw["memory.gradient_bytes"] + sw["memory.optimizer_bytes"]
    assert np.all(np.diff(states) <= 1e-9 * states[:-1])


@settings(max_examples=25, deadline=None)
@given(zero=st.sampled_from([1, 2, 3]), tp=st.sampled_from([1, 2]), **common)
def test_more_data_parallelism_never_more_model_states(model, precision, seq, mb, flash, zero, tp):
    gpus = [tp * d for d in (1, 2, 4, 8, 32)]
    sw = train_sweep({"model": model, "gpu": "h100-sxm", "tp": tp, "zero": zero, "seq_len": seq, "micro_batch": mb,
                      "precision": precision, "flash_attention": flash, "global_batch": 32 * mb}, num_gpus=gpus)
    states = sw["memory.weights_bytes"] + sw["memory.gradient_bytes"] + sw["memory.optimizer_bytes"]
    assert np.all(np.diff(states) <= 1e-9 * states[:-1])
