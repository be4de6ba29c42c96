"""The paged KV cache of one replica: how many blocks fit, and who holds them.

Sizing follows vLLM: weights load, a profiling forward pass of the largest step the budget allows
measures peak activations, and what is left of ``gpu_memory_utilization`` x HBM is cut into blocks of
``block_size`` tokens (vLLM docs, "Optimization and Tuning", https://docs.vllm.ai/en/stable/configuration/optimization/,
and the "No available memory for the cache blocks" start-up check). roofsim takes every number from the
memory model ``simulator.predict`` reports (``simulator/footprint.py``), vectorised over a deployment's
arrays (``kv_blocks``, which the capacity planner sizes its replica kinds with):

    blocks = floor((capacity - weights - workspace - activations) / (block_size x KV bytes per token))

with activations the larger of a prefill of ``max_num_batched_tokens`` tokens and a decode step of
``max_num_seqs`` sequences (the two extreme steps the scheduler can form). Per GPU: each tensor-parallel
rank holds its heads' share of every block.

Prefix caching follows vLLM's automatic prefix caching (https://docs.vllm.ai/en/latest/design/prefix_caching/):
only full blocks are cached, a block held by no request stays cached until it is evicted, eviction is
least-recently-freed first and takes a request's tail blocks before its head ones. Here a prefix group's
cached blocks are its leading ``resident`` blocks; a group held by no running request is evictable, LRU
by release time. Difference from vLLM: a fresh allocation takes never-shared free blocks before it
evicts a cached prefix block (vLLM pops the free queue's head whichever it is), so roofsim's hit rate is
the upper end of vLLM's under memory pressure.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from hwmodels.errors import InputError
from simulator.deployment import Deployment
from simulator.footprint import activation_bytes_per_sequence, kv_bytes_per_request, weight_bytes_per_gpu
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.step import StepShape


@dataclass(frozen=True)
class KVBudget:
    """What one replica's memory holds, per GPU."""

    blocks: int
    block_size: int
    kv_bytes_per_token: float  # per GPU
    weights_bytes: float
    activation_bytes: float
    workspace_bytes: float
    capacity_bytes: float


def kv_blocks(dep: Deployment, block_size: int, max_num_seqs, max_num_batched_tokens, context_len: float
              ) -> dict[str, np.ndarray]:
    """Blocks of the paged KV cache one replica of ``dep`` holds (see the module docstring), element-wise
    over the deployment's arrays (e.g. the planner's TP degrees), with the per-GPU terms they come from.

    The activations are those ``simulator.predict`` reports for the two extreme steps: a prefill of
    ``max_num_batched_tokens`` tokens (one chunk of it under a chunking technique) and a decode step of
    ``max_num_seqs`` sequences at ``context_len``; a block holds ``block_size`` tokens at the KV bytes
    per token of a sequence of that context (``simulator.footprint``)."""
    prefill = dep.transform_shape(StepShape(1.0, float(max_num_batched_tokens), 0.0, "prefill"))
    new = np.asarray(prefill.new_tokens, dtype=float)
    chunk = dep.prefill_chunk_tokens()
    if chunk is not None:  # the chunks of ``engine.prefill_step``
        new = new / np.maximum(np.ceil(new / chunk), 1.0)
    ctx = max(float(context_len), float(block_size))
    decode = dep.transform_shape(StepShape(float(max_num_seqs), 1.0, ctx, "decode"))
    cached = ctx + np.asarray(decode.new_tokens, dtype=float)
    activations = np.maximum(activation_bytes_per_sequence(dep, new),
                             float(max_num_seqs) * activation_bytes_per_sequence(dep, decode.new_tokens))
    weights = weight_bytes_per_gpu(dep)
    workspace = dep.profile.workspace_bytes
    capacity = dep.gpu.hbm_capacity_bytes * dep.memory_utilization
    per_token = kv_bytes_per_request(dep, cached) / np.maximum(cached, 1.0)
    free = capacity - weights - workspace - activations
    per_block = block_size * per_token
    blocks = np.where(per_block > 0, np.floor(free / np.where(per_block > 0, per_block, 1.0)), 0.0)
    return {"blocks": np.maximum(blocks, 0.0), "kv_bytes_per_token": per_token, "weights_bytes": weights,
            "activation_bytes": activations, "workspace_bytes": workspace, "capacity_bytes": capacity}


def kv_budget(scenario: Scenario, block_size: int, max_num_seqs: int, max_num_batched_tokens: int) -> KVBudget:
    """Blocks of the paged KV cache that fit on one replica (``kv_blocks`` of the scenario's deployment)."""
    dep, _ = resolve(scenario, {})
    b = {k: float(np.asarray(v)) for k, v in
         kv_blocks(dep, block_size, max_num_seqs, max_num_batched_tokens, scenario.workload.context_len).items()}
    blocks = int(b["blocks"])
    if blocks < 1:
        activations, capacity = b["activation_bytes"], b["capacity_bytes"]
        raise InputError("hardware", f"no memory left for the KV cache: weights {b['weights_bytes'] / 1e9:.1f} GB + "
                         f"activations {activations / 1e9:.1f} GB of {capacity / 1e9:.1f} GB usable")
    return KVBudget(blocks, block_size, b["kv_bytes_per_token"], b["weights_bytes"], b["activation_bytes"],
                    b["workspace_bytes"], b["capacity_bytes"])


class BlockPool:
    """Free and used blocks, with prefix groups' cached blocks (``prefix_caching``) evicted LRU."""

    def __init__(self, blocks: int, block_size: int, prefix_caching: bool):
        self.total = blocks
        self.block_size = block_size
        self.caching = prefix_caching
        self.private = 0  # blocks held by requests for their own tokens
        self.shared_used = 0  # cached prefix blocks some running request uses (counted once)
        self.shared_idle = 0  # cached prefix blocks no request uses (evictable)
        self.resident: dict[int, int] = {}  # prefix group -> cached leading blocks
        self.refs: dict[int, int] = {}  # prefix group -> running requests that use its blocks
        self.evictable: OrderedDict[int, None] = OrderedDict()  # idle groups, least recently freed first

    @property
    def used(self) -> int:
        """Blocks held by running requests (a shared prefix counts once)."""
        return self.private + self.shared_used

    @property
    def free(self) -> int:
        """Blocks an allocation can take without eviction."""
        return self.total - self.private - self.shared_used - self.shared_idle

    def blocks_for(self, tokens: float) -> int:
        return -int(-tokens // self.block_size)

    def allocate(self, n: int) -> bool:
        """Take ``n`` private blocks, evicting idle cached prefix blocks (LRU group, tail first) if needed."""
        if n <= 0:
            return True
        short = n - self.free
        if short > self.shared_idle:
            return False
        while short > 0:
            group = next(iter(self.evictable))
            take = min(short, self.resident[group])
            self.resident[group] -= take
            self.shared_idle -= take
            short -= take
            if self.resident[group] == 0:
                del self.evictable[group]
        self.private += n
        return True

    def release(self, n: int) -> None:
        self.private -= n

    def hit_blocks(self, group: int, full_blocks: int) -> int:
        """Leading blocks of ``group``'s prefix already cached (at most ``full_blocks``)."""
        if not self.caching or group < 0:
            return 0
        return min(self.resident.get(group, 0), full_blocks)

    def acquire_prefix(self, group: int, full_blocks: int) -> tuple[int, bool]:
        """A request starts using ``group``'s first ``full_blocks`` blocks: (blocks it finds cached,
        success). Blocks the group lacks are allocated now and become the group's cached blocks."""
        if not self.caching or group < 0 or full_blocks == 0:
            return 0, True
        have = self.resident.get(group, 0)
        hit = min(have, full_blocks)
        missing = full_blocks - have
        if group in self.evictable:  # idle: its cached blocks come back into use
            del self.evictable[group]
            self.shared_idle -= have
            self.shared_used += have
        if missing > 0:
            if not self.allocate(missing):
                if self.refs.get(group, 0) == 0 and have:
                    self.evictable[group] = None
                    self.shared_idle += have
                    self.shared_used -= have
                return 0, False
            self.private -= missing
            self.shared_used += missing
            self.resident[group] = full_blocks
        self.refs[group] = self.refs.get(group, 0) + 1
        return hit, True

    def release_prefix(self, group: int) -> None:
        if not self.caching or group < 0 or group not in self.refs:
            return
        self.refs[group] -= 1
        if self.refs[group] == 0:
            del self.refs[group]
            self.shared_used -= self.resident[group]
            self.shared_idle += self.resident[group]
            self.evictable[group] = None
