"""Verification of plans with the request-level DES, in process or on Ray.

A job is plain data (scenario mapping, serve config, workload, SLOs). The DES prices every engine step
from a ``StepTimer`` per replica scenario: the deployment resolved once and its step-time tables
(``simulator/serving/steptime.py``: step times on a grid, filled block by block where the simulation
goes). ``StepTables`` holds one per replica scenario and shares it between every job that serves that
scenario (a plan's prefill and decode pools of one layout, the same layout at several replica counts,
a load curve's rates).

In process the jobs run one after the other on one ``StepTables``. On Ray (Moritz et al. 2018, arXiv
1712.05889) the jobs become a graph of remote tasks around the object store:

1. the driver builds the tables (a one-request simulation of each distinct scenario and engine
   settings names the replica scenarios it uses and resolves their deployments) and puts each in the
   object store once (``ray.put``);
2. fill tasks, given stored tables, simulate the first ``WARM_REQUESTS`` requests of the busiest job
   that uses them (the highest rate) and return each filled table as its own object, which Ray keeps
   in the object store (tables are filled in parallel, not in the driver);
3. one task per job receives references to exactly the filled tables it uses as top-level arguments,
   which Ray resolves to the stored objects before the task runs, after the fill tasks: every task
   reads the one stored copy of a table rather than a copy per task (Ray's anti-pattern "passing the
   same large argument by value repeatedly",
   https://docs.ray.io/en/latest/ray-core/patterns/pass-large-arg-by-value.html, and "calling ray.get
   unnecessarily": the filled tables never return to the driver,
   https://docs.ray.io/en/latest/ray-core/patterns/unnecessary-ray-get.html).

The remote functions are defined once per process, not per call (Ray's "redefining the same remote
function", https://docs.ray.io/en/latest/ray-core/patterns/redefine-task-actor-loop.html). A task
extends its own copy where its run goes beyond the filled region. A table's entry is the same number
however it was filled (a grid block is always priced whole by one vectorised call), and the DES is
seeded, so both backends give identical results. ``ray.init`` starts a local instance unless an address
is given (``--ray-address``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from hwmodels.errors import InputError

WARM_REQUESTS = 200  # requests a fill task simulates to fill a table before the jobs read it


def job(scenario: dict, config: dict, rate: float, prompt_len: int | str, output_len: int | str, num_requests: int, seed: int,
        slo_ttft_s: float, slo_tpot_s: float, percentile: float, prefix_tokens: int = 0) -> dict[str, Any]:
    workload = {"rate": rate, "num_requests": num_requests, "arrival": "poisson", "prompt_len": prompt_len,
                "output_len": output_len, "seed": seed}
    if prefix_tokens > 0:
        workload["prefixes"] = [{"length": int(prefix_tokens), "popularity": 1.0}]
    return {"scenario": scenario, "config": config, "workload": workload, "slo_ttft_s": slo_ttft_s,
            "slo_tpot_s": slo_tpot_s, "percentile": percentile}


class StepTables:
    """The DES's ``StepTimer``s by replica scenario (its JSON), built on first request and shared.
    ``built`` counts the timers this object built itself; ``used`` records the keys asked for."""

    def __init__(self, timers: dict[str, Any] | None = None):
        self.timers: dict[str, Any] = dict(timers or {})
        self.built = 0
        self.used: set[str] = set()

    def __call__(self, scenario):
        from simulator.serving import StepTimer

        key = scenario.model_dump_json()
        self.used.add(key)
        timer = self.timers.get(key)
        if timer is None:
            timer = self.timers[key] = StepTimer(scenario)
            self.built += 1
        return timer


def _quantile(summary: dict, percentile: float) -> float:
    """The DES's percentile of a latency; infinite where no request got one (every request rejected or
    none finished: the SLO is missed)."""
    key = f"p{int(round(percentile))}"
    if key not in summary:
        raise InputError("percentile", f"the DES reports p50/p90/p99; {key} is not among them")
    return math.inf if summary[key] is None else float(summary[key])


def _simulate(job: dict[str, Any], tables: StepTables, num_requests: int | None = None):
    from simulator.serving import serve  # the request-level DES (simulator/serving)

    workload = job["workload"] if num_requests is None else {**job["workload"], "num_requests": num_requests}
    return serve(job["scenario"], workload, job["config"], timers=tables)


def run_job(job: dict[str, Any], tables: StepTables | None = None) -> dict[str, Any]:
    """One DES run: the plan at the requested rate, summarised against the SLOs."""
    result = _simulate(job, tables if tables is not None else StepTables()).model_dump()
    ttft = _quantile(result["ttft_s"], job["percentile"])
    tpot = _quantile(result["tpot_s"], job["percentile"])
    return {
        "ttft_pct_s": ttft, "tpot_pct_s": tpot,
        "ttft_p50_s": _quantile(result["ttft_s"], 50.0), "tpot_p50_s": _quantile(result["tpot_s"], 50.0),
        "throughput_tokens_per_s": float(result["throughput_tokens_per_s"]),
        "completed": int(result["completed"]), "rejected": int(result["rejected"]),
        "meets_slo": bool(ttft <= job["slo_ttft_s"] and tpot <= job["slo_tpot_s"] and result["rejected"] == 0),
    }


def _run_on_tables(job: dict[str, Any], *entries: tuple[str, Any]) -> dict[str, Any]:
    """A Ray task: ``run_job`` on the (key, StepTimer) entries Ray resolved from the object store."""
    return run_job(job, StepTables(dict(entries)))


def _start_ray(ray, address: str | None) -> None:
    """Connect to ``address``, or start a local instance with one CPU and no dashboard; a local start
    that times out (Ray waits 30 s for its raylet, which a loaded machine can exceed) is tried once more."""
    kwargs = dict(address=address, num_cpus=None if address else 1, include_dashboard=False, log_to_driver=False,
                  configure_logging=False)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 -- Ray raises a bare Exception for a slow raylet
        if address is not None or "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
        ray.init(**kwargs)


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """The ``ray`` module, initialised (a local instance unless ``address``); shut down again on exit
    when this call started it. Ray is an optional extra: without it, one clear error."""
    try:
        import ray
    except ImportError:
        raise InputError("backend", "ray is not installed; pip install 'roofsim[ray]'") from None
    started = not ray.is_initialized()
    if started:
        _start_ray(ray, address)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@lru_cache(maxsize=None)
def _remote(fn: Callable):
    """``fn`` as a Ray remote function of one CPU, defined once per process."""
    import ray

    return ray.remote(num_cpus=1)(fn)


def des_available() -> bool:
    try:
        from simulator.serving import serve  # noqa: F401
    except ImportError:
        return False
    return True


def run_tasks(fn: Callable, items: Sequence[Any], backend: str = "local", address: str | None = None) -> list[Any]:
    """``fn(item)`` for every item, in order, in process or as Ray remote tasks (``fn`` importable)."""
    if backend == "local":
        return [fn(item) for item in items]
    with ray_session(address) as ray:
        return ray.get([_remote(fn).remote(item) for item in items])


def _fill(job: dict[str, Any], *entries: tuple[str, Any]):
    """A Ray task: the (key, StepTimer) ``entries`` filled where ``job`` runs (its first ``WARM_REQUESTS``
    requests), one returned object per table."""
    tables = StepTables(dict(entries))
    _simulate(job, tables, min(WARM_REQUESTS, int(job["workload"]["num_requests"])))
    out = tuple((key, tables.timers[key]) for key, _ in entries)
    return out if len(out) > 1 else out[0]


def run_jobs(jobs: list[dict[str, Any]], backend: str = "local", address: str | None = None,
             tables: StepTables | None = None) -> list[dict[str, Any]]:
    """``run_job`` of every job, in order, sharing one step table per replica scenario (``tables``, kept
    by a caller that runs several batches): in process, or as Ray tasks reading the tables from the
    object store (see the module docstring)."""
    tables = StepTables() if tables is None else tables
    if backend == "local":
        return [run_job(j, tables) for j in jobs]
    keys, named = [], {}
    for j in jobs:  # the tables of each (scenario, engine settings), from a simulation of one request
        deployment = json.dumps([j["scenario"], j["config"]], sort_keys=True, default=str)
        if deployment not in named:
            tables.used = set()
            _simulate(j, tables, 1)
            named[deployment] = sorted(tables.used)
        keys.append(named[deployment])
    with ray_session(address) as ray:
        stored = {key: ray.put((key, tables.timers[key])) for key in sorted({k for used in keys for k in used})}
        filled: dict[str, Any] = {}
        for i in sorted(range(len(jobs)), key=lambda i: -float(jobs[i]["workload"].get("rate") or 0.0)):
            new = [k for k in keys[i] if k not in filled]  # filled where the busiest job using them runs
            if new:
                refs = _remote(_fill).options(num_returns=len(new)).remote(jobs[i], *(stored[k] for k in new))
                filled.update(zip(new, refs if len(new) > 1 else [refs]))
        remote = _remote(_run_on_tables)
        return ray.get([remote.remote(j, *(filled[k] for k in used)) for j, used in zip(jobs, keys)])


def load_curve(deployments: list[tuple[dict, dict]], rates: list[float], prompt_len: int | str, output_len: int | str,
               num_requests: int = 1000, seed: int = 0, backend: str = "local",
               address: str | None = None) -> list[list[dict[str, Any]]]:
    """DES latency against load for many deployments ((scenario, serve config) pairs): one job per
    deployment and rate, run as one batch (Ray tasks with ``backend="ray"``) on shared step tables;
    summaries per deployment, in rate order."""
    inf = float("inf")
    jobs = [job(sc, cfg, rate, prompt_len, output_len, num_requests, seed, inf, inf, 90.0)
            for sc, cfg in deployments for rate in rates]
    out = run_jobs(jobs, backend, address)
    return [out[i * len(rates):(i + 1) * len(rates)] for i in range(len(deployments))]


__all__ = ["StepTables", "WARM_REQUESTS", "des_available", "job", "load_curve", "ray_session", "run_job", "run_jobs",
           "run_tasks"]
