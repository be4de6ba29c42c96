"""HF import of newer families and formats: quantization_config into the checkpoint's weight format
(or a warning that it is ignored), kimi_k2, glm4_moe, the mistral3 multimodal wrapper, and the
authors' convention for counting active parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwmodels.errors import InputError
from simulator import get_model, predict
from simulator.models.hf_config import spec_from_hf_config

HF = Path(__file__).parent / "data" / "hf_configs"


def config(name: str) -> dict:
    path = HF / f"{name}.json" if (HF / f"{name}.json").exists() else HF / "imports" / f"{name}.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("name,dtype,text", [
    ("deepseek-v3", "fp8", "fp8 e4m3, one scale per 128x128 block"),
    ("kimi-k2-instruct", "fp8", "fp8 e4m3, one scale per 128x128 block"),
    ("gpt-oss-120b", "fp4", "mxfp4 (e2m1 values, one e8m0 scale per 32); not converted: embed_tokens, lm_head, "
                            "router, self_attn"),
    ("llama-3.1-8b-awq-int4", "int4", "awq int4, one scale per 128 inputs"),
    ("llama-3.1-8b-gptq-int4", "int4", "gptq int4, one scale per 128 inputs"),
    ("llama-3.1-8b", None, ""),
])
def test_quantization_config_gives_the_checkpoint_format(name, dtype, text):
    spec = spec_from_hf_config(config(name))
    assert spec.weights_dtype == dtype and spec.quantization == text


def test_a_quantized_checkpoint_priced_at_another_format_says_so():
    awq = config("llama-3.1-8b-awq-int4")
    shipped = predict(model=awq, **{"precision.weights": "int4"})
    assert shipped.warnings == []
    other = predict(model=awq)
    assert other.warnings == ["precision.weights: Meta-Llama-3.1-8B-Instruct-AWQ-INT4's checkpoint stores int4 weights (awq int4, "
                              "one scale per 128 inputs); priced as bf16 here; set precision.weights: int4 to price "
                              "the checkpoint as shipped"]
    # int4 weights: a quarter of the bf16 bytes of every layer matrix (8B model, 7.5B of them outside embeddings)
    assert shipped.memory.weights_bytes < 0.45 * other.memory.weights_bytes


def test_an_unread_quantization_method_is_a_warning():
    bnb = {**config("llama-3.1-8b"), "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}
    assert spec_from_hf_config(bnb).weights_dtype is None
    assert predict(model=bnb).warnings == ["model: llama's quantization_config (bitsandbytes (not read)) is "
                                           "ignored; weights are priced as precision.weights = bf16"]
    with pytest.raises(InputError, match="model.quantization_config: expected a mapping"):
        spec_from_hf_config({**config("llama-3.1-8b"), "quantization_config": "fp8"})


def test_kimi_k2_is_the_deepseek_v3_architecture():
    """Kimi K2's config: 61 layers (1 dense), 384 experts top-8 + 1 shared, 64 MLA heads; published 1T total
    and 32B activated (two significant digits), counted without the input embedding as DeepSeek does."""
    spec = spec_from_hf_config(config("kimi-k2-instruct"))
    assert spec.mla and spec.moe.num_experts == 384 and spec.moe.first_dense_layers == 1
    assert spec.num_attention_heads == 64 and spec.head_dim == 128 + 64
    assert spec.total_params() == pytest.approx(1.0e12, rel=0.05)
    assert spec.active_params() == pytest.approx(32e9, rel=0.02)
    assert not spec.counts_input_embedding
    # the same numbers as the DeepSeek-V3 config with Kimi's sizes
    as_v3 = spec_from_hf_config({**config("kimi-k2-instruct"), "model_type": "deepseek_v3"})
    assert as_v3.total_params() == spec.total_params() and as_v3.active_params() == spec.active_params()


def test_glm_4_5_air():
    """GLM-4.5-Air: 106B total (https://github.com/zai-org/GLM-4.5); q/k/v biases without an o_proj bias;
    46 layers, the first dense; qk-norm off (use_qk_norm: false) and on for GLM-4.5."""
    spec = spec_from_hf_config(config("glm-4.5-air"))
    assert spec.total_params() == pytest.approx(106e9, rel=0.01)
    assert spec.attention_bias and not spec.attention_out_bias and not spec.qk_norm
    assert spec.mlp_kinds().count("dense") == 1 and spec.moe.num_shared_experts == 1
    h, q, kv = 4096, 96 * 128, 8 * 128
    assert sum(lin.params for lin in spec.attention_linears()) == h * (q + 2 * kv) + (q + 2 * kv) + q * h
    assert spec_from_hf_config({**config("glm-4.5-air"), "use_qk_norm": True}).qk_norm


def test_mistral3_wrapper_reads_its_text_config():
    """Mistral Small 3.1: the language model under text_config, head_dim 128 though 5120 / 32 = 160."""
    spec = spec_from_hf_config(config("mistral-small-3.1-24b"))
    assert spec.family == "mistral" and spec.head_dim == 128 and spec.num_layers == 40
    h, inter, vocab = 5120, 32768, 131072
    per_layer = h * (32 * 128 + 2 * 8 * 128) + 32 * 128 * h + 3 * h * inter + 2 * h
    assert spec.total_params() == 40 * per_layer + 2 * vocab * h + h
    with pytest.raises(InputError, match="model.text_config.model_type: unsupported model_type 'ministral3'"):
        spec_from_hf_config({**config("mistral-small-3.1-24b"),
                             "text_config": {**config("mistral-small-3.1-24b")["text_config"],
                                             "model_type": "ministral3"}})


@pytest.mark.parametrize("name,counts", [("gpt-oss-120b", False), ("deepseek-v3", False), ("kimi-k2-instruct", False),
                                          ("mixtral-8x7b", True), ("qwen3-30b-a3b", True)])
def test_active_params_follow_the_authors_convention(name, counts):
    imported, preset = spec_from_hf_config(config(name)), get_model(name)
    assert imported.counts_input_embedding is counts and preset.counts_input_embedding is counts
    assert imported.active_params() == imported.active_params(count_input_embedding=counts)
    pub = preset.published_params
    assert imported.active_params() == pytest.approx(pub.active, rel=pub.rel_tol)


# GLM-4.5's sizes: the GLM-4.5-Air config.json with the larger model's widths and depths, as the GLM-5
# technical report's architecture table lists them beside GLM-5's (quoted at
# https://glennklockwood.com/garden/GLM-5): hidden 5120, dense MLP 12288, expert 1536, 96 heads over 8 KV
# heads of 128, 160 routed experts (8 per token) and 1 shared, 3 dense + 89 MoE layers, vocabulary
# 151,552; qk-norm on (GLM-4.5's use_qk_norm)
GLM_4_5 = {"hidden_size": 5120, "intermediate_size": 12288, "moe_intermediate_size": 1536, "n_routed_experts": 160,
           "num_hidden_layers": 92, "first_k_dense_replace": 3, "use_qk_norm": True, "_name_or_path": "zai-org/GLM-4.5"}


@pytest.mark.parametrize("sizes,total_b,active_b", [({}, 106, 12), (GLM_4_5, 355, 32)])
def test_glm_4_5_active_params_leave_out_the_embedding_and_the_output_layer(sizes, total_b, active_b):
    """Z.ai publishes GLM-4.5 as 355B total / 32B active and GLM-4.5-Air as 106B / 12B
    (https://github.com/zai-org/GLM-4.5, README; arXiv 2508.06471, Table 1), in whole billions. The active
    figures are the layers' alone: with the output layer (a 151,552 x hidden matrix every token multiplies)
    or the input embedding counted they would round to 13B and 33B."""
    spec = spec_from_hf_config({**config("glm-4.5-air"), **sizes})
    assert not spec.counts_input_embedding and not spec.counts_output_head
    assert round(spec.active_params() / 1e9) == active_b
    table = spec.vocab_size * spec.hidden_size
    assert spec.active_params(count_input_embedding=True, count_output_head=True) == spec.active_params() + 2 * table
    for counted in ({"count_input_embedding": True}, {"count_output_head": True}):
        assert round(spec.active_params(**counted) / 1e9) == active_b + 1
    assert spec.total_params() == pytest.approx(total_b * 1e9, rel=0.01)  # every stored matrix, embeddings included
    # what a token multiplies (NanoFlow's optimum, MoE-CAP's S-MFU) keeps the output layer
    from simulator.metrics import active_params
    assert active_params(spec) == spec.active_params() + table


def test_a_tied_table_is_left_out_only_when_both_are():
    spec = get_model("llama-3.2-1b")  # tied input embedding and output layer
    assert spec.tie_word_embeddings
    table = spec.vocab_size * spec.hidden_size
    full = spec.active_params(count_input_embedding=True, count_output_head=True)
    assert spec.active_params(count_input_embedding=False, count_output_head=True) == full
    assert spec.active_params(count_input_embedding=True, count_output_head=False) == full
    assert spec.active_params(count_input_embedding=False, count_output_head=False) == full - table
