"""The answer to one training scenario: ``TrainReport`` (pydantic), whose JSON is a stable contract.

``{"step_time_s", "tokens_per_s", "mfu", "hfu", "model_flops_per_step", "hardware_flops_per_step",
"memory": {"weights_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes", "total_bytes",
"capacity_bytes", "fits", ...}, "breakdown", "time_to_train_s"}`` plus the layout and policies used.
``total_bytes`` is the peak PyTorch's allocator would report (``torch.cuda.max_memory_allocated``);
``fits`` also counts the workspace held outside it. ``breakdown`` is seconds per step by resource:
``compute`` (GEMMs and attention), ``memory`` (element-wise, loss), ``tp_comm``, ``cp_comm``,
``ep_comm``, ``pp_comm``, ``zero_comm`` (exposed ZeRO-2/3 per-micro-batch collectives), ``dp_comm``
(exposed per-step reduction and gathers), ``bubble``, ``optimizer``, ``offload``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class TrainMemory(_Out):
    weights_bytes: float
    gradient_bytes: float
    optimizer_bytes: float
    activation_bytes: float
    loss_bytes: float
    bucket_bytes: float
    workspace_bytes: float
    total_bytes: float
    capacity_bytes: float
    fits: bool
    host_bytes: float


class TrainOperator(_Out):
    """One operator of a micro-batch on the critical stage (seconds per micro-batch)."""

    name: str
    kind: str
    phase: str
    part: str
    time_s: float


class TrainReport(_Out):
    model: str
    gpu: str
    calibration: str
    num_gpus: int
    tp: int
    pp: int
    cp: int
    ep: int
    dp: int
    micro_batch: int
    microbatches: int
    global_batch: int
    seq_len: int
    precision: str
    recompute: str
    zero: int
    optimizer: str
    offload: str
    schedule: str
    grad_overlap: str
    step_time_s: float
    tokens_per_s: float
    mfu: float
    hfu: float
    model_flops_per_step: float
    hardware_flops_per_step: float
    memory: TrainMemory
    breakdown: dict[str, float]
    bound: str
    time_to_train_s: float | None = None
    gpu_hours: float | None = None
    cost_usd: float | None = None
    operators: list[TrainOperator] = []

    def contract(self) -> dict:
        return self.model_dump(mode="json")
