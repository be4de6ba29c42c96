"""A training question as a validated object: ``TrainScenario`` (JSON/YAML, CLI flags or Python)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)

from hwmodels.errors import InputError, validated
from simulator.scenario import read_scenario_file

Recompute = Literal["none", "selective", "full"]
RECOMPUTE_CODES = {"none": 0, "selective": 1, "full": 2}

# PyTorch DDP's default gradient bucket (``bucket_cap_mb=25``, torch.nn.parallel.DistributedDataParallel docs).
DDP_BUCKET_BYTES = 25.0 * 2**20


class TrainScenario(BaseModel):
    """Everything a training-step prediction needs. Every field has a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str | dict[str, Any] = Field("llama-3.1-8b", description="preset name, config.json path, or inline spec")
    gpu: str | dict[str, Any] = Field("h100-sxm", description="catalog name, YAML/JSON path, or inline spec")
    num_gpus: PositiveInt = 1
    node: str | None = Field(None, description="catalog node: host memory for offload, GPUs per node")
    gpus_per_node: PositiveInt | None = Field(None, description="default: the node's, else 8")
    network: str | None = Field(None, description="scale-out network (hwmodels/data/networks); default: the node's, "
                                "else ib-ndr-400")
    inter_node_bandwidth_bytes_per_s: PositiveFloat | None = Field(None, description="overrides the network's per-GPU NIC")
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    cp: PositiveInt = 1
    ep: PositiveInt = 1
    sequence_parallel: bool = Field(True, description="Megatron sequence parallelism when tp > 1")
    seq_len: PositiveInt = 4096
    micro_batch: PositiveInt = 1
    global_batch: PositiveInt | None = Field(None, description="sequences per step; default micro_batch x dp")
    schedule: Literal["gpipe", "1f1b", "interleaved"] = "1f1b"
    virtual_stages: PositiveInt = Field(1, description="model chunks per device (interleaved schedule)")
    vocab_parallel: bool = Field(False, description="spread vocabulary layers over all stages (Yeung et al. 2024)")
    zero: Literal[0, 1, 2, 3] = 0
    hsdp: bool = Field(False, description="shard model states within a node, replicate across nodes")
    recompute: Recompute = "none"
    precision: Literal["bf16", "amp", "mixed", "fp8"] = "mixed"
    main_grad_fp32: bool = Field(False, description="mixed: fp32 main gradients (Megatron)")
    optimizer: Literal["adamw", "sgd", "adafactor"] = "adamw"
    flash_attention: bool = True
    dropout: bool = Field(False, description="dropout after attention and MLP (GPT-3 era models)")
    grad_overlap: Literal["none", "bucketed"] = Field("bucketed", description="DP reduction overlapped with backward")
    offload: Literal["none", "optimizer", "params", "nvme"] = "none"
    offload_policy: Literal["serial", "overlapped"] = "serial"
    nvme_bandwidth_bytes_per_s: PositiveFloat | None = None
    lora_rank: PositiveInt | None = None
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    tokens: PositiveFloat | None = Field(None, description="tokens to train on, for time to train")
    usd_per_gpu_hour: PositiveFloat | None = None
    downtime_fraction: NonNegativeFloat = Field(0.0, lt=1.0, description="C4: error-induced downtime share")
    comm_inflation: NonNegativeFloat = Field(0.0, description="C4: congestion slowdown of inter-node collectives")
    calibration: str | dict[str, Any] = "auto"
    memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="fraction of HBM usable, as for inference")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainScenario":
        if not isinstance(data, dict):
            raise InputError("scenario", "expected a mapping")
        return validated(cls, data)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainScenario":
        return cls.from_dict(read_scenario_file(path))

    def with_overrides(self, **fields: Any) -> "TrainScenario":
        data = self.model_dump()
        data.update(fields)
        return TrainScenario.from_dict(data)
