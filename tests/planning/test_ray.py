"""Ray backend: a local Ray instance (one CPU, no dashboard) runs the same functions on the same inputs
and gives results identical to the in-process backend; the DES's step tables go to the object store
once each and every task reads them from there."""

from __future__ import annotations

import pytest

import simulator
from simulator.planning import plan, verify
from simulator.planning.verify import (
    StepTables,
    des_available,
    job,
    load_curve,
    run_job,
    run_jobs,
    run_tasks,
)

ray = pytest.importorskip("ray")
needs_des = pytest.mark.skipif(not des_available(), reason="the request-level DES (simulator.serving.serve) has not landed")

H100 = {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "num_gpus": 2}, "parallelism": {"tp": 1}}


def _jobs(n: int = 300) -> list[dict]:
    """Three DES jobs over two replica scenarios: two replicas of one H100, then the same H100s split
    1:1 into a prefill and a decode replica (one scenario for both pools), and one L40S."""
    l40s = {"model": "llama-3.1-8b", "hardware": {"gpu": "l40s", "num_gpus": 1}}
    out = []
    for scenario, config in ((H100, {"max_num_seqs": 64}), (H100, {"max_num_seqs": 64, "disaggregate": "1:1"}),
                             (l40s, {"max_num_seqs": 32})):
        out.append(job(scenario, config, 3.0, 512, 64, n, 0, 1.0, 0.05, 90.0))
    return out


def test_ray_tasks_match_in_process():
    """run_tasks starts a local instance, runs the tasks and shuts the instance down again."""
    scenarios = [{"model": "llama-3.1-8b", "hardware": {"gpu": g, "num_gpus": 1},
                  "workload": {"phase": "generate", "batch_size": b}} for g in ("h100-sxm", "l4") for b in (1, 16)]
    local = [p.model_dump() for p in run_tasks(simulator.predict, scenarios, "local")]
    remote = [p.model_dump() for p in run_tasks(simulator.predict, scenarios, "ray")]
    assert remote == local
    assert not ray.is_initialized()


@needs_des
def test_jobs_share_one_table_per_replica_scenario():
    """In process, the three jobs build two step tables: the H100 replica's (used by both H100 jobs and
    by both pools of the split) and the L40S's; a second batch on the same tables builds none."""
    tables = StepTables()
    first = run_jobs(_jobs(), "local", tables=tables)
    assert tables.built == 2 and len(tables.timers) == 2
    again = run_jobs(_jobs(), "local", tables=tables)
    assert tables.built == 2
    assert again == first  # filled tables give the numbers fresh ones do
    assert run_job(_jobs()[2]) == first[2]


@pytest.fixture(scope="module")
def local_ray():
    verify._start_ray(ray, None)
    yield
    ray.shutdown()


@needs_des
def test_tables_are_put_once_and_tasks_get_references(local_ray, monkeypatch):
    """``run_jobs`` on Ray puts each table once (two tables for three jobs), fills each in one task (the
    busiest job's), passes each job's task the references of exactly the filled tables it uses, and
    gives the in-process numbers."""
    puts, calls = [], []
    real_put = ray.put

    def put(value):
        puts.append(value[0])
        return real_put(value)

    class Recorder:
        def __init__(self, fn, remote):
            self.fn, self.inner = fn, remote

        def options(self, **kwargs):
            return Recorder(self.fn, self.inner.options(**kwargs))

        def remote(self, *args):
            calls.append((self.fn.__name__, args))
            return self.inner.remote(*args)

    monkeypatch.setattr(ray, "put", put)
    monkeypatch.setattr(verify, "_remote", lambda fn: Recorder(fn, ray.remote(num_cpus=1)(fn)))
    jobs = _jobs()
    jobs[1]["workload"]["rate"] = 5.0  # the split is the busiest H100 job: its run fills the H100 table
    remote = run_jobs(jobs, "ray")
    assert len(puts) == len(set(puts)) == 2
    fills = [args for name, args in calls if name == "_fill"]
    runs = [args for name, args in calls if name == "_run_on_tables"]
    assert [(a[0]["workload"]["rate"], len(a) - 1) for a in fills] == [(5.0, 1), (3.0, 1)]
    assert [len(a) - 1 for a in runs] == [1, 1, 1]  # one table per job (the split's pools share it)
    assert all(isinstance(ref, ray.ObjectRef) for a in fills + runs for ref in a[1:])
    assert runs[0][1] == runs[1][1] != runs[2][1]  # the H100 jobs read the same filled table
    assert remote == run_jobs(jobs, "local")


@needs_des
def test_a_task_on_stored_tables_builds_none():
    """What a task does with the tables Ray resolved: the job runs on them without building any."""
    tables = StepTables()
    expected = run_jobs(_jobs(), "local", tables=tables)
    for j, want in zip(_jobs(), expected):
        mine = StepTables(tables.timers)
        assert run_job(j, mine) == want and mine.built == 0


@needs_des
def test_plan_verification_identical_on_ray(local_ray):
    req = dict(model="llama-3.1-8b", rate=4.0, prompt_len=512, output_len=64, slo_ttft_s=1.0, slo_tpot_s=0.05,
               gpus=["l40s"], max_gpus=4, verify=2, num_requests=300, disaggregate=False)
    local = plan({**req, "backend": "local"})
    remote = plan({**req, "backend": "ray"})
    assert [p.model_dump(exclude={"verification"}) for p in local.plans] == \
           [p.model_dump(exclude={"verification"}) for p in remote.plans]
    assert [p.verification for p in local.plans] == [p.verification for p in remote.plans]
    assert any(p.verification is not None for p in local.plans)


@needs_des
def test_heterogeneous_split_identical_on_ray(local_ray):
    """A Splitwise pair (H100 prefill, A100 decode of another TP) simulates alike on both backends."""
    config = {"max_num_seqs": 64, "disaggregate": "1:1",
              "decode_overrides": {"hardware.gpu": "a100-80gb-sxm", "parallelism.tp": 2}}
    jobs = [job(H100 | {"hardware": {"gpu": "h100-sxm", "num_gpus": 1}}, config, rate, 1024, 64, 200, 0, 1.0, 0.05, 90.0)
            for rate in (2.0, 4.0)]
    assert run_jobs(jobs, "ray") == run_jobs(jobs, "local")


@needs_des
def test_load_curve_identical_on_ray(local_ray):
    deployments = [({"model": "llama-3.1-8b", "hardware": {"gpu": g, "num_gpus": 1}}, {"max_num_seqs": 64})
                   for g in ("l40s", "h100-sxm")]
    local = load_curve(deployments, [2.0, 6.0], 512, 64, num_requests=200)
    remote = load_curve(deployments, [2.0, 6.0], 512, 64, num_requests=200, backend="ray")
    assert remote == local
    assert local[0][1]["ttft_pct_s"] >= local[0][0]["ttft_pct_s"]  # more load, longer waits
