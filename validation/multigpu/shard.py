"""Sharded forms of the validation decoder (``validation.decoder.Decoder``): its layers, kernels and step
buffers are reused; only the weights are split and the hooks the decoder leaves open are filled.

* **tensor parallel** (Megatron-LM, Shoeybi et al. 2019, arXiv 1909.08053, section 3): q/k/v heads,
  the gate/up columns and the vocabulary split over ``tp`` ranks; o_proj and down_proj are row
  parallel and all-reduce their partial sums; the embedding is vocabulary parallel (each rank looks up
  the ids it holds, an all-reduce sums the rows); the logits are all-gathered.
* **pipeline stage**: a contiguous range of layers (``Decoder.run_layers`` over them).
* **expert parallel**: a contiguous range of each MoE layer's experts (the router stays whole).

Each is made either from a whole decoder (slices of its weights, for the correctness checks) or with
fresh random weights of the shard's shape (the timed runs, where the whole model does not fit one GPU).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from validation.decoder import Arch, Decoder, StepRunner

def _divide(n: int, d: int, what: str) -> int:
    if n % d:
        raise ValueError(f"{what} ({n}) is not divisible by {d}")
    return n // d


def tp_arch(arch: Arch, tp: int) -> Arch:
    """The per-rank shape of a ``tp``-way tensor-parallel dense decoder."""
    if arch.experts:
        raise ValueError("the tensor-parallel decoder covers dense models (experts: see the expert-parallel stack)")
    return dataclasses.replace(arch, heads=_divide(arch.heads, tp, "heads"),
                               kv_heads=_divide(arch.kv_heads, tp, "kv heads"),
                               intermediate=_divide(arch.intermediate, tp, "intermediate size"),
                               vocab=_divide(arch.vocab, tp, "vocabulary"))


def _clone(dec: Decoder, cls: type, arch: Arch, **weights: Any) -> Decoder:
    new = object.__new__(cls)
    new.__dict__.update(dec.__dict__)
    new.__dict__.update(weights)
    new.arch = arch
    return new


class TPDecoder(Decoder):
    """One rank of a tensor-parallel decoder over the process group ``group`` (ranks 0..tp-1)."""

    tp: int
    rank: int
    group: Any
    full_vocab: int

    def _setup(self, tp: int, rank: int, group, full_vocab: int) -> "TPDecoder":
        self.tp, self.rank, self.group, self.full_vocab = tp, rank, group, full_vocab
        return self

    @classmethod
    def random(cls, arch: Arch, tp: int, rank: int, group, seed: int = 0, **kw) -> "TPDecoder":
        dec = Decoder(tp_arch(arch, tp), seed=seed + rank, **kw)
        return _clone(dec, cls, dec.arch)._setup(tp, rank, group, arch.vocab)

    @classmethod
    def from_full(cls, full: Decoder, tp: int, rank: int, group) -> "TPDecoder":
        a, la = full.arch, tp_arch(full.arch, tp)
        D = a.head_dim
        q = slice(rank * la.heads * D, (rank + 1) * la.heads * D)
        k = slice(a.heads * D + rank * la.kv_heads * D, a.heads * D + (rank + 1) * la.kv_heads * D)
        v = slice((a.heads + a.kv_heads) * D + rank * la.kv_heads * D,
                  (a.heads + a.kv_heads) * D + (rank + 1) * la.kv_heads * D)
        gate = slice(rank * la.intermediate, (rank + 1) * la.intermediate)
        up = slice(a.intermediate + gate.start, a.intermediate + gate.stop)
        voc = slice(rank * la.vocab, (rank + 1) * la.vocab)
        w = {
            "w_qkv": torch.cat([full.w_qkv[:, q], full.w_qkv[:, k], full.w_qkv[:, v]], dim=1).contiguous(),
            "w_o": full.w_o[:, :, q].contiguous(),
            "w_gu": torch.cat([full.w_gu[:, gate], full.w_gu[:, up]], dim=1).contiguous(),
            "w_down": full.w_down[:, :, gate].contiguous(),
            "embed": full.embed[voc].contiguous(),
            "lm_head": full.lm_head[voc].contiguous(),
        }
        return _clone(full, cls, la, **w)._setup(tp, rank, group, a.vocab)

    # --- the hooks ------------------------------------------------------------------------------

    def embed_tokens(self, r: StepRunner) -> torch.Tensor:
        vl = self.arch.vocab
        local = r.ids - self.rank * vl
        inside = (local >= 0) & (local < vl)
        x = F.embedding(local.clamp(0, vl - 1), self.embed) * inside.unsqueeze(1).to(self.dtype)
        dist.all_reduce(x, group=self.group)
        return x

    def reduce_(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, group=self.group)
        return t

    def gather_logits(self, logits: torch.Tensor) -> torch.Tensor:
        out = torch.empty(self.tp * logits.numel(), device=logits.device, dtype=logits.dtype)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        gather(out, logits.contiguous().view(-1), group=self.group)
        b, v = logits.shape
        return out.view(self.tp, b, v).permute(1, 0, 2).reshape(b, self.tp * v)


def tp_runner(dec: TPDecoder, phase: str, batch: int, length: int, seed: int = 1) -> StepRunner:
    """A step of ``dec`` whose token ids cover the whole vocabulary (the same ids on every rank)."""
    r = StepRunner(dec, phase, batch, length, seed=seed)
    g = torch.Generator(device=dec.device).manual_seed(seed)
    r.ids.copy_(torch.randint(0, dec.full_vocab, r.ids.shape, generator=g, device=dec.device))
    return r


def stage_slice(full: Decoder, lo: int, hi: int) -> Decoder:
    """Layers lo..hi-1 of ``full`` as a decoder of their own (embedding and head kept)."""
    w = {n: getattr(full, n)[lo:hi] for n in ("attn_norm", "mlp_norm", "w_qkv", "w_o", "w_gu", "w_down")}
    if full.arch.experts:
        w["w_router"] = full.w_router[lo:hi]
    return _clone(full, Decoder, dataclasses.replace(full.arch, layers=hi - lo), **w)


def expert_slice(full: Decoder, lo: int, hi: int) -> Decoder:
    """Experts lo..hi-1 of every MoE layer of ``full`` (router, attention and norms kept whole)."""
    return _clone(full, Decoder, full.arch, w_gu=full.w_gu[:, lo:hi].contiguous(),
                  w_down=full.w_down[:, lo:hi].contiguous())


def copy_step(src: StepRunner, dst: StepRunner, *, layers: slice = slice(None), batch: slice = slice(None),
              kv_heads: slice = slice(None)) -> None:
    """Give ``dst`` the ids, positions and (sliced) KV cache of ``src``, so both compute the same step."""
    tok = slice(None if batch.start is None else batch.start * src.new,
                None if batch.stop is None else batch.stop * src.new)
    dst.ids.copy_(src.ids[tok])
    dst.positions.copy_(src.positions[tok])
    dst.k_cache.copy_(src.k_cache[layers, batch, kv_heads])
    dst.v_cache.copy_(src.v_cache[layers, batch, kv_heads])
