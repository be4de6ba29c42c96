"""Pipeline-parallel decoder steps (PP 2 and 4) with micro-batches in flight, random bf16 weights.

Rank s of p holds layers [s L/p, (s+1) L/p) of the validation decoder (``shard.stage_slice`` or fresh
weights of that shape); rank 0 also embeds, rank p-1 also runs the final norm and the LM head. The
batch is split into m micro-batches; for each, a stage receives the activations (T_j x hidden, bf16)
from the previous stage, replays its CUDA graph of the stage's kernels and sends the result on
(``isend``, so a stage starts micro-batch j+1 while j travels): the GPipe forward schedule (Huang et
al. 2019, arXiv 1811.06965) that inference engines run. One sample is one whole round, the step of the
full batch through every stage; with m micro-batches the ideal is (m + p - 1) stage-steps of one
micro-batch instead of p stage-steps of the whole batch.

Check: on the toy model the last stage's logits of each micro-batch equal the whole model's.
"""

from __future__ import annotations

from typing import Any

from validation.multigpu import launch

NAME = "pp"
MODELS = ("llama-3.1-8b", "llama-3.1-70b")
# (phase, batch, prompt or context length, micro-batches per stage count p: m = factor * p)
CASES = [("decode", 64, 1024, 1), ("decode", 64, 1024, 2), ("decode", 256, 1024, 1), ("decode", 256, 1024, 2),
         ("prefill", 8, 1024, 1), ("prefill", 8, 1024, 2)]
DEGREES = (2, 4)


class Pipeline:
    """This rank's stage: its decoder, one step runner and activation buffer per micro-batch."""

    def __init__(self, ctx: launch.Ctx, p: int, dec, runners: list):
        import torch

        self.ctx, self.p, self.dec, self.runners = ctx, p, dec, runners
        self.first, self.last = ctx.rank == 0, ctx.rank == p - 1
        self.group = ctx.group(p)
        self.x = [torch.zeros((r.batch * r.new, dec.arch.hidden), device=ctx.device, dtype=dec.dtype) for r in runners]
        self.graphs: list = [None] * len(runners)

    def compute(self, j: int) -> None:
        r, x = self.runners[j], self.x[j]
        if self.first:
            x.copy_(self.dec.embed_tokens(r))
        self.dec.run_layers(r, x)
        if self.last:
            self.dec.head(r, x)

    def capture(self) -> None:
        self.graphs = [launch.capture(self.ctx, lambda j=j: self.compute(j), self.p) for j in range(len(self.runners))]

    def round(self) -> None:
        """Every micro-batch through this stage, receiving from the previous, sending to the next."""
        import torch.distributed as dist

        sends = []
        for j in range(len(self.runners)):
            if not self.first:
                dist.recv(self.x[j], src=self.ctx.rank - 1, group=self.group)
            if self.graphs[j] is not None:
                self.graphs[j].replay()
            else:
                self.compute(j)
            if not self.last:
                sends.append(dist.isend(self.x[j], dst=self.ctx.rank + 1, group=self.group))
        for w in sends:
            w.wait()


def check(ctx: launch.Ctx, p: int) -> float:
    """Max relative error of the pipeline's logits against the whole toy model's (float32, m = 2)."""
    import torch

    from validation.decoder import Arch, Decoder, StepRunner
    from validation.multigpu.shard import copy_step, stage_slice
    from validation.multigpu.tp import CHECK_ENGINES, TINY

    spec = {**TINY, "num_layers": 2 * p}
    full = Decoder(Arch.from_spec(spec), device=ctx.device, dtype=torch.float32, seed=0, max_positions=64,
                   **CHECK_ENGINES)
    worst = 0.0
    for phase, batch, length in (("prefill", 4, 4), ("decode", 4, 6)):
        ref_r = StepRunner(full, phase, batch, length, seed=3)
        ref = full.forward(ref_r).clone()
        per = full.arch.layers // p
        layers = slice(ctx.rank * per, (ctx.rank + 1) * per)
        stage = stage_slice(full, layers.start, layers.stop)
        runners = [StepRunner(stage, phase, batch // 2, length) for _ in range(2)]
        for j, r in enumerate(runners):
            copy_step(ref_r, r, layers=layers, batch=slice(j * batch // 2, (j + 1) * batch // 2))
        pipe = Pipeline(ctx, p, stage, runners)
        pipe.round()
        if pipe.last:
            got = torch.cat([r.logits for r in runners])
            worst = max(worst, float(((got - ref).norm() / ref.norm()).item()))
    return ctx.reduce_max([worst], p)[0]


def run(ctx: launch.Ctx, opts: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    import torch

    from validation.decoder import Arch, Decoder, StepRunner
    from validation.multigpu.tp import TINY, engines, model_spec

    eng = engines(ctx)
    degrees = ctx.degrees(tuple(opts.get("degrees") or DEGREES))
    cases, checks = [], {}
    for p in degrees:
        ctx.group(p)
        if ctx.rank < p:
            checks[str(p)] = check(ctx, p)
        ctx.barrier()
    models = [("toy", {**TINY, "num_layers": 4})] if ctx.tiny else [(m, model_spec(m)) for m in launch.chosen(opts, MODELS)]
    plan = [("decode", 4, 6, 1), ("prefill", 2, 4, 1)] if ctx.tiny else CASES
    for name, spec in models:
        if opts.get("layers"):
            spec = {**spec, "num_layers": min(int(opts["layers"]), spec["num_layers"])}
        arch = Arch.from_spec(spec)
        max_pos = max(c[2] for c in plan) + 2
        for p in degrees:
            if ctx.rank < p:
                per = arch.layers // p
                stage = Decoder(dataclasses.replace(arch, layers=per), device=ctx.device, seed=ctx.rank,
                                max_positions=max_pos, **eng)
                for phase, batch, length, factor in plan:
                    m = min(factor * p, batch)
                    row = {"model": name, "type": "dense GQA", "layers": arch.layers, "phase": phase, "batch": batch,
                           "length": length, "parallelism": {"pp": p, "tp": 1, "microbatches": m}, "spec": spec,
                           "engines": eng, "layers_per_stage": per}
                    runners, err = None, None
                    try:
                        runners = [StepRunner(stage, phase, batch // m, length, seed=1 + j) for j in range(m)]
                    except torch.OutOfMemoryError as exc:
                        err = f"OutOfMemoryError: {str(exc).splitlines()[0][:120]}"
                    if ctx.all_agree(runners is not None, p):
                        pipe = Pipeline(ctx, p, stage, runners)
                        pipe.capture()
                        t = launch.time_samples(ctx, pipe.round, p, 10)
                        row.update({"time_s": t["median_s"], "p90_s": t["p90_s"], "repeats": t["repeats"],
                                    "method": "graph" if all(g is not None for g in pipe.graphs) else "eager"})
                        del pipe
                    else:
                        row["error"] = err or "out of memory on another rank"
                    del runners
                    cases.append(row)
                    if ctx.cuda:
                        torch.cuda.empty_cache()
                del stage
            ctx.barrier()
    return {"cases": cases, "checks": checks}
