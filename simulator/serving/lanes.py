"""A pipeline-parallel replica: pp batches in flight through its pp stages.

vLLM V1 runs a pp-stage replica with a batch queue of pp entries (``EngineCore.step_with_batch_queue``
in vllm/v1/engine/core.py, sized by the executor's ``max_concurrent_batches``, which is the pipeline
size): while a batch is in the pipeline the scheduler forms the next one from the requests that are not
in flight, each batch under its own ``max_num_seqs`` and ``max_num_batched_tokens``, and a request's next
token is scheduled only after its batch has left the last stage. A request therefore stays with the
batch slot it first ran in; roofsim calls these slots lanes. A ``Pipeline`` holds pp lanes (each a
``Replica``) that share one waiting queue, one paged KV pool and the per-request state, so any lane
admits a waiting request.

Timing. A lane's batch is priced by the step model as one micro-batch through all stages (the scenario
with ``parallelism.microbatches`` 1: ``simulator.parallel.pipeline``), a trip of p stage slots, each slot
a stage's compute plus its send of activations to the next. The batch enters stage 1 when that stage is
free and each later stage when both the batch has left the previous one and the stage is free:

    leave_s = max(leave_{s-1}, free_s) + trip / p,   free_s <- leave_s,

so up to p batches are in flight, the replica serves p lanes' worth of tokens per trip when the pipe is
full, and each token takes the whole trip (a sequence's TPOT is at least one batch's latency through all
stages). Each stage is busy trip / p per batch (the energy account). Balanced stages are assumed (the
step model's slowest stage, ``pipeline.stage_s``, times every stage); a pp overlap policy that hides the
send under the next micro-batch is priced as the serial slot here. With every lane ready the recurrence
is a proportionate flow shop; the fast path's model of it is ``simulator.serving.pipeline_queue``.
"""

from __future__ import annotations

from simulator.serving.replica import Replica


class Pipeline:
    """The lanes of one pipeline-parallel replica, as the router and the event loop see it."""

    def __init__(self, lanes: list[Replica]):
        self.lanes = lanes
        first = lanes[0]
        self.index, self.pool, self.waiting, self.timer = first.index, first.pool, first.waiting, first.timer
        self.stages = int(first.timer.dep.pp)
        self.free = [0.0] * self.stages  # when each stage next takes a batch
        self.pending = -1.0  # time of the queued wake-up for stage 1
        self.front = self
        for lane in lanes:
            lane.front = self

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + sum(len(lane.running) for lane in self.lanes)

    @property
    def cached_tokens(self) -> int:
        return sum(lane.cached_tokens for lane in self.lanes)

    def enqueue(self, rid: int, kv_ready: str | None = None, ctx: float = 0.0) -> None:
        self.lanes[0].enqueue(rid, kv_ready, ctx)

    def release(self, rid: int) -> None:
        self.lanes[0].release(rid)

    def kick(self, now: float, push) -> None:
        """Send the next batch into stage 1 if it is free and an idle lane has work; else wake up when it frees."""
        if self.free[0] > now:
            if self.pending != self.free[0]:
                self.pending = self.free[0]
                push(self.free[0], "stage", self)
            return
        for lane in self.lanes:
            if lane.batch is not None:
                continue
            end = lane.start_step(now)
            if end is None:
                continue
            slot = (end - now) / self.stages
            t = now
            for s in range(self.stages):
                t = max(t, self.free[s]) + slot
                self.free[s] = t
            lane.batch = (now, t - now) + lane.batch[2:]
            lane.last_busy = slot
            push(t, "step", lane)
            self.pending = self.free[0]
            push(self.free[0], "stage", self)
            return


def lanes_of(rep) -> list[Replica]:
    """The scheduling lanes of a replica the router sees (itself unless it is a ``Pipeline``)."""
    return rep.lanes if isinstance(rep, Pipeline) else [rep]


__all__ = ["Pipeline", "lanes_of"]
