"""Decoding: speculative decoding (a draft model, self-speculation by layer skipping, or Medusa heads)
and early exit. Both change how much of the target model a generated token costs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from hwmodels.errors import InputError
from simulator.footprint import kv_bytes_per_request, weight_bytes_per_gpu
from simulator.models import get_model
from simulator.models.spec import Linear
from simulator.step import StepBuilder, StepShape, build_step
from simulator.techniques import Technique, register


def expected_tokens_per_pass(alpha, gamma):
    """Leviathan et al. 2023, eq. (1): E = (1 - α^(γ+1)) / (1 - α) tokens per target pass."""
    a = np.asarray(alpha, dtype=float)
    return np.where(a < 1.0, (1.0 - a ** (gamma + 1)) / np.where(a < 1.0, 1.0 - a, 1.0), gamma + 1.0)


def _scale_layers(ops, fraction):
    return [replace(op, count=op.count * fraction) if getattr(op, "per_layer", False) else op for op in ops]


def _renamed(ops, prefix: str, times: float):
    return [replace(op, name=prefix + op.name, count=op.count * times) for op in ops]


@register
class Speculative(Technique):
    """Speculative decoding: a cheap drafter proposes ``gamma`` tokens, the target verifies them in one
    pass over gamma + 1 positions and keeps the accepted prefix plus one token of its own.

    Tokens per target pass E = (1 - α^(γ+1)) / (1 - α) for per-token acceptance α; with ``num_drafts``
    = k independent drafts a position is accepted if any is, α_k = 1 - (1 - α)^k (the i.i.d. upper bound
    that optimal multi-draft verification approaches). A decode step = one verify pass over k·γ + 1
    positions (logits for each) + γ draft steps. Drafters: ``draft`` (a separate model with its own
    weights and KV cache), ``self`` (the target with only ``layer_fraction`` of its layers, as SWIFT;
    no extra memory), ``medusa`` (γ heads of a residual block and an LM head on the last hidden state).
    Without drafting cost and when decode is memory-bound the speedup tends to E / (1 + γ·c), c the
    draft step's cost relative to a target step. A draft model runs at the scenario's bytes per element;
    the other techniques transform the target (and the self-drafter, which is the target)."""

    name = "speculative"
    family = "decoding"
    citation = ("Leviathan et al. 2023, Fast Inference from Transformers via Speculative Decoding, arXiv 2211.17192; "
                "Xia et al. 2024, SWIFT, arXiv 2410.06916; Cai et al. 2024, Medusa, arXiv 2401.10774; "
                "Hu et al. 2025, Towards Optimal Multi-draft Speculative Decoding, arXiv 2502.18779")
    summary = "step = verify pass over k*gamma+1 tokens + gamma draft steps; E = (1-a^(g+1))/(1-a) tokens per step"

    method: Literal["self", "draft", "medusa"] = Field("self", description="who drafts: skipped layers, a model, heads")
    alpha: float = Field(0.8, gt=0.0, lt=1.0, description="per-token acceptance rate of one draft")
    gamma: PositiveInt = Field(4, description="draft tokens per step")
    num_drafts: PositiveInt = Field(1, description="independent drafts verified together (multi-draft)")
    draft_model: str | dict[str, Any] | None = Field(None, description="draft model (method draft): preset or spec")
    layer_fraction: float = Field(0.5, gt=0.0, lt=1.0, description="target layers the self-drafter runs (SWIFT)")

    @field_validator("draft_model")
    @classmethod
    def _known(cls, value):
        if value is not None:
            try:
                get_model(value, field="draft_model")
            except InputError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _needs_draft(self) -> "Speculative":
        if self.method == "draft" and self.draft_model is None:
            raise ValueError("method 'draft' needs a draft_model")
        return self

    @property
    def acceptance(self) -> float:
        return 1.0 - (1.0 - self.alpha) ** self.num_drafts

    @property
    def verify_tokens(self) -> int:
        return self.num_drafts * self.gamma + 1

    def tokens_per_step(self) -> float:
        return float(expected_tokens_per_pass(self.acceptance, self.gamma))

    def step_shape(self, shape, dep):
        if shape.phase != "decode":
            return shape
        return replace(shape, new_tokens=self.verify_tokens, logits_per_seq=self.verify_tokens)

    # --- the drafter -----------------------------------------------------------------------------

    def _draft_dep(self, dep):
        draft = get_model(self.draft_model, field="draft_model")
        tp = np.asarray(dep.tp)
        fits = np.all(draft.num_attention_heads % tp == 0) and np.all(
            (draft.num_kv_heads % tp == 0) | (tp % draft.num_kv_heads == 0))
        return replace(dep, model=draft, tp=dep.tp if fits else 1, pp=1, techniques=(), attention_kinds=None,
                       weight_density=1.0, weight_index_bytes=0.0)

    def extra_weight_bytes(self, dep):
        if self.method == "draft":
            return weight_bytes_per_gpu(self._draft_dep(dep))
        if self.method == "medusa":
            m = dep.model
            return self.gamma * (m.hidden_size ** 2 * dep.layer_weight_bytes
                                 + m.hidden_size * m.vocab_size * dep.emb_bytes) / dep.tp
        return 0.0

    def extra_request_bytes(self, dep, tokens):
        return kv_bytes_per_request(self._draft_dep(dep), tokens) if self.method == "draft" else 0.0

    def apply_ops(self, ops, shape, dep):
        past = shape.past_tokens
        if shape.phase == "prefill":
            if self.method != "draft":
                return ops
            return [*ops, *_renamed(build_step(self._draft_dep(dep), shape), "draft.", 1.0)]
        k = self.num_drafts
        draft_shape = StepShape(shape.batch, float(k), past, "decode")
        if self.method == "draft":
            return [*ops, *_renamed(build_step(self._draft_dep(dep), draft_shape), "draft.", self.gamma)]
        if self.method == "self":
            drafted = build_step(dep, draft_shape)
            for tech in dep.techniques:
                if tech is not self:
                    drafted = tech.apply_ops(drafted, draft_shape, dep)
            return [*ops, *_renamed(_scale_layers(drafted, self.layer_fraction), "draft.", self.gamma)]
        # medusa: gamma heads on each sequence's last hidden state, in the verify pass
        m = dep.model
        builder = StepBuilder(dep, shape)
        rows = np.asarray(shape.batch, dtype=float) * k
        builder._gemm("medusa.resblock", [Linear("medusa.resblock", m.hidden_size, m.hidden_size, "mlp")],
                      self.gamma, rows, per_layer=False)
        builder._gemm("medusa.lm_head", [Linear("medusa.lm_head", m.hidden_size, m.vocab_size, "lm_head")],
                      self.gamma, rows, weight_bytes=dep.emb_bytes, per_layer=False)
        return [*ops, *builder.ops]


@register
class EarlyExit(Technique):
    """Early exit / layer skipping: a decoded token leaves the model after an average ``exit_fraction``
    of its layers (SpecEE predicts the exit with a light per-layer predictor).

    Per decode step every per-layer operator runs exit_fraction x L times: weight bytes, FLOPs and the
    KV reads of the skipped layers drop together (best case for a batch: its tokens exit together,
    which holds at batch 1). The KV cache keeps every layer (deeper layers' K/V are still filled for
    later tokens). ``predictor_params``: weights of the exit predictor run after each layer passed."""

    name = "early_exit"
    family = "decoding"
    citation = ("Xu et al. 2025, SpecEE: Accelerating Large Language Model Inference with Speculative Early Exiting, "
                "arXiv 2504.08850; Schuster et al. 2022, Confident Adaptive Language Modeling, arXiv 2207.07061")
    summary = "decode per-layer operators run exit_fraction x L times (+ a per-layer exit predictor)"

    exit_fraction: float = Field(0.6, gt=0.0, le=1.0, description="mean share of layers a decoded token runs")
    predictor_params: NonNegativeInt = Field(0, description="weights of the per-layer exit predictor")

    def apply_ops(self, ops, shape, dep):
        if shape.phase != "decode":
            return ops
        out = _scale_layers(ops, self.exit_fraction)
        if self.predictor_params:
            rows = np.asarray(shape.batch, dtype=float)
            head = Linear("early_exit.predictor", self.predictor_params, 1, "mlp", tp="replicated")
            builder = StepBuilder(dep, shape)
            builder._gemm("early_exit.predictor", [head], self.exit_fraction * dep.model.num_layers, rows)
            out += builder.ops
        return out
