"""Pipeline-parallel schedules: bubble and in-flight micro-batches.

With p stages and m micro-batches per step (Narayanan et al. 2021, arXiv 2104.04473, §2.2):

* GPipe (Huang et al. 2019, arXiv 1811.06965) and 1F1B (PipeDream-Flush) both take ``(m + p - 1)``
  micro-batch slots per step, a bubble of ``(p - 1)/(m + p - 1)`` of the step; GPipe keeps all m
  micro-batches' activations in flight, 1F1B at most p on the first stage.
* Interleaved 1F1B with v model chunks per device shrinks the bubble slots to ``(p - 1)/v`` at v times
  the point-to-point traffic; the first stage holds ``p·(1 + (p - 1)/(p·v))`` micro-batches' worth of
  its layers' activations (Korthikanti et al. 2022, arXiv 2205.05198, §4.2.3: L·(1 + (p-1)/(p·v)) layers
  in total).
* Vocabulary parallelism (Yeung et al. 2024, arXiv 2411.05288) spreads the input and output vocabulary
  layers over all p stages instead of the first and last.
"""

from __future__ import annotations

import numpy as np

SCHEDULES = ("gpipe", "1f1b", "interleaved")


def pipeline_slots(schedule: str, stages, microbatches, chunks=1):
    """Micro-batch slots one step takes, each the time of one micro-batch's forward and backward on a stage."""
    p, m, v = (np.asarray(x, dtype=float) for x in (stages, microbatches, chunks))
    if schedule == "interleaved":
        return m + (p - 1.0) / v
    return m + p - 1.0


def bubble_fraction(schedule: str, stages, microbatches, chunks=1):
    """Idle share of a step: (slots - m) / slots; (p - 1)/(m + p - 1) for GPipe and 1F1B."""
    slots = pipeline_slots(schedule, stages, microbatches, chunks)
    return (slots - np.asarray(microbatches, dtype=float)) / slots


def inflight_microbatches(schedule: str, stages, microbatches, chunks=1):
    """Micro-batches whose activations the first stage holds at its peak (in units of the stage's layers)."""
    p, m, v = (np.asarray(x, dtype=float) for x in (stages, microbatches, chunks))
    if schedule == "gpipe":
        return m
    held = np.minimum(p, m)
    if schedule == "interleaved":
        return held * (1.0 + (p - 1.0) / (p * v))
    return held
