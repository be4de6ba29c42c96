"""From a scenario's names to a ``Deployment``: the GPU and its calibration, the model with its
techniques, precisions as bytes per element and peaks, and the parallel layout placed on the cluster
(``simulator.parallel``). Configuration only, so a deployment is cached under its configuration
(``simulator.configuration_key``) and every workload of that configuration reuses it; an axis that is a
configuration knob (a precision or tp swept as an array) resolves afresh with that knob as an array.
"""

from __future__ import annotations

import numpy as np

from hwmodels import InputError, get_accelerator
from hwmodels.dtypes import BYTES_PER_ELEMENT, DTYPES
from simulator.checks import check_compute_format
from simulator.configuration_key import configuration_key
from simulator.deployment import Deployment
from simulator.models import get_model
from simulator.parallel import apply_parallelism
from simulator.scenario import Scenario
from simulator.stacks import resolve_calibration
from simulator.techniques import parse_techniques

# Sweep axes that are configuration knobs (resolved with the knob as an array, not from the cache).
CONFIG_AXES = ("weights", "kv_cache", "compute", "tp")


def _lookup(table: dict[str, float], names) -> np.ndarray | float:
    if isinstance(names, np.ndarray):
        return np.vectorize(table.__getitem__, otypes=[float])(names)
    return table[names]


# Deployments resolved from configurations seen before (configuration-only work done once).
_RESOLVED: dict[tuple, Deployment] = {}
_RESOLVED_MAX = 256


def resolve(scenario: Scenario, axes: dict[str, np.ndarray]) -> tuple[Deployment, dict[str, object]]:
    """Resolve names into specs and scalar-or-array knobs; check parallelism fits the model.
    Without configuration axes the deployment comes from a cache keyed on the whole configuration."""
    if axes and any(name in axes for name in CONFIG_AXES):
        return _resolve(scenario, axes)
    key = configuration_key(scenario)
    dep = _RESOLVED.get(key)
    if dep is None:
        dep, _ = _resolve(scenario, {})
        if len(_RESOLVED) >= _RESOLVED_MAX:
            _RESOLVED.clear()
        _RESOLVED[key] = dep
    return dep, _work(scenario, axes, dep.techniques)


def _work(scenario: Scenario, axes, techniques) -> dict[str, object]:
    wl = scenario.workload
    return {
        "batch_size": axes.get("batch_size", wl.batch_size),
        "prompt_len": axes.get("prompt_len", wl.prompt_len),
        "context_len": axes.get("context_len", wl.context_len),
        "output_len": axes.get("output_len", wl.output_len),
        "techniques": list(techniques),
    }


def _resolve(scenario: Scenario, axes: dict[str, np.ndarray]) -> tuple[Deployment, dict[str, object]]:
    gpu = get_accelerator(scenario.hardware.gpu)
    calibration = resolve_calibration(scenario.calibration, gpu)  # a stack profile sits on the GPU's base
    profile = calibration.profile
    model = get_model(scenario.model)
    techniques = parse_techniques(scenario.techniques)
    for tech in techniques:
        model = tech.apply_model(model)
    prec, par = scenario.precision, scenario.parallelism

    def knob(name, default):
        return axes.get(name, default)

    tp = knob("tp", scenario.tp)
    pp = par.pp
    tp_arr = np.asarray(tp)
    if np.any(model.num_attention_heads % tp_arr):
        bad = int(tp_arr[np.nonzero(model.num_attention_heads % tp_arr)][0]) if tp_arr.ndim else int(tp)
        raise InputError("parallelism.tp", f"tp={bad} does not divide num_attention_heads={model.num_attention_heads}")
    kv = model.num_kv_heads
    if not model.mla and np.any((kv % tp_arr != 0) & (tp_arr % kv != 0)):
        raise InputError("parallelism.tp", f"tp must divide num_kv_heads={kv} or be a multiple of it")
    if pp > model.num_layers:
        raise InputError("parallelism.pp", f"pp={pp} exceeds num_layers={model.num_layers}")
    if np.any(tp_arr * pp > scenario.hardware.num_gpus):
        raise InputError("hardware.num_gpus", f"{scenario.hardware.num_gpus} GPUs cannot hold tp x pp = "
                         f"{int(np.max(tp_arr)) * pp}")
    replicas = scenario.hardware.num_gpus // (int(np.max(tp_arr)) * pp)

    compute = knob("compute", prec.compute)
    check_compute_format(gpu, compute)
    act_dtype = np.where(np.isin(compute, ["fp32", "tf32", "fp64"]), "fp32", "bf16") \
        if isinstance(compute, np.ndarray) else ("fp32" if compute in ("fp32", "tf32", "fp64") else "bf16")
    dep = Deployment(
        model=model,
        gpu=gpu,
        profile=profile,
        tp=tp,
        pp=pp,
        replicas=replicas,
        weight_bytes=_lookup(BYTES_PER_ELEMENT, knob("weights", prec.weights)),
        kv_bytes=_lookup(BYTES_PER_ELEMENT, knob("kv_cache", prec.kv_cache)),
        act_bytes=_lookup(BYTES_PER_ELEMENT, act_dtype),
        peak_flops_per_s=_lookup({d: gpu.peak_for(d) for d in DTYPES}, compute),
        memory_utilization=scenario.memory_utilization,
        techniques=tuple(techniques),
        stack=calibration.stack,
        calibration=calibration,
    )
    for tech in techniques:
        dep = tech.apply_deployment(dep)
    dep = apply_parallelism(dep, scenario)
    return dep, _work(scenario, axes, techniques)
