"""The command line: ``roofsim techniques list|show`` and ``roofsim predict --technique NAME[:k=v,...]``."""

import json

import pytest

from hwmodels import InputError
from roofsim.cli.main import main
from roofsim.cli.predict import parse_technique
from simulator.techniques import REGISTRY

ISSUE_NAMES = {"gqa", "mla", "sliding_window", "linear_attention", "yoco", "kv_quant", "kv_eviction", "duo_attention",
               "prefix_cache", "kv_offload", "weight_quant", "sparsity", "attention_quant", "flash_attention", "moe",
               "speculative", "early_exit", "chunked_prefill", "nanoflow"}


def test_every_issue_technique_is_registered_with_a_citation_and_docs():
    assert ISSUE_NAMES <= set(REGISTRY)
    for name, cls in REGISTRY.items():
        assert "arXiv" in cls.citation, name
        assert cls.summary and cls.family and cls.__doc__, name
        for field, info in cls.model_fields.items():
            assert info.description, f"{name}.{field}"


def test_list_shows_every_technique_with_params_and_citation(capsys):
    assert main(["techniques", "list"]) == 0
    out = capsys.readouterr().out
    for name, cls in REGISTRY.items():
        assert f"{name}:" in out and cls.citation in out
    assert "retrieval_fraction=0.5" in out and "bits=4" in out


def test_show_one_technique(capsys):
    assert main(["techniques", "show", "speculative"]) == 0
    out = capsys.readouterr().out
    assert "(1 - α^(γ+1)) / (1 - α)" in out and "gamma" in out and "2211.17192" in out
    assert main(["techniques", "show", "kv_qaunt"]) == 2
    assert "kv_quant" in capsys.readouterr().err


def test_done_when_command_reports_per_technique_deltas(capsys):
    argv = ["predict", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--phase", "decode", "--batch", "8",
            "--context", "131072", "--technique", "kv_quant:bits=4", "--technique",
            "duo_attention:retrieval_fraction=0.5", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in data["techniques"]] == ["kv_quant", "duo_attention"]
    keys = {"kv_bytes_ratio", "memory_ratio", "max_concurrency_before", "max_concurrency_after",
            "prefill_latency_ratio", "decode_latency_ratio", "throughput_ratio", "citation", "params"}
    for entry in data["techniques"]:
        assert keys <= set(entry)
        assert entry["kv_bytes_ratio"] < 1 and entry["decode_latency_ratio"] < 1 and entry["throughput_ratio"] > 1
        assert entry["max_concurrency_after"] > entry["max_concurrency_before"]
    assert data["techniques"][0]["params"] == {"bits": 4}
    assert data["techniques_combined"]["kv_bytes_ratio"] < 0.2
    for key in ("s_mbu", "s_mfu", "optimal_tokens_per_s_per_gpu", "optimal_fraction", "tokens_per_step"):
        assert key in data


def test_text_output_has_a_technique_table(capsys):
    assert main(["predict", "--technique", "kv_quant", "--technique", "speculative:alpha=0.7,gamma=3"]) == 0
    out = capsys.readouterr().out
    assert "techniques (with / without each" in out and "kv_quant + speculative" in out
    assert "output tokens per decode step" in out


def test_bad_technique_flag_is_one_line_error(capsys):
    assert main(["predict", "--technique", "kv_quant:bits=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("roofsim: error: techniques[0].bits") and err.count("\n") == 1


@pytest.mark.parametrize("text,entry", [
    ("kv_quant", {"name": "kv_quant"}),
    ("kv_quant:bits=4,group_size=none", {"name": "kv_quant", "bits": 4, "group_size": None}),
    ("sparsity:pattern=2:4", {"name": "sparsity", "pattern": "2:4"}),
    ("prefix_cache:hit_rate=0.5,read_once=true", {"name": "prefix_cache", "hit_rate": 0.5, "read_once": True}),
    ("weight_quant:format=w4a16", {"name": "weight_quant", "format": "w4a16"}),
    ("nanoflow:achievable_flops_per_s=2.6e14", {"name": "nanoflow", "achievable_flops_per_s": 2.6e14}),
])
def test_parse_technique_flag(text, entry):
    assert parse_technique(text) == entry


@pytest.mark.parametrize("text", ["kv_quant:bits", ":bits=4", "kv_quant:=4"])
def test_parse_technique_flag_errors(text):
    with pytest.raises(InputError):
        parse_technique(text)
