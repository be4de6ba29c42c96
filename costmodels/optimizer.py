"""The optimizer step as a memory-bound pass over parameters, gradients and optimizer states.

A fused optimizer (PyTorch ``torch.optim.AdamW(fused=True)``, Apex ``FusedAdam``, Megatron's
distributed optimizer) reads every local gradient, reads and writes every state tensor and the master
weights, and writes the working (compute-dtype) weights, once per step. Bytes per parameter follow from
what is stored (:func:`step_bytes_per_param`); FLOPs are the update's arithmetic (AdamW: two moment
updates, bias corrections, square root, division and decoupled weight decay, about 12 per parameter:
Loshchilov & Hutter 2019, arXiv 1711.05101, Algorithm 2).

States per parameter: AdamW keeps m and v; SGD with momentum keeps one buffer; Adafactor (Shazeer &
Stern 2018, arXiv 1804.04235, §3) keeps a factored second moment, one row and one column vector per
matrix (r + c values for an r x c matrix) and no first moment by default.
"""

from __future__ import annotations

import numpy as np

FLOPS_PER_PARAM = {"adamw": 12.0, "sgd": 4.0, "adafactor": 10.0}
STATES_PER_PARAM = {"adamw": 2.0, "sgd": 1.0, "adafactor": 0.0}
OPTIMIZERS = tuple(FLOPS_PER_PARAM)


def adafactor_state_elems(rows, cols):
    """Factored second moment of an r x c matrix: r + c values."""
    return np.asarray(rows, dtype=float) + cols


def step_bytes_per_param(param_bytes, grad_bytes, master_bytes, state_bytes):
    """HBM traffic of one update per parameter: the gradient read; states and master weights read and
    written; the working weights written (and read, when there is no separate master copy)."""
    master = np.asarray(master_bytes, dtype=float)
    working = np.where(master > 0, param_bytes, 2.0 * np.asarray(param_bytes, dtype=float))
    return np.asarray(grad_bytes, dtype=float) + 2.0 * state_bytes + 2.0 * master + working


def optimizer_step(params, optimizer: str, param_bytes, grad_bytes, master_bytes, state_bytes):
    """(flops, bytes) of one optimizer step over ``params`` local parameters."""
    p = np.asarray(params, dtype=float)
    return p * FLOPS_PER_PARAM[optimizer], p * step_bytes_per_param(param_bytes, grad_bytes, master_bytes, state_bytes)
