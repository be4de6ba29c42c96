"""What a stack factory returns: a model and its step functions on static buffers.

``roofsim calibrate --stack-module pkg.module:factory`` imports ``factory`` and calls
``factory(spec, device, dtype)`` with ``spec`` the roofsim model (``simulator.models.ModelSpec`` as a
dict: ``num_layers``, ``hidden_size``, ``num_attention_heads``, ``num_kv_heads``, ``head_dim``,
``intermediate_size``, ``vocab_size``, ``moe``...). It returns an object with

* ``module``: the ``torch.nn.Module`` (its parameters are counted for the CSV's memory column);
* ``prefill(batch, prompt_len) -> Step`` and ``decode(batch, context_len) -> Step``;
* optionally ``train(batch, seq_len) -> Step`` (forward, backward and optimizer step);
* ``name``: a short label for the stack.

A ``Step`` has ``run()`` (one step; for decode one new token per sequence after ``context_len``
cached ones) and ``capturable`` (whether
``run`` may be captured in a CUDA graph: static shapes, no host synchronisation). Its tensors are
allocated once, when the step is made. ``reset`` (optional) restores what ``run`` changed, e.g. crops a
growing cache back; it runs between timed runs, outside the timed region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Step:
    run: Callable[[], object]
    capturable: bool = True
    reset: Callable[[], None] | None = None  # restores the cache after a run (outside the timed region)
    release: Callable[[], None] | None = None  # frees the step's buffers (caches) once timed
