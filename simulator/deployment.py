"""A scenario's resolved pieces: the model, the device, the profile and the per-element sizes,
with every workload-independent knob as a scalar or a numpy array that broadcasts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels import Accelerator, Profile
from simulator.models.spec import Linear, ModelSpec


@dataclass
class Deployment:
    model: ModelSpec
    gpu: Accelerator
    profile: Profile
    tp: np.ndarray | int
    pp: int
    replicas: int
    weight_bytes: np.ndarray | float  # bytes per weight element
    kv_bytes: np.ndarray | float  # bytes per KV-cache element
    act_bytes: np.ndarray | float  # bytes per activation element
    peak_flops_per_s: np.ndarray | float  # dense peak of the compute dtype
    memory_utilization: float

    @property
    def hbm_bandwidth_bytes_per_s(self) -> float:
        return self.gpu.hbm_bandwidth_bytes_per_s

    # --- what one GPU holds under tensor parallelism (Megatron-LM, Shoeybi et al. 2019, arXiv 1909.08053)

    def local_params(self, lin: Linear):
        """Elements of ``lin`` on one GPU: column and row splits divide by tp, replicated do not."""
        return lin.params if lin.tp == "replicated" else lin.params / self.tp

    def local_out(self, lin: Linear):
        return lin.out_features if lin.tp in ("replicated", "row") else lin.out_features / self.tp

    def local_in(self, lin: Linear):
        return lin.in_features / self.tp if lin.tp == "row" else lin.in_features

    @property
    def q_heads_local(self):
        return self.model.num_attention_heads / self.tp

    @property
    def kv_heads_local(self):
        """KV heads per GPU; replicated when tp exceeds the number of KV heads."""
        return np.ceil(self.model.num_kv_heads / self.tp)

    @property
    def kv_elems_per_token_layer_local(self):
        """Cached elements per token per layer on one GPU (an MLA latent is replicated across tp)."""
        m = self.model
        if m.mla:
            return float(m.kv_elements_per_token_per_layer())
        return 2.0 * self.kv_heads_local * m.head_dim
