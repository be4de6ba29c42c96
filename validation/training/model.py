"""A Llama-style decoder in plain torch for timing training steps (random weights).

Pre-norm blocks: RMSNorm, fused QKV projection, rotary embedding, causal attention through
``torch.nn.functional.scaled_dot_product_attention`` (FlashAttention / cuDNN on a GPU), output
projection, RMSNorm, fused gate/up projection, SiLU gating (saving only its inputs), down projection; final RMSNorm and an
untied LM head. The loss upcasts the logits to fp32 and calls ``cross_entropy``, as Hugging Face
causal-LM heads do. ``checkpoint=True`` wraps each block in ``torch.utils.checkpoint`` (full recompute).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class RMSNorm(nn.Module):
    """``torch.nn.functional.rms_norm`` (one fused kernel on a GPU; saves its input and 1/rms)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class SwiGLU(torch.autograd.Function):
    """silu(gate) * up saving only gate and up, recomputing silu in backward (Megatron-LM's fused
    ``bias_swiglu``): the activation's saved bytes are the first GEMM's outputs."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        sig = torch.sigmoid(gate.float())
        silu = gate.float() * sig
        d_gate = grad.float() * up.float() * sig * (1.0 + gate.float() * (1.0 - sig))
        return d_gate.to(gate.dtype), (grad.float() * silu).to(up.dtype)


def rope(x, cos, sin):
    """Rotate the two halves of each head (Llama's rotate_half convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Block(nn.Module):
    def __init__(self, h: int, heads: int, kv_heads: int, head_dim: int, inter: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.attn_norm = RMSNorm(h)
        self.qkv = nn.Linear(h, (heads + 2 * kv_heads) * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, h, bias=False)
        self.mlp_norm = RMSNorm(h)
        self.gate_up = nn.Linear(h, 2 * inter, bias=False)
        self.down = nn.Linear(inter, h, bias=False)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(
            [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1)
        q = rope(q.view(b, s, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = rope(k.view(b, s, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv_heads != self.heads)
        x = x + self.o(a.transpose(1, 2).reshape(b, s, -1))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(SwiGLU.apply(gate, up))


class Decoder(nn.Module):
    def __init__(self, layers: int, h: int, heads: int, kv_heads: int, head_dim: int, inter: int, vocab: int,
                 checkpoint_blocks: bool = False, theta: float = 500000.0):
        super().__init__()
        self.embed = nn.Embedding(vocab, h)
        self.blocks = nn.ModuleList(Block(h, heads, kv_heads, head_dim, inter) for _ in range(layers))
        self.norm = RMSNorm(h)
        self.lm_head = nn.Linear(h, vocab, bias=False)
        self.checkpoint_blocks = checkpoint_blocks
        self.head_dim, self.theta = head_dim, theta

    def _rope_tables(self, s, device, dtype):
        inv = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32) / self.head_dim))
        ang = torch.outer(torch.arange(s, device=device, dtype=torch.float32), inv)
        ang = torch.cat((ang, ang), dim=-1)
        return ang.cos().to(dtype), ang.sin().to(dtype)

    def forward(self, ids, labels):
        x = self.embed(ids)
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled() else x.dtype
        cos, sin = self._rope_tables(ids.shape[1], ids.device, dtype)
        for block in self.blocks:
            if self.checkpoint_blocks:
                x = checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


def from_spec(spec, checkpoint_blocks: bool = False) -> Decoder:
    """A ``Decoder`` with the shape of a ``simulator.models.ModelSpec`` (dense, untied Llama-style)."""
    return Decoder(spec.num_layers, spec.hidden_size, spec.num_attention_heads, spec.num_kv_heads, spec.head_dim,
                   spec.intermediate_size, spec.vocab_size, checkpoint_blocks)
