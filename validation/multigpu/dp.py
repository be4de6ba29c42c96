"""Data-parallel training steps: DDP and FSDP (FSDP2 ``fully_shard``) of a 1.5B and an 8B model on 2, 4, 8 GPUs.

The model is a Llama-style decoder in plain ``torch.nn`` (autograd through cuBLAS GEMMs, SDPA with
GQA, ``nn.RMSNorm``, SwiGLU; no rotary, which costs no GEMM time), random init, bf16. One step is
forward, backward (next-token cross-entropy over ``batch x seq`` tokens per GPU) and an AdamW update.

* **DDP** (Li et al. 2020, arXiv 2006.15704): bf16 parameters, gradients and optimizer states (an
  8B model's fp32 master weights and Adam states do not fit one 141 GB GPU beside its gradients); the
  gradients are all-reduced in 25 MiB buckets overlapped with the backward pass.
* **FSDP** (Zhao et al. 2023, arXiv 2304.11277; ZeRO-3, Rajbhandari et al. 2020): fp32 master
  parameters sharded over the group, each block all-gathered in bf16 for forward and backward,
  gradients reduce-scattered in fp32 (``MixedPrecisionPolicy``).

Check (float32 toy model, SGD): after one step every rank's parameters equal those of one process
that took the same step over the whole global batch.
"""

from __future__ import annotations

from typing import Any

from validation.multigpu import launch

NAME = "dp"
# Qwen2.5-1.5B's shape (https://huggingface.co/Qwen/Qwen2.5-1.5B/blob/main/config.json; q/k/v biases
# and tied embeddings left out) and Llama-3.1-8B (the preset).
QWEN25_15B = {"name": "qwen2.5-1.5b", "family": "qwen2", "num_layers": 28, "hidden_size": 1536,
              "num_attention_heads": 12, "num_kv_heads": 2, "head_dim": 128, "intermediate_size": 8960,
              "vocab_size": 151936}
MODELS = ("qwen2.5-1.5b", "llama-3.1-8b")
CASES = [(1, 4096), (2, 2048)]  # (sequences per GPU, sequence length): 4096 tokens per GPU
TINY = {"name": "toy", "family": "llama", "num_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
        "num_kv_heads": 2, "head_dim": 8, "intermediate_size": 64, "vocab_size": 64}


def build(spec: dict[str, Any], device, dtype, seed: int = 0):
    """The training model of ``spec`` (a model preset's fields), initialised from ``seed``."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    h, H, Hkv, D = spec["hidden_size"], spec["num_attention_heads"], spec["num_kv_heads"], spec["head_dim"]
    inter = spec["intermediate_size"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm, self.mlp_norm = nn.RMSNorm(h, eps=1e-5), nn.RMSNorm(h, eps=1e-5)
            self.qkv = nn.Linear(h, (H + 2 * Hkv) * D, bias=False)
            self.o = nn.Linear(H * D, h, bias=False)
            self.gate_up = nn.Linear(h, 2 * inter, bias=False)
            self.down = nn.Linear(inter, h, bias=False)

        def forward(self, x):
            B, S, _ = x.shape
            q, k, v = self.qkv(self.attn_norm(x)).split([H * D, Hkv * D, Hkv * D], dim=-1)
            q, k, v = (t.view(B, S, -1, D).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=Hkv != H)
            x = x + self.o(a.transpose(1, 2).reshape(B, S, H * D))
            g, u = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
            return x + self.down(F.silu(g) * u)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(spec["vocab_size"], h)
            self.blocks = nn.ModuleList(Block() for _ in range(spec["num_layers"]))
            self.norm = nn.RMSNorm(h, eps=1e-5)
            self.head = nn.Linear(h, spec["vocab_size"], bias=False)

        def forward(self, ids, labels):
            x = self.embed(ids)
            for b in self.blocks:
                x = b(x)
            logits = self.head(self.norm(x))
            return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())

    torch.manual_seed(seed)
    with torch.device(device):
        model = LM()
    return model.to(dtype)


def wrap(model, kind: str, ctx: launch.Ctx, n: int, compute_dtype):
    """DDP or FSDP2 over the ranks 0..n-1."""
    import torch

    group = ctx.group(n)
    if kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[ctx.device.index] if ctx.cuda else None, process_group=group)
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = DeviceMesh.from_group(group, ctx.device.type)
    mp = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def batch(spec, b: int, s: int, rank: int, device, seed: int = 7):
    import torch

    g = torch.Generator().manual_seed(seed + rank)
    ids = torch.randint(0, spec["vocab_size"], (b, s + 1), generator=g)
    return ids[:, :-1].to(device), ids[:, 1:].to(device)


def _full(p):
    return p.full_tensor() if hasattr(p, "full_tensor") else p


def check(ctx: launch.Ctx, n: int, kind: str) -> float:
    """Max relative difference of the parameters after one SGD step against one process over the global batch."""
    import torch

    model = wrap(build(TINY, ctx.device, torch.float32), kind, ctx, n, torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    ids, labels = batch(TINY, 2, 8, ctx.rank, ctx.device)
    model(ids, labels).backward()
    opt.step()
    ref = build(TINY, ctx.device, torch.float32)
    every = [batch(TINY, 2, 8, r, ctx.device) for r in range(n)]
    ref(torch.cat([i for i, _ in every]), torch.cat([lab for _, lab in every])).backward()
    torch.optim.SGD(ref.parameters(), lr=0.5).step()
    inner = model.module if kind == "ddp" else model
    worst = 0.0
    for (name, p), q in zip(inner.named_parameters(), ref.parameters()):
        p = _full(p.detach())
        worst = max(worst, float(((p - q).norm() / q.norm()).item()))
    return ctx.reduce_max([worst], n)[0]


def run(ctx: launch.Ctx, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    degrees = ctx.degrees(tuple(opts.get("degrees") or launch.DEGREES))
    cases, checks = [], {}
    for n in degrees:
        ctx.group(n)
        if ctx.rank < n:
            checks[str(n)] = {kind: check(ctx, n, kind) for kind in ("ddp", "fsdp")}
        ctx.barrier()
    if ctx.tiny:
        models, plan = [("toy", TINY)], [(2, 8)]
    else:
        from validation.multigpu.tp import model_spec

        names = launch.chosen(opts, MODELS)
        models = [(m, QWEN25_15B if m == "qwen2.5-1.5b" else model_spec(m)) for m in names]
        plan = CASES
    dtype = torch.bfloat16 if ctx.cuda else torch.float32
    for name, spec in models:
        if opts.get("layers"):
            spec = {**spec, "num_layers": min(int(opts["layers"]), spec["num_layers"])}
        for n in degrees:
            for kind in ("ddp", "fsdp"):
                if ctx.rank < n:
                    model, err = None, None
                    try:
                        # DDP trains in bf16 throughout; FSDP keeps fp32 master weights, sharded
                        model = wrap(build(spec, ctx.device, dtype if kind == "ddp" else torch.float32), kind,
                                     ctx, n, dtype)
                        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
                    except torch.OutOfMemoryError as exc:
                        err = f"OutOfMemoryError: {str(exc).splitlines()[0][:120]}"
                    for b, s in plan:
                        row = {"model": name, "spec": spec, "kind": kind, "parallelism": {"dp": n, "tp": 1},
                               "batch_per_gpu": b, "seq_len": s, "dtype": str(dtype).replace("torch.", ""),
                               "master_dtype": "float32" if kind == "fsdp" else str(dtype).replace("torch.", "")}
                        if ctx.all_agree(model is not None, n):
                            ids, labels = batch(spec, b, s, ctx.rank, ctx.device)

                            def step():
                                opt.zero_grad(set_to_none=True)
                                model(ids, labels).backward()
                                opt.step()

                            try:
                                t = launch.time_samples(ctx, step, n, 5, warmup=2)
                                row.update({"time_s": t["median_s"], "p90_s": t["p90_s"], "repeats": t["repeats"],
                                            "tokens_per_s": n * b * s / t["median_s"], "method": "eager"})
                            except torch.OutOfMemoryError as exc:  # every rank runs out together: same shapes
                                row["error"] = f"OutOfMemoryError: {str(exc).splitlines()[0][:120]}"
                        else:
                            row["error"] = err or "out of memory on another rank"
                        cases.append(row)
                        if ctx.cuda:
                            torch.cuda.empty_cache()
                    del model
                    if ctx.cuda:
                        torch.cuda.empty_cache()
                ctx.barrier()
    return {"cases": cases, "checks": checks}
