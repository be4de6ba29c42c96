"""``roofsim models list|show NAME``."""

from __future__ import annotations

import yaml

from roofsim.cli.format import count, table
from simulator.models import get_model, list_models


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="the model presets")
    verbs = p.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="every preset").set_defaults(run=run_list)
    show = verbs.add_parser("show", help="one model (preset name or config.json path)")
    show.add_argument("name")
    show.set_defaults(run=run_show)


def _attention(m) -> str:
    if m.mla:
        return f"MLA r={m.mla.kv_lora_rank}"
    if m.num_kv_heads == m.num_attention_heads:
        return "MHA"
    return "MQA" if m.num_kv_heads == 1 else f"GQA {m.num_attention_heads}/{m.num_kv_heads}"


def run_list(args) -> int:
    rows = []
    for name in list_models():
        m = get_model(name)
        moe = f"{m.moe.num_experts}e top{m.moe.top_k}" if m.moe else "dense"
        active = count(m.active_params()) + ("" if m.counts_input_embedding else "*") \
            + ("" if m.counts_output_head else "*")
        rows.append([name, count(m.total_params()), active, str(m.num_layers), _attention(m), moe,
                     f"{m.kv_elements_per_token() * 2 / 1e3:.0f} KB"])
    print(table(["name", "params", "active", "layers", "attention", "mlp", "KV/token (bf16)"], rows))
    print("\nactive: parameters one token uses, counted as the authors publish them (* = input embedding "
          "left out, as DeepSeek and gpt-oss count; ** = the output layer too, as GLM-4.5 counts)")
    return 0


def run_show(args) -> int:
    m = get_model(args.name)
    data = m.model_dump(mode="json", exclude_none=True)
    data["derived"] = {"total_params": m.total_params(), "active_params": m.active_params(),
                       "active_params_counts_input_embedding": m.counts_input_embedding,
                       "active_params_counts_output_head": m.counts_output_head,
                       "kv_elements_per_token": m.kv_elements_per_token()}
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0
