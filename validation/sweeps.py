"""What ``roofsim calibrate`` measures: shape sets that cover what the cost model asks, each point
to be timed with the Triton kernel and with the vendor library beside it.

A :class:`Point` names an operation kind of the cost model (``gemm``, ``grouped_gemm``, ``memory``,
``attention_prefill``, ``attention_decode``, ``host_transfer``), the operation, the engine that runs
it, its shape, and its FLOPs and bytes per launch *counted the way the cost model counts them*
(``costmodels.gemm``, ``costmodels.attention``, ``costmodels.elementwise``), so that measured time
and modelled time describe the same thing. The shape lists are pure Python (no torch), so they
can be inspected and tested on any machine; ``validation.measure`` times them on a CUDA device.

Shape sets:

* GEMM: decode-skinny M = 1..256 against the real (K, N) of Llama-3.1-8B/70B, Llama-2-7B and
  OLMoE-1B-7B layers (q/k/v fused, o, gate/up fused, down, lm_head, router), prefill M = 512..16384
  on a few of them, and square sizes 1024..16384;
* memory: Triton copy, streaming read, RMSNorm, SwiGLU, rotary, KV-cache write and torch add /
  embedding from L2-resident (KiB) to several GB; torch's copy_, rms_norm and silu*mul beside them;
* attention prefill: causal, batch 1 and 4, prompt 128..16384, heads 32/8 (GQA), 32/32 (MHA),
  16/16, 64/8, head_dim 128; every available SDPA backend and the Triton kernel;
* attention decode: batch 1..256 x context 128..32768 (at most 2^20 cached tokens), same heads;
  Triton split-K flash-decoding and SDPA;
* grouped GEMM: the routed experts' gate/up and down projections of OLMoE-1B-7B (64 experts, top-8),
  Mixtral-8x7B (8, top-2) and Qwen3-30B-A3B (128, top-8) as one grouped launch over 1..4096 tokens,
  each token routed to top-k distinct experts drawn uniformly at random, rows sorted by expert, as
  the validation decoder runs them (``torch._grouped_mm``; a per-expert loop where it is missing);
* host transfer: pinned host -> device copies 64 KiB .. 1 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from costmodels.attention import attended_pairs, attention_flops, decode_attention_bytes, prefill_attention_bytes
from costmodels.elementwise import (
    ADD_FLOPS_PER_ELEMENT,
    GATED_ACT_FLOPS_PER_ELEMENT,
    NORM_FLOPS_PER_ELEMENT,
    ROTARY_FLOPS_PER_ELEMENT,
    elementwise,
    embedding_lookup,
)
from costmodels import gemm as gemm_ops
from costmodels.gemm import gemm_bytes, gemm_flops

BF16 = 2.0

# (model, layer, K, N) of nn.Linear layers, q/k/v and gate/up fused as engines run them.
LAYER_SHAPES: list[tuple[str, str, int, int]] = [
    ("llama-3.1-8b", "qkv", 4096, 6144),
    ("llama-3.1-8b", "o", 4096, 4096),
    ("llama-3.1-8b", "gate_up", 4096, 28672),
    ("llama-3.1-8b", "down", 14336, 4096),
    ("llama-3.1-8b", "lm_head", 4096, 128256),
    ("llama-3.1-70b", "qkv", 8192, 10240),
    ("llama-3.1-70b", "o", 8192, 8192),
    ("llama-3.1-70b", "gate_up", 8192, 57344),
    ("llama-3.1-70b", "down", 28672, 8192),
    ("llama-2-7b", "qkv", 4096, 12288),
    ("llama-2-7b", "gate_up", 4096, 22016),
    ("llama-2-7b", "down", 11008, 4096),
    ("olmoe-1b-7b", "qkv", 2048, 6144),
    ("olmoe-1b-7b", "o", 2048, 2048),
    ("olmoe-1b-7b", "router", 2048, 64),
    ("olmoe-1b-7b", "lm_head", 2048, 50304),
]
# (model, hidden, expert intermediate, experts, top-k) of routed-expert MoE layers
MOE_SHAPES: list[tuple[str, int, int, int, int]] = [
    ("olmoe-1b-7b", 2048, 1024, 64, 8),
    ("mixtral-8x7b", 4096, 14336, 8, 2),
    ("qwen3-30b-a3b", 2048, 768, 128, 8),
]
GROUPED_TOKENS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
DECODE_M = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PREFILL_M = [512, 1024, 2048, 4096, 8192, 16384]
SQUARE = [1024, 2048, 4096, 8192, 16384]
# head configurations (query heads, KV heads), head_dim 128
HEADS = [(32, 8), (32, 32), (16, 16), (64, 8)]


@dataclass
class Point:
    kind: str
    op: str
    engine: str
    shape: dict[str, Any]
    flops: float
    bytes: float
    tag: str = ""  # e.g. the model layer a GEMM shape comes from
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        dims = ",".join(f"{k}={v}" for k, v in self.shape.items())
        return f"{self.kind}/{self.op}/{self.engine}[{dims}]"


# --- cost of each point, counted as the cost model counts it ----------------------------------------

def gemm_point(M: int, K: int, N: int, engine: str, tag: str = "") -> Point:
    return Point("gemm", "matmul", engine, {"M": M, "K": K, "N": N}, float(gemm_flops(M, K, N)),
                 float(gemm_bytes(M, K, N, BF16, BF16)), tag)


def uniform_routing(tokens: int, experts: int, top_k: int, seed: int = 0):
    """Rows per expert when each of ``tokens`` picks ``top_k`` distinct experts uniformly at random
    (a numpy int array of length ``experts``; deterministic in ``seed``)."""
    import numpy as np

    rng = np.random.default_rng(seed + 7919 * tokens + 104729 * experts + top_k)
    ids = np.argsort(rng.random((tokens, experts)), axis=1)[:, :top_k]
    return np.bincount(ids.reshape(-1), minlength=experts)


def grouped_gemm_point(T: int, E: int, k: int, K: int, N: int, engine: str, tag: str = "") -> Point:
    """One grouped launch over the T·k rows of ``T`` tokens routed top-``k`` of ``E`` experts, each
    row times its expert's (K, N) weight. Counted as ``simulator.step`` counts the routed experts'
    GEMM: 2·(T·k)·K·N FLOPs; the rows in and out once and the weights of every expert the rows touch."""
    counts = uniform_routing(T, E, k)
    touched = int((counts > 0).sum())
    M = T * k
    nbytes = float(gemm_ops.grouped_gemm_bytes(M, K, N, BF16, BF16, touched))
    return Point("grouped_gemm", "grouped_mm", engine, {"T": T, "E": E, "k": k, "K": K, "N": N, "touched": touched},
                 float(gemm_flops(M, K, N)), nbytes, tag)


def prefill_point(B: int, S: int, H: int, Hkv: int, D: int, engine: str) -> Point:
    pairs = attended_pairs(S, 0)
    flops = float(attention_flops(pairs, H, D, D)) * B
    nbytes = float(prefill_attention_bytes(B, S, S, H, D, D, 2 * Hkv * D, BF16, BF16))
    return Point("attention_prefill", "causal", engine, {"B": B, "S": S, "H": H, "Hkv": Hkv, "D": D}, flops, nbytes)


def decode_point(B: int, ctx: int, H: int, Hkv: int, D: int, engine: str) -> Point:
    """One new token per sequence after ``ctx`` cached ones: attends over ctx + 1 positions."""
    pairs = attended_pairs(1, ctx)
    flops = float(attention_flops(pairs, H, D, D)) * B
    nbytes = float(decode_attention_bytes(B, ctx + 1, H, D, D, 2 * Hkv * D, BF16, BF16))
    return Point("attention_decode", "decode", engine, {"B": B, "ctx": ctx, "H": H, "Hkv": Hkv, "D": D}, flops, nbytes)


MEMORY_OPS = {
    # op: (reads, writes, flops per element) over tokens x width, as costmodels.elementwise counts
    "copy": (1, 1, 0.0),
    "read": (1, 0, 1.0),
    "rmsnorm": (1, 1, NORM_FLOPS_PER_ELEMENT),
    "swiglu": (2, 1, GATED_ACT_FLOPS_PER_ELEMENT),
    "add": (2, 1, ADD_FLOPS_PER_ELEMENT),
    "rotary": (1, 1, ROTARY_FLOPS_PER_ELEMENT),
    "kv_write": (1, 1, 0.0),
}


def memory_point(op: str, tokens: int, width: int, engine: str) -> Point:
    if op == "embedding":
        flops, nbytes = embedding_lookup(tokens, width, BF16, BF16)
    else:
        reads, writes, fpe = MEMORY_OPS[op]
        flops, nbytes = elementwise(tokens, width, reads, writes, fpe, BF16)
    return Point("memory", op, engine, {"tokens": tokens, "width": width}, float(flops), float(nbytes))


def host_point(nbytes: int) -> Point:
    return Point("host_transfer", "h2d", "cudaMemcpy", {"bytes": nbytes}, 0.0, float(nbytes))


# --- shape sets -------------------------------------------------------------------------------------

def _thin(seq: list, keep_every: int) -> list:
    return seq[::keep_every] if keep_every > 1 else list(seq)


FP8 = 1.0


def gemm_fp8_point(M: int, K: int, N: int, tag: str = "") -> Point:
    """A W8A8 GEMM as an engine's ``--quantization fp8`` runs it (``torch._scaled_mm``, cuBLASLt: fp8 e4m3
    activations and weights with per-tensor scales, bf16 out), its bytes counted as the cost model counts
    the quantised GEMM it prices (``simulator.techniques.weights``: bf16 activations in, 1-byte weights)."""
    return Point("gemm_fp8", "scaled_mm", "cublaslt", {"M": M, "K": K, "N": N}, float(gemm_flops(M, K, N)),
                 float(gemm_bytes(M, K, N, BF16, FP8)), tag)


def gemm_fp8_points(quick: bool = False) -> list[Point]:
    """The cuBLAS GEMM shapes of :func:`gemm_points`, as W8A8 fp8 GEMMs."""
    return [gemm_fp8_point(p.shape["M"], p.shape["K"], p.shape["N"], p.tag)
            for p in gemm_points(quick, triton=False)]


def gemm_points(quick: bool = False, triton: bool = True) -> list[Point]:
    pts: list[Point] = []
    shapes = LAYER_SHAPES if not quick else [s for s in LAYER_SHAPES if s[1] in ("qkv", "gate_up", "down", "lm_head")
                                             and s[0] in ("llama-3.1-8b", "llama-3.1-70b")]
    decode_m = DECODE_M if not quick else [1, 4, 16, 64, 128, 256]
    for model, layer, K, N in shapes:
        for M in decode_m:
            pts.append(gemm_point(M, K, N, "cublas", f"{model}.{layer}"))
    prefill_shapes = [s for s in LAYER_SHAPES if s[0] in ("llama-3.1-8b", "llama-2-7b", "olmoe-1b-7b")
                      and s[1] != "router"]
    if quick:
        prefill_shapes = [s for s in prefill_shapes if s[0] == "llama-3.1-8b"]
    prefill_m = PREFILL_M if not quick else [512, 2048, 8192]
    for model, layer, K, N in prefill_shapes:
        for M in prefill_m:
            if M * N * 2 > 4e9:  # keep the output under 4 GB
                continue
            pts.append(gemm_point(M, K, N, "cublas", f"{model}.{layer}"))
    for n in (SQUARE if not quick else [2048, 8192]):
        pts.append(gemm_point(n, n, n, "cublas", "square"))
    if triton:
        # The Triton GEMM on a subset (autotuning is slow): decode and prefill shapes of Llama-3.1-8B, squares.
        sub = [p for p in pts if p.tag.startswith("llama-3.1-8b") or p.tag == "square"]
        if quick:
            sub = [p for p in sub if p.shape["M"] in (1, 16, 256, 2048) or p.tag == "square"]
        else:
            sub = [p for p in sub if p.shape["M"] in (1, 4, 16, 64, 256, 1024, 4096) or p.tag == "square"]
        pts += [gemm_point(p.shape["M"], p.shape["K"], p.shape["N"], "triton", p.tag) for p in sub]
    return pts


def grouped_gemm_points(quick: bool = False, engine: str = "grouped_mm", tokens: list[int] | None = None
                        ) -> list[Point]:
    """gate/up (K = hidden, N = 2 x intermediate) and down (K = intermediate, N = hidden) of every
    ``MOE_SHAPES`` layer over ``tokens`` (default ``GROUPED_TOKENS``)."""
    toks = tokens or (GROUPED_TOKENS if not quick else [1, 8, 64, 512, 4096])
    pts = []
    for model, h, inter, E, k in MOE_SHAPES:
        for T in toks:
            pts.append(grouped_gemm_point(T, E, k, h, 2 * inter, engine, f"{model}.gate_up"))
            pts.append(grouped_gemm_point(T, E, k, inter, h, engine, f"{model}.down"))
    return pts


MEMORY_TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536]


def memory_points(quick: bool = False) -> list[Point]:
    pts: list[Point] = []
    toks = MEMORY_TOKENS if not quick else [1, 16, 256, 4096, 65536]
    # Engines of the decoder (validation.decoder): Triton norm / activation / rotary / cache write,
    # torch add and embedding; big flat copies and reads for the bandwidth ceiling.
    for t in toks:
        pts.append(memory_point("rmsnorm", t, 4096, "triton"))
        pts.append(memory_point("swiglu", t, 14336, "triton"))
        pts.append(memory_point("add", t, 4096, "torch"))
        pts.append(memory_point("rotary", t, (32 + 8) * 128, "triton"))
        pts.append(memory_point("kv_write", t, 2 * 8 * 128, "triton"))
        pts.append(memory_point("embedding", t, 4096, "torch"))
        if not quick:
            pts.append(memory_point("rmsnorm", t, 2048, "triton"))
            pts.append(memory_point("swiglu", t, 1024 * 8, "triton"))
            pts.append(memory_point("rotary", t, (32 + 32) * 128, "triton"))
            pts.append(memory_point("kv_write", t, 2 * 32 * 128, "triton"))
        # vendor / plain-torch versions beside them (kept raw; not what the decoder runs)
        pts.append(memory_point("rmsnorm", t, 4096, "torch"))
        pts.append(memory_point("swiglu", t, 14336, "torch"))
    flat = [2 ** k for k in range(10, 31, 2 if not quick else 4)]  # elements: 1 Ki .. 1 Gi (2 KiB .. 2 GiB)
    for n in flat:
        pts.append(memory_point("copy", 1, n, "triton"))
        pts.append(memory_point("read", 1, n, "triton"))
        pts.append(memory_point("copy", 1, n, "torch"))
    return pts


PREFILL_S = [128, 256, 512, 1024, 2048, 4096, 8192, 16384]


def attention_prefill_points(engines: list[str], quick: bool = False) -> list[Point]:
    pts = []
    seqs = PREFILL_S if not quick else [128, 512, 2048, 8192]
    heads = HEADS if not quick else HEADS[:2]
    for eng in engines:
        for H, Hkv in heads:
            for S in seqs:
                pts.append(prefill_point(1, S, H, Hkv, 128, eng))
            for S in ([512, 2048] if not quick else [1024]):
                pts.append(prefill_point(4, S, H, Hkv, 128, eng))
    return pts


DECODE_B = [1, 4, 16, 64, 256]
DECODE_CTX = [128, 512, 2048, 8192, 32768]


def attention_decode_points(engines: list[str], quick: bool = False) -> list[Point]:
    pts = []
    bs = DECODE_B if not quick else [1, 16, 256]
    ctxs = DECODE_CTX if not quick else [128, 2048, 32768]
    heads = HEADS[:3] if not quick else HEADS[:2]
    for eng in engines:
        for H, Hkv in heads:
            for B in bs:
                for ctx in ctxs:
                    if B * ctx > 2 ** 20 or (Hkv == 32 and B * ctx > 2 ** 19):
                        continue
                    pts.append(decode_point(B, ctx, H, Hkv, 128, eng))
    return pts


def host_points(quick: bool = False) -> list[Point]:
    sizes = [2 ** k for k in range(16, 31, 2 if not quick else 4)]
    return [host_point(n) for n in sizes]
