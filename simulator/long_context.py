"""The seed paper's concurrent-serving framework over context length (Fu 2024, arXiv 2405.08944).

For one model on one deployment and each context length ``s`` it reports the four limits the paper
traces back to the KV cache:

1. prefill time of one request (GPU FLOP/s bound), §3.1;
2. max concurrency: users whose KV fits in HBM beside the weights (HBM size bound), §3.2;
3. decode time: ``output_len`` steps of one user, each reading the weights plus its KV (HBM
   bandwidth bound), §3.3; and the step time for a full batch of concurrent users;
4. context-switch time: (KV out + KV in) / host-link bandwidth when one user's cache is swapped
   for another's (PCIe bound), §3.4.

Session throughput is roofsim's formalisation of the paper's framework: a GPU that keeps ``C`` users
resident prefills them one after another, then decodes them together, so
``sessions/s = C / (C·t_prefill + output_len·t_step(C))``.
"""

from __future__ import annotations

import numpy as np

from costmodels.host_transfer import context_switch_time_s
from simulator.api import as_scenario, sweep
from simulator.bounds import MAX_TOKENS, check_counts
from simulator.resolve import resolve
from simulator.scenario import Scenario

PAPER_CONTEXTS = (4096, 50_000)


def long_context_table(scenario: Scenario | dict | None = None, contexts=PAPER_CONTEXTS, output_len: int = 250):
    """Arrays over ``contexts``: kv_bytes_per_request, max_concurrency, prefill_s, decode_s (output_len steps of
    one user), decode_step_full_batch_s, context_switch_s and session_throughput_per_s."""
    sc = as_scenario(scenario)
    ctx = check_counts("contexts", np.atleast_1d(contexts), MAX_TOKENS, "tokens").astype(np.int64)
    output_len = int(check_counts("output_len", output_len, MAX_TOKENS, "tokens"))
    pre = sweep(sc.with_overrides(**{"workload.phase": "prefill", "workload.batch_size": 1}), prompt_len=ctx)
    one = sweep(sc.with_overrides(**{"workload.phase": "decode", "workload.batch_size": 1}), context_len=ctx)
    concurrency = one["max_concurrency"]
    full_step = np.array([
        sweep(sc.with_overrides(**{"workload.phase": "decode", "workload.batch_size": max(int(c), 1)}),
              context_len=[int(s)])["latency_s"][0]
        for c, s in zip(concurrency, ctx)
    ])
    dep, _ = resolve(sc, {})
    kv = one["kv_bytes_per_request"]
    host = dep.gpu.host_link.bandwidth_bytes_per_s * float(dep.profile.kind("host_transfer").memory(kv[-1]))
    switch = context_switch_time_s(kv, kv, host)
    c = np.maximum(concurrency, 1)
    throughput = np.where(concurrency > 0, c / (c * pre["latency_s"] + output_len * full_step), 0.0)
    return {
        "context_len": ctx,
        "kv_bytes_per_request": kv,
        "weights_bytes": one["weights_bytes"],
        "max_concurrency": concurrency,
        "prefill_s": pre["latency_s"],
        "decode_s": output_len * one["latency_s"],
        "decode_step_s": one["latency_s"],
        "decode_step_full_batch_s": full_step,
        "context_switch_s": switch,
        "session_throughput_per_s": throughput,
    }


def paper_scenario(**overrides) -> Scenario:
    """The paper's running example: Yi-34B on one A100-80GB SXM at theoretical peak, all of HBM usable."""
    base = Scenario.from_dict({
        "model": "yi-34b",
        "hardware": {"gpu": "a100-80gb-sxm", "num_gpus": 1},
        "calibration": "peak",
        "memory_utilization": 1.0,
    })
    return base.with_overrides(**overrides) if overrides else base
