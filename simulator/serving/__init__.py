"""Serving under load: a request-level discrete-event simulation on top of roofsim's step model.

``serve(scenario, workload, config)`` runs a request stream (``Workload``) through replicas scheduled
like vLLM's V1 engine (``ServeConfig``) and returns a ``ServeResult``. ``StepTimer`` / ``step_time``
price one engine step of a mixed batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from simulator.api import as_scenario
from simulator.scenario import Scenario
from simulator.serving.config import CascadeConfig, ServeConfig
from simulator.serving.result import ServeResult, Stats
from simulator.serving.steptime import Batch, StepTimer, step_time
from simulator.serving.workload import PrefixGroup, Workload


def serve(scenario: Scenario | Mapping[str, Any] | None, workload: Workload | Mapping[str, Any],
          config: ServeConfig | Mapping[str, Any] | None = None,
          progress: Callable[[float], None] | None = None,
          timers: Callable[[Scenario], StepTimer] | None = None) -> ServeResult:
    """Simulate ``workload`` served on ``scenario``'s GPUs; ``progress`` gets the finished fraction.
    ``timers`` gives the ``StepTimer`` of one replica's scenario (default: a new one per replica group);
    callers that run many simulations of the same replicas pass one that shares prebuilt step tables."""
    from simulator.serving.cluster import Simulation
    from simulator.serving.metrics import summarise

    sc = as_scenario(scenario)
    wl = workload if isinstance(workload, Workload) else Workload.from_dict(dict(workload))
    cfg = config if isinstance(config, ServeConfig) else ServeConfig.from_dict(dict(config or {}))
    requests = wl.requests()
    sim = Simulation(sc, requests, cfg, seed=wl.seed, progress=progress, timers=timers or StepTimer)
    sim.run()
    arrivals = requests["arrival_s"]
    span = float(arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    rate = wl.rate if wl.rate is not None else ((len(arrivals) - 1) / span if span > 0 else 0.0)
    return summarise(sim, float(rate))


__all__ = ["Batch", "CascadeConfig", "PrefixGroup", "ServeConfig", "ServeResult", "Stats", "StepTimer", "Workload",
           "serve", "step_time"]
