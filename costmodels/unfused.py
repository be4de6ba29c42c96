"""HBM bytes of the extra kernels an unfused implementation runs around attention (no FLOPs to speak of).

* ``kv_concat_bytes``: a KV cache grown by concatenation (transformers' ``DynamicCache``: ``torch.cat``
  of the old keys / values and the new ones) reads the ``past`` tokens and writes ``past + new`` per
  sequence, every layer, every step;
* ``kv_expand_bytes``: K/V expanded to every query head of a GQA group before attention (``repeat_kv``:
  ``expand`` + ``reshape``, a copy) reads the cached K/V once and writes ``group`` copies;
* ``mask_bytes``: an explicit boolean attention mask of (batch, 1, queries, keys), one byte per entry,
  written once per step (and read by each layer's attention).
"""

from __future__ import annotations

import numpy as np


def kv_concat_bytes(batch, past, new, kv_elems_per_token, kv_elem_bytes):
    b = np.asarray(batch, dtype=float)
    p = np.asarray(past, dtype=float)
    return b * (p + (p + new)) * kv_elems_per_token * kv_elem_bytes


def kv_expand_bytes(kv_read_bytes, group):
    return np.asarray(kv_read_bytes, dtype=float) * (1.0 + np.asarray(group, dtype=float))


def mask_bytes(batch, queries, keys):
    return np.asarray(batch, dtype=float) * np.asarray(queries, dtype=float) * np.asarray(keys, dtype=float)
