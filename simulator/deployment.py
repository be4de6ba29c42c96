"""A scenario's resolved pieces: the model, the device, the profile and the per-element sizes,
with every workload-independent knob as a scalar or a numpy array that broadcasts.

The deployment also carries the scenario's techniques (``techniques``) and the hook chains the core
calls on them: how many tokens a layer keeps in its KV cache, which (query, key) pairs prefill
attention computes, what share of the cache lives on the GPU or is shared between requests. Each
chain starts from the un-transformed value and passes it through every technique in list order.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from costmodels.numeric import num
from hwmodels import Accelerator, Profile
from simulator.models.spec import Linear, ModelSpec

# Attention kinds a layer may have. ``full`` and ``sliding`` come from the model; techniques add
# ``cross`` (attends to one KV cache shared by all cross layers and projects no K/V of its own, as
# YOCO's cross-decoder) and ``linear`` (a constant-size recurrent state instead of a KV cache).
KV_KINDS = ("full", "sliding", "cross")
ATTENTION_KINDS = (*KV_KINDS, "linear")


@dataclass
class Deployment:
    model: ModelSpec
    gpu: Accelerator
    profile: Profile
    tp: np.ndarray | int
    pp: int
    replicas: int
    weight_bytes: np.ndarray | float  # bytes per stored weight value of the layers' matrices
    kv_bytes: np.ndarray | float  # bytes per KV-cache element
    act_bytes: np.ndarray | float  # bytes per activation element
    peak_flops_per_s: np.ndarray | float  # dense peak of the compute dtype
    memory_utilization: float
    techniques: tuple = ()
    attention_kinds: tuple[str, ...] | None = None  # per layer; None: the model's own
    embedding_bytes: np.ndarray | float | None = None  # embedding table and LM head; None: weight_bytes
    weight_density: float = 1.0  # fraction of layer weights stored (sparsity)
    weight_index_bytes: float = 0.0  # index/metadata bytes per stored weight (sparse formats)
    recurrent_state_elems: int = 0  # ``linear`` layers: state elements per head
    recurrent_state_bytes: float = 4.0  # ``linear`` layers: bytes per state element
    achievable_flops_per_s: float | None = None  # GEMM rate the throughput optimum assumes; None: peak
    # --- parallelism beyond TP (simulator/parallel): degrees, placement on the cluster, overlap per boundary
    cp: int = 1  # context-parallel ranks a prompt's sequence is split over
    ep: int = 1  # expert-parallel shards of the routed experts
    expert_tp: np.ndarray | int | None = None  # GPUs one expert is split over; None: tp when ep = 1, else 1
    sp: bool = False  # Megatron sequence parallelism (all-reduce -> reduce-scatter + all-gather)
    microbatches: int | None = None  # pipeline micro-batches in flight; None: pp (fills the pipe)
    placement: object = None  # simulator.parallel.placement.Placement; None: one node on the GPU's own link
    collective_algorithm: str = "auto"
    overlap_boundaries: dict = field(default_factory=dict)  # boundary -> policy (simulator.parallel.overlap)
    expert_load_imbalance: float = 1.0  # max / mean routed tokens per expert-parallel GPU
    pipeline_stage: bool = False  # set while pricing one micro-batch through the stages of a pipeline
    stack: Any = None  # simulator.stacks.StackProfile: the implementation the steps are priced for, or None
    calibration: Any = None  # simulator.stacks.Calibration: where the profile came from (for error bands)

    @property
    def hbm_bandwidth_bytes_per_s(self) -> float:
        return self.gpu.hbm_bandwidth_bytes_per_s

    def cached(self, key: str, compute, *args):
        """``compute(*args)`` once per deployment: configuration-only quantities (weights per GPU, parameter
        sums) that every evaluation of the same deployment reuses. A ``replace``d copy starts empty."""
        memo = self.__dict__.get("_memo")
        if memo is None:
            memo = self.memo
        try:
            return memo[key]
        except KeyError:
            value = memo[key] = compute(*args)
            return value

    @property
    def memo(self) -> dict:
        """The dict ``cached`` keeps its values in (this deployment's own)."""
        memo = self.__dict__.get("_memo")
        if memo is None:
            memo = self.__dict__["_memo"] = {}
        return memo

    # --- layers and bytes per element -----------------------------------------------------------

    @property
    def layer_kinds(self) -> tuple[str, ...]:
        """Attention kind of every layer."""
        return tuple(self.attention_kinds) if self.attention_kinds is not None else tuple(self.model.attention_kinds())

    def kind_counts(self, layers=None) -> dict[str, int]:
        """Layers per attention kind (of ``layers``, a list of indices, or of all layers), first-seen order."""
        kinds = self.layer_kinds
        return dict(Counter(kinds[i] for i in (range(len(kinds)) if layers is None else layers)))

    @property
    def layer_weight_bytes(self):
        """Bytes per weight element of the layers' matrices, after sparsity: density x (value + index)."""
        return self.weight_density * (self.weight_bytes + self.weight_index_bytes)

    @property
    def emb_bytes(self):
        """Bytes per element of the embedding table and the LM head."""
        return self.weight_bytes if self.embedding_bytes is None else self.embedding_bytes

    # --- what one GPU holds under tensor parallelism (Megatron-LM, Shoeybi et al. 2019, arXiv 1909.08053)

    @property
    def etp(self):
        """GPUs one routed expert is split over: tp when experts are not expert-parallel, else ``expert_tp``."""
        if self.expert_tp is not None:
            return self.expert_tp
        return self.tp if self.ep == 1 else 1

    def _split(self, lin: Linear):
        return self.etp if lin.group == "expert" else self.tp

    def local_params(self, lin: Linear):
        """Elements of ``lin`` on one GPU: column and row splits divide by tp, replicated do not; a routed
        expert's matrix is split over etp GPUs and its experts over ep (E/ep experts per GPU)."""
        if lin.tp == "replicated":
            return lin.params
        return lin.params / (self._split(lin) * (self.ep if lin.group == "expert" else 1))

    def local_out(self, lin: Linear):
        return lin.out_features if lin.tp in ("replicated", "row") else lin.out_features / self._split(lin)

    def local_in(self, lin: Linear):
        return lin.in_features / self._split(lin) if lin.tp == "row" else lin.in_features

    @property
    def q_heads_local(self):
        return self.model.num_attention_heads / self.tp

    @property
    def kv_heads_local(self):
        """KV heads per GPU; replicated when tp exceeds the number of KV heads."""
        if isinstance(self.tp, int):
            return float(-(-self.model.num_kv_heads // self.tp))
        return np.ceil(self.model.num_kv_heads / self.tp)

    @property
    def kv_elems_per_token_layer_local(self):
        """Cached elements per token per layer on one GPU (an MLA latent is replicated across tp)."""
        m = self.model
        if m.mla:
            return float(m.kv_elements_per_token_per_layer())
        return 2.0 * self.kv_heads_local * m.head_dim

    @property
    def recurrent_state_bytes_per_layer_local(self):
        """One sequence's recurrent state in one ``linear`` layer on one GPU (heads split over tp)."""
        return self.q_heads_local * self.recurrent_state_elems * self.recurrent_state_bytes

    # --- technique hook chains ------------------------------------------------------------------

    def window_tokens(self, tokens, kind: str):
        """Tokens a layer of ``kind`` attends to before any technique: the window for sliding layers."""
        t = num(tokens)
        if kind != "sliding":
            return t
        return min(t, self.model.sliding_window) if isinstance(t, float) else np.minimum(t, self.model.sliding_window)

    def kv_tokens(self, tokens, kind: str):
        """Tokens whose K/V one layer of ``kind`` keeps per sequence (memory and decode reads)."""
        kept = self.window_tokens(tokens, kind)
        for tech in self.techniques:
            kept = tech.kv_tokens(kept, kind)
        return kept

    def attention_pairs(self, pairs, shape, kind: str):
        """(query, key) pairs prefill attention computes in a layer of ``kind``."""
        for tech in self.techniques:
            pairs = tech.attention_pairs(pairs, shape, kind)
        return pairs

    def kv_resident_fraction(self) -> float:
        """Share of a request's KV cache held in device memory (the rest offloaded to the host)."""
        if not self.techniques:
            return 1.0
        return float(math.prod(tech.kv_resident_fraction(self) for tech in self.techniques))

    def kv_shared_fraction(self) -> float:
        """Share of a request's KV cache that is a prefix shared by every request on the GPU."""
        if not self.techniques:
            return 0.0
        return 1.0 - float(math.prod(1.0 - tech.kv_shared_fraction() for tech in self.techniques))

    def kv_shared_read_once(self) -> bool:
        """Whether decode attention reads the shared prefix once per batch instead of once per sequence."""
        return any(tech.kv_shared_read_once() for tech in self.techniques)

    def transform_shape(self, shape):
        """The step a technique actually runs for ``shape`` (fewer prefill tokens, a verify pass...)."""
        for tech in self.techniques:
            shape = tech.step_shape(shape, self)
        return shape

    def prefill_chunk_tokens(self):
        """Chunk size when prefill runs in chunks, else None."""
        sizes = [c for tech in self.techniques if (c := tech.prefill_chunk_tokens()) is not None]
        return min(sizes) if sizes else None

    def tokens_per_step(self):
        """Output tokens a decode step commits per sequence (1 without speculation)."""
        out = 1.0
        for tech in self.techniques:
            out = out * tech.tokens_per_step()
        return out

    def overlap_policy(self, policy: str) -> str:
        for tech in self.techniques:
            policy = tech.overlap_policy(policy)
        return policy
