"""Batching: chunked prefill, with prefill chunks piggybacked on decode steps (Sarathi-Serve)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field, PositiveInt

from simulator.techniques import Technique, register


@register
class ChunkedPrefill(Technique):
    """Chunked prefill: a prompt runs as n = ceil(s / chunk) chunks of ~chunk tokens, each attending to
    the chunks before it; and (``mix_into_decode``) every decode step carries one chunk of another
    request's prompt, so decode GEMMs that are bound by reading weights do useful prefill work.

    Prefill time = Σ_i step(chunk, past = i·chunk): weights are streamed n times and attention reads the
    growing cache, in exchange for bounded per-step latency and activation memory. A mixed decode step
    runs batch + chunk tokens through the GEMMs, plus a prefill-attention kernel for the chunk over
    ``chunk_context`` cached tokens (default: half the decode context)."""

    name = "chunked_prefill"
    family = "batching"
    citation = ("Agrawal et al. 2023, SARATHI: Efficient LLM Inference by Piggybacking Decodes with Chunked "
                "Prefills, arXiv 2308.16369; Agrawal et al. 2024, Sarathi-Serve, arXiv 2403.02310")
    summary = "prefill as ceil(s/chunk) steps; decode steps carry one prefill chunk through the same GEMMs"

    chunk_tokens: PositiveInt = Field(512, description="prompt tokens per chunk")
    mix_into_decode: bool = Field(True, description="each decode step also runs one prefill chunk")
    chunk_context: PositiveInt | None = Field(None, description="tokens already prefilled before a mixed chunk")

    def prefill_chunk_tokens(self):
        return self.chunk_tokens

    def step_shape(self, shape, dep):
        if shape.phase != "decode" or not self.mix_into_decode:
            return shape
        past = np.asarray(shape.past_tokens, dtype=float)
        context = past / 2.0 if self.chunk_context is None else float(self.chunk_context)
        return replace(shape, chunk_tokens=float(self.chunk_tokens), chunk_past=context + 0.0 * past)
