"""Ray backend: a local Ray instance (one CPU, no dashboard) runs the same functions on the same inputs
and gives results identical to the in-process backend."""

from __future__ import annotations

import pytest

import simulator
from simulator.planning import plan
from simulator.planning.verify import des_available, load_curve, run_jobs

ray = pytest.importorskip("ray")


def test_ray_tasks_match_in_process():
    """run_jobs starts a local instance, runs the tasks and shuts the instance down again."""
    scenarios = [{"model": "llama-3.1-8b", "hardware": {"gpu": g, "num_gpus": 1},
                  "workload": {"phase": "generate", "batch_size": b}} for g in ("h100-sxm", "l4") for b in (1, 16)]
    local = [p.model_dump() for p in run_jobs(scenarios, "local", fn=simulator.predict)]
    remote = [p.model_dump() for p in run_jobs(scenarios, "ray", fn=simulator.predict)]
    assert remote == local
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def local_ray():
    from simulator.planning.verify import _start_ray

    _start_ray(ray, None)
    yield
    ray.shutdown()


@pytest.mark.skipif(not des_available(), reason="the request-level DES (simulator.serving.serve) has not landed")
def test_plan_verification_identical_on_ray(local_ray):
    req = dict(model="llama-3.1-8b", rate=4.0, prompt_len=512, output_len=64, slo_ttft_s=1.0, slo_tpot_s=0.05,
               gpus=["l40s"], max_gpus=4, verify=2, num_requests=300, disaggregate=False)
    local = plan({**req, "backend": "local"})
    remote = plan({**req, "backend": "ray"})
    assert [p.model_dump(exclude={"verification"}) for p in local.plans] == \
           [p.model_dump(exclude={"verification"}) for p in remote.plans]
    assert [p.verification for p in local.plans] == [p.verification for p in remote.plans]
    assert any(p.verification is not None for p in local.plans)


@pytest.mark.skipif(not des_available(), reason="the request-level DES has not landed")
def test_load_curve_identical_on_ray(local_ray):
    deployments = [({"model": "llama-3.1-8b", "hardware": {"gpu": g, "num_gpus": 1}}, {"max_num_seqs": 64})
                   for g in ("l40s", "h100-sxm")]
    local = load_curve(deployments, [2.0, 6.0], 512, 64, num_requests=200)
    remote = load_curve(deployments, [2.0, 6.0], 512, 64, num_requests=200, backend="ray")
    assert remote == local
    assert local[0][1]["ttft_pct_s"] >= local[0][0]["ttft_pct_s"]  # more load, longer waits
