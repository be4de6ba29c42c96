"""The architecture of a decoder-only transformer, and the weight matrices it is made of.

``ModelSpec`` is what a user writes (a preset file, an imported HF ``config.json`` or a dict).
``linears`` and ``layer_groups`` are the single source of truth for the weight matrices: parameter
counts, weight memory and the GEMM operators of a step are all derived from them, so they cannot
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from hwmodels.dtypes import DType
from simulator.bounds import (
    MAX_EXPERTS,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_TOKENS,
    MAX_VOCAB,
    MAX_WIDTH,
    at_most,
)

# Sizes no published model comes near (simulator/bounds.py says why each limit is safe).
Layers = Annotated[PositiveInt, at_most(MAX_LAYERS, "layers")]
Width = Annotated[PositiveInt, at_most(MAX_WIDTH, "elements")]
Vocab = Annotated[PositiveInt, at_most(MAX_VOCAB, "tokens")]
Heads = Annotated[PositiveInt, at_most(MAX_HEADS, "heads")]
Experts = Annotated[PositiveInt, at_most(MAX_EXPERTS, "experts")]
Positions = Annotated[PositiveInt, at_most(MAX_TOKENS * 64, "positions")]

AttentionKind = Literal["full", "sliding"]
MlpKind = Literal["dense", "moe"]
WeightGroup = Literal["attention", "mlp", "expert", "shared_expert", "router", "embedding", "lm_head"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoESpec(_Strict):
    """Mixture-of-experts feed-forward (Mixtral, Qwen-MoE, DeepSeek-V3, gpt-oss, OLMoE)."""

    num_experts: Experts
    top_k: Experts
    expert_intermediate_size: Width
    num_shared_experts: Annotated[NonNegativeInt, at_most(MAX_EXPERTS, "experts")] = 0
    shared_expert_intermediate_size: Width | None = Field(
        None, description="per shared expert; defaults to expert_intermediate_size"
    )
    shared_expert_gate: bool = Field(False, description="sigmoid gate hidden->1 on the shared expert (Qwen2-MoE)")
    first_dense_layers: Annotated[NonNegativeInt, at_most(MAX_LAYERS, "layers")] = Field(0, description="leading layers with a dense MLP (DeepSeek)")
    moe_layer_interval: Layers = Field(1, description="every n-th layer (after the dense ones) is MoE")
    router_bias: bool = False
    expert_bias: bool = False

    @model_validator(mode="after")
    def _top_k_fits(self) -> "MoESpec":
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k={self.top_k} exceeds num_experts={self.num_experts}")
        return self

    @property
    def shared_intermediate(self) -> int:
        return self.shared_expert_intermediate_size or self.expert_intermediate_size


class MLASpec(_Strict):
    """Multi-head latent attention (DeepSeek-V2/V3): the cache holds one latent + rope key per token."""

    kv_lora_rank: Width
    q_lora_rank: Width | None = None
    qk_rope_head_dim: Width
    qk_nope_head_dim: Width
    v_head_dim: Width


class PublishedParams(_Strict):
    """Parameter counts the model's authors publish, for checking the architecture."""

    total: PositiveInt
    active: PositiveInt
    source: str
    active_counts_input_embedding: bool = Field(
        True, description="False where the authors leave the input embedding table out of the active count (gpt-oss)"
    )
    active_counts_output_head: bool = Field(
        True, description="False where the authors also leave the output layer (LM head) out (GLM-4.5)"
    )
    rel_tol: float = Field(
        0.01,
        gt=0,
        le=0.05,
        description="how closely the architecture's counts must match these; above 1% only for a figure "
        "published to two significant digits (e.g. '1.3B')",
    )


@dataclass(frozen=True)
class Linear:
    """One weight matrix ``in_features x out_features`` applied to every token that reaches it.

    ``tp`` says how tensor parallelism splits it: ``column`` splits the outputs, ``row`` the inputs
    (followed by an all-reduce), ``replicated`` keeps a full copy on every GPU.
    """

    name: str
    in_features: int
    out_features: int
    group: WeightGroup
    bias: bool = False
    tp: Literal["column", "row", "replicated"] = "column"

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class LayerKind:
    attention: AttentionKind
    mlp: MlpKind


class ModelSpec(_Strict):
    """A decoder-only transformer. Sizes are element counts; nothing here depends on dtypes."""

    name: str
    family: str = ""
    num_layers: Layers
    hidden_size: Width
    num_attention_heads: Heads
    num_kv_heads: Heads
    head_dim: Width
    intermediate_size: Width = Field(description="dense MLP width")
    vocab_size: Vocab
    tie_word_embeddings: bool = False
    gated_mlp: bool = Field(True, description="SwiGLU/GeGLU (gate, up, down) vs ungated (up, down)")
    attention_bias: bool = Field(False, description="biases on q/k/v projections (Qwen2)")
    attention_out_bias: bool = Field(False, description="bias on the output projection")
    mlp_bias: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norms_per_layer: PositiveInt = Field(2, description="2 (pre-norm), 4 with post-norms (Gemma 2/3)")
    qk_norm: bool = Field(False, description="per-head RMSNorm on q and k (Qwen3, Gemma 3)")
    sliding_window: Positions | None = None
    layer_types: list[AttentionKind] | None = Field(
        None, description="attention kind per layer; default: all sliding if sliding_window is set, else all full"
    )
    attention_sinks: bool = Field(False, description="one learned sink logit per head (gpt-oss)")
    max_position_embeddings: Positions | None = None
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    published_params: PublishedParams | None = None
    active_counts_input_embedding: bool | None = Field(
        None, description="whether active_params() counts the input embedding, as the authors publish it; "
        "None: as published_params says, else True")
    active_counts_output_head: bool | None = Field(
        None, description="whether active_params() counts the output layer (LM head), as the authors publish it; "
        "None: as published_params says, else True")
    weights_dtype: DType | None = Field(None, description="the checkpoint's stored weight format (quantization_config)")
    quantization: str = Field("", description="the checkpoint's quantization, as read from quantization_config")
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers:
                raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers")
            if "sliding" in self.layer_types and self.sliding_window is None:
                raise ValueError("layer_types has sliding layers but sliding_window is not set")
        if self.moe and self.moe.first_dense_layers > self.num_layers:
            raise ValueError("moe.first_dense_layers exceeds num_layers")
        return self

    # --- layer structure -------------------------------------------------------------------------

    def attention_kinds(self) -> list[AttentionKind]:
        if self.layer_types is not None:
            return list(self.layer_types)
        return ["sliding" if self.sliding_window else "full"] * self.num_layers

    def mlp_kinds(self) -> list[MlpKind]:
        if self.moe is None:
            return ["dense"] * self.num_layers
        kinds: list[MlpKind] = []
        for i in range(self.num_layers):
            dense = i < self.moe.first_dense_layers or (i - self.moe.first_dense_layers) % self.moe.moe_layer_interval
            kinds.append("dense" if dense else "moe")
        return kinds

    def layer_groups(self) -> list[tuple[LayerKind, int]]:
        """Distinct layer kinds with how many layers have each, in first-seen order."""
        counts: dict[LayerKind, int] = {}
        for att, mlp in zip(self.attention_kinds(), self.mlp_kinds()):
            kind = LayerKind(att, mlp)
            counts[kind] = counts.get(kind, 0) + 1
        return list(counts.items())

    # --- weights ---------------------------------------------------------------------------------

    @property
    def q_dim(self) -> int:
        """Width of the concatenated query heads."""
        if self.mla:
            return self.num_attention_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.num_attention_heads * self.head_dim

    @property
    def attn_out_dim(self) -> int:
        """Width of the concatenated attention outputs (input of the output projection)."""
        if self.mla:
            return self.num_attention_heads * self.mla.v_head_dim
        return self.num_attention_heads * self.head_dim

    def attention_linears(self) -> list[Linear]:
        h = self.hidden_size
        if self.mla:
            m = self.mla
            n = self.num_attention_heads
            out: list[Linear] = []
            if m.q_lora_rank:
                out.append(Linear("attn.q_a_proj", h, m.q_lora_rank, "attention", tp="replicated"))
                out.append(Linear("attn.q_b_proj", m.q_lora_rank, self.q_dim, "attention"))
            else:
                out.append(Linear("attn.q_proj", h, self.q_dim, "attention"))
            out.append(
                Linear("attn.kv_a_proj", h, m.kv_lora_rank + m.qk_rope_head_dim, "attention", tp="replicated")
            )
            out.append(Linear("attn.kv_b_proj", m.kv_lora_rank, n * (m.qk_nope_head_dim + m.v_head_dim), "attention"))
            out.append(Linear("attn.o_proj", self.attn_out_dim, h, "attention", tp="row"))
            return out
        kv = self.num_kv_heads * self.head_dim
        b = self.attention_bias
        return [
            Linear("attn.q_proj", h, self.q_dim, "attention", bias=b),
            Linear("attn.k_proj", h, kv, "attention", bias=b),
            Linear("attn.v_proj", h, kv, "attention", bias=b),
            Linear("attn.o_proj", self.attn_out_dim, h, "attention", bias=self.attention_out_bias, tp="row"),
        ]

    def _ffn(self, prefix: str, inter: int, group: WeightGroup, bias: bool) -> list[Linear]:
        h = self.hidden_size
        first = [Linear(f"{prefix}.gate_proj", h, inter, group, bias)] if self.gated_mlp else []
        return first + [
            Linear(f"{prefix}.up_proj", h, inter, group, bias),
            Linear(f"{prefix}.down_proj", inter, h, group, bias, tp="row"),
        ]

    def dense_mlp_linears(self) -> list[Linear]:
        return self._ffn("mlp", self.intermediate_size, "mlp", self.mlp_bias)

    def expert_linears(self) -> list[Linear]:
        """The matrices of ONE routed expert."""
        assert self.moe is not None
        return self._ffn("moe.expert", self.moe.expert_intermediate_size, "expert", self.moe.expert_bias)

    def shared_expert_linears(self) -> list[Linear]:
        """The matrices of all shared experts together (they see every token)."""
        assert self.moe is not None
        if not self.moe.num_shared_experts:
            return []
        inter = self.moe.shared_intermediate * self.moe.num_shared_experts
        out = self._ffn("moe.shared", inter, "shared_expert", self.mlp_bias)
        if self.moe.shared_expert_gate:
            out.append(Linear("moe.shared_gate", self.hidden_size, 1, "shared_expert", tp="replicated"))
        return out

    def router_linear(self) -> Linear:
        assert self.moe is not None
        return Linear("moe.router", self.hidden_size, self.moe.num_experts, "router", self.moe.router_bias, "replicated")

    def norm_params_per_layer(self) -> int:
        per_norm = self.hidden_size * (2 if self.norm == "layernorm" else 1)
        params = self.norms_per_layer * per_norm
        if self.qk_norm:
            params += 2 * self.head_dim
        if self.mla:
            params += self.mla.kv_lora_rank + (self.mla.q_lora_rank or 0)
        if self.attention_sinks:
            params += self.num_attention_heads
        return params

    def layer_params(self, kind: LayerKind, active_only: bool = False) -> int:
        """Parameters of one layer of the given kind; ``active_only`` counts top_k routed experts."""
        params = sum(lin.params for lin in self.attention_linears()) + self.norm_params_per_layer()
        if kind.mlp == "dense":
            return params + sum(lin.params for lin in self.dense_mlp_linears())
        assert self.moe is not None
        experts = self.moe.top_k if active_only else self.moe.num_experts
        params += experts * sum(lin.params for lin in self.expert_linears())
        params += sum(lin.params for lin in self.shared_expert_linears()) + self.router_linear().params
        return params

    def embedding_params(self) -> int:
        """Input embedding + output head (once if tied) + final norm."""
        emb = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else emb
        final_norm = self.hidden_size * (2 if self.norm == "layernorm" else 1)
        return emb + head + final_norm

    def total_params(self) -> int:
        return self.embedding_params() + sum(n * self.layer_params(k) for k, n in self.layer_groups())

    @property
    def counts_input_embedding(self) -> bool:
        """Whether the authors' active-parameter figure includes the input embedding table."""
        if self.active_counts_input_embedding is not None:
            return self.active_counts_input_embedding
        return self.published_params.active_counts_input_embedding if self.published_params else True

    @property
    def counts_output_head(self) -> bool:
        """Whether the authors' active-parameter figure includes the output layer (LM head)."""
        if self.active_counts_output_head is not None:
            return self.active_counts_output_head
        return self.published_params.active_counts_output_head if self.published_params else True

    def active_params(self, count_input_embedding: bool | None = None, count_output_head: bool | None = None) -> int:
        """Parameters touched by one token: all but the routed experts it is not sent to.

        ``count_input_embedding=False`` leaves out the input embedding table, of which a token reads one row;
        ``count_output_head=False`` leaves out the output layer (LM head). A tied table is the head, used
        whole by every token: it is left out only when both are. ``None`` follows the authors' convention
        (``counts_input_embedding``, ``counts_output_head``): DeepSeek-V3 and gpt-oss leave the input
        embedding out, GLM-4.5 both. Callers that want the parameters a token multiplies pass both.
        """
        if count_input_embedding is None:
            count_input_embedding = self.counts_input_embedding
        if count_output_head is None:
            count_output_head = self.counts_output_head
        layers = sum(n * self.layer_params(k, active_only=True) for k, n in self.layer_groups())
        table = self.vocab_size * self.hidden_size
        if self.tie_word_embeddings:
            skipped = 0 if (count_input_embedding or count_output_head) else table
        else:
            skipped = (0 if count_input_embedding else table) + (0 if count_output_head else table)
        return self.embedding_params() - skipped + layers

    # --- KV cache --------------------------------------------------------------------------------

    def kv_elements_per_token_per_layer(self) -> int:
        """Elements cached per token in one attention layer: 2*n_kv*d_h, or latent + rope key for MLA."""
        if self.mla:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_elements_per_token(self) -> int:
        """Elements cached per token over all layers (sliding layers cache at most the window)."""
        return self.num_layers * self.kv_elements_per_token_per_layer()
