"""Many replicas on one clock: the router, prefill/decode disaggregation and model cascades.

The event loop takes the earliest of the next arrival and the next replica event (a step ending, a
KV transfer landing, a prefill replica freeing a transferred cache). Ties go to the arrival, so a
request that arrives as a step ends is seen by the next step.

Routers (request placement over replicas of one role): ``round_robin``; ``least_outstanding`` (fewest
waiting + running requests, vLLM's data-parallel load balancing and llm-d's default); ``prefix_affinity``
(SGLang's cache-aware router: the least loaded replica that holds the request's prefix blocks, else the
least loaded one).

Disaggregation (Splitwise, Patel et al. 2024, arXiv 2311.18677; DistServe, Zhong et al. 2024, arXiv
2401.09670): prefill replicas compute prompts and the first token, then send the request's KV cache to
the least loaded decode replica, which admits it once the whole cache has landed. The link is NVLink
when both replicas fit one node of one GPU type (8 GPUs), else the scale-out network (``data/network.yaml``;
``kv_link`` forces either). Decode replicas may differ in GPU type or layout (``decode_overrides``).
Each prefill replica
has one outbound link, first come first served; a transfer of B bytes per GPU takes B / bandwidth +
latency (each tensor-parallel rank sends its own shard over its own link). ``whole``: it starts when
the prefill ends. ``layerwise`` (Splitwise §4.3): layer i's KV is sent while layer i+1 computes, so the
link starts with the prefill and the transfer ends at max(link start + B / bw, prefill end + B / (L·bw)).
The prefill replica holds the blocks until the transfer ends.

Cascades (HybridServe, arXiv 2505.12566): requests go to the small model's replicas; when one
completes, a seeded draw escalates it with probability ``escalate_fraction`` to the large model, which
serves it again from the start; its latency metrics run from arrival to the large model's answer.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hwmodels import Link, get_accelerator
from hwmodels.errors import InputError
from simulator.api import as_scenario
from simulator.models import get_model
from simulator.scenario import Scenario
from simulator.serving.config import ServeConfig
from simulator.serving.kvcache import BlockPool, KVBudget, kv_budget
from simulator.serving.lanes import Pipeline, lanes_of
from simulator.serving.ledger import Ledger
from simulator.serving.replica import Replica
from simulator.serving.steptime import StepTimer

NETWORK = Link(**yaml.safe_load((Path(__file__).parent / "data" / "network.yaml").read_text()))
NODE_GPUS = 8  # GPUs on one NVLink domain when the scenario names no node (DGX/HGX H100, H200, B200)


@dataclass
class Group:
    """Replicas of one scenario (one model, GPU and layout)."""

    name: str
    scenario: Scenario
    timer: StepTimer
    budget: KVBudget
    replicas: list  # Replica, or Pipeline (its lanes) with pp > 1
    gpus_per_replica: int
    tdp_w: float

    def lanes(self) -> list[Replica]:
        return [lane for rep in self.replicas for lane in lanes_of(rep)]


def replica_scenario(scenario: Scenario, count: int | None = None) -> tuple[Scenario, int]:
    """(the scenario of one replica, number of replicas): ``num_gpus`` split into replicas of tp x pp x cp
    GPUs (``count`` replicas when tp is not given)."""
    par = scenario.parallelism
    tp = par.tp or (max(1, scenario.hardware.num_gpus // (count * par.pp * par.cp)) if count else scenario.tp)
    per = tp * par.pp * par.cp
    replicas = scenario.hardware.num_gpus // per
    if replicas < 1:
        raise InputError("hardware.num_gpus", f"{scenario.hardware.num_gpus} GPUs cannot hold tp x pp x cp = {per}")
    one = scenario.with_overrides(**{"hardware.num_gpus": per, "parallelism.tp": tp})
    return one, replicas


class Simulation:
    def __init__(self, scenario, requests: np.ndarray, cfg: ServeConfig, seed: int = 0, progress=None,
                 timers=StepTimer):
        sc = as_scenario(scenario)
        self.cfg = cfg
        self.timers = timers  # one replica's scenario -> its StepTimer (a caller may share prebuilt ones)
        self.ledger = Ledger(requests)
        self.progress = progress
        self.rng = np.random.default_rng([seed, 0x5E7E])
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = 0
        self.link_free: dict[int, float] = {}
        self.built: list[Group] = []
        self.turn: dict[str, int] = {}  # round-robin position per group
        split = cfg.split
        if split:
            one, count = replica_scenario(sc, split[0] + split[1])
            if count < split[0] + split[1] and not cfg.decode_overrides:
                raise InputError("serve.disaggregate", f"{cfg.disaggregate} needs {split[0] + split[1]} replicas of "
                                 f"tp x pp = {one.hardware.num_gpus} GPUs; the scenario has {count}")
            other = one
            if cfg.decode_overrides:
                other = one.with_overrides(**cfg.decode_overrides)
                if "hardware.num_gpus" not in cfg.decode_overrides:  # a decode replica of its own tp x pp x cp
                    par = other.parallelism
                    other = other.with_overrides(**{"hardware.num_gpus": other.tp * par.pp * par.cp})
                other, _ = replica_scenario(other)
            self.prefill = self._group("prefill", one, split[0], "prefill")
            self.decode = self._group("decode", other, split[1], "decode")
            if get_model(other.model).name != get_model(one.model).name:
                raise InputError("serve.decode_overrides", "prefill and decode replicas must serve the same model")
            self.front, self.groups = self.prefill, [self.prefill, self.decode]
            total = split[0] * one.hardware.num_gpus + split[1] * other.hardware.num_gpus
            mixed = get_accelerator(one.hardware.gpu).name != get_accelerator(other.hardware.gpu).name
            across = total > NODE_GPUS or mixed  # a node holds one GPU type
            self.kv_link = NETWORK if cfg.kv_link == "network" or (cfg.kv_link == "auto" and across) \
                else get_accelerator(one.hardware.gpu).intra_node_link
        else:
            one, count = replica_scenario(sc)
            self.main = self._group("main", one, count, "both")
            self.front, self.groups = self.main, [self.main]
            if cfg.cascade is not None:
                small = sc.with_overrides(**{"model": cfg.cascade.small_model, "hardware.num_gpus": 1,
                                             "parallelism.tp": 1, "parallelism.pp": 1})
                self.small = self._group("small", small, cfg.cascade.small_gpus, "both")
                for rep in self.small.lanes():
                    rep.on_complete = self._escalate
                self.front, self.groups = self.small, [self.small, self.main]
        self.max_model_len = cfg.max_model_len or get_model(one.model).max_position_embeddings or (1 << 40)

    def _group(self, name: str, one: Scenario, count: int, role: str) -> Group:
        """``count`` replicas of ``one``; with pp > 1 each is a ``Pipeline`` of pp lanes whose batches are
        priced as one micro-batch through all stages (``simulator.serving.lanes``)."""
        cfg = self.cfg
        pp = one.parallelism.pp
        timer = self.timers(one.with_overrides(**{"parallelism.microbatches": 1}) if pp > 1 else one)
        budget = kv_budget(timer.scenario, cfg.block_size, cfg.max_num_seqs, cfg.max_num_batched_tokens)
        host = get_accelerator(one.hardware.gpu).host_link
        first = sum(len(g.replicas) for g in self.built)
        reps = []
        for i in range(count):
            pool = BlockPool(budget.blocks, cfg.block_size, cfg.prefix_caching)
            lanes: list[Replica] = []
            for _ in range(pp):
                lanes.append(Replica(first + i, timer, pool, cfg, self.ledger, role, self._prefilled,
                                     budget.kv_bytes_per_token / host.bandwidth_bytes_per_s, host.latency_s,
                                     share=lanes[0] if lanes else None))
            reps.append(Pipeline(lanes) if pp > 1 else lanes[0])
        group = Group(name, one, timer, budget, reps, one.hardware.num_gpus, get_accelerator(one.hardware.gpu).tdp_w)
        self.built.append(group)
        return group

    # --- routing -----------------------------------------------------------------------------------

    def _route(self, group: Group, rid: int) -> Replica:
        reps = group.replicas
        if len(reps) == 1:
            return reps[0]
        router = self.cfg.router
        if router == "round_robin":
            i = self.turn.get(group.name, 0)
            self.turn[group.name] = i + 1
            return reps[i % len(reps)]
        if router == "prefix_affinity" and self.ledger.group[rid] >= 0:
            g = self.ledger.group[rid]
            holders = [r for r in reps if r.pool.resident.get(g, 0) > 0]
            if holders:
                return min(holders, key=lambda r: (r.outstanding, r.index))
        return min(reps, key=lambda r: (r.outstanding, r.index))

    # --- events ------------------------------------------------------------------------------------

    def _push(self, t: float, kind: str, payload) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, payload))

    def _kick(self, rep, now: float) -> None:
        rep.front.kick(now, self._push)

    def _prefilled(self, rep: Replica, rid: int, end: float) -> None:
        """A prefill replica finished ``rid``'s prompt: send its KV to a decode replica."""
        led, link = self.ledger, self.kv_link
        tokens = led.prompt[rid]
        nbytes = tokens * self.prefill.budget.kv_bytes_per_token
        duration = nbytes / link.bandwidth_bytes_per_s + link.latency_s
        free = self.link_free.get(rep.index, 0.0)
        if self.cfg.kv_transfer == "layerwise":
            start = max(free, led.first_sched[rid])
            layers = get_model(self.prefill.scenario.model).num_layers
            done = max(start + duration, end + duration / layers)
        else:
            start = max(free, end)
            done = start + duration
        self.link_free[rep.index] = done
        led.kv_transfer[rid] = done - start
        led.kv_exposed[rid] = done - end
        self._push(done, "kv", (rep, rid))

    def _escalate(self, rep: Replica, rid: int, end: float) -> bool:
        """Cascade: True when ``rid`` goes on to the large model (its small-model answer is discarded)."""
        if self.ledger.escalated[rid] or self.rng.random() >= self.cfg.cascade.escalate_fraction:
            return False
        led = self.ledger
        led.escalated[rid] = True
        led.first_token[rid] = led.finish[rid] = -1.0
        led.generated[rid] = 0.0
        target = self._route(self.main, rid)
        target.enqueue(rid)
        self._kick(target, end)
        return True

    def _too_big(self) -> np.ndarray:
        """Requests no replica can ever hold (vectorised; their reasons are written on arrival)."""
        led, cfg = self.ledger, self.cfg
        total = np.asarray(led.prompt) + np.asarray(led.output)
        bad = total > self.max_model_len
        for group in self.groups:
            bad |= -(-total // cfg.block_size) > group.budget.blocks
        if not cfg.chunked_prefill:
            bad |= total > cfg.max_num_batched_tokens
        return bad

    def _reason(self, rid: int) -> str:
        led, cfg = self.ledger, self.cfg
        total = led.prompt[rid] + led.output[rid]
        if total > self.max_model_len:
            return f"prompt + output exceeds max_model_len {self.max_model_len}"
        for group in self.groups:
            if -(-total // cfg.block_size) > group.budget.blocks:
                return f"needs more KV blocks than a {group.name} replica holds ({group.budget.blocks})"
        return f"prompt + output exceeds max_num_batched_tokens {cfg.max_num_batched_tokens} without chunked prefill"

    def run(self) -> None:
        led = self.ledger
        arrivals = led.arrival
        n, i = led.n, 0
        too_big = self._too_big().tolist()
        events = 0
        while True:
            t_arr = arrivals[i] if i < n else math.inf
            t_ev = self.events[0][0] if self.events else math.inf
            if t_arr == math.inf and t_ev == math.inf:
                break
            if t_arr <= t_ev:
                if too_big[i]:
                    led.reject(i, self._reason(i))
                else:
                    rep = self._route(self.front, i)
                    rep.enqueue(i)
                    self._kick(rep, t_arr)
                i += 1
                continue
            t, _, kind, payload = heapq.heappop(self.events)
            if kind == "step":
                payload.finish_step()
                self._kick(payload, t)
            elif kind == "stage":  # a pipeline's first stage is free for the next batch
                self._kick(payload, t)
            elif kind == "kv":
                src, rid = payload
                src.release(rid)
                self._kick(src, t)
                dst = self._route(self.decode, rid)
                led.decode_replica[rid] = dst.index
                dst.enqueue(rid, "kv", float(led.prompt[rid]))
                self._kick(dst, t)
            events += 1
            if self.progress is not None and events % 2000 == 0:
                self.progress((led.completed + len(led.rejected)) / n)
        unfinished = [r for r in range(n) if led.finish[r] < 0 and r not in led.rejected]
        for rid in unfinished:  # cannot happen when every queue drains; reported rather than lost
            led.reject(rid, "still queued when the simulation ended")
        if self.progress is not None:
            self.progress(1.0)
