"""An expert-parallel MoE layer stack (EP 4 and 8): all-to-all dispatch, grouped experts, all-to-all combine.

Layout: attention data parallel + MoE expert parallel (DeepSeek-V3's serving layout, DeepSeek-AI
2024, arXiv 2412.19437, section 3.4): each of the ``ep`` ranks holds T tokens of its own and E/ep
experts of every layer (``shard.expert_slice``); the router is whole on every rank. Per layer:
RMSNorm; router GEMM and the fused softmax + top-k (the decoder's ``moe_router`` / ``moe_route``);
the (token, expert) pairs sorted by expert (``moe_sort``) and gathered (``moe_permute``), so the rows
bound for each rank are contiguous; the row counts exchanged (one small all-to-all, then a host
read of the split sizes, as Megatron-LM's all-to-all dispatcher does); the rows and their expert ids
sent with ``all_to_all_single`` (dispatch: T x top_k x hidden x 2 bytes per rank in all, each way);
the received rows sorted by local expert and run through the grouped GEMMs (``moe_experts``; a
per-expert loop without ``torch._grouped_mm``); sent back (combine); the weighted sum back in token
order and the residual add (``moe_unpermute``). Eager (the split sizes live on the host).

Check: on a toy MoE the stack's output equals the whole model's routed MoE (``Decoder._moe_loop``,
every expert on one rank) for each rank's tokens.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from validation.multigpu import launch

NAME = "ep"
MODELS = ("mixtral-8x7b", "qwen3-30b-a3b", "deepseek-v3-routed")
# DeepSeek-V3's routed experts (https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json:
# hidden 7168, 256 routed experts, 8 per token, moe_intermediate_size 2048), without its shared expert
# and group-limited routing, which the validation decoder does not run.
DEEPSEEK_V3_ROUTED = {"name": "deepseek-v3-routed", "family": "deepseek", "num_layers": 58, "hidden_size": 7168,
                      "num_attention_heads": 128, "num_kv_heads": 128, "head_dim": 128, "intermediate_size": 18432,
                      "vocab_size": 129280,
                      "moe": {"num_experts": 256, "top_k": 8, "expert_intermediate_size": 2048}}
TOKENS = (1, 8, 32, 128, 512, 2048)  # per rank
STACK_LAYERS = 4
DEGREES = (4, 8)
TINY = {"name": "toy-moe", "family": "mixtral", "num_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
        "num_kv_heads": 2, "head_dim": 16, "intermediate_size": 64, "vocab_size": 64,
        "moe": {"num_experts": 4, "top_k": 2, "expert_intermediate_size": 48}}


class ExpertStack:
    """This rank's part of an EP stack: the decoder (all layers' routers, this rank's experts)."""

    def __init__(self, ctx: launch.Ctx, ep: int, dec, experts_total: int):
        import torch

        self.ctx, self.ep, self.dec, self.group = ctx, ep, dec, ctx.group(ep)
        self.local = experts_total // ep
        self.arange_e = torch.arange(experts_total, device=ctx.device, dtype=torch.int32)
        self.arange_local = torch.arange(self.local, device=ctx.device, dtype=torch.int32)
        self.sent_rows = 0

    def _a2a(self, rows, send: list[int], recv: list[int]):
        import torch
        import torch.distributed as dist

        out = torch.empty((sum(recv), *rows.shape[1:]), device=rows.device, dtype=rows.dtype)
        dist.all_to_all_single(out, rows.contiguous(), recv, send, group=self.group)
        return out

    def _experts(self, xs, offs, layer: int):
        import torch

        if xs.shape[0] == 0:  # no token chose this rank's experts
            return torch.empty((0, self.dec.arch.hidden), device=xs.device, dtype=xs.dtype)
        if self.dec.grouped_mm and xs.dtype == torch.bfloat16:
            return self.dec.moe_experts(xs, offs, layer)
        from validation.kernels import memory as Mk  # no grouped GEMM (CPU, float32 check): one GEMM per expert

        ie = self.dec.arch.expert_intermediate
        out = torch.empty((xs.shape[0], self.dec.arch.hidden), device=xs.device, dtype=xs.dtype)
        start = 0
        for e, end in enumerate(offs.tolist()):
            if end > start:
                gu = xs[start:end] @ self.dec.w_gu[layer, e].t()
                out[start:end] = Mk.swiglu(gu[:, :ie].contiguous(), gu[:, ie:].contiguous()) @ self.dec.w_down[layer, e].t()
            start = end
        return out

    def moe(self, hn, x, layer: int) -> None:
        """One MoE layer over this rank's tokens: ``x += moe(hn)``."""
        import torch
        import torch.distributed as dist

        d = self.dec
        weights, ids = d.moe_route(d.moe_router(hn, layer))
        arange_tk = torch.arange(ids.numel(), device=hn.device)
        tok, offs, inv = d.moe_sort(ids, self.arange_e, arange_tk)
        xs = d.moe_permute(hn, tok)
        ends = offs.view(self.ep, self.local)[:, -1].long()
        send_t = torch.diff(ends, prepend=torch.zeros(1, dtype=torch.long, device=ends.device))
        recv_t = torch.empty_like(send_t)
        dist.all_to_all_single(recv_t, send_t, group=self.group)
        send, recv = send_t.tolist(), recv_t.tolist()
        expert = torch.searchsorted(offs, arange_tk.to(torch.int32), right=True)  # each sorted row's expert
        local_id = (expert % self.local).to(torch.int32)
        rx, re = self._a2a(xs, send, recv), self._a2a(local_id, send, recv)  # dispatch
        order = torch.sort(re, stable=True).indices
        local_offs = torch.searchsorted(re[order], self.arange_local, right=True, out_int32=True)
        y = torch.empty_like(rx)
        y[order] = self._experts(rx.index_select(0, order), local_offs, layer)
        back = self._a2a(y, recv, send)  # combine
        d.moe_unpermute(back, weights, inv, x)
        self.sent_rows = sum(send) - send[self.ctx.rank]

    def forward(self, x, hn) -> None:
        from validation.kernels import memory as Mk

        for layer in range(self.dec.arch.layers):
            Mk.rmsnorm(x, self.dec.mlp_norm[layer], 1e-5, out=hn)
            self.moe(hn, x, layer)


def reference(full, x, hn) -> None:
    """The same stack with every expert on this rank (the decoder's per-expert routed MoE)."""
    from validation.kernels import memory as Mk

    for layer in range(full.arch.layers):
        Mk.rmsnorm(x, full.mlp_norm[layer], 1e-5, out=hn)
        full._moe_loop(SimpleNamespace(hn=hn), layer, x)


def check(ctx: launch.Ctx, ep: int) -> float:
    import torch

    from validation.decoder import Arch, Decoder
    from validation.multigpu.shard import expert_slice

    spec = {**TINY, "moe": {**TINY["moe"], "num_experts": 2 * ep}}
    full = Decoder(Arch.from_spec(spec), device=ctx.device, dtype=torch.float32, seed=0, max_positions=8)
    per = full.arch.experts // ep
    stack = ExpertStack(ctx, ep, expert_slice(full, ctx.rank * per, (ctx.rank + 1) * per), full.arch.experts)
    g = torch.Generator(device=ctx.device).manual_seed(10 + ctx.rank)
    x = torch.randn((5 + ctx.rank, full.arch.hidden), generator=g, device=ctx.device)  # uneven token counts
    x_ref, hn = x.clone(), torch.empty_like(x)
    stack.forward(x, hn)
    reference(full, x_ref, hn)
    return ctx.reduce_max([float(((x - x_ref).norm() / x_ref.norm()).item())], ep)[0]


def run(ctx: launch.Ctx, opts: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    import torch

    from validation.decoder import Arch, Decoder

    degrees = ctx.degrees(tuple(opts.get("degrees") or DEGREES))
    if ctx.world < 4:  # a 2-GPU machine (and the CPU tests) runs EP 2
        degrees = ctx.degrees((2,))
    cases, checks = [], {}
    for ep in degrees:
        ctx.group(ep)
        if ctx.rank < ep:
            checks[str(ep)] = check(ctx, ep)
        ctx.barrier()
    if ctx.tiny:
        models, tokens, layers = [("toy-moe", {**TINY, "moe": {**TINY["moe"], "num_experts": 8}})], (3,), 2
    else:
        from validation.multigpu.tp import model_spec

        names = launch.chosen(opts, MODELS)
        models = [(m, DEEPSEEK_V3_ROUTED if m == "deepseek-v3-routed" else model_spec(m)) for m in names]
        tokens, layers = TOKENS, STACK_LAYERS
    for name, spec in models:
        # the stack has no attention or vocabulary: keep those weights minimal
        arch = dataclasses.replace(Arch.from_spec(spec), layers=layers, vocab=8, intermediate=1, heads=1, kv_heads=1)
        for ep in degrees:
            if ctx.rank < ep and arch.experts % ep == 0:
                per = arch.experts // ep
                dec = Decoder(dataclasses.replace(arch, experts=per), device=ctx.device, seed=ctx.rank, max_positions=8)
                dec.w_router = torch.randn((layers, arch.experts, arch.hidden), device=ctx.device,
                                           dtype=dec.dtype) * arch.hidden ** -0.5  # routes over all experts
                stack = ExpertStack(ctx, ep, dec, arch.experts)
                for t in tokens:
                    x = torch.randn((t, arch.hidden), device=ctx.device, dtype=dec.dtype)
                    hn = torch.empty_like(x)
                    time = launch.time_samples(ctx, lambda: stack.forward(x, hn), ep, 10)
                    cases.append({"model": name, "spec": spec, "layers": layers, "tokens_per_rank": t,
                                  "parallelism": {"ep": ep, "tp": 1}, "experts": arch.experts, "top_k": arch.top_k,
                                  "time_s": time["median_s"], "p90_s": time["p90_s"], "repeats": time["repeats"],
                                  "method": "eager", "grouped_mm": bool(dec.grouped_mm),
                                  "dispatch_rows_sent_last": stack.sent_rows,
                                  "dispatch_bytes_per_rank": t * arch.top_k * arch.hidden * 2})
                del stack, dec
                if ctx.cuda:
                    torch.cuda.empty_cache()
            ctx.barrier()
    return {"cases": cases, "checks": checks}
