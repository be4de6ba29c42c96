"""A Llama-style decoder in plain torch (plus the fused kernels an engine runs), for end-to-end timing.

Random bf16 weights, a static KV cache ``(layers, B, Hkv, S_max, D)``, and one forward per step:
prefill (``S`` new tokens per sequence, nothing cached) or decode (one new token after ``past``).
The kernels are those the cost model's step lists (``simulator.step``), one launch each:

==================  =====================================================================
embedding           ``F.embedding``
attn_norm/mlp_norm  Triton RMSNorm (``validation.kernels.memory.rmsnorm``)
qkv / o / gate_up   cuBLAS through ``torch.matmul`` (q/k/v and gate/up fused), weights (N, K)
/ down / lm_head
rotary              Triton, in place on the q and k heads (``validation.ops.rotary_``)
kv_cache_write      Triton (``validation.ops.kv_write``)
attention           prefill: SDPA (one backend) or the Triton flash kernel; decode: the Triton
                    split-K kernel or SDPA (whichever the calibration profile describes)
residual adds       ``Tensor.add_``
mlp.act             Triton SwiGLU
final_norm, lm_head RMSNorm over every token, logits of the last token of each sequence
==================  =====================================================================

MoE layers run what a serving engine runs (vLLM's fused_moe path): the router GEMM; the Triton fused
softmax + top-k (``validation.kernels.moe.topk_softmax``, ``moe.route``); the (token, expert) pairs
sorted by expert in torch (a stable sort, ``searchsorted`` for the per-expert offsets, each sorted
row's token and each pair's sorted row: ``moe.sort``); the rows gathered into expert order
(``index_select``, ``moe.permute``); the experts as two grouped GEMMs (``torch._grouped_mm``; a
per-expert loop where it is missing) around the Triton SwiGLU; the Triton one-pass weighted sum back
to token order (``validation.kernels.moe.unpermute``, ``moe.unpermute``) and the residual add
(``moe_residual``). ``roofsim validate`` times each piece separately.

:class:`StepRunner` holds the static buffers of one (phase, batch, length) case so that the step can
be captured in a CUDA graph and replayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from validation import ops


@dataclass(frozen=True)
class Arch:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    experts: int = 0
    top_k: int = 0
    expert_intermediate: int = 0
    renormalize: bool = False  # routing weights divided by their top-k sum (Mixtral); OLMoE keeps the softmax's
    rope_theta: float = 500000.0

    @classmethod
    def from_spec(cls, spec: Any) -> "Arch":
        """From a ``simulator.models.ModelSpec`` or its dict form (dense or MoE, full attention, no MLA)."""
        d = spec if isinstance(spec, dict) else spec.model_dump()
        moe = d.get("moe") or {}
        if d.get("mla") or d.get("sliding_window") or (moe and moe.get("num_shared_experts")):
            raise ValueError("the validation decoder covers dense and routed-MoE models with full attention only")
        return cls(layers=d["num_layers"], hidden=d["hidden_size"], heads=d["num_attention_heads"],
                   kv_heads=d["num_kv_heads"], head_dim=d["head_dim"], intermediate=d["intermediate_size"],
                   vocab=d["vocab_size"], experts=moe.get("num_experts", 0), top_k=moe.get("top_k", 0),
                   expert_intermediate=moe.get("expert_intermediate_size", 0))

    @property
    def qkv_width(self) -> int:
        return (self.heads + 2 * self.kv_heads) * self.head_dim

    def weight_bytes(self, elem: int = 2) -> int:
        h, L = self.hidden, self.layers
        per = self.qkv_width * h + h * self.heads * self.head_dim + 2 * h
        if self.experts:
            per += self.experts * h + self.experts * 3 * h * self.expert_intermediate
        else:
            per += 3 * h * self.intermediate
        return elem * (L * per + 2 * self.vocab * h + h)


def _grouped_mm_available(device) -> bool:
    if not hasattr(torch, "_grouped_mm") or torch.device(device).type != "cuda":
        return False
    try:
        a = torch.randn(32, 64, device=device, dtype=torch.bfloat16)
        w = torch.randn(4, 32, 64, device=device, dtype=torch.bfloat16)
        offs = torch.tensor([8, 8, 24, 32], device=device, dtype=torch.int32)
        out = torch._grouped_mm(a, w.transpose(-2, -1), offs=offs)
        ref = torch.cat([a[0:8] @ w[0].t(), a[8:24] @ w[2].t(), a[24:32] @ w[3].t()])
        return bool(torch.allclose(out.float(), ref.float(), rtol=2e-2, atol=2e-1))
    except Exception:  # noqa: BLE001
        return False


class Decoder:
    """Weights of a random model; ``forward`` runs one step on a :class:`StepRunner`'s buffers."""

    def __init__(self, arch: Arch, *, device="cuda", dtype=torch.bfloat16, attention_prefill: str = "sdpa-flash",
                 attention_decode: str = "triton", seed: int = 0, max_positions: int = 8192):
        self.arch, self.device, self.dtype = arch, torch.device(device), dtype
        self.attention_prefill, self.attention_decode = attention_prefill, attention_decode
        g = torch.Generator(device=self.device).manual_seed(seed)
        a = arch
        L, h, D = a.layers, a.hidden, a.head_dim

        def rand(*shape, fan_in):
            t = torch.randn(shape, generator=g, device=self.device, dtype=dtype)
            return t.mul_(fan_in ** -0.5)

        self.embed = rand(a.vocab, h, fan_in=1)
        self.attn_norm = 1.0 + 0.1 * rand(L, h, fan_in=1)
        self.mlp_norm = 1.0 + 0.1 * rand(L, h, fan_in=1)
        self.final_norm = 1.0 + 0.1 * rand(h, fan_in=1)
        self.w_qkv = rand(L, a.qkv_width, h, fan_in=h)
        self.w_o = rand(L, h, a.heads * D, fan_in=a.heads * D)
        if a.experts:
            self.w_router = rand(L, a.experts, h, fan_in=h)
            self.w_gu = rand(L, a.experts, 2 * a.expert_intermediate, h, fan_in=h)
            self.w_down = rand(L, a.experts, h, a.expert_intermediate, fan_in=a.expert_intermediate)
            self.grouped_mm = _grouped_mm_available(self.device)
        else:
            self.w_gu = rand(L, 2 * a.intermediate, h, fan_in=h)
            self.w_down = rand(L, h, a.intermediate, fan_in=a.intermediate)
            self.grouped_mm = False
        self.lm_head = rand(a.vocab, h, fan_in=h)
        self.cos, self.sin = ops.rope_tables(max_positions, D, a.rope_theta, device=self.device)

    # --- one step -----------------------------------------------------------------------------------

    def forward(self, r: "StepRunner") -> torch.Tensor:
        return self.head(r, self.run_layers(r, self.embed_tokens(r)))

    # Hooks a sharded decoder overrides (``validation.multigpu``): the embedding lookup, the reduction
    # of a row-parallel projection's partial sums (identity on one GPU) and the gathering of logits.
    def embed_tokens(self, r: "StepRunner") -> torch.Tensor:
        return F.embedding(r.ids, self.embed)  # (T, h): the residual stream

    def reduce_(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def gather_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def run_layers(self, r: "StepRunner", x: torch.Tensor) -> torch.Tensor:
        """Every layer of this decoder over the residual stream ``x`` (T, h), in place."""
        from validation.kernels import memory as Mk

        a = self.arch
        H, Hkv, D, I = a.heads, a.kv_heads, a.head_dim, a.intermediate
        for layer in range(a.layers):
            Mk.rmsnorm(x, self.attn_norm[layer], 1e-5, out=r.hn)
            torch.matmul(r.hn, self.w_qkv[layer].t(), out=r.qkv)
            ops.rotary_(r.qkv, r.positions, self.cos, self.sin, H + Hkv, D)
            k = r.qkv[:, H * D:(H + Hkv) * D]
            v = r.qkv[:, (H + Hkv) * D:]
            ops.kv_write(k, v, r.k_cache[layer], r.v_cache[layer], r.new, r.past)
            o = self._attention(r, layer)
            torch.matmul(o, self.w_o[layer].t(), out=r.attn_out)
            x.add_(self.reduce_(r.attn_out))
            Mk.rmsnorm(x, self.mlp_norm[layer], 1e-5, out=r.hn)
            if a.experts:
                self._moe(r, layer, x)
            else:
                torch.matmul(r.hn, self.w_gu[layer].t(), out=r.gu)
                Mk.swiglu(r.gu[:, :I], r.gu[:, I:], out=r.act)
                torch.matmul(r.act, self.w_down[layer].t(), out=r.mlp_out)
                x.add_(self.reduce_(r.mlp_out))
        return x

    def head(self, r: "StepRunner", x: torch.Tensor) -> torch.Tensor:
        """Final norm over every token, logits of the last token of each sequence."""
        from validation.kernels import memory as Mk

        Mk.rmsnorm(x, self.final_norm, 1e-5, out=r.hn)
        last = r.hn.view(r.batch, r.new, self.arch.hidden)[:, -1]  # strided rows: no copy
        torch.matmul(last, self.lm_head.t(), out=r.logits)
        return self.gather_logits(r.logits)

    def _attention(self, r: "StepRunner", layer: int) -> torch.Tensor:
        a = self.arch
        B, S, H, Hkv, D = r.batch, r.new, a.heads, a.kv_heads, a.head_dim
        if r.phase == "prefill":
            qkv4 = r.qkv.view(B, S, H + 2 * Hkv, D)
            q = qkv4[:, :, :H].transpose(1, 2)
            k = qkv4[:, :, H:H + Hkv].transpose(1, 2)
            v = qkv4[:, :, H + Hkv:].transpose(1, 2)
            if self.attention_prefill == "triton":
                from validation.kernels.attention import flash_attention

                flash_attention(q, k, v, out=r.attn.view(B, S, H, D).transpose(1, 2), causal=True)
                return r.attn
            from validation.measure import sdpa_backends, sdpa_call

            o = sdpa_call(q, k, v, sdpa_backends().get(self.attention_prefill), causal=True)
            return o.transpose(1, 2).reshape(B * S, H * D)
        q = r.qkv.view(B, H + 2 * Hkv, D)[:, :H]
        L = r.past + 1
        if self.attention_decode == "triton":
            from validation.kernels.decode_attention import decode_attention

            decode_attention(q, r.k_cache[layer], r.v_cache[layer], L, out=r.attn.view(B, H, D),
                             num_splits=r.splits, max_context_len=L, workspace=r.workspace)
            return r.attn
        from validation.measure import sdpa_backends, sdpa_call

        kc = r.k_cache[layer][:, :, :L]
        vc = r.v_cache[layer][:, :, :L]
        o = sdpa_call(q.unsqueeze(2), kc, vc, sdpa_backends().get(self.attention_decode), causal=False)
        return o.reshape(B, H * D)

    def _moe(self, r: "StepRunner", layer: int, x: torch.Tensor) -> None:
        if not self.grouped_mm:
            self._moe_loop(r, layer, x)
            return
        logits = self.moe_router(r.hn, layer)
        weights, ids = self.moe_route(logits)
        tok, offs, inv = self.moe_sort(ids, r.arange_e, r.arange_tk)
        y = self.moe_experts(self.moe_permute(r.hn, tok), offs, layer)
        self.moe_unpermute(y, weights, inv, x)

    # The MoE layer in pieces, one per operator of the step (validate times them one by one).
    def moe_router(self, hn: torch.Tensor, layer: int) -> torch.Tensor:
        return torch.matmul(hn, self.w_router[layer].t())

    def moe_route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused softmax + top-k: routing weights (T, k) fp32 and expert ids (T, k) int32."""
        from validation.kernels.moe import topk_softmax

        return topk_softmax(logits, self.arch.top_k, renormalize=self.arch.renormalize)

    @staticmethod
    def moe_sort(ids: torch.Tensor, arange_e: torch.Tensor, arange_tk: torch.Tensor):
        """The (token, expert) pairs sorted by expert: the token of each sorted row, the per-expert end
        offsets (int32, as ``torch._grouped_mm`` takes them) and each pair's sorted row, (T, k)."""
        T, k = ids.shape
        sorted_ids, order = torch.sort(ids.view(-1), stable=True)
        offs = torch.searchsorted(sorted_ids, arange_e, right=True, out_int32=True)
        tok = torch.div(order, k, rounding_mode="floor")
        inv = torch.empty_like(order).scatter_(0, order, arange_tk)
        return tok, offs, inv.view(T, k)

    @staticmethod
    def moe_permute(hn: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        """Each token's row once per chosen expert, in expert order."""
        return hn.index_select(0, tok)

    def moe_experts(self, xs: torch.Tensor, offs: torch.Tensor, layer: int) -> torch.Tensor:
        """gate/up grouped GEMM, SwiGLU, down grouped GEMM over the expert-sorted rows."""
        from validation.kernels import memory as Mk

        Ie = self.arch.expert_intermediate
        gu = torch._grouped_mm(xs, self.w_gu[layer].transpose(-2, -1), offs=offs)
        act = Mk.swiglu(gu[:, :Ie], gu[:, Ie:])
        return torch._grouped_mm(act, self.w_down[layer].transpose(-2, -1), offs=offs)

    @staticmethod
    def moe_unpermute(y: torch.Tensor, weights: torch.Tensor, inv: torch.Tensor, x: torch.Tensor) -> None:
        """Each token's k expert rows, weighted and summed in one pass, then added to the residual."""
        from validation.kernels.moe import unpermute

        x.add_(unpermute(y, weights, inv))

    def _moe_loop(self, r: "StepRunner", layer: int, x: torch.Tensor) -> None:
        """Per-expert loop where there is no grouped GEMM: host-synchronising, not capturable."""
        from validation.kernels import memory as Mk

        a = self.arch
        Ie = a.expert_intermediate
        top_w, top_i = self.moe_route(self.moe_router(r.hn, layer))
        out = torch.zeros_like(x)
        for e in range(a.experts):
            rows, slot = torch.nonzero(top_i == e, as_tuple=True)
            if rows.numel() == 0:
                continue
            gu = torch.matmul(r.hn.index_select(0, rows), self.w_gu[layer, e].t())
            act = Mk.swiglu(gu[:, :Ie], gu[:, Ie:])
            y = torch.matmul(act, self.w_down[layer, e].t())
            out.index_add_(0, rows, (y.float() * top_w[rows, slot][:, None]).to(y.dtype))
        x.add_(out)


class StepRunner:
    """Static inputs, caches and buffers of one step shape; ``run()`` is capturable in a CUDA graph."""

    def __init__(self, dec: Decoder, phase: str, batch: int, length: int, *, seed: int = 1):
        a = dec.arch
        dev, dt = dec.device, dec.dtype
        self.dec, self.phase, self.batch = dec, phase, batch
        if phase == "prefill":
            self.new, self.past = length, 0
        elif phase == "decode":
            self.new, self.past = 1, length
        else:
            raise ValueError(f"phase must be prefill or decode, got {phase!r}")
        T = batch * self.new
        s_max = self.past + self.new
        g = torch.Generator(device=dev).manual_seed(seed)
        self.ids = torch.randint(0, a.vocab, (T,), generator=g, device=dev)
        pos = torch.arange(self.past, self.past + self.new, device=dev, dtype=torch.int32)
        self.positions = pos.repeat(batch)
        cache_shape = (a.layers, batch, a.kv_heads, s_max, a.head_dim)
        self.k_cache = torch.randn(cache_shape, generator=g, device=dev, dtype=dt)
        self.v_cache = torch.randn(cache_shape, generator=g, device=dev, dtype=dt)
        self.hn = torch.empty((T, a.hidden), device=dev, dtype=dt)
        self.qkv = torch.empty((T, a.qkv_width), device=dev, dtype=dt)
        self.attn = torch.empty((T, a.heads * a.head_dim), device=dev, dtype=dt)
        self.attn_out = torch.empty((T, a.hidden), device=dev, dtype=dt)
        if not a.experts:
            self.gu = torch.empty((T, 2 * a.intermediate), device=dev, dtype=dt)
            self.act = torch.empty((T, a.intermediate), device=dev, dtype=dt)
            self.mlp_out = torch.empty((T, a.hidden), device=dev, dtype=dt)
        else:
            self.arange_e = torch.arange(a.experts, device=dev, dtype=torch.int32)
            self.arange_tk = torch.arange(T * a.top_k, device=dev)
        self.logits = torch.empty((batch, a.vocab), device=dev, dtype=dt)
        self.splits, self.workspace = 1, None
        if phase == "decode" and dec.attention_decode == "triton":
            from validation.kernels.decode_attention import decode_num_splits, decode_workspace

            L = self.past + 1
            self.splits = decode_num_splits(batch, a.kv_heads, L, dev)
            split_size = math.ceil(math.ceil(L / self.splits) / 64) * 64
            self.workspace = decode_workspace(batch, a.heads, a.head_dim, max(1, math.ceil(L / split_size)), dev)

    @property
    def capturable(self) -> bool:
        return not (self.dec.arch.experts and not self.dec.grouped_mm)

    def run(self) -> torch.Tensor:
        return self.dec.forward(self)

    def kv_bytes(self) -> int:
        return 2 * self.k_cache.numel() * self.k_cache.element_size()


def time_step(runner: StepRunner, *, min_repeats: int = 5, max_repeats: int = 30, budget_s: float = 1.0
              ) -> dict[str, Any]:
    """Median time of one step: CUDA-graph replays when capturable, else eager runs, timed with events."""
    import statistics

    runner.run()  # compile / autotune / allocate outside the capture
    torch.cuda.synchronize()
    graph = None
    if runner.capturable:
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                runner.run()
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                runner.run()
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001
            graph = None
            torch.cuda.synchronize()
    fn = graph.replay if graph is not None else runner.run

    def once() -> float:
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        return s.elapsed_time(e) * 1e-3

    first = [once() for _ in range(2)]
    n = int(min(max_repeats, max(min_repeats, budget_s / max(min(first), 1e-6))))
    samples = [once() for _ in range(n)]
    logits_ok = bool(torch.isfinite(runner.logits.float()).all().item())
    del graph
    med = statistics.median(samples)
    return {"time_s": med, "spread": (max(samples) - min(samples)) / med, "repeats": n,
            "method": "graph" if fn is not runner.run else "eager", "finite": logits_ok}
