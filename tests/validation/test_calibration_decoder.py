"""The validation decoder computes a real transformer: its rotary / KV-write kernels and its prefill and
decode steps (dense GQA, MHA, MoE) against a float32 reference written here in plain torch.

Runs on the CPU with the Triton interpreter (conftest sets TRITON_INTERPRET=1) at toy sizes.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from validation import ops  # noqa: E402
from validation.decoder import Arch, Decoder, StepRunner  # noqa: E402


def test_rotary_matches_reference(randn, device, check_close):
    T, H, Hkv, D = 7, 4, 2, 16
    qkv = randn(T, (H + 2 * Hkv) * D, dtype=torch.bfloat16)
    pos = torch.tensor([0, 5, 2, 9, 3, 1, 11], dtype=torch.int32, device=device)
    cos, sin = ops.rope_tables(16, D, device=device)
    ref = ops.rotary_ref(qkv, pos, cos, sin, H + Hkv, D)
    out = ops.rotary_(qkv.clone(), pos, cos, sin, H + Hkv, D)
    check_close(out[:, : (H + Hkv) * D], ref[:, : (H + Hkv) * D], torch.bfloat16)
    assert torch.equal(out[:, (H + Hkv) * D:], qkv[:, (H + Hkv) * D:])  # values untouched


@pytest.mark.parametrize("hkv", [2, 9])  # 9 KV heads: more than one program per token
def test_kv_write_places_tokens_at_their_positions(randn, hkv):
    B, S, past, D = 2, 3, 4, 16
    qkv = randn(B * S, 3 * hkv * D, dtype=torch.bfloat16)
    k, v = qkv[:, hkv * D: 2 * hkv * D], qkv[:, 2 * hkv * D:]
    kc = randn(B, hkv, past + S + 1, D, dtype=torch.bfloat16)
    vc = randn(B, hkv, past + S + 1, D, dtype=torch.bfloat16)
    rk, rv = ops.kv_write_ref(k, v, kc, vc, S, past)
    ops.kv_write(k, v, kc, vc, S, past)
    assert torch.equal(kc, rk) and torch.equal(vc, rv)


# --- a float32 reference of the same model ----------------------------------------------------------------

def _rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rope(x, pos, cos, sin):  # x (T, heads, D)
    half = x.shape[-1] // 2
    c, s = cos[pos.long()][:, None, :], sin[pos.long()][:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def reference_logits(dec: Decoder, ids: torch.Tensor, batch: int, routes: list | None = None) -> torch.Tensor:
    """Logits of the last position of each sequence after a full causal forward over ``ids`` (B x S).

    MoE layers take each token's top-k experts of the float32 router probabilities, or, given
    ``routes`` (one (T, k) tensor of expert ids per layer), those experts with their float32 weights.
    """
    a = dec.arch
    f = lambda t: t.to(torch.float32)  # noqa: E731
    H, Hkv, D = a.heads, a.kv_heads, a.head_dim
    T = ids.numel()
    S = T // batch
    pos = torch.arange(S, device=ids.device).repeat(batch)
    x = f(dec.embed)[ids]
    for l in range(a.layers):
        h = _rms(x, f(dec.attn_norm[l]))
        qkv = h @ f(dec.w_qkv[l]).t()
        q = _rope(qkv[:, : H * D].view(T, H, D), pos, dec.cos, dec.sin)
        k = _rope(qkv[:, H * D:(H + Hkv) * D].view(T, Hkv, D), pos, dec.cos, dec.sin)
        v = qkv[:, (H + Hkv) * D:].view(T, Hkv, D)
        q, k, v = (t.view(batch, S, -1, D).transpose(1, 2) for t in (q, k, v))
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        causal = torch.triu(torch.ones(S, S, dtype=torch.bool, device=att.device), 1)
        att = att.masked_fill(causal, float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(T, H * D)
        x = x + o @ f(dec.w_o[l]).t()
        h = _rms(x, f(dec.mlp_norm[l]))
        if a.experts:
            probs = (h @ f(dec.w_router[l]).t()).softmax(-1)
            idx = probs.topk(a.top_k, dim=-1).indices if routes is None else routes[l]
            w = probs.gather(-1, idx)
            if a.renormalize:
                w = w / w.sum(-1, keepdim=True)
            out = torch.zeros_like(x)
            Ie = a.expert_intermediate
            for t in range(T):
                for j in range(a.top_k):
                    e = int(idx[t, j])
                    gu = h[t] @ f(dec.w_gu[l, e]).t()
                    y = (torch.nn.functional.silu(gu[:Ie]) * gu[Ie:]) @ f(dec.w_down[l, e]).t()
                    out[t] += w[t, j] * y
            x = x + out
        else:
            I = a.intermediate  # noqa: E741
            gu = h @ f(dec.w_gu[l]).t()
            x = x + (torch.nn.functional.silu(gu[:, :I]) * gu[:, I:]) @ f(dec.w_down[l]).t()
    x = _rms(x, f(dec.final_norm))
    return x.view(batch, S, -1)[:, -1] @ f(dec.lm_head).t()


def record_routes(dec: Decoder) -> list:
    """Keep the expert ids the decoder's router picks, one (T, k) tensor per MoE layer call, in order.

    The decoder routes on bf16 logits, so a token whose k-th and (k+1)-th float32 logits are closer
    than the bf16 error of the hidden state may go to another expert than the float32 reference
    picks (both choices are right); the reference then follows the decoder's choice."""
    routes = []
    route = dec.moe_route

    def recording(logits):
        weights, ids = route(logits)
        routes.append(ids.long().clone())
        return weights, ids

    dec.moe_route = recording
    return routes


ARCHS = {
    "gqa": Arch(layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=96, vocab=97),
    "mha": Arch(layers=2, hidden=64, heads=4, kv_heads=4, head_dim=16, intermediate=80, vocab=97),
    "moe": Arch(layers=2, hidden=64, heads=4, kv_heads=4, head_dim=16, intermediate=32, vocab=97, experts=6, top_k=2,
                expert_intermediate=32),
}


def _rel(out, ref):
    return float((out.float() - ref).norm() / ref.norm())


@pytest.mark.parametrize("name", list(ARCHS))
def test_prefill_step_matches_reference(name, device):
    dec = Decoder(ARCHS[name], device=device, attention_prefill="triton", attention_decode="triton", seed=3,
                  max_positions=32)
    routes = record_routes(dec) if dec.arch.experts else None
    r = StepRunner(dec, "prefill", 2, 6, seed=4)
    out = r.run()
    ref = reference_logits(dec, r.ids, 2, routes)
    assert torch.isfinite(out.float()).all()
    assert _rel(out, ref) < 0.05


@pytest.mark.parametrize("name", ["gqa", "moe"])
def test_decode_step_continues_the_prefill(name, device):
    """Prefill S tokens, then one decode step over their cache: the logits of a full forward over S + 1."""
    B, S = 2, 5
    dec = Decoder(ARCHS[name], device=device, attention_prefill="triton", attention_decode="triton", seed=5,
                  max_positions=32)
    routes = record_routes(dec) if dec.arch.experts else None
    pre = StepRunner(dec, "prefill", B, S, seed=6)
    pre.run()
    step = StepRunner(dec, "decode", B, S, seed=7)
    step.k_cache[:, :, :, :S] = pre.k_cache
    step.v_cache[:, :, :, :S] = pre.v_cache
    out = step.run()
    ids = torch.cat([pre.ids.view(B, S), step.ids.view(B, 1)], dim=1).reshape(-1)
    if routes is not None:  # the prefill's routes per layer, then the decode step's: back in (B, S + 1) order
        L = dec.arch.layers
        routes = [torch.cat([routes[l].view(B, S, -1), routes[L + l].view(B, 1, -1)], dim=1).reshape(B * (S + 1), -1)
                  for l in range(L)]
    ref = reference_logits(dec, ids, B, routes)
    assert _rel(out, ref) < 0.05


def test_arch_from_spec_and_weight_bytes():
    from validation.validate import MODELS

    a = Arch.from_spec(MODELS["llama-3.1-8b"])
    assert (a.layers, a.heads, a.kv_heads, a.qkv_width) == (32, 32, 8, 6144)
    assert a.weight_bytes() == pytest.approx(2 * 8.03e9, rel=0.01)  # Llama-3.1-8B: 8.03B parameters
    m = Arch.from_spec(MODELS["olmoe-1b-7b"])
    assert (m.experts, m.top_k) == (64, 8)
    assert m.weight_bytes() == pytest.approx(2 * 6.92e9, rel=0.02)  # OLMoE-1B-7B: 6.9B parameters
    with pytest.raises(ValueError):
        Arch.from_spec({**MODELS["llama-3.1-8b"], "sliding_window": 4096})


@pytest.mark.parametrize("renormalize", [False, True], ids=["softmax", "renormalized"])
def test_grouped_moe_path_matches_reference(renormalize, device, monkeypatch):
    """The GPU path (fused top-k softmax, sort by expert, grouped GEMMs, one-pass weighted sum) with a
    plain-torch stand-in for ``torch._grouped_mm``, which has no CPU kernel."""

    def grouped_mm(a, b, offs):
        out, start = [], 0
        for e, end in enumerate(offs.tolist()):
            out.append(a[start:end].float() @ b[e].float())
            start = end
        return torch.cat(out).to(a.dtype)

    monkeypatch.setattr(torch, "_grouped_mm", grouped_mm, raising=False)
    arch = dataclasses.replace(ARCHS["moe"], renormalize=renormalize)
    dec = Decoder(arch, device=device, attention_prefill="triton", attention_decode="triton", seed=8, max_positions=32)
    dec.grouped_mm = True
    routes = record_routes(dec)
    r = StepRunner(dec, "prefill", 2, 6, seed=9)
    out = r.run()
    assert _rel(out, reference_logits(dec, r.ids, 2, routes)) < 0.05
