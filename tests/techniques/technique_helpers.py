"""Shared helpers for the technique tests: evaluate a scenario given as a dict, read scalars."""

from __future__ import annotations

import numpy as np

from simulator.engine import evaluate
from simulator.resolve import resolve
from simulator.scenario import Scenario


def scenario(model="llama-3.1-8b", gpu="h100-sxm", phase="decode", batch=1, context=4096, prompt=1024, output=64,
             techniques=(), calibration="peak", num_gpus=1, **extra) -> Scenario:
    data = {"model": model, "hardware": {"gpu": gpu, "num_gpus": num_gpus}, "calibration": calibration,
            "workload": {"phase": phase, "batch_size": batch, "context_len": context, "prompt_len": prompt,
                         "output_len": output},
            "techniques": [dict(t) for t in techniques], **extra}
    return Scenario.from_dict(data)


def run(**kwargs) -> dict[str, float]:
    """Scalar outputs of one scenario (see ``scenario`` for the keywords)."""
    return {k: np.asarray(v).item() for k, v in evaluate(scenario(**kwargs)).arrays.items()}


def step(**kwargs):
    """The evaluation itself (steps with their operators, the deployment)."""
    return evaluate(scenario(**kwargs))


def deployment(**kwargs):
    return resolve(scenario(**kwargs), {})[0]


def op_sum(ev, phase: str, attr: str, match=lambda op: True) -> float:
    """Σ attr x count over the operators of a phase's step that ``match``."""
    st = ev.steps[phase]
    return float(sum(np.mean(np.asarray(getattr(op, attr), dtype=float) * op.count) for op in st.ops if match(op)))


def op_time(ev, phase: str, match=lambda op: True) -> float:
    st = ev.steps[phase]
    return float(sum(np.mean(t.time_s) for op, t in zip(st.ops, st.times) if match(op)))


def is_attention(op) -> bool:
    return op.kind in ("attention_prefill", "attention_decode")
