"""One model replica, scheduled step by step like vLLM's V1 engine.

Rules (vLLM V1 scheduler; design notes https://docs.vllm.ai/en/latest/design/ and the scheduler
config https://docs.vllm.ai/en/stable/api/vllm/config/scheduler/):

1. Iteration-level continuous batching: each step is formed anew; requests join and leave between steps.
2. Token budget: a step schedules at most ``max_num_batched_tokens`` tokens and ``max_num_seqs``
   sequences. Running requests are served first, in admission order: every decode takes one token,
   then a partially prefilled prompt takes the next chunk; waiting requests are admitted first come,
   first served while budget and sequence slots remain (chunked prefill, Sarathi-Serve arXiv 2403.02310).
   With ``chunked_prefill`` off the scheduler is prefill-first (vLLM V0 without chunked prefill):
   a step runs whole prompts only while any fit, and decodes run in steps of their own.
3. Paged KV: a request holds ceil(tokens / block_size) blocks; a step first allocates the blocks its
   tokens will write. When none are free the most recently admitted running request is preempted
   (V1's ``running.pop()``) until the allocation fits; preempted requests go to the front of the queue.
   Recompute (V1's only mode) frees the blocks and later prefills prompt + generated tokens again;
   swap (vLLM V0's ``PreemptionMode.SWAP``) copies the KV to host memory over the host link and back.
   No request is admitted in a step that preempted one.
4. Prefix caching: an admitted request's leading full blocks of a shared prefix are taken from the
   cache (``kvcache.BlockPool``); their tokens are not computed.
5. The step's time is the step model's for exactly that batch (``steptime.StepTimer``) plus any swap
   transfer; the first token of a request appears at the end of the step that completes its prompt.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from simulator.serving.config import ServeConfig
from simulator.serving.kvcache import BlockPool
from simulator.serving.ledger import Ledger
from simulator.serving.steptime import StepTimer, chunk_pairs


class Replica:
    """A replica's queue, running set, KV blocks and clock. ``role``: "both", "prefill" or "decode".

    With ``share`` (another lane of the same pipeline-parallel replica, ``simulator.serving.lanes``) the
    waiting queue and the per-request scheduling state are that lane's: any lane admits a waiting
    request, and a request's blocks live in the one pool."""

    def __init__(self, index: int, timer: StepTimer, pool: BlockPool, cfg: ServeConfig, ledger: Ledger,
                 role: str = "both", on_prefilled=None, swap_s_per_token: float = 0.0, swap_latency_s: float = 0.0,
                 share: "Replica | None" = None):
        self.index, self.timer, self.pool, self.cfg, self.ledger, self.role = index, timer, pool, cfg, ledger, role
        self.on_prefilled = on_prefilled
        self.on_complete = None  # cascade hook: returns True when the request goes on elsewhere
        self.swap_s_per_token, self.swap_latency_s = swap_s_per_token, swap_latency_s
        self.tps = timer.tokens_per_step
        self.front = self  # what the router sees and the event loop kicks (a pipeline for its lanes)
        self.running: dict[int, None] = {}
        self.prefilling: dict[int, None] = {}
        if share is None:
            self.waiting: deque[int] = deque()
            self.resume: dict[int, str] = {}  # rid -> "swap" | "kv": KV ready, no prefill needed
            self.ready_ctx: dict[int, float] = {}
            self.target: dict[int, int] = {}
            self.computed: dict[int, int] = {}
            self.blocks: dict[int, int] = {}
            self.shared: dict[int, int] = {}
        else:
            self.waiting, self.resume, self.ready_ctx = share.waiting, share.resume, share.ready_ctx
            self.target, self.computed, self.blocks, self.shared = share.target, share.computed, share.blocks, share.shared
        # decode pool: every member decodes in every decode step
        self.k = 0  # decode steps run so far
        self.pool_b = 0
        self.pool_s = 0.0  # Σ (c0 - tps·k0): the pool's context sum is pool_s + pool_b·tps·k
        self.member: dict[int, tuple[int, float, float]] = {}  # rid -> (k0, c0, generated at join)
        self.version: dict[int, int] = {}
        self.finish_heap: list[tuple[int, int, int]] = []
        self.cross_heap: list[tuple[int, int, int]] = []
        self.busy_s = 0.0
        self.batch: tuple | None = None
        self.last_busy = 0.0  # seconds the step in flight keeps the replica's GPUs busy (a lane: one stage's)
        self.preemptions = 0
        self.cached_tokens = 0
        self.pending_gap = 0.0
        self.fresh_joins = 0
        # timeline: one row per step
        self.t_start: list[float] = []
        self.t_dur: list[float] = []
        self.t_decode: list[int] = []
        self.t_chunk: list[int] = []
        self.t_blocks: list[int] = []
        self.t_waiting: list[int] = []
        self.t_running: list[int] = []
        self.t_tokens: list[float] = []  # output tokens the step produced
        self.itl_rows: list[tuple[float, int, float, int]] = []  # (duration, decodes, pending gap, fresh joiners)
        self.itl_extra: list[tuple[int, float]] = []  # (decode step, extra wait) of requests resumed from elsewhere

    # --- queue -------------------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running)

    def enqueue(self, rid: int, kv_ready: str | None = None, ctx: float = 0.0) -> None:
        """A new request (``kv_ready`` None), or one whose KV arrives from a prefill replica ("kv")."""
        led = self.ledger
        if kv_ready:
            self.resume[rid] = kv_ready
            self.ready_ctx[rid] = ctx
        else:
            self.target[rid] = led.prompt[rid]
        self.computed[rid] = 0
        self.waiting.append(rid)

    # --- decode pool -------------------------------------------------------------------------------

    def _join(self, rid: int, ctx: float, generated: float) -> None:
        k0 = self.k
        self.member[rid] = (k0, ctx, generated)
        ver = self.version.get(rid, 0) + 1
        self.version[rid] = ver
        self.pool_b += 1
        self.pool_s += ctx - self.tps * k0
        steps = math.ceil((self.ledger.output[rid] - generated) / self.tps - 1e-9)
        heapq.heappush(self.finish_heap, (k0 + steps, rid, ver))
        self._push_cross(rid, ver)

    def _push_cross(self, rid: int, ver: int) -> None:
        k0, c0, _ = self.member[rid]
        room = self.blocks[rid] * self.pool.block_size - c0
        heapq.heappush(self.cross_heap, (k0 + int(room // self.tps + 1e-9), rid, ver))

    def _leave(self, rid: int) -> tuple[float, float]:
        """Remove from the pool; (context, generated) now."""
        k0, c0, g0 = self.member.pop(rid)
        self.version[rid] += 1
        self.pool_b -= 1
        self.pool_s -= c0 - self.tps * k0
        done = self.tps * (self.k - k0)
        return c0 + done, min(g0 + done, float(self.ledger.output[rid]))

    # --- blocks and preemption ---------------------------------------------------------------------

    def _free(self, rid: int) -> None:
        self.pool.release(self.blocks.pop(rid, 0) - self.shared.get(rid, 0))
        if self.shared.pop(rid, 0):
            self.pool.release_prefix(self.ledger.group[rid])

    def release(self, rid: int) -> None:
        """Drop a request whose KV has left this replica (disaggregation)."""
        self._free(rid)

    def _preempt(self, now: float) -> int:
        """Preempt the most recently admitted running request; its id."""
        rid = next(reversed(self.running))
        del self.running[rid]
        self.preempted = True
        led = self.ledger
        if rid in self.member:
            ctx, generated = self._leave(rid)
            led.generated[rid] = generated
            led.last_token[rid] = now
            if self.cfg.preemption == "swap":
                self.extra_s += self.swap_s_per_token * ctx + self.swap_latency_s
                self.resume[rid] = "swap"
                self.ready_ctx[rid] = ctx
            else:
                self.target[rid] = led.prompt[rid] + int(round(generated))
        else:
            self.prefilling.pop(rid, None)
        self._free(rid)
        self.computed[rid] = 0
        self.waiting.appendleft(rid)
        led.preemptions[rid] += 1
        self.preemptions += 1
        return rid

    def _allocate(self, rid: int, n: int, now: float) -> bool:
        """Allocate ``n`` blocks for running request ``rid``, preempting others; False if ``rid`` itself went."""
        while not self.pool.allocate(n):
            if self._preempt(now) == rid:
                return False
        self.blocks[rid] = self.blocks.get(rid, 0) + n
        return True

    # --- a step ------------------------------------------------------------------------------------

    def kick(self, now: float, push) -> None:
        """Start the next step at ``now`` if none is in flight; ``push(end, "step", self)`` schedules its end."""
        if self.batch is None:
            end = self.start_step(now)
            if end is not None:
                push(end, "step", self)

    def start_step(self, now: float) -> float | None:
        """Form and time the next step from ``now``; its end time, or None when there is nothing to run."""
        self.preempted = False
        self.extra_s = 0.0
        budget = self.cfg.max_num_batched_tokens
        chunks: list[tuple[int, int, int]] = []
        prefill_first = not self.cfg.chunked_prefill
        if prefill_first:
            budget = self._admit(now, budget, chunks, whole=True)
        decode = not chunks
        if decode and self.pool_b:
            self._crossings(now)
        if not prefill_first:
            budget -= self.pool_b
            budget = self._continue_prefills(now, budget, chunks)
            if not self.preempted:
                budget = self._admit(now, budget, chunks, whole=False)
        elif decode and not self.preempted:
            self._admit(now, budget - self.pool_b, chunks, whole=True, resumes_only=True)
        b = self.pool_b if decode else 0
        if not b and not chunks:
            return None
        context = self.pool_s + self.pool_b * self.tps * self.k if b else 0.0
        n = sum(c[1] for c in chunks)
        pairs = sum(chunk_pairs(c[1], c[2]) for c in chunks)
        dur = self.timer.seconds(b, context, n, pairs, len(chunks)) + self.extra_s
        self.batch = (now, dur, b, chunks)
        self.last_busy = dur
        return now + dur

    def _crossings(self, now: float) -> None:
        """Blocks for the decodes whose next token starts a new block; preempt when they run out."""
        heap, version, member = self.cross_heap, self.version, self.member
        due = []
        while heap and heap[0][0] <= self.k:
            _, rid, ver = heapq.heappop(heap)
            if version.get(rid) == ver and rid in member:
                due.append((rid, ver))
        if not due:
            return
        if self.pool.allocate(len(due)):  # the common case: enough free blocks for all
            for rid, ver in due:
                self.blocks[rid] += 1
                self._push_cross(rid, ver)
            return
        for rid, ver in due:
            if rid in member and self._allocate(rid, 1, now) and rid in member:
                self._push_cross(rid, ver)

    def _continue_prefills(self, now: float, budget: int, chunks: list) -> int:
        for rid in list(self.prefilling):
            if budget <= 0:
                break
            if rid not in self.prefilling:
                continue  # preempted by an earlier allocation in this loop
            done = self.computed[rid]
            n = min(self.target[rid] - done, budget)
            need = self.pool.blocks_for(done + n) - self.blocks[rid]
            if self._allocate(rid, need, now):
                chunks.append((rid, n, done))
                budget -= n
        return budget

    def _admit(self, now: float, budget: int, chunks: list, whole: bool, resumes_only: bool = False) -> int:
        led, pool, cfg = self.ledger, self.pool, self.cfg
        while self.waiting and budget > 0 and len(self.running) < cfg.max_num_seqs:
            rid = self.waiting[0]
            if rid in self.resume:
                ctx = self.ready_ctx[rid]
                need = pool.blocks_for(ctx + self.tps)
                if not pool.allocate(need):
                    break
                self.waiting.popleft()
                self.blocks[rid] = need
                kind = self.resume.pop(rid)
                if kind == "swap":
                    self.extra_s += self.swap_s_per_token * ctx + self.swap_latency_s
                self.running[rid] = None
                self.itl_extra.append((self.k, now - led.last_token[rid]))
                if led.first_sched[rid] < 0:
                    led.first_sched[rid] = now
                self._join(rid, ctx, led.generated[rid])
                budget -= 1
                continue
            if resumes_only:
                break
            target = self.target[rid]
            full = min(led.prefix[rid] // pool.block_size, (target - 1) // pool.block_size) if pool.caching else 0
            hit, ok = pool.acquire_prefix(led.group[rid], full) if full > 0 else (0, True)
            if not ok:
                break
            done = hit * pool.block_size
            n = target - done
            if whole and n > budget:
                self._undo_prefix(rid, full)
                break
            n = min(n, budget)
            need = max(pool.blocks_for(done + n) - full, 0)
            if not pool.allocate(need):
                self._undo_prefix(rid, full)
                break
            self.waiting.popleft()
            self.shared[rid] = full
            self.blocks[rid] = need + self.shared[rid]
            self.computed[rid] = done
            self.cached_tokens += done
            if led.first_sched[rid] < 0:
                led.first_sched[rid] = now
            self.running[rid] = None
            self.prefilling[rid] = None
            chunks.append((rid, n, done))
            budget -= n
        return budget

    def _undo_prefix(self, rid: int, full: int) -> None:
        if full:
            self.pool.release_prefix(self.ledger.group[rid])

    def finish_step(self) -> None:
        """Commit the step formed by ``start_step``: tokens out, requests done, KV handed on."""
        now, dur, b, chunks = self.batch
        end = now + dur
        led = self.ledger
        self.busy_s += self.last_busy
        self.t_start.append(now)
        self.t_dur.append(dur)
        self.t_decode.append(b)
        self.t_chunk.append(sum(c[1] for c in chunks))
        self.t_blocks.append(self.pool.used)
        self.t_waiting.append(len(self.waiting))
        self.t_running.append(len(self.running))
        tokens = b * self.tps
        if b:
            self.itl_rows.append((dur, b, self.pending_gap, self.fresh_joins))
            self.pending_gap, self.fresh_joins = 0.0, 0
            self.k += 1
            heap = self.finish_heap
            while heap and heap[0][0] <= self.k:
                _, rid, ver = heapq.heappop(heap)
                if self.version.get(rid) != ver or rid not in self.member:
                    continue
                k0, _, g0 = self.member[rid]
                tokens -= max(0.0, g0 + self.tps * (self.k - k0) - led.output[rid])  # a last step's unused share
                self._leave(rid)
                self._complete(rid, end)
        elif self.pool_b:
            self.pending_gap += dur
        for rid, n, _ in chunks:
            if rid not in self.prefilling:
                continue
            self.computed[rid] += n
            if self.computed[rid] < self.target[rid]:
                continue
            del self.prefilling[rid]
            if led.first_token[rid] < 0:
                led.first_token[rid] = end
            else:
                led.resume_gaps.append(end - led.last_token[rid])
            led.generated[rid] += 1
            led.last_token[rid] = end
            tokens += 1
            if led.generated[rid] >= led.output[rid]:
                self._complete(rid, end)
            elif self.role == "prefill":
                del self.running[rid]
                self.on_prefilled(self, rid, end)
            else:
                self.fresh_joins += 1 if self.pool_b and not b else 0
                self._join(rid, float(self.target[rid]), led.generated[rid])
        self.t_tokens.append(tokens)
        self.batch = None

    def _complete(self, rid: int, end: float) -> None:
        led = self.ledger
        self.running.pop(rid, None)
        self._free(rid)
        for table in (self.target, self.computed, self.version):
            table.pop(rid, None)
        led.finish[rid] = end
        led.generated[rid] = led.output[rid]
        led.replica[rid] = self.index
        led.completed += 1
        if self.on_complete is not None and self.on_complete(self, rid, end):
            led.completed -= 1  # escalated: it completes again on another replica
