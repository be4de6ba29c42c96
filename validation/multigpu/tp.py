"""Tensor-parallel decoder steps (TP 2, 4, 8) of Llama-3.1-8B and Llama-3.1-70B, random bf16 weights.

Each rank runs ``validation.multigpu.shard.TPDecoder``: the single-GPU validation decoder's kernels on
its shard, with the two all-reduces per layer (after o_proj and down_proj), the embedding's all-reduce
and the logits' all-gather issued by NCCL inside the step. A step is captured in one CUDA graph with
its collectives (as vLLM / SGLang capture decode) and replayed; prefill runs the same way. Each case
is a ``roofsim validate`` end-to-end row with ``parallelism: {tp: N}``, so that
``validation.validate.predict_row`` predicts it like a single-GPU case.

Check (every run, before timing): on a 2-layer toy model the TP logits equal those of the whole
model run on one rank, for a prefill and a decode step.
"""

from __future__ import annotations

from typing import Any

from validation.multigpu import launch

NAME = "tp"
MODELS = ("llama-3.1-8b", "llama-3.1-70b")
PREFILL_CASES = [(1, 512), (1, 2048), (1, 8192), (4, 1024)]
DECODE_CASES = [(1, 1024), (8, 2048), (32, 2048), (64, 1024), (128, 512)]
# The checks run in float32, which the fused SDPA backends (flash, cuDNN) do not take: torch's choice.
CHECK_ENGINES = {"attention_prefill": "sdpa", "attention_decode": "sdpa"}
TINY = {"name": "toy", "family": "llama", "num_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
        "num_kv_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 256}


def model_spec(name: str) -> dict[str, Any]:
    """A preset's spec as a dict (``simulator/models/presets``, each with its config.json source)."""
    from simulator.models import get_model

    return get_model(name).model_dump(mode="json")


def engines(ctx: launch.Ctx) -> dict[str, str]:
    """Attention engines: those of the GPU's measured profile (as ``roofsim validate``); on a CPU torch's
    SDPA (the Triton interpreter is slow, and the tests check the sharding, not the kernels)."""
    if not ctx.cuda:
        return {"attention_prefill": "sdpa", "attention_decode": "sdpa"}
    from hwmodels import load_profile
    from validation import env as envmod

    import torch

    name = envmod.catalog_name(torch.cuda.get_device_name(ctx.device))
    eng = load_profile("auto", gpu=name).environment.get("engines", {}) if name else {}
    return {"attention_prefill": eng.get("attention_prefill", "sdpa-flash"),
            "attention_decode": eng.get("attention_decode", "triton")}


def check(ctx: launch.Ctx, tp: int) -> float:
    """Max relative error of the TP logits against the whole toy model's, prefill and decode (float32)."""
    import torch

    from validation.decoder import Arch, Decoder, StepRunner
    from validation.multigpu.shard import TPDecoder, copy_step

    full = Decoder(Arch.from_spec(TINY), device=ctx.device, dtype=torch.float32, seed=0, max_positions=64,
                   **CHECK_ENGINES)
    part = TPDecoder.from_full(full, tp, ctx.rank, ctx.group(tp))
    worst = 0.0
    for phase, batch, length in (("prefill", 2, 4), ("decode", 3, 6)):
        ref_r = StepRunner(full, phase, batch, length, seed=3)
        ref = full.forward(ref_r).clone()
        r = StepRunner(part, phase, batch, length)
        a = part.arch
        copy_step(ref_r, r, kv_heads=slice(ctx.rank * a.kv_heads, (ctx.rank + 1) * a.kv_heads))
        got = part.forward(r)
        worst = max(worst, float(((got - ref).norm() / ref.norm()).item()))
    return ctx.reduce_max([worst], tp)[0]


def run(ctx: launch.Ctx, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    from validation.decoder import Arch
    from validation.multigpu.shard import TPDecoder, tp_runner

    eng = engines(ctx)
    degrees = ctx.degrees(tuple(opts.get("degrees") or launch.DEGREES))
    cases, checks = [], {}
    models = [("toy", TINY)] if ctx.tiny else [(m, model_spec(m)) for m in launch.chosen(opts, MODELS)]
    prefill = [(1, 4)] if ctx.tiny else PREFILL_CASES
    decode = [(2, 6)] if ctx.tiny else DECODE_CASES
    repeats = 10
    for tp in degrees:
        ctx.group(tp)
        if ctx.rank < tp:
            checks[str(tp)] = check(ctx, tp)
        ctx.barrier()
    for name, spec in models:
        if opts.get("layers"):
            spec = {**spec, "num_layers": min(int(opts["layers"]), spec["num_layers"])}
        arch = Arch.from_spec(spec)
        max_pos = max(s for _, s in prefill + decode) + 2
        for tp in degrees:
            if ctx.rank < tp:
                dec = TPDecoder.random(arch, tp, ctx.rank, ctx.group(tp), device=ctx.device,
                                       max_positions=max_pos, **eng)
                for phase, batch, length in [("prefill", b, s) for b, s in prefill] + [("decode", b, c) for b, c in decode]:
                    row = {"model": name, "type": "dense GQA", "layers": arch.layers, "phase": phase, "batch": batch,
                           "length": length, "parallelism": {"tp": tp}, "spec": spec, "engines": eng}
                    r, err = None, None
                    try:
                        r = tp_runner(dec, phase, batch, length)
                    except torch.OutOfMemoryError as exc:
                        err = f"OutOfMemoryError: {str(exc).splitlines()[0][:120]}"
                    if ctx.all_agree(r is not None, tp):
                        graph = launch.capture(ctx, r.run, tp)
                        t = launch.time_samples(ctx, graph.replay if graph is not None else r.run, tp, repeats)
                        finite = bool(torch.isfinite(r.logits.float()).all().item())
                        row.update({"time_s": t["median_s"], "p90_s": t["p90_s"], "repeats": t["repeats"],
                                    "method": "graph" if graph is not None else "eager", "finite": finite})
                        del graph
                    else:
                        row["error"] = err or "out of memory on another rank"
                    del r
                    cases.append(row)
                    if ctx.cuda:
                        torch.cuda.empty_cache()
                del dec
                if ctx.cuda:
                    torch.cuda.empty_cache()
            ctx.barrier()
    return {"cases": cases, "checks": checks}
