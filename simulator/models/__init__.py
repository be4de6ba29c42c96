"""Model architectures: the spec type, presets and HF config import."""

from simulator.models.catalog import get_model, list_models
from simulator.models.spec import LayerKind, Linear, MLASpec, ModelSpec, MoESpec

__all__ = ["LayerKind", "Linear", "MLASpec", "ModelSpec", "MoESpec", "get_model", "list_models"]
