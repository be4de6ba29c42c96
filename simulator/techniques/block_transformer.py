"""Block Transformer: global attention over blocks of tokens, local attention within a block
(Ho et al. 2024, Block Transformer: Global-to-Local Language Modeling for Fast Inference, arXiv 2406.02657)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field, PositiveInt

from simulator.techniques import Technique, register


@register
class BlockTransformer(Technique):
    """The lower ``block_layers`` layers are a block decoder over block embeddings of L_B =
    ``block_len`` tokens each; the upper ones a token decoder attending only within the current block.

    Block decoder: one KV entry per block (KV memory and each global-attention read drop by L_B), and it
    runs once per block, so per decoded token its operators run 1/L_B times. Token decoder: a window of
    L_B tokens (KV ≤ L_B per layer whatever the context), and it needs no prompt prefill beyond the last
    block. Per decoded token the per-layer operators therefore run n_token + n_block / L_B times instead
    of L. In prefill the block decoder's layers run over s / L_B block embeddings and the token decoder's
    over the last block (min(L_B, s) tokens per sequence): their operators' FLOPs, activation bytes and
    messages scale so, each layer's weights are read once, and block-decoder attention runs over s / L_B
    blocks (FLOPs / L_B², K/V and Q/O bytes / L_B). The model's weights are split as they are (the paper
    trains its own splits); the block embedder (a lookup and concatenation) is not priced."""

    name = "block_transformer"
    family = "attention shape"
    citation = ("Ho et al. 2024, Block Transformer: Global-to-Local Language Modeling for Fast Inference, "
                "arXiv 2406.02657")
    summary = "block decoder over L_B-token blocks (KV and reads / L_B, runs once per block) + local token decoder"

    block_len: PositiveInt = Field(4, description="tokens per block L_B (the paper's main setting: 4)")
    block_layers: PositiveInt | None = Field(None, description="layers of the block decoder; none = half the layers")

    def _split(self, model) -> tuple[int, int]:
        n_block = model.num_layers // 2 if self.block_layers is None else self.block_layers
        return n_block, model.num_layers - n_block

    def apply_model(self, model):
        if any(kind != "full" for kind in model.attention_kinds()):
            raise self.error("", f"{model.name} already has local attention layers; give a full-attention model")
        n_block, n_token = self._split(model)
        if n_block >= model.num_layers:
            raise self.error("block_layers", f"{n_block} leaves no token-decoder layer of {model.num_layers}")
        kinds = ["full"] * n_block + ["sliding"] * n_token
        return model.model_copy(update={"sliding_window": self.block_len, "layer_types": kinds})

    def kv_tokens(self, tokens, kind: str):
        return tokens / self.block_len if kind == "full" else tokens

    def apply_ops(self, ops, shape, dep):
        n_block, n_token = self._split(dep.model)
        n, blocks = n_block + n_token, float(self.block_len)
        if shape.phase == "decode":
            layers = (n_token + n_block / blocks) / n
            local = 1.0
        else:
            last_block = _min_ratio(blocks, shape.new_tokens)  # min(L_B, s) / s
            layers = (n_block / blocks + n_token * last_block) / n
            local = last_block
        out = []
        for op in ops:
            if op.kind in ("attention_prefill", "attention_decode") and ".full" in op.name:
                if shape.phase == "decode":
                    op = replace(op, count=op.count / blocks)  # the block decoder steps once per block
                else:
                    op = replace(op, flops=op.flops / blocks ** 2, hbm_bytes=op.hbm_bytes / blocks,
                                 kv_read_bytes=op.kv_read_bytes / blocks)
            elif op.kind in ("attention_prefill", "attention_decode") and ".sliding" in op.name:
                op = replace(op, flops=op.flops * local, hbm_bytes=op.hbm_bytes * local,
                             kv_read_bytes=op.kv_read_bytes * local)
            elif getattr(op, "per_layer", False):
                if shape.phase == "decode":
                    op = replace(op, count=op.count * layers)
                else:  # block decoder layers over s / L_B block embeddings, token decoder layers over the last block
                    out += [_over_tokens(op, n_block / n, 1.0 / blocks, ".block"),
                            _over_tokens(op, n_token / n, local, ".token")]
                    continue
            out.append(op)
        return out


def _over_tokens(op, layer_share, ratio, suffix):
    """``op`` (run by every layer) for ``layer_share`` of its layers over ``ratio`` of its tokens: FLOPs, the
    activations' bytes, GEMM rows and collective messages scale with the tokens, a GEMM's weights are read
    once per layer whatever the tokens (a collective keeps the link efficiency of its full message)."""
    weights = getattr(op, "weight_bytes", 0.0)
    return replace(op, name=op.name + suffix, count=op.count * layer_share, flops=op.flops * ratio,
                   hbm_bytes=weights + (op.hbm_bytes - weights) * ratio, link_bytes=op.link_bytes * ratio,
                   rows=getattr(op, "rows", 0.0) * ratio, input_elems=getattr(op, "input_elems", 0.0) * ratio)


def _min_ratio(block, tokens):
    """min(L_B, s) / s, for scalar or array s."""
    s = np.maximum(np.asarray(tokens, dtype=float), 1.0)
    ratio = np.minimum(block, s) / s
    return float(ratio) if ratio.ndim == 0 else ratio
