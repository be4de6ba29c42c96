"""Model presets, parameter counts against published figures, and HF config.json import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwmodels.errors import InputError
from simulator.models import ModelSpec, get_model, list_models
from simulator.models.hf_config import spec_from_hf_config

HF_CONFIGS = Path(__file__).parent / "data" / "hf_configs"
CONFIG_FILES = sorted(HF_CONFIGS.glob("*.json"))

REQUIRED_PRESETS = set(
    "llama-3.1-8b llama-3.1-70b llama-3.1-405b llama-2-7b llama-2-70b mistral-7b mixtral-8x7b mixtral-8x22b "
    "qwen2.5-7b qwen2.5-72b qwen3-32b qwen3-30b-a3b qwen3-235b-a22b deepseek-v3 gemma-2-27b yi-34b "
    "gpt-oss-120b olmoe-1b-7b".split()
)


def _config(name: str) -> dict:
    return json.loads((HF_CONFIGS / f"{name}.json").read_text())


# --- presets -------------------------------------------------------------------------------------


def test_catalog_has_the_required_presets():
    names = set(list_models())
    assert REQUIRED_PRESETS <= names, REQUIRED_PRESETS - names
    assert len(names) >= 20


@pytest.mark.parametrize("name", list_models())
def test_preset_loads_with_sources(name):
    spec = get_model(name)
    assert isinstance(spec, ModelSpec)
    assert spec.name == name
    assert spec.source.startswith("https://")
    assert spec.published_params is not None and spec.published_params.source
    assert spec.total_params() >= spec.active_params() > 0
    assert spec.kv_elements_per_token() > 0


@pytest.mark.parametrize("name", list_models())
def test_parameter_counts_match_published(name):
    spec = get_model(name)
    pub = spec.published_params
    total = spec.total_params()
    active = spec.active_params(count_input_embedding=pub.active_counts_input_embedding)
    assert total == pytest.approx(pub.total, rel=pub.rel_tol), f"total {total:,} vs published {pub.total:,}"
    assert active == pytest.approx(pub.active, rel=pub.rel_tol), f"active {active:,} vs published {pub.active:,}"
    if spec.moe is None:
        assert spec.active_params() == total


def test_only_coarse_figures_get_a_wider_tolerance():
    wide = {n for n in list_models() if get_model(n).published_params.rel_tol != 0.01}
    assert wide == {"qwen3-30b-a3b", "olmoe-1b-7b", "deepseek-v2-lite", "kimi-k2-instruct"}


# --- hand-computed checks ------------------------------------------------------------------------


def test_llama_3_1_8b_total_exact():
    spec = get_model("llama-3.1-8b")
    h, kv, inter, vocab = 4096, 8 * 128, 14336, 128256
    per_layer = h * (h + 2 * kv) + h * h + 3 * h * inter + 2 * h
    assert spec.total_params() == 32 * per_layer + 2 * vocab * h + h == 8_030_261_248
    assert spec.active_params() == spec.total_params()


def test_deepseek_v3_kv_and_mtp_exclusion():
    spec = get_model("deepseek-v3")
    assert spec.kv_elements_per_token() == 61 * (512 + 64) == 35_136
    assert spec.num_layers == 61  # the MTP module (layer 61 of the checkpoint) is not a decoding layer
    assert spec.mlp_kinds()[:4] == ["dense", "dense", "dense", "moe"]
    assert spec.mlp_kinds().count("moe") == 58


def test_yi_34b_kv_elements():
    spec = get_model("yi-34b")
    assert (spec.num_layers, spec.hidden_size, spec.num_attention_heads, spec.num_kv_heads) == (60, 7168, 56, 8)
    assert (spec.head_dim, spec.intermediate_size, spec.vocab_size) == (128, 20480, 64000)
    assert spec.kv_elements_per_token() == 2 * 60 * 8 * 128 == 122_880


def test_mistral_7b_slides_every_layer():
    spec = get_model("mistral-7b")
    assert spec.sliding_window == 4096
    assert spec.attention_kinds() == ["sliding"] * 32


def test_gemma_2_27b_alternates_local_and_global():
    spec = get_model("gemma-2-27b")
    kinds = spec.attention_kinds()
    assert kinds == ["sliding" if i % 2 == 0 else "full" for i in range(46)]
    assert spec.sliding_window == 4096 and spec.norms_per_layer == 4 and spec.tie_word_embeddings


def test_gemma_3_27b_has_five_local_layers_per_global():
    kinds = get_model("gemma-3-27b").attention_kinds()
    assert [i for i, k in enumerate(kinds) if k == "full"] == list(range(5, 62, 6))


def test_gpt_oss_120b_counts_by_component():
    """The model card's Table 1: MLP 114.71B, attention 0.96B, embed + unembed 1.16B."""
    spec = get_model("gpt-oss-120b")
    moe_layer = spec.layer_params(spec.layer_groups()[0][0]) - sum(lin.params for lin in spec.attention_linears())
    attention = sum(lin.params for lin in spec.attention_linears()) * 36
    assert moe_layer * 36 == pytest.approx(114.71e9, rel=1e-3)
    assert attention == pytest.approx(0.96e9, rel=5e-3)
    assert 2 * spec.vocab_size * spec.hidden_size == pytest.approx(1.16e9, rel=5e-3)
    assert spec.attention_kinds() == ["sliding", "full"] * 18


def test_input_embedding_convention_only_matters_when_untied():
    tied = get_model("llama-3.2-1b")
    assert tied.active_params(count_input_embedding=False) == tied.active_params()
    untied = get_model("gpt-oss-120b")
    dropped = untied.active_params(count_input_embedding=True) - untied.active_params(count_input_embedding=False)
    assert dropped == untied.vocab_size * untied.hidden_size


# --- HF config.json import -----------------------------------------------------------------------


def test_stored_configs_cover_the_required_model_types():
    types = {json.loads(f.read_text())["model_type"] for f in CONFIG_FILES}
    required = {"llama", "mixtral", "qwen2", "qwen2_moe", "qwen3_moe", "deepseek_v3", "gemma2", "gemma3", "phi3"}
    assert required | {"gpt_oss"} <= types


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_imported_config_matches_preset(path):
    imported = get_model(str(path))
    preset = get_model(path.stem)
    assert imported.name == path.stem
    skip = {"name", "source", "published_params"}
    assert imported.model_dump(exclude=skip) == preset.model_dump(exclude=skip)
    assert imported.total_params() == preset.total_params()
    assert imported.active_params() == preset.active_params()
    assert imported.kv_elements_per_token() == preset.kv_elements_per_token()


def test_config_directory_and_inline_dict():
    spec = get_model(str(HF_CONFIGS / "mixtral-8x7b.json"))
    assert spec.moe.num_experts == 8 and spec.moe.top_k == 2 and spec.sliding_window is None
    inline = get_model(_config("gpt-oss-120b"))
    assert inline.attention_sinks and inline.moe.router_bias and inline.moe.expert_bias


def test_config_json_in_a_directory(tmp_path):
    model_dir = tmp_path / "Qwen3-32B"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(_config("qwen3-32b")))
    spec = get_model(str(model_dir))
    assert spec.name == "Qwen3-32B"
    assert spec.total_params() == get_model("qwen3-32b").total_params()


def test_defaults_for_missing_head_dim_kv_heads_and_tying():
    cfg = _config("llama-3.1-8b")
    del cfg["num_key_value_heads"], cfg["tie_word_embeddings"]
    spec = spec_from_hf_config(cfg, name="mha")
    assert spec.head_dim == 4096 // 32
    assert spec.num_kv_heads == 32
    assert not spec.tie_word_embeddings
    gemma = _config("gemma-2-27b")
    del gemma["head_dim"]
    gemma_spec = spec_from_hf_config(gemma)
    assert gemma_spec.tie_word_embeddings  # Gemma ties by default
    assert gemma_spec.head_dim == 256  # HF's Gemma2Config default, not hidden / heads


def test_qwen2_biases_and_opt_in_sliding_window():
    spec = get_model("qwen2.5-7b")
    assert spec.attention_bias and not spec.attention_out_bias
    assert spec.sliding_window is None  # use_sliding_window: false
    cfg = {**_config("qwen2.5-7b"), "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
    kinds = spec_from_hf_config(cfg).attention_kinds()
    assert kinds == ["full"] * 20 + ["sliding"] * 8


def test_window_that_never_binds_is_dropped():
    cfg = {**_config("phi-3-mini"), "sliding_window": 262144, "max_position_embeddings": 131072}
    assert spec_from_hf_config(cfg).sliding_window is None
    assert spec_from_hf_config(_config("phi-3-mini")).attention_kinds() == ["sliding"] * 32


def test_gemma3_text_only_config_and_layer_types_key():
    text = {**_config("gemma-3-27b")["text_config"], "sliding_window_pattern": 6}
    spec = spec_from_hf_config(text)
    assert spec.vocab_size == 262208 and spec.qk_norm and spec.family == "gemma3"
    assert spec.model_dump() == spec_from_hf_config(_config("gemma-3-27b"), name=spec.name).model_dump()
    typed = {**text, "layer_types": ["sliding_attention"] * 61 + ["full_attention"]}
    assert spec_from_hf_config(typed).attention_kinds() == ["sliding"] * 61 + ["full"]


def test_moe_layer_placement():
    base = _config("qwen3-30b-a3b")
    every_other = spec_from_hf_config({**base, "decoder_sparse_step": 2}).mlp_kinds()
    assert every_other[:4] == ["dense", "moe", "dense", "moe"]  # Qwen: MoE where (i + 1) % step == 0
    leading = spec_from_hf_config({**base, "mlp_only_layers": [0, 1]}).mlp_kinds()
    assert leading[:3] == ["dense", "dense", "moe"] and leading.count("moe") == 46
    with pytest.raises(InputError) as err:
        spec_from_hf_config({**base, "mlp_only_layers": [5]})
    assert err.value.field == "model.mlp_only_layers"
    shared = get_model("qwen1.5-moe-a2.7b").moe
    assert shared.num_shared_experts == 1 and shared.shared_expert_gate and shared.shared_intermediate == 5632


def test_deepseek_v2_lite_has_no_query_compression():
    spec = get_model("deepseek-v2-lite")
    assert spec.mla.q_lora_rank is None
    assert [lin.name for lin in spec.attention_linears()][0] == "attn.q_proj"
    assert spec.moe.num_shared_experts == 2 and spec.moe.first_dense_layers == 1


# --- errors --------------------------------------------------------------------------------------


def test_unknown_model_type():
    with pytest.raises(InputError) as err:
        get_model({**_config("llama-3.1-8b"), "model_type": "falcon"})
    assert err.value.field == "model.model_type"
    assert "falcon" in err.value.message and "llama" in err.value.message


def test_missing_hidden_size_names_the_key():
    cfg = _config("llama-3.1-8b")
    del cfg["hidden_size"]
    with pytest.raises(InputError) as err:
        get_model(cfg)
    assert err.value.field == "model.hidden_size"
    assert "hidden_size" in err.value.message


def test_missing_text_config_and_bad_values():
    with pytest.raises(InputError) as err:
        spec_from_hf_config({"model_type": "gemma3"})
    assert err.value.field == "model.text_config"
    with pytest.raises(InputError) as err:
        spec_from_hf_config({**_config("mistral-7b"), "num_hidden_layers": "32"})
    assert err.value.field == "model.num_hidden_layers"
    with pytest.raises(InputError) as err:
        spec_from_hf_config({**_config("gpt-oss-120b"), "layer_types": ["chunked_attention"] * 36})
    assert err.value.field == "model.layer_types"
    with pytest.raises(InputError) as err:
        spec_from_hf_config({k: v for k, v in _config("mixtral-8x7b").items() if k != "num_local_experts"})
    assert err.value.field == "model.num_local_experts"
    with pytest.raises(InputError) as err:
        spec_from_hf_config({**_config("gpt-oss-120b"), "layer_types": ["sliding_attention"] * 35})
    assert err.value.field == "model.layer_types"
    with pytest.raises(InputError) as err:
        spec_from_hf_config({**_config("mistral-7b"), "num_key_value_heads": 3})
    assert "not a multiple of num_kv_heads=3" in err.value.message


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError) as err:
        get_model(str(tmp_path / "missing" / "config.json"))
    assert err.value.field == "model" and "cannot read" in err.value.message
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(InputError) as err:
        get_model(str(bad))
    assert err.value.field == "model"
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(InputError, match="mapping"):
        get_model(str(listing))


def test_unknown_preset_suggests_the_close_one():
    with pytest.raises(InputError) as err:
        get_model("llama-3.1-8")
    assert "llama-3.1-8b" in err.value.message
