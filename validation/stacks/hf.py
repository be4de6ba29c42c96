"""The ``hf`` stack: Hugging Face transformers' own modelling code, built from a config with random weights.

A roofsim preset becomes a ``LlamaConfig`` (dense: GQA, MHA, q/k/v biases for Qwen2-style models) or
a ``MixtralConfig`` (routed MoE; transformers 5 runs its experts through ``torch._grouped_mm``), with
``attn_implementation="sdpa"`` and bf16 weights. Two ways to run it, as users do:

* ``eager``: a ``DynamicCache`` (``torch.cat`` of every layer's K/V on each decode step), no attention
  mask (transformers then skips the mask and calls SDPA with ``is_causal`` / ``enable_gqa``), every
  kernel launched from Python;
* ``graph``: a ``StaticCache`` of exactly the step's length and the step captured in a CUDA graph.
  Under capture transformers cannot check the mask on the host, so it materialises the causal mask and,
  with a mask, expands K/V to every query head (``repeat_kv``) before SDPA.

The decode step of ``eager`` crops the cache back to ``context_len`` after each run and copies it to
contiguous tensors (``reset``, outside the timed region: in generation each step's ``torch.cat`` reads
the contiguous result of the previous one, and a cropped view would send the copy down PyTorch's
slower strided path); that of ``graph`` rewinds the static cache's length counters.
"""

from __future__ import annotations

import torch

from validation.stacks.protocol import Step


def hf_config(spec: dict):
    """A transformers config of the preset's shape (``LlamaConfig`` or ``MixtralConfig``)."""
    from transformers import LlamaConfig, MixtralConfig

    common = dict(vocab_size=spec["vocab_size"], hidden_size=spec["hidden_size"],
                  num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_attention_heads"],
                  num_key_value_heads=spec["num_kv_heads"], head_dim=spec["head_dim"],
                  max_position_embeddings=max(int(spec.get("max_position_embeddings") or 0), 32768),
                  tie_word_embeddings=bool(spec.get("tie_word_embeddings")), rms_norm_eps=1e-5)
    moe = spec.get("moe")
    if moe:
        if moe.get("num_shared_experts") or moe.get("first_dense_layers"):
            raise ValueError("the hf stack builds routed-MoE models without shared experts or dense layers")
        return MixtralConfig(intermediate_size=moe["expert_intermediate_size"], num_local_experts=moe["num_experts"],
                             num_experts_per_tok=moe["top_k"], **common)
    if spec.get("sliding_window") or spec.get("mla"):
        raise ValueError("the hf stack builds full-attention models (no sliding window, no MLA)")
    return LlamaConfig(intermediate_size=spec["intermediate_size"], attention_bias=bool(spec.get("attention_bias")),
                       **common)


class HFStack:
    def __init__(self, spec: dict, device, dtype, mode: str = "eager"):
        from transformers import AutoModelForCausalLM

        self.spec, self.device, self.dtype, self.mode = spec, torch.device(device), dtype, mode
        self.name = f"hf-{mode}"
        config = hf_config(spec)
        with torch.device(self.device):
            self.module = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
        self.config = config

    def _kv(self, batch: int, length: int):
        s = self.spec
        shape = (batch, s["num_kv_heads"], length, s["head_dim"])
        return (torch.randn(shape, device=self.device, dtype=self.dtype),
                torch.randn(shape, device=self.device, dtype=self.dtype))

    def _cache(self, batch: int, past: int, new: int):
        from transformers import DynamicCache, StaticCache

        if self.mode == "eager":
            cache = DynamicCache(config=self.config)
            if past:
                for layer in range(self.spec["num_layers"]):
                    cache.update(*self._kv(batch, past), layer)
            return cache
        cache = StaticCache(config=self.config, max_cache_len=past + new)
        for layer in range(self.spec["num_layers"]):
            k, v = self._kv(batch, past + new)
            cache.update(k, v, layer)  # allocates the layer at full length, random contents
            cache.layers[layer].cumulative_length.fill_(past)
        return cache

    def _step(self, batch: int, new: int, past: int) -> Step:
        ids = torch.randint(0, self.spec["vocab_size"], (batch, new), device=self.device)
        position_ids = torch.arange(past, past + new, device=self.device)[None].expand(batch, new)
        fresh = self.mode == "eager" and not past  # eager prefill: transformers makes its own DynamicCache
        cache = None if fresh else self._cache(batch, past, new)

        @torch.inference_mode()
        def run():
            return self.module(input_ids=ids, position_ids=position_ids, past_key_values=cache, use_cache=True,
                               logits_to_keep=1).logits

        def reset():
            if cache is None:
                return
            if self.mode == "eager":
                cache.crop(-new)  # a view of the first context_len positions: copied to a contiguous tensor, as
                for layer in cache.layers:  # the cache generate() grows by torch.cat always is
                    layer.keys, layer.values = layer.keys.contiguous(), layer.values.contiguous()
            else:
                for layer in cache.layers:
                    layer.cumulative_length.fill_(past)

        def release():
            if cache is not None:
                cache.layers.clear()

        return Step(run=run, capturable=self.mode == "graph", reset=reset, release=release)

    def prefill(self, batch: int, prompt_len: int) -> Step:
        return self._step(batch, prompt_len, 0)

    def decode(self, batch: int, context_len: int) -> Step:
        return self._step(batch, 1, context_len)


def factory(spec: dict, device="cuda", dtype=torch.bfloat16, mode: str = "eager") -> HFStack:
    return HFStack(spec, device, dtype, mode)
