"""What a workload does: model architecture -> operators -> steps -> latency, throughput, memory
and concurrency. Public API: ``Scenario``, ``predict``, ``sweep``, ``serve``, ``get_model``, ``list_models``."""

from hwmodels.errors import InputError
from simulator.api import AXES, as_scenario, predict, sweep
from simulator.models import ModelSpec, get_model, list_models
from simulator.prediction import Prediction
from simulator.scenario import Scenario
from simulator.serving import ServeConfig, ServeResult, Workload, serve

__all__ = ["AXES", "InputError", "ModelSpec", "Prediction", "Scenario", "ServeConfig", "ServeResult", "Workload",
           "as_scenario", "get_model", "list_models", "predict", "serve", "sweep"]
