"""Every input is bounded and every bad one is a one-line InputError naming the field (and the limit):
absurd sizes, binary files, non-numbers in sweeps, the Python API's own mistakes, contexts beyond the
model's positions, compute formats the GPU lacks, heads that do not divide the hidden size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hwmodels import get_accelerator
from hwmodels.errors import InputError
from hwmodels.io import read_text_bounded
from roofsim.cli.main import main
from simulator import Scenario, get_model, predict, sweep
from simulator.bounds import MAX_BATCH, MAX_LAYERS, MAX_TOKENS
from simulator.long_context import long_context_table

HF = Path(__file__).parent / "data" / "hf_configs"


def hf(name: str) -> dict:
    return json.loads((HF / f"{name}.json").read_text())


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys, *argv) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip().removeprefix("roofsim: error: ")


# --- item 5: upper bounds -----------------------------------------------------------------------

def test_a_billion_layers_is_refused_before_any_layer_is_built():
    with pytest.raises(InputError) as err:
        get_model({**hf("llama-3.1-8b"), "num_hidden_layers": 10**9})
    assert err.value.field == "model.num_hidden_layers"
    assert "1,000,000,000 is above the limit of 1,000 layers" in err.value.message
    assert get_model({**hf("llama-3.1-8b"), "num_hidden_layers": MAX_LAYERS}).num_layers == MAX_LAYERS


@pytest.mark.parametrize("field,value,limit", [
    ("workload.context_len", 10**30, "16,777,216 tokens"),
    ("workload.prompt_len", 1e30, "16,777,216 tokens"),
    ("workload.output_len", 2**24 + 1, "16,777,216 tokens"),
    ("workload.batch_size", 10**7, "1,000,000 sequences"),
    ("hardware.num_gpus", 2**40, "1,048,576 GPUs"),
])
def test_absurd_sizes_name_the_field_and_the_limit(field, value, limit):
    with pytest.raises(InputError) as err:
        predict(**{field: value})
    assert err.value.field == field and f"above the limit of {limit}" in err.value.message


def test_the_largest_allowed_sizes_still_give_positive_finite_answers():
    """At the limits (2^24 tokens, 10^6 sequences) the int64 sweep agrees with the exact scalar path."""
    sc = {"model": "llama-3.1-405b", "hardware": {"num_gpus": 8}, "workload": {"phase": "decode"}}
    big = {"workload.batch_size": MAX_BATCH, "workload.context_len": MAX_TOKENS}
    point = predict(sc, **big)
    grid = sweep(sc, batch_size=[MAX_BATCH], context_len=[MAX_TOKENS])
    assert point.latency_s > 0 and np.isfinite(point.latency_s)
    assert float(grid["latency_s"].ravel()[0]) == pytest.approx(point.latency_s, rel=1e-12)


@pytest.mark.parametrize("values,message", [
    ([1e30], "1e+30 is above the limit of 16,777,216 tokens"),
    ([4096, 2.7], "2.7 is not a whole number"),
    ([float("inf")], "inf is not a finite number"),
    ([0], "0 is below 1"),
])
def test_sweep_axes_are_bounded(values, message):
    with pytest.raises(InputError) as err:
        sweep(context_len=values)
    assert err.value.field == "context_len" and err.value.message == message


@pytest.mark.parametrize("argv,message", [
    (["--contexts", "1e30"], "--contexts: 1e+30 is above the limit of 16,777,216 tokens"),
    (["--contexts", "4096,abc"], "--contexts: expected comma-separated whole numbers, got '4096,abc'"),
    (["--decode-tokens", "-1"], "--decode-tokens: -1 is below 1"),
    (["--decode-tokens", "0.5"], "--decode-tokens: 0.5 is not a whole number"),
])
def test_concurrency_flags_are_bounded(capsys, argv, message):
    assert one_line_error(capsys, "concurrency", *argv) == message


def test_long_context_table_is_bounded():
    with pytest.raises(InputError, match="output_len: -1 is below 1"):
        long_context_table(None, [4096], -1)
    with pytest.raises(InputError, match="contexts: 1e\\+30 is above"):
        long_context_table(None, [1e30], 10)


# --- item 6: binary and special files -------------------------------------------------------------

def test_binary_files_are_one_line(tmp_path, capsys):
    blob = tmp_path / "scenario.yaml"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    assert one_line_error(capsys, "predict", str(blob)) == \
        f"scenario: '{blob}' is not UTF-8 text (byte 0 is 0x89); expected JSON or YAML"
    config = tmp_path / "config.json"
    config.write_bytes(b'{"model_type": "llama", "name": "\xe9t\xe9"}')
    assert "is not UTF-8 text (byte 33 is 0xe9)" in one_line_error(capsys, "predict", "--model", str(config))


def test_the_bounded_reader(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(5 * 2**20)  # sparse: 5 MiB of zeros without writing them
    with pytest.raises(InputError, match="over the 4 MiB limit"):
        read_text_bounded(big, field="model")
    with pytest.raises(InputError, match="is a directory"):
        read_text_bounded(tmp_path, field="model")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is not a regular file"):
        read_text_bounded(fifo, field="model")
    with pytest.raises(InputError, match="is not a regular file"):
        read_text_bounded("/dev/zero", field="model")
    (tmp_path / "ok.json").write_text("\ufeff{}")  # a byte-order mark is dropped
    assert read_text_bounded(tmp_path / "ok.json", 10, "model") == "{}"


# --- item 7: the Python API's errors --------------------------------------------------------------

def test_a_string_scenario_says_how_to_name_a_model():
    with pytest.raises(InputError) as err:
        predict("llama-3.1-8b")
    assert err.value.field == "scenario" and "predict(model='llama-3.1-8b')" in err.value.message


@pytest.mark.parametrize("bad", [42, 2.5, ["llama-3.1-8b"]])
def test_a_scenario_of_the_wrong_type(bad):
    with pytest.raises(InputError, match=f"scenario: expected a Scenario, a mapping or None, got {type(bad).__name__}"):
        sweep(bad, batch_size=[1])


@pytest.mark.parametrize("key,message", [
    ("workload.batch", "unknown field 'batch' in workload; known: phase, batch_size"),
    ("hardwre.gpu", "unknown field 'hardwre'; known: model, hardware"),
    ("model.name", "model is a value, not a section with fields"),
])
def test_unknown_dotted_keys(key, message):
    with pytest.raises(InputError) as err:
        predict(**{key: 1})
    assert err.value.field == key and err.value.message.startswith(message)
    with pytest.raises(InputError):
        Scenario().with_overrides(**{key: 1})


# --- item 8: positions, compute formats, head sizes ------------------------------------------------

def test_context_beyond_max_position_embeddings_warns(capsys):
    inside = predict(**{"workload.context_len": 131_071})
    beyond = predict(**{"workload.context_len": 200_000})
    assert inside.warnings == []
    assert beyond.warnings == ["workload.context_len (+1 new token): 200,001 positions exceed llama-3.1-8b's "
                               "max_position_embeddings (131,072); the model was not trained that long "
                               "(costs are extrapolated)"]
    assert predict(**{"workload.phase": "generate", "workload.prompt_len": 131_000,
                      "workload.output_len": 100}).warnings[0].startswith("workload.prompt_len + output_len: 131,100")
    code, out, _ = cli(capsys, "predict", "--context", "200000")
    assert code == 0 and out.splitlines()[1].startswith("warning: workload.context_len (+1 new token): 200,001")
    code, out, _ = cli(capsys, "predict", "--context", "200000", "--json")
    assert json.loads(out)["warnings"] == beyond.warnings
    code, out, _ = cli(capsys, "concurrency", "--contexts", "4096,262144")
    assert "warning: --contexts + decode: 262,394 positions exceed" in out


@pytest.mark.parametrize("gpu,dtype", [("a100-80gb-sxm", "fp8"), ("a100-80gb-sxm", "fp4"), ("l4", "fp4"),
                                       ("h100-sxm", "fp4"), ("tpu-v5e", "fp8")])
def test_compute_in_a_format_the_gpu_lacks_is_an_error(gpu, dtype):
    formats = ", ".join(get_accelerator(gpu).peak_flops_per_s)
    with pytest.raises(InputError) as err:
        predict(**{"hardware.gpu": gpu, "precision.compute": dtype})
    assert err.value.field == "precision.compute"
    assert err.value.message.startswith(f"{gpu} has no {dtype} tensor-core format (it has {formats})")
    with pytest.raises(InputError):
        sweep({"hardware": {"gpu": gpu}}, compute=["bf16", dtype])


def test_fp8_weights_on_a_gpu_without_fp8_are_dequantised_to_the_compute_format():
    """A100: fp8 weights halve the bytes a decode step reads; the GEMMs still run at the bf16 peak."""
    base = {"hardware.gpu": "a100-80gb-sxm", "calibration": "peak"}
    bf16, fp8 = predict(**base), predict(**base, **{"precision.weights": "fp8"})
    assert fp8.memory.weights_bytes < 0.55 * bf16.memory.weights_bytes
    assert fp8.latency_s < bf16.latency_s
    assert predict(**base, **{"precision.compute": "int8"}).latency_s > 0  # A100 has int8 tensor cores


def test_hidden_size_not_divisible_by_heads_needs_head_dim():
    config = {**hf("llama-3.1-8b"), "hidden_size": 4100}
    with pytest.raises(InputError) as err:
        get_model(config)
    assert err.value.field == "model.head_dim"
    assert "hidden_size=4100 is not divisible by num_attention_heads=32" in err.value.message
    assert get_model({**config, "head_dim": 128}).head_dim == 128
