"""Print the source of the transformers code the ``hf`` stack runs (the installed version), for counting
its launches and bytes: the MoE block, router and experts of Mixtral (OLMoE's experts are Mixtral's class
in transformers 5) with the experts implementation the model dispatches to, the dynamic and static cache
layers' update, and the SDPA attention entry. ``python -m validation.stacks.hf_source > hf-source.txt``."""

from __future__ import annotations

import inspect


def main() -> None:
    import transformers
    from transformers import cache_utils
    from transformers.integrations import sdpa_attention
    from transformers.models.llama import modeling_llama
    from transformers.models.mixtral import modeling_mixtral

    print("transformers", transformers.__version__)
    targets = [modeling_mixtral.MixtralSparseMoeBlock, getattr(modeling_mixtral, "MixtralTopKRouter", None),
               getattr(modeling_mixtral, "MixtralExperts", None), modeling_llama.LlamaAttention,
               modeling_llama.LlamaMLP, modeling_llama.LlamaRMSNorm, modeling_llama.apply_rotary_pos_emb,
               cache_utils.DynamicLayer, cache_utils.StaticLayer, sdpa_attention.sdpa_attention_forward]
    try:
        from transformers.integrations import moe

        targets += [getattr(moe, n) for n in dir(moe) if n.endswith("_experts_forward") or n == "use_experts_implementation"]
    except ImportError:
        pass
    for t in targets:
        if t is None:
            continue
        print(f"\n# ==== {t.__module__}.{t.__qualname__}")
        try:
            print(inspect.getsource(t))
        except (OSError, TypeError) as exc:
            print(f"# no source: {exc}")


if __name__ == "__main__":
    main()
