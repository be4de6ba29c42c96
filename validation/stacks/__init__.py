"""Timing a user's own inference stack (Hugging Face transformers, or any torch model behind a factory)
over a small grid of prefill and decode steps, written as the measurement CSV that
``roofsim calibrate --from-measurements`` fits (``simulator.stacks``).

* :mod:`validation.stacks.protocol` -- what a stack factory returns (step callables on static buffers);
* :mod:`validation.stacks.hf` -- the ``hf`` stack: transformers' Llama / Mixtral code at a preset's shape;
* :mod:`validation.stacks.unfused` -- a plain torch decoder with unfused element-wise ops (an example
  ``--stack-module`` factory);
* :mod:`validation.stacks.measure` -- the grid, eager and CUDA-graph timing, the CSV rows.
"""
