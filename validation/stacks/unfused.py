"""A plain PyTorch decoder with unfused element-wise ops: the ``torch-unfused`` stack.

How a model written directly in PyTorch runs without custom kernels (the layout of transformers'
Llama modelling code, written out here so that every launch is known):

* RMSNorm in fp32: upcast, square, mean, rsqrt, scale, downcast, weight (7 launches per norm);
* separate q, k and v projections (``nn.Linear``), separate gate and up projections;
* rotary by ``rotate_half`` (slices, a negation, a concatenation, two multiplies and an add, for q and k);
* a static KV cache written with ``index_copy_``; attention through SDPA with ``enable_gqa`` (no K/V
  expanded, no mask: ``is_causal`` for prefill, the cache's first ``context + 1`` positions for decode);
* SiLU and the gate multiply as two launches; residual adds;
* a training step (``train``): the same layers over the whole sequence with logits at every position,
  the fp32 loss, backward and a fused AdamW step;
* MoE layers: router GEMM, softmax in fp32, ``topk``, renormalise, a sort by expert, ``bincount`` +
  ``cumsum`` for the offsets, a gather, ``torch._grouped_mm`` for the experts (a per-expert loop where
  it is missing, e.g. on a CPU) and an ``index_add_`` back.

``factory`` is the ``--stack-module`` entry: ``validation.stacks.unfused:factory``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from validation.stacks.protocol import Step


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        var = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(var + self.eps)
        return self.weight * h.to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        h, H, Hkv, D = s["hidden_size"], s["num_attention_heads"], s["num_kv_heads"], s["head_dim"]
        bias = bool(s.get("attention_bias"))
        self.H, self.Hkv, self.D = H, Hkv, D
        self.attn_norm, self.mlp_norm = RMSNorm(h), RMSNorm(h)
        self.q = nn.Linear(h, H * D, bias=bias)
        self.k = nn.Linear(h, Hkv * D, bias=bias)
        self.v = nn.Linear(h, Hkv * D, bias=bias)
        self.o = nn.Linear(H * D, h, bias=False)
        moe = s.get("moe")
        if moe:
            e, inter = moe["num_experts"], moe["expert_intermediate_size"]
            self.top_k, self.experts = moe["top_k"], e
            self.router = nn.Linear(h, e, bias=False)
            self.w_gate = nn.Parameter(torch.randn(e, inter, h) * h ** -0.5)
            self.w_up = nn.Parameter(torch.randn(e, inter, h) * h ** -0.5)
            self.w_down = nn.Parameter(torch.randn(e, h, inter) * inter ** -0.5)
        else:
            inter = s["intermediate_size"]
            self.experts = 0
            self.gate = nn.Linear(h, inter, bias=False)
            self.up = nn.Linear(h, inter, bias=False)
            self.down = nn.Linear(inter, h, bias=False)

    def forward(self, x, cos, sin, kc, vc, pos, past: int, phase: str):
        B, S, _ = x.shape
        hn = self.attn_norm(x)
        q = self.q(hn).view(B, S, self.H, self.D).transpose(1, 2)
        k = self.k(hn).view(B, S, self.Hkv, self.D).transpose(1, 2)
        v = self.v(hn).view(B, S, self.Hkv, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if kc is not None:  # a training step keeps no cache
            kc.index_copy_(2, pos, k)
            vc.index_copy_(2, pos, v)
        if phase in ("prefill", "train"):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.Hkv != self.H)
        else:
            n = past + S
            o = F.scaled_dot_product_attention(q, kc[:, :, :n], vc[:, :, :n], enable_gqa=self.Hkv != self.H)
        x = x + self.o(o.transpose(1, 2).reshape(B, S, self.H * self.D))
        hn = self.mlp_norm(x)
        return x + (self._moe(hn) if self.experts else self.down(F.silu(self.gate(hn)) * self.up(hn)))

    def _moe(self, hn):
        B, S, h = hn.shape
        flat = hn.reshape(-1, h)
        probs = torch.softmax(self.router(flat).float(), dim=-1)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        weights = (weights / weights.sum(-1, keepdim=True)).to(hn.dtype)
        sorted_ids, order = torch.sort(ids.reshape(-1), stable=True)
        token = order // self.top_k
        rows = flat.index_select(0, token)
        if hasattr(torch, "_grouped_mm") and flat.is_cuda:
            experts = torch.arange(self.experts, device=flat.device, dtype=sorted_ids.dtype)
            offs = torch.searchsorted(sorted_ids, experts, right=True, out_int32=True)
            g = torch._grouped_mm(rows, self.w_gate.transpose(-2, -1), offs=offs)
            u = torch._grouped_mm(rows, self.w_up.transpose(-2, -1), offs=offs)
            y = torch._grouped_mm(F.silu(g) * u, self.w_down.transpose(-2, -1), offs=offs)
        else:  # CPU: a per-expert loop (host-synchronising)
            y = torch.empty_like(rows)
            for e in range(self.experts):
                sel = (sorted_ids == e).nonzero().squeeze(-1)
                if sel.numel():
                    r = rows[sel]
                    y[sel] = (F.silu(r @ self.w_gate[e].t()) * (r @ self.w_up[e].t())) @ self.w_down[e].t()
        y = y * weights.reshape(-1)[order, None]
        return torch.zeros_like(flat).index_add_(0, token, y).view(B, S, h)


class UnfusedDecoder(nn.Module):
    def __init__(self, s: dict):
        super().__init__()
        self.spec = s
        self.embed = nn.Embedding(s["vocab_size"], s["hidden_size"])
        self.layers = nn.ModuleList(Layer(s) for _ in range(s["num_layers"]))
        self.norm = RMSNorm(s["hidden_size"])
        self.lm_head = nn.Linear(s["hidden_size"], s["vocab_size"], bias=False)
        if s.get("tie_word_embeddings"):  # one matrix for both, as the model has (Llama 3.2 1B and 3B)
            self.lm_head.weight = self.embed.weight
        D = s["head_dim"]
        self.register_buffer("inv_freq", 1.0 / (500000.0 ** (torch.arange(0, D, 2).float() / D)), persistent=False)

    def rope(self, positions):
        f = positions.float()[:, None] * self.inv_freq[None]
        emb = torch.cat((f, f), dim=-1)
        return emb.cos()[None, None].to(self.embed.weight.dtype), emb.sin()[None, None].to(self.embed.weight.dtype)

    def forward(self, ids, pos, caches, past: int, phase: str):
        x = self.embed(ids)
        cos, sin = self.rope(pos)
        for i, layer in enumerate(self.layers):
            kc, vc = caches[i] if caches else (None, None)
            x = layer(x, cos, sin, kc, vc, pos, past, phase)
        if phase == "train":  # logits at every position
            return self.lm_head(self.norm(x))
        return self.lm_head(self.norm(x)[:, -1])


class UnfusedStack:
    """The factory's product: the module and its prefill / decode steps on static buffers."""

    name = "torch-unfused"

    def __init__(self, spec: dict, device, dtype):
        self.spec, self.device, self.dtype = spec, torch.device(device), dtype
        with torch.device(self.device):
            self.module = UnfusedDecoder(spec).to(dtype).eval()

    def _caches(self, batch: int, length: int):
        s = self.spec
        shape = (batch, s["num_kv_heads"], length, s["head_dim"])
        return [(torch.randn(shape, device=self.device, dtype=self.dtype),
                 torch.randn(shape, device=self.device, dtype=self.dtype)) for _ in range(s["num_layers"])]

    def _step(self, batch: int, new: int, past: int, phase: str) -> Step:
        ids = torch.randint(0, self.spec["vocab_size"], (batch, new), device=self.device)
        pos = torch.arange(past, past + new, device=self.device)
        caches = self._caches(batch, past + new)

        @torch.inference_mode()
        def run():
            return self.module(ids, pos, caches, past, phase)

        return Step(run=run, capturable=True, release=caches.clear)

    def prefill(self, batch: int, prompt_len: int) -> Step:
        return self._step(batch, prompt_len, 0, "prefill")

    def decode(self, batch: int, context_len: int) -> Step:
        return self._step(batch, 1, context_len, "decode")

    def train(self, batch: int, seq_len: int) -> Step:
        """One optimizer step on ``batch`` sequences of ``seq_len`` tokens: ``zero_grad(set_to_none=True)``,
        forward with logits at every position, the loss on fp32 logits (``cross_entropy(logits.float())``,
        as transformers' causal-LM loss), backward, and ``torch.optim.AdamW(fused=True)``. Parameters,
        gradients and AdamW states are in the module's dtype (bf16 on a GPU: roofsim's ``bf16`` training
        precision, 2 + 2 + 4 bytes per parameter); no recomputation."""
        ids = torch.randint(0, self.spec["vocab_size"], (batch, seq_len + 1), device=self.device)
        inputs, targets = ids[:, :-1], ids[:, 1:].reshape(-1)
        pos = torch.arange(seq_len, device=self.device)
        module = self.module
        opt = torch.optim.AdamW(module.parameters(), lr=1e-6, fused=self.device.type == "cuda")

        def run():
            opt.zero_grad(set_to_none=True)
            logits = module(inputs, pos, None, 0, "train")
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets)
            loss.backward()
            opt.step()
            return loss.detach()

        def release():
            opt.zero_grad(set_to_none=True)
            opt.state.clear()

        return Step(run=run, capturable=False, release=release)


def factory(spec: dict, device="cuda", dtype=torch.bfloat16) -> UnfusedStack:
    return UnfusedStack(spec, device, dtype)
