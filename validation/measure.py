"""Time one calibration :class:`~validation.sweeps.Point` on the current CUDA device, with the
Triton kernel or the vendor library it names (cuBLAS through torch.matmul, SDPA backends, torch ops).

Every builder returns a list of launch closures over rotating input sets larger than L2, so that
repeated launches measure HBM and not the cache (``validation.bench``).
"""

from __future__ import annotations

import warnings
from typing import Any

import math

from validation.sweeps import BF16, Point, uniform_routing

def measure(point: Point, *, l2: int | None = None, target_s: float = 4e-3, repeats: int = 10) -> dict[str, Any]:
    """Time one point on the current CUDA device; returns {time_s, spread, launches, method, ...}."""
    import torch

    from validation import bench

    fns, extra = _build(point, l2 or bench.l2_bytes())
    use_graph = point.kind != "host_transfer"
    t = bench.time_launches(fns, target_s=target_s, repeats=repeats, use_graph=use_graph)
    del fns
    out = {"time_s": t.time_s, "spread": t.spread, "launches": t.launches, "method": t.method, **extra}
    torch.cuda.synchronize()
    return out


# SDPA explains at length why a backend it was restricted to cannot run a shape; the failure is recorded.
warnings.filterwarnings("ignore", category=UserWarning,
                        message=r"(?s).*(kernel not used because|has been runtime disabled|require query, key and value)")


def sdpa_backends() -> dict[str, Any]:
    """Engine name -> torch SDPBackend, for the backends this torch has."""
    from torch.nn.attention import SDPBackend

    names = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-cudnn": "CUDNN_ATTENTION", "sdpa-efficient": "EFFICIENT_ATTENTION"}
    return {eng: getattr(SDPBackend, attr) for eng, attr in names.items() if hasattr(SDPBackend, attr)}


def sdpa_call(q, k, v, backend, *, causal: bool):
    """SDPA restricted to one backend (None: torch's choice); GQA through ``enable_gqa`` (K/V never
    repeated in memory)."""
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    def call():
        if k.shape[1] != q.shape[1]:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    if backend is None:  # let torch choose
        return call()
    with sdpa_kernel([backend]):
        return call()


def _build(p: Point, l2: int):
    """Callables, one per rotating input set, and extra facts to record (e.g. the autotuned config)."""
    import torch

    from validation import bench

    dev = "cuda"
    s = p.shape
    extra: dict[str, Any] = {}
    if p.kind == "gemm":
        M, K, N = s["M"], s["K"], s["N"]
        n = bench.rotations(p.bytes, l2)
        sets = [(bench.randn((M, K), device=dev), bench.randn((N, K), device=dev, scale=K ** -0.5),
                 torch.empty((M, N), dtype=torch.bfloat16, device=dev)) for _ in range(n)]
        if p.engine == "cublas":
            return [lambda a=a, w=w, o=o: torch.matmul(a, w.t(), out=o) for a, w, o in sets], extra
        from validation.kernels import gemm as G

        fns = [lambda a=a, w=w, o=o: G.gemm(a, w.t(), out=o) for a, w, o in sets]
        fns[0]()
        cfg = G.last_autotuned_config()
        if cfg is not None:
            extra["config"] = f"{cfg.BLOCK_M}x{cfg.BLOCK_N}x{cfg.BLOCK_K}/w{cfg.num_warps}/s{cfg.num_stages}"
        return fns, extra
    if p.kind == "gemm_fp8":
        return _fp8_gemm_launches(p, l2, dev), extra
    if p.kind == "grouped_gemm":
        return grouped_gemm_launches(p, l2, dev), extra
    if p.kind == "memory":
        return _build_memory(p, l2), extra
    if p.kind == "attention_prefill":
        B, S, H, Hkv, D = s["B"], s["S"], s["H"], s["Hkv"], s["D"]
        n = bench.rotations(p.bytes, l2, cap=16)
        sets = []
        for _ in range(n):
            # q/k/v as views of one fused projection output (B, S, H + 2 Hkv, D), as the decoder has them
            qkv = bench.randn((B, S, H + 2 * Hkv, D), device=dev)
            q = qkv[:, :, :H].transpose(1, 2)
            k = qkv[:, :, H:H + Hkv].transpose(1, 2)
            v = qkv[:, :, H + Hkv:].transpose(1, 2)
            o = torch.empty((B, S, H, D), dtype=torch.bfloat16, device=dev).transpose(1, 2)
            sets.append((q, k, v, o))
        if p.engine == "triton":
            from validation.kernels.attention import flash_attention

            return [lambda q=q, k=k, v=v, o=o: flash_attention(q, k, v, out=o, causal=True) for q, k, v, o in sets], extra
        backend = sdpa_backends()[p.engine]
        return [lambda q=q, k=k, v=v: sdpa_call(q, k, v, backend, causal=True) for q, k, v, _ in sets], extra
    if p.kind == "attention_decode":
        B, ctx, H, Hkv, D = s["B"], s["ctx"], s["H"], s["Hkv"], s["D"]
        L = ctx + 1
        n = bench.rotations(p.bytes, l2, cap=16)
        sets = []
        for _ in range(n):
            q = bench.randn((B, H, D), device=dev)
            kc = bench.randn((B, Hkv, L, D), device=dev)
            vc = bench.randn((B, Hkv, L, D), device=dev)
            sets.append((q, kc, vc))
        if p.engine == "triton":
            from validation.kernels.decode_attention import (
                decode_attention,
                decode_num_splits,
                decode_split_layout,
                decode_workspace,
            )

            fns = []
            for q, kc, vc in sets:
                o = torch.empty_like(q)
                splits = decode_num_splits(B, Hkv, L, q.device)
                ws = decode_workspace(B, H, D, decode_split_layout(L, splits)[1], q.device)
                fns.append(lambda q=q, kc=kc, vc=vc, o=o, ws=ws, splits=splits: decode_attention(
                    q, kc, vc, L, out=o, num_splits=splits, max_context_len=L, workspace=ws))
            extra["splits"] = splits
            return fns, extra
        backend = sdpa_backends()[p.engine]
        return [lambda q=q, kc=kc, vc=vc: sdpa_call(q.unsqueeze(2), kc, vc, backend, causal=False)
                for q, kc, vc in sets], extra
    if p.kind == "host_transfer":
        nbytes = s["bytes"]
        src = torch.randint(1, 255, (nbytes,), dtype=torch.uint8).pin_memory()
        dst = torch.empty((nbytes,), dtype=torch.uint8, device=dev)
        return [lambda: dst.copy_(src, non_blocking=True)], extra
    raise ValueError(f"unknown kind {p.kind}")


def _fp8_gemm_launches(p: Point, l2: int, device="cuda"):
    """``torch._scaled_mm`` over fp8 e4m3 activations (M, K) and weights (N, K), per-tensor fp32 scales,
    bf16 out: what vLLM's per-tensor FP8 linear layer calls. cuBLASLt takes M in multiples of 16, so a
    smaller M runs padded to 16 rows (as an engine pads it); FLOPs and bytes stay those of M rows."""
    import torch

    from validation import bench

    s = p.shape
    M, K, N = s["M"], s["K"], s["N"]
    rows = -(-M // 16) * 16
    n = bench.rotations(rows * K + K * N + 2 * rows * N, l2)
    scale = torch.ones((), dtype=torch.float32, device=device)
    sets = [(bench.randn((rows, K), device=device).to(torch.float8_e4m3fn),
             bench.randn((N, K), device=device, scale=K ** -0.5).to(torch.float8_e4m3fn)) for _ in range(n)]
    return [lambda a=a, w=w: torch._scaled_mm(a, w.t(), scale_a=scale, scale_b=scale, out_dtype=torch.bfloat16)
            for a, w in sets]


def grouped_gemm_launches(p: Point, l2: int, device="cuda", budget_bytes: float = 6e9):
    """Callables, one per rotating input set, each one grouped launch of ``p``: rows (T·k, K) already
    sorted by expert, weights (E, N, K) as the decoder stores them, ``offs`` the cumulative rows per
    expert. Each set has its own weights, so the touched experts stream from HBM."""
    import torch

    from validation import bench

    s = p.shape
    T, E, k, K, N = s["T"], s["E"], s["k"], s["K"], s["N"]
    counts = uniform_routing(T, E, k).tolist()
    offs = torch.tensor(counts, dtype=torch.int32).cumsum(0, dtype=torch.int32).to(device)
    full = E * N * K * BF16 + T * k * (K + N) * BF16
    n = max(1, min(bench.rotations(p.bytes, l2), int(budget_bytes // full)))
    sets = [(bench.randn((T * k, K), device=device), bench.randn((E, N, K), device=device, scale=K ** -0.5),
             torch.empty((T * k, N), dtype=torch.bfloat16, device=device)) for _ in range(n)]
    if p.engine == "grouped_mm":
        return [lambda x=x, w=w: torch._grouped_mm(x, w.transpose(-2, -1), offs=offs) for x, w, _ in sets]
    if p.engine != "loop":
        raise ValueError(f"unknown grouped GEMM engine {p.engine}")
    bounds = [(e, a, b) for e, (a, b) in enumerate(zip([0, *offs.tolist()[:-1]], offs.tolist())) if b > a]

    def loop(x, w, o):
        for e, a, b in bounds:
            torch.matmul(x[a:b], w[e].t(), out=o[a:b])
        return o

    return [lambda x=x, w=w, o=o: loop(x, w, o) for x, w, o in sets]


def _build_memory(p: Point, l2: int):
    import torch
    import torch.nn.functional as F

    from validation import bench
    from validation import ops
    from validation.kernels import memory as Mk

    dev = "cuda"
    t, w = p.shape["tokens"], p.shape["width"]
    n = bench.rotations(p.bytes, l2)
    op, eng = p.op, p.engine
    fns = []
    if op in ("copy", "read"):
        for _ in range(n):
            x = bench.randn((t * w,), device=dev)
            if op == "copy":
                y = torch.empty_like(x)
                fns.append((lambda x=x, y=y: Mk.copy(x, out=y)) if eng == "triton" else (lambda x=x, y=y: y.copy_(x)))
            else:
                sms = torch.cuda.get_device_properties(0).multi_processor_count
                progs = max(1, min(math.ceil(t * w / 4096), sms * 8))
                part = torch.empty((progs,), dtype=torch.float32, device=dev)
                fns.append(lambda x=x, part=part, progs=progs: Mk.stream_read(x, out=part, num_programs=progs))
        return fns
    if op == "rmsnorm":
        for _ in range(n):
            x = bench.randn((t, w), device=dev)
            g = bench.randn((w,), device=dev)
            y = torch.empty_like(x)
            if eng == "triton":
                fns.append(lambda x=x, g=g, y=y: Mk.rmsnorm(x, g, 1e-5, out=y))
            else:
                fns.append(lambda x=x, g=g: F.rms_norm(x, (w,), g, 1e-5))
        return fns
    if op == "swiglu":
        for _ in range(n):
            gu = bench.randn((t, 2 * w), device=dev)
            y = torch.empty((t, w), dtype=torch.bfloat16, device=dev)
            if eng == "triton":
                fns.append(lambda gu=gu, y=y: Mk.swiglu(gu[:, :w], gu[:, w:], out=y))
            else:
                fns.append(lambda gu=gu: F.silu(gu[:, :w]) * gu[:, w:])
        return fns
    if op == "add":
        for _ in range(n):
            a, b = bench.randn((t, w), device=dev), bench.randn((t, w), device=dev)
            fns.append(lambda a=a, b=b: a.add_(b))
        return fns
    if op == "rotary":
        D = 128
        heads = w // D
        cos, sin = ops.rope_tables(max(t, 16), D, device=dev)
        for _ in range(n):
            qkv = bench.randn((t, w + 8 * D), device=dev)  # q + k heads rotated, v heads after them
            pos = torch.arange(t, dtype=torch.int32, device=dev)
            fns.append(lambda qkv=qkv, pos=pos: ops.rotary_(qkv, pos, cos, sin, heads, D))
        return fns
    if op == "kv_write":
        D = 128
        hkv = w // (2 * D)
        for _ in range(n):
            qkv = bench.randn((t, (hkv * 4 + 2 * hkv) * D), device=dev)
            k = qkv[:, 4 * hkv * D:5 * hkv * D]
            v = qkv[:, 5 * hkv * D:]
            kc = torch.empty((1, hkv, t, D), dtype=torch.bfloat16, device=dev)
            vc = torch.empty_like(kc)
            fns.append(lambda k=k, v=v, kc=kc, vc=vc: ops.kv_write(k, v, kc, vc, t, 0))
        return fns
    if op == "embedding":
        vocab = 128256
        table = bench.randn((vocab, w), device=dev)
        for _ in range(n):
            ids = torch.randint(0, vocab, (t,), device=dev)
            fns.append(lambda ids=ids: F.embedding(ids, table))
        return fns
    raise ValueError(f"unknown memory op {op}")
