"""Ray backend: a local Ray instance (one CPU, no dashboard) runs the same functions on the same inputs
and gives results identical to the in-process backend."""

from __future__ import annotations

import pytest

import simulator
from simulator.planning import plan
from simulator.planning.verify import des_available, run_jobs

ray = pytest.importorskip("ray")


def test_ray_tasks_match_in_process():
    scenarios = [{"model": "llama-3.1-8b", "hardware": {"gpu": g, "num_gpus": 1},
                  "workload": {"phase": "generate", "batch_size": b}} for g in ("h100-sxm", "l4") for b in (1, 16)]
    local = [p.model_dump() for p in run_jobs(scenarios, "local", fn=simulator.predict)]
    remote = [p.model_dump() for p in run_jobs(scenarios, "ray", fn=simulator.predict)]
    assert remote == local
    assert not ray.is_initialized()  # the backend shut down the instance it started


@pytest.mark.skipif(not des_available(), reason="the request-level DES (simulator.serving.serve) has not landed")
def test_plan_verification_identical_on_ray():
    req = dict(model="llama-3.1-8b", rate=4.0, prompt_len=512, output_len=64, slo_ttft_s=1.0, slo_tpot_s=0.05,
               gpus=["l40s"], max_gpus=4, verify=2, num_requests=300, disaggregate=False)
    local = plan({**req, "backend": "local"})
    remote = plan({**req, "backend": "ray"})
    assert [p.model_dump(exclude={"verification"}) for p in local.plans] == \
           [p.model_dump(exclude={"verification"}) for p in remote.plans]
    assert [p.verification for p in local.plans] == [p.verification for p in remote.plans]
    assert any(p.verification is not None for p in local.plans)
