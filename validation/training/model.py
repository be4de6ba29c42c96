"""A Llama-style decoder in plain torch for timing training steps (random weights).

Pre-norm blocks as an efficient training engine runs them: a fused RMSNorm, the fused QKV projection,
one fused rotary-embedding kernel on its output, causal attention through
``torch.nn.functional.scaled_dot_product_attention`` (FlashAttention / cuDNN on a GPU), the output
projection and residual add, a fused RMSNorm, the fused gate/up projection, one fused SwiGLU kernel
(saving only its input), the down projection and residual add; final RMSNorm and an untied LM head. The
element-wise kernels (forward and backward) are ``validation.training.fused``'s Triton kernels; with
``fused=False``, or where Triton cannot run, the same functions in plain torch ops. The loss upcasts
the logits to fp32 and calls ``cross_entropy``, as Hugging Face causal-LM heads do. Under ``amp`` the
embedding output is cast to the autocast dtype, so the residual stream is 16-bit (Megatron-LM's
default). ``checkpoint_blocks=True`` wraps each block in ``torch.utils.checkpoint`` (full recompute);
``checkpoint_attention=True`` wraps only the attention core, the SDPA call, so its backward runs the
attention forward again from the saved Q, K and V (selective recompute, Korthikanti et al. 2022, §5).
Models with ``attention_bias`` (Qwen2) give the QKV projection a bias; with ``tie_word_embeddings`` the
LM head is the embedding table (one parameter, both gradients accumulated into it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from validation.training import fused as fz


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5, fused: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps, self.fused = eps, fused

    def forward(self, x):
        return fz.rms_norm(x, self.weight, self.eps, self.fused)


def _attend(q, k, v, gqa: bool):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)


class Block(nn.Module):
    def __init__(self, h: int, heads: int, kv_heads: int, head_dim: int, inter: int, fused: bool = True,
                 qkv_bias: bool = False, checkpoint_attention: bool = False):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.fused = heads, kv_heads, head_dim, fused
        self.checkpoint_attention = checkpoint_attention
        self.attn_norm = RMSNorm(h, fused=fused)
        self.qkv = nn.Linear(h, (heads + 2 * kv_heads) * head_dim, bias=qkv_bias)
        self.o = nn.Linear(heads * head_dim, h, bias=False)
        self.mlp_norm = RMSNorm(h, fused=fused)
        self.gate_up = nn.Linear(h, 2 * inter, bias=False)
        self.down = nn.Linear(inter, h, bias=False)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q, k, v = fz.rotary_qkv(self.qkv(self.attn_norm(x)), cos, sin, self.heads, self.kv_heads, self.head_dim,
                                self.fused)
        gqa = self.kv_heads != self.heads
        if self.checkpoint_attention:  # no dropout in attention: nothing random to replay, and capturable
            a = checkpoint(_attend, q, k, v, gqa, use_reentrant=False, preserve_rng_state=False)
        else:
            a = _attend(q, k, v, gqa)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, -1))
        return x + self.down(fz.swiglu(self.gate_up(self.mlp_norm(x)), self.fused))


class Decoder(nn.Module):
    def __init__(self, layers: int, h: int, heads: int, kv_heads: int, head_dim: int, inter: int, vocab: int,
                 checkpoint_blocks: bool = False, theta: float = 500000.0, fused: bool = True,
                 qkv_bias: bool = False, tie_embeddings: bool = False, checkpoint_attention: bool = False):
        super().__init__()
        self.embed = nn.Embedding(vocab, h)
        self.blocks = nn.ModuleList(Block(h, heads, kv_heads, head_dim, inter, fused, qkv_bias, checkpoint_attention)
                                    for _ in range(layers))
        self.norm = RMSNorm(h, fused=fused)
        self.lm_head = nn.Linear(h, vocab, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.checkpoint_blocks = checkpoint_blocks
        self.head_dim, self.theta = head_dim, theta
        self._tables: dict = {}

    def rope_tables(self, s, device):
        """fp32 cos and sin of each position's rotation angles, [s, head_dim / 2] (made once per length)."""
        key = (s, str(device))
        if key not in self._tables:
            inv = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32)
                                        / self.head_dim))
            ang = torch.outer(torch.arange(s, device=device, dtype=torch.float32), inv)
            self._tables[key] = (ang.cos().contiguous(), ang.sin().contiguous())
        return self._tables[key]

    def forward(self, ids, labels):
        dev = ids.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else self.embed.weight.dtype
        x = fz.embedding(ids, self.embed.weight, dtype)
        cos, sin = self.rope_tables(ids.shape[1], ids.device)
        for block in self.blocks:
            if self.checkpoint_blocks:  # no randomness in a block: nothing to replay, and capturable
                x = checkpoint(block, x, cos, sin, use_reentrant=False, preserve_rng_state=False)
            else:
                x = block(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


def from_spec(spec, checkpoint_blocks: bool = False, fused: bool = True, checkpoint_attention: bool = False) -> Decoder:
    """A ``Decoder`` with the shape of a ``simulator.models.ModelSpec`` (dense Llama-style; Qwen2's QKV
    bias and tied embeddings as the spec says)."""
    return Decoder(spec.num_layers, spec.hidden_size, spec.num_attention_heads, spec.num_kv_heads, spec.head_dim,
                   spec.intermediate_size, spec.vocab_size, checkpoint_blocks, fused=fused,
                   qkv_bias=spec.attention_bias, tie_embeddings=spec.tie_word_embeddings,
                   checkpoint_attention=checkpoint_attention)
