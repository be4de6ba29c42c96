"""Build a ``ModelSpec`` from a Hugging Face ``config.json`` (already parsed to a dict).

A pure mapping of config fields; ``transformers`` is not needed. Each supported ``model_type`` is one
row of ``FAMILIES``, holding what HF leaves implicit for that family (its default for tied
embeddings, which biases and norms its layers carry, how its sliding-window layers are laid out).
A field that families spell differently (num_local_experts / num_experts / n_routed_experts) is read
from the first spelling present.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from hwmodels.errors import InputError, validated
from simulator.bounds import MAX_LAYERS, limit_message
from simulator.models.quantization import quantization
from simulator.models.spec import ModelSpec


@dataclass(frozen=True)
class Family:
    """What a ``model_type``'s config.json leaves implicit."""

    family: str
    tie_word_embeddings: bool = False  # HF's default when the config does not say
    qkv_bias_only: bool = False  # biases on q/k/v but not on o, whatever attention_bias says (Qwen2)
    qk_norm: bool = False
    norms_per_layer: int = 2
    sliding_pattern: int | None = None  # every n-th layer global, the rest sliding (Gemma); config may override
    sliding_opt_in: bool = False  # sliding_window applies only with use_sliding_window: true (Qwen)
    moe: bool = False
    mla: bool = False
    shared_expert_gate: bool = False
    moe_biases: bool = False  # router and expert biases (gpt-oss)
    attention_sinks: bool = False
    qk_norm_key: str | None = None  # a config flag that turns qk_norm on (GLM-4.5: use_qk_norm)
    # whether the authors' published active-parameter count includes the input embedding table: DeepSeek-V3
    # (36.6B of 671B, README_WEIGHTS.md), Kimi K2 (same architecture), gpt-oss (5.1B of 117B, model card
    # Table 1) and GLM-4.5 leave it out; the others count it (Mixtral 12.9B of 46.7B, Qwen3-30B-A3B 3.3B of
    # 30.5B)
    active_counts_input_embedding: bool = True
    # and the output layer: GLM-4.5 counts neither (32B of 355B, 12B of 106B for Air; tests/test_hf_import.py)
    active_counts_output_head: bool = True
    defaults: dict[str, Any] = dc_field(default_factory=dict)  # values HF's config class supplies when absent


_QWEN = dict(sliding_opt_in=True)
_GEMMA = dict(tie_word_embeddings=True, norms_per_layer=4)
_GEMMA_DEFAULTS = {"head_dim": 256}  # HF's Gemma config classes default to 256, not hidden / heads

FAMILIES: dict[str, Family] = {
    "llama": Family("llama"),
    "mistral": Family("mistral"),
    "mixtral": Family("mixtral", moe=True),
    "qwen2": Family("qwen2", qkv_bias_only=True, **_QWEN),
    "qwen2_moe": Family("qwen2_moe", qkv_bias_only=True, moe=True, shared_expert_gate=True, **_QWEN),
    "qwen3": Family("qwen3", qk_norm=True, **_QWEN),
    "qwen3_moe": Family("qwen3_moe", qk_norm=True, moe=True, **_QWEN),
    "deepseek_v2": Family("deepseek", moe=True, mla=True, active_counts_input_embedding=False),
    "deepseek_v3": Family("deepseek", moe=True, mla=True, active_counts_input_embedding=False),
    # Kimi K2 is the DeepSeek-V3 architecture with its own model_type (moonshotai/Kimi-K2-Instruct README)
    "kimi_k2": Family("deepseek", moe=True, mla=True, active_counts_input_embedding=False),
    # GLM-4.5: biases on q/k/v only (HF Glm4MoeAttention: o_proj has none), sigmoid router, leading dense layers
    "glm4_moe": Family("glm4_moe", qkv_bias_only=True, moe=True, qk_norm_key="use_qk_norm",
                       active_counts_input_embedding=False, active_counts_output_head=False),
    "gemma2": Family("gemma2", sliding_pattern=2, defaults=_GEMMA_DEFAULTS, **_GEMMA),
    "gemma3_text": Family(
        "gemma3",
        qk_norm=True,
        sliding_pattern=6,
        defaults={**_GEMMA_DEFAULTS, "vocab_size": 262208, "max_position_embeddings": 131072, "sliding_window": 4096},
        **_GEMMA,
    ),
    "phi3": Family("phi3"),
    "gpt_oss": Family("gpt_oss", moe=True, moe_biases=True, attention_sinks=True, active_counts_input_embedding=False),
    "olmoe": Family("olmoe", qk_norm=True, moe=True),
}

# Multimodal configs that nest the language model under a key, with the model_type it has when the
# nested config does not say (the vision tower and projector are not modelled: text generation only).
WRAPPERS: dict[str, tuple[str, str]] = {"gemma3": ("text_config", "gemma3_text"), "mistral3": ("text_config", "mistral")}

NUM_EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts")
LAYER_KINDS = {"full_attention": "full", "sliding_attention": "sliding"}


class _Config:
    """Typed reads from one config dict; every problem becomes an ``InputError`` naming the key."""

    def __init__(self, data: dict[str, Any], family: Family, model_type: str, field: str):
        self.data = {**family.defaults, **{k: v for k, v in data.items() if v is not None}}
        self.model_type = model_type
        self.field = field

    def error(self, key: str, message: str) -> InputError:
        return InputError(f"{self.field}.{key}", f"{message} ({self.model_type} config)")

    def has(self, key: str) -> bool:
        return key in self.data

    def integer(self, *keys: str, default: int | None = None) -> int:
        """The first of ``keys`` present, as a non-negative integer; ``default`` or an error if none is."""
        for key in keys:
            if key in self.data:
                value = self.data[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise self.error(key, f"expected a non-negative integer, got {value!r}")
                return value
        if default is None:
            raise self.error(keys[0], f"missing required key {keys[0]!r}")
        return default

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value


def _layer_types(cfg: _Config, fam: Family, num_layers: int) -> tuple[int | None, list[str] | None]:
    """(sliding_window, layer_types) in ModelSpec terms; (None, None) when every layer is global."""
    window = cfg.integer("sliding_window", default=0)
    if fam.sliding_opt_in and not cfg.flag("use_sliding_window", False):
        window = 0
    if not window or window >= cfg.integer("max_position_embeddings", default=window + 1):
        return None, None  # no window, or one that never binds
    if cfg.has("layer_types"):
        names = cfg.data["layer_types"]
        if not isinstance(names, list) or len(names) != num_layers or any(n not in LAYER_KINDS for n in names):
            raise cfg.error("layer_types", f"expected {num_layers} entries, each {' or '.join(LAYER_KINDS)}")
        kinds = [LAYER_KINDS[n] for n in names]
    elif fam.sliding_pattern:
        pattern = cfg.integer("sliding_window_pattern", default=fam.sliding_pattern)
        kinds = ["full" if pattern and (i + 1) % pattern == 0 else "sliding" for i in range(num_layers)]
    elif fam.sliding_opt_in:  # Qwen: the first max_window_layers layers stay global
        first = cfg.integer("max_window_layers", default=0)
        kinds = ["full" if i < first else "sliding" for i in range(num_layers)]
    else:
        return window, None  # Mistral, Phi-3: every layer slides
    if "sliding" not in kinds:
        return None, None
    return window, (None if "full" not in kinds else kinds)


def _moe(cfg: _Config, fam: Family, num_layers: int) -> dict[str, Any] | None:
    if not fam.moe:
        return None
    num_experts = cfg.integer(*NUM_EXPERTS)
    # Qwen: layer i is MoE when (i + 1) % decoder_sparse_step == 0 and i is not in mlp_only_layers.
    # DeepSeek: layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0.
    step = cfg.integer("decoder_sparse_step", "moe_layer_freq", default=1) or 1
    first_dense = cfg.integer("first_k_dense_replace", default=0)
    first_dense = -(-first_dense // step) * step if cfg.has("moe_layer_freq") else first_dense + step - 1
    dense_only = cfg.data.get("mlp_only_layers") or []
    if dense_only:
        if step != 1 or not isinstance(dense_only, list) or set(dense_only) != set(range(len(dense_only))):
            raise cfg.error("mlp_only_layers", "only a leading run of dense layers (0, 1, ..., k-1) is supported")
        first_dense = max(first_dense, len(dense_only))
    shared_inter = cfg.integer("shared_expert_intermediate_size", default=0)
    expert_inter = cfg.integer("moe_intermediate_size", default=0) or cfg.integer("intermediate_size")
    return dict(
        num_experts=num_experts,
        top_k=cfg.integer("num_experts_per_tok", "experts_per_token"),
        expert_intermediate_size=expert_inter,
        num_shared_experts=cfg.integer("n_shared_experts", default=1 if shared_inter else 0),
        shared_expert_intermediate_size=shared_inter or None,
        shared_expert_gate=fam.shared_expert_gate and bool(shared_inter),
        first_dense_layers=min(first_dense, num_layers),
        moe_layer_interval=step,
        router_bias=fam.moe_biases,
        expert_bias=fam.moe_biases,
    )


def _mla(cfg: _Config) -> dict[str, Any]:
    return dict(
        kv_lora_rank=cfg.integer("kv_lora_rank"),
        q_lora_rank=cfg.integer("q_lora_rank", default=0) or None,
        qk_rope_head_dim=cfg.integer("qk_rope_head_dim"),
        qk_nope_head_dim=cfg.integer("qk_nope_head_dim"),
        v_head_dim=cfg.integer("v_head_dim"),
    )


def spec_from_hf_config(config: dict[str, Any], name: str | None = None, field: str = "model") -> ModelSpec:
    """A ``ModelSpec`` from a HF ``config.json`` dict; ``InputError`` naming the key if it cannot be mapped."""
    if not isinstance(config, dict):
        raise InputError(field, "expected a mapping (the contents of a config.json)")
    model_type = config.get("model_type")
    if not model_type or not isinstance(model_type, str):
        raise InputError(f"{field}.model_type", "missing required key 'model_type'")
    outer = config
    if model_type in WRAPPERS:
        key, model_type = WRAPPERS[model_type]
        if not isinstance(config.get(key), dict):
            raise InputError(f"{field}.{key}", f"missing required key {key!r} ({config['model_type']} config)")
        config, field = {"model_type": model_type, **config[key]}, f"{field}.{key}"
        model_type = config["model_type"]
    fam = FAMILIES.get(model_type)
    if fam is None:
        known = ", ".join(sorted({*FAMILIES, *WRAPPERS}))
        raise InputError(f"{field}.model_type", f"unsupported model_type {model_type!r}; supported: {known}")
    cfg = _Config(config, fam, model_type, field)

    num_layers = cfg.integer("num_hidden_layers")
    if num_layers > MAX_LAYERS:  # before any per-layer list is built
        raise cfg.error("num_hidden_layers", limit_message(num_layers, MAX_LAYERS, "layers"))
    hidden = cfg.integer("hidden_size")
    heads = cfg.integer("num_attention_heads")
    mla = _mla(cfg) if fam.mla else None
    head_dim = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"] if mla else cfg.integer("head_dim", default=0)
    if not head_dim and heads and hidden % heads:
        raise cfg.error("head_dim", f"hidden_size={hidden} is not divisible by num_attention_heads={heads}; "
                                    "give head_dim explicitly")
    bias = cfg.flag("attention_bias", False)
    tie = outer.get("tie_word_embeddings")  # a wrapper (Gemma 3) may state it at the top level instead
    tie = tie if isinstance(tie, bool) else fam.tie_word_embeddings
    window, layer_types = _layer_types(cfg, fam, num_layers)
    path = str(outer.get("_name_or_path") or "").rstrip("/")
    data = dict(
        name=name or outer.get("name") or path.rsplit("/", 1)[-1] or model_type,
        family=fam.family,
        num_layers=num_layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=cfg.integer("num_key_value_heads", default=heads),
        head_dim=head_dim or (hidden // heads if heads else 0),
        intermediate_size=cfg.integer("intermediate_size"),
        vocab_size=cfg.integer("vocab_size"),
        tie_word_embeddings=cfg.flag("tie_word_embeddings", tie),
        attention_bias=fam.qkv_bias_only or bias,
        attention_out_bias=bias and not fam.qkv_bias_only,
        mlp_bias=cfg.flag("mlp_bias", False),
        norms_per_layer=fam.norms_per_layer,
        qk_norm=fam.qk_norm or (bool(fam.qk_norm_key) and cfg.flag(fam.qk_norm_key, False)),
        sliding_window=window,
        layer_types=layer_types,
        attention_sinks=fam.attention_sinks,
        max_position_embeddings=cfg.integer("max_position_embeddings", default=0) or None,
        moe=_moe(cfg, fam, num_layers),
        mla=mla,
        active_counts_input_embedding=None if fam.active_counts_input_embedding else False,
        active_counts_output_head=None if fam.active_counts_output_head else False,
        **quantization(config.get("quantization_config") or outer.get("quantization_config"), field),
        source=str(outer.get("source", "")),
    )
    return validated(ModelSpec, data, field)
