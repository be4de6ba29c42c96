"""What a workload does: model architecture -> operators -> steps -> latency, throughput, memory
and concurrency; training steps and time to train. Public API: ``Scenario``, ``predict``, ``sweep``, ``serve``,
``plan``, ``TrainScenario``, ``train``, ``train_sweep``, ``get_model``, ``list_models``."""

from hwmodels.errors import InputError
from simulator.api import AXES, as_scenario, predict, sweep
from simulator.models import ModelSpec, get_model, list_models
from simulator.planning import PlanRequest, PlanResult, plan
from simulator.prediction import Prediction
from simulator.scenario import Scenario
from simulator.serving import ServeConfig, ServeResult, Workload, serve
from simulator.training.api import train, train_sweep
from simulator.training.scenario import TrainScenario

__all__ = ["AXES", "InputError", "ModelSpec", "PlanRequest", "PlanResult", "Prediction", "Scenario", "ServeConfig",
           "ServeResult", "TrainScenario", "Workload", "as_scenario", "get_model", "list_models", "plan", "predict",
           "serve", "sweep", "train", "train_sweep"]
