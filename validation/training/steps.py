"""Time real training steps of the Llama-style decoder (``validation.training.model``) on one GPU.

A step is ``zero_grad(set_to_none=True)``, forward with the fp32 loss, backward and a fused AdamW step
(``torch.optim.AdamW(fused=True, capturable=True)``). ``bf16``: parameters, gradients and AdamW states in
bf16. ``amp``: fp32 parameters and states, forward and backward under ``torch.autocast(dtype=bfloat16)``.
``mixed``: bf16 parameters and gradients, fp32 master weights and states, updated by
``validation.training.optim.MixedAdamW`` (one fused Triton pass per tensor). Recompute ``full`` checkpoints
every block, ``selective`` the attention core only (``validation.training.model``).

Each case is timed two ways, in one process:

* **graph** (the step roofsim is compared with): the whole step captured in one CUDA graph and replayed,
  as an efficient engine runs it (PyTorch's whole-network capture: warm-up on a side stream, then
  forward, backward and the capturable optimizer captured; autocast's weight cache is off inside the
  graph, as PyTorch requires). The median of ``graph_repeats`` replays timed with CUDA events is
  ``graph_step_time_s``; one replay under ``torch.profiler`` gives its GPU time per kernel class.
* **eager**: two warm-up steps create the optimizer states and autotune; the median of ``repeats`` steps
  timed with CUDA events is ``step_time_s``, and ``torch.cuda.max_memory_allocated`` over those steps the
  peak memory (``peak_bytes``, the number the memory model is compared with). One eager step under
  ``torch.profiler`` gives the GPU time of each kernel class (GEMMs, attention, AdamW, everything else)
  and the busy time (the union of kernel intervals; the rest of the eager step is the GPU waiting for
  Python and the dispatcher), and ``optimizer_step_s`` times ``opt.step()`` alone inside the model.

A case that does not fit is recorded as out of memory; a graph that cannot be captured or does not fit
next to the eager step's memory is recorded with its error, and the eager time stands for that case.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import torch

from simulator.models import get_model
from validation.bench import event_times
from validation.training.model import from_spec
from validation.training.optim import MixedAdamW

# A 1.5B Llama-style shape (Llama-3.2 proportions: GQA 16/8 heads of 128, SwiGLU 4x, 32K vocabulary).
LLAMA_1_5B = {
    "name": "llama-1.5b", "num_layers": 24, "hidden_size": 2048, "num_attention_heads": 16, "num_kv_heads": 8,
    "head_dim": 128, "intermediate_size": 8192, "vocab_size": 32000,
}
MODELS = {"llama-1.5b": LLAMA_1_5B, "llama-3.1-8b": "llama-3.1-8b", "llama-3.2-3b": "llama-3.2-3b",
          "qwen2.5-7b": "qwen2.5-7b"}

CASES = [  # (model, precision, recompute, micro_batch, seq_len)
    *[("llama-1.5b", p, r, b, s) for p in ("bf16", "amp") for r in ("none", "full")
      for b, s in ((1, 2048), (4, 2048), (1, 8192), (2, 4096))],
    *[("llama-3.1-8b", "bf16", r, b, s) for r in ("none", "full") for b, s in ((1, 2048), (2, 4096))],
    ("llama-3.1-8b", "bf16", "none", 1, 8192),
    ("llama-3.1-8b", "bf16", "full", 1, 8192),
    ("llama-3.1-8b", "amp", "full", 1, 2048),  # 16 bytes/param of fp32 states + the autocast cache: over 141 GB
]

# Held out from every fit in the shipped profile (``validation.training.kernels`` timed the 1.5B and 8B
# projections, their 16/8 and 32/8 head attention and their AdamW parameter lists, at 1K-16K tokens):
# Llama-3.2-3B (h 3072, 24/8 heads, tied 128K vocabulary) and Qwen2.5-7B (h 3584, 28/4 heads, SwiGLU
# 18944, QKV bias, 152K vocabulary) shapes, micro-batches 3, 8 and 16, sequences of 512 and 1024 tokens,
# the ``mixed`` precision (``validation.training.optim``) and selective recompute, none of which any
# fitted point or CASES step used. Ordered so that a run cut short keeps the widest spread; the last
# case needs more than the GPU has (fp32 states and the autocast copies of 7.6B parameters).
HELD_OUT = [
    ("qwen2.5-7b", "bf16", "none", 1, 4096),
    ("llama-3.2-3b", "bf16", "selective", 3, 2048),
    ("qwen2.5-7b", "mixed", "full", 1, 2048),
    ("llama-3.2-3b", "mixed", "none", 8, 512),
    ("qwen2.5-7b", "bf16", "selective", 8, 512),
    ("llama-3.2-3b", "bf16", "none", 1, 8192),
    ("qwen2.5-7b", "bf16", "none", 1, 512),
    ("llama-3.2-3b", "amp", "full", 2, 2048),
    ("qwen2.5-7b", "mixed", "selective", 1, 1024),
    ("llama-3.2-3b", "mixed", "selective", 1, 4096),
    ("llama-1.5b", "mixed", "selective", 16, 512),
    ("qwen2.5-7b", "bf16", "full", 3, 2048),
    ("llama-3.2-3b", "amp", "none", 1, 8192),
    ("qwen2.5-7b", "amp", "none", 1, 8192),
]
CASE_SETS = {"validation": CASES, "held-out": HELD_OUT}


def run_case(model_name: str, precision: str, recompute: str, micro_batch: int, seq_len: int, *,
             device="cuda", repeats: int = 4, warmup: int = 2, capture: bool | None = None,
             graph_repeats: int = 6) -> dict[str, Any]:
    spec = get_model(MODELS[model_name])
    case = {"model": model_name, "spec": MODELS[model_name], "precision": precision, "recompute": recompute,
            "micro_batch": micro_batch, "seq_len": seq_len}
    cuda = device == "cuda"
    capture = cuda if capture is None else capture
    torch.manual_seed(0)
    model = opt = None
    try:
        dtype = torch.float32 if precision == "amp" else torch.bfloat16
        with torch.device("meta"):
            model = from_spec(spec, checkpoint_blocks=recompute == "full",
                              checkpoint_attention=recompute == "selective")
        model = model.to_empty(device=device).to(dtype)
        if spec.tie_word_embeddings:  # to_empty gives the two names one new tensor each: tie them again
            model.lm_head.weight = model.embed.weight
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else torch.nn.init.ones_(p)
        if precision == "mixed":
            opt = MixedAdamW(model.parameters(), lr=1e-4)
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda, capturable=cuda)
        ids = torch.randint(0, spec.vocab_size, (micro_batch, seq_len), device=device)
        labels = torch.randint(0, spec.vocab_size, (micro_batch, seq_len), device=device)
        autocast = (torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16)
                    if precision == "amp" else contextlib.nullcontext())

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = model(ids, labels)
            loss.backward()
            opt.step()
            return loss

        for _ in range(warmup):
            loss = step()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            losses = []
            times = event_times(lambda: losses.append(step()), repeats)
            loss = losses[-1]
            del losses
        else:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                loss = step()
                times.append(time.perf_counter() - t0)
        finite = bool(torch.isfinite(loss))
        case.update(step_time_s=statistics.median(times), step_times_s=times, loss=float(loss.detach()), fits=True,
                    peak_bytes=float(torch.cuda.max_memory_allocated()) if cuda else None)
        if not finite:
            case["error"] = "non-finite loss"
        del loss  # the last step's autograd graph holds AccumulateGrad nodes of the default stream
        if cuda:
            case["kernels"] = profile_step(step)
            case["optimizer_step_s"] = statistics.median(event_times(opt.step, 3))
        if capture:
            case.update(graph_time(model, opt, ids, labels, precision, graph_repeats))
    except torch.OutOfMemoryError:
        case.update(fits=False, step_time_s=None, peak_bytes=None)
    finally:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        del model, opt
        if cuda:
            torch.cuda.empty_cache()
    return case


def _category(name: str) -> str:
    low = name.lower()
    if any(k in low for k in ("flash", "fmha", "sdpa", "attention")):
        return "attention"
    if "adam" in low:
        return "optimizer"
    if any(k in low for k in ("rmsnorm", "rotary", "swiglu")):
        return "fused"  # validation.training.fused's element-wise kernels
    if any(k in low for k in ("gemm", "nvjet", "cutlass", "xmma", "cublas", "sm90_", "sm80_")):
        return "gemm"
    return "other"


def profile_step(step) -> dict[str, Any]:
    """GPU time per kernel class and the busy time (union of kernel intervals) of one step, seconds."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    sums: dict[str, float] = {}
    spans = []
    for evt in prof.events():
        if evt.device_type != DeviceType.CUDA:
            continue
        start, end = evt.time_range.start, evt.time_range.end
        spans.append((start, end))
        cat = _category(evt.name)
        sums[cat] = sums.get(cat, 0.0) + (end - start) * 1e-6
    spans.sort()
    busy, cur_s, cur_e = 0.0, None, None
    for a, b in spans:
        if cur_e is None or a > cur_e:
            busy += 0.0 if cur_e is None else cur_e - cur_s
            cur_s, cur_e = a, b
        else:
            cur_e = max(cur_e, b)
    busy += 0.0 if cur_e is None else cur_e - cur_s
    return {"by_class_s": sums, "busy_s": busy * 1e-6, "kernels": len(spans),
            "span_s": (spans[-1][1] - spans[0][0]) * 1e-6 if spans else 0.0}


def graph_time(model, opt, ids, labels, precision: str, repeats: int) -> dict[str, Any]:
    """Median replay time of the whole step captured as one CUDA graph (PyTorch's whole-network capture),
    the peak memory while capturing and replaying, and one replay's kernel classes."""
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False)
                if precision == "amp" else contextlib.nullcontext())

    def body():
        with autocast:
            loss = model(ids, labels)
        loss.backward()
        opt.step()
        return loss.detach()

    graph = None
    try:
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                body()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        opt.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()  # the warm-up's cached blocks, which the graph's private pool cannot reuse
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = body()
        graph.replay()
        times = event_times(graph.replay, repeats)
        out = {"graph_step_time_s": statistics.median(times), "graph_step_times_s": times,
               "graph_loss": float(static_loss), "graph_peak_bytes": float(torch.cuda.max_memory_allocated())}
        if not torch.isfinite(static_loss):
            out["graph_error"] = "non-finite loss"
        try:
            out["graph_kernels"] = profile_step(graph.replay)
        except Exception as exc:  # noqa: BLE001 - the profiler's view is a diagnostic, the timing stands
            out["graph_kernels"] = {"error": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
        return out
    except Exception as exc:  # noqa: BLE001 - not capturable or out of memory: recorded, not fatal
        torch.cuda.synchronize()
        return {"graph_step_time_s": None, "graph_error": f"{exc.__class__.__name__}: {str(exc)[:600]}"}
    finally:
        del graph
        opt.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


def run(cases=CASES, log=print, results: list | None = None, save=None, **kw) -> list[dict[str, Any]]:
    """Run ``cases``, appending each result to ``results`` (a new list by default) and calling ``save()``
    after each."""
    out = [] if results is None else results
    for c in cases:
        t0 = time.time()
        r = run_case(*c, **kw)
        out.append(r)
        if save is not None:
            save()
        k = r.get("kernels", {})
        g = r.get("graph_kernels", {})
        log(f"{c} -> eager {r.get('step_time_s')} s (busy {k.get('busy_s')} s, "
            f"{ {n: round(v, 4) for n, v in k.get('by_class_s', {}).items()} }, adamw {r.get('optimizer_step_s')} s), "
            f"graph {r.get('graph_step_time_s')} s ({ {n: round(v, 4) for n, v in g.get('by_class_s', {}).items()} }), "
            f"peak {r.get('peak_bytes')} B, graph peak {r.get('graph_peak_bytes')} B ({time.time() - t0:.1f} s) "
            f"{r.get('graph_error', '')}")
    return out
