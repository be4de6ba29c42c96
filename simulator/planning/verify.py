"""Verification of plans with the request-level DES, in process or on Ray.

A job is plain data (scenario mapping, serve config, workload, SLOs), so the in-process and Ray
backends run the same function on the same inputs and, the DES being seeded, give the same numbers.
On Ray (Moritz et al. 2018, arXiv 1712.05889) each job is a remote task; the jobs' shared inputs go
to the object store once (``ray.put``) and tasks receive references, as Ray's documentation advises
for arguments reused by many tasks (https://docs.ray.io/en/latest/ray-core/tips-for-first-time.html).
``ray.init`` starts a local instance unless an address is given (``--ray-address``).
"""

from __future__ import annotations

from typing import Any

from hwmodels.errors import InputError


def job(scenario: dict, config: dict, rate: float, prompt_len: int, output_len: int, num_requests: int, seed: int,
        slo_ttft_s: float, slo_tpot_s: float, percentile: float, prefix_tokens: int = 0) -> dict[str, Any]:
    workload = {"rate": rate, "num_requests": num_requests, "arrival": "poisson", "prompt_len": int(prompt_len),
                "output_len": int(output_len), "seed": seed}
    if prefix_tokens > 0:
        workload["prefixes"] = [{"length": int(prefix_tokens), "popularity": 1.0}]
    return {"scenario": scenario, "config": config, "workload": workload, "slo_ttft_s": slo_ttft_s,
            "slo_tpot_s": slo_tpot_s, "percentile": percentile}


def _quantile(summary: dict, percentile: float) -> float:
    key = f"p{int(round(percentile))}"
    if key in summary:
        return float(summary[key])
    raise InputError("percentile", f"the DES reports p50/p90/p99; {key} is not among them")


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One DES run: the plan at the requested rate, summarised against the SLOs."""
    from simulator.serving import serve  # the request-level DES (simulator/serving)

    result = serve(job["scenario"], job["workload"], job["config"]).model_dump()
    ttft = _quantile(result["ttft_s"], job["percentile"])
    tpot = _quantile(result["tpot_s"], job["percentile"])
    return {
        "ttft_pct_s": ttft, "tpot_pct_s": tpot,
        "ttft_p50_s": float(result["ttft_s"]["p50"]), "tpot_p50_s": float(result["tpot_s"]["p50"]),
        "throughput_tokens_per_s": float(result["throughput_tokens_per_s"]),
        "completed": int(result["completed"]), "rejected": int(result["rejected"]),
        "meets_slo": bool(ttft <= job["slo_ttft_s"] and tpot <= job["slo_tpot_s"] and result["rejected"] == 0),
    }


def des_available() -> bool:
    try:
        from simulator.serving import serve  # noqa: F401
    except ImportError:
        return False
    return True


def run_jobs(jobs: list[Any], backend: str = "local", address: str | None = None, fn=run_job) -> list[Any]:
    """``fn`` of every job, in order, in process or as Ray tasks (``fn`` a module-level function)."""
    if backend == "local":
        return [fn(j) for j in jobs]
    try:
        import ray
    except ImportError:
        raise InputError("backend", "ray is not installed; pip install 'roofsim[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else 1, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(ray.put(j)) for j in jobs]
        return ray.get(refs)
    finally:
        if started:
            ray.shutdown()


__all__ = ["des_available", "job", "run_job", "run_jobs"]
