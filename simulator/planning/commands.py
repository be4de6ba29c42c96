"""Ready-to-run engine command lines for a plan: vLLM and SGLang (flags from their documentation:
https://docs.vllm.ai/en/stable/configuration/engine_args/ and
https://docs.sglang.ai/advanced_features/server_arguments.html)."""

from __future__ import annotations

import json

from simulator.models import get_model


def hf_name(model) -> str:
    """The Hugging Face repository of a preset (from its config.json source URL), else its name."""
    spec = get_model(model)
    src = getattr(spec, "source", "") or ""
    prefix = "https://huggingface.co/"
    if src.startswith(prefix):
        parts = src[len(prefix):].split("/")
        if len(parts) >= 2:
            return f"{parts[0]}/{parts[1]}"
    return spec.name


def _speculative(techniques: list[dict]) -> dict | None:
    return next((t for t in techniques if t.get("name") == "speculative"), None)


def vllm_command(model, tp: int, pp: int, replicas: int, max_num_seqs: int, max_batched_tokens: int,
                 weights: str, kv_cache: str, techniques: list[dict], role: str | None = None, ep: int = 1) -> str:
    """``vllm serve``: one engine with ``replicas`` data-parallel copies of a tp x pp replica."""
    parts = [f"vllm serve {hf_name(model)}", f"--tensor-parallel-size {tp}", f"--pipeline-parallel-size {pp}"]
    if ep > 1:
        parts.append("--enable-expert-parallel")
    if replicas > 1:
        parts.append(f"--data-parallel-size {replicas}")
    parts += [f"--max-num-seqs {max_num_seqs}", f"--max-num-batched-tokens {max_batched_tokens}",
              f"--kv-cache-dtype {'fp8' if kv_cache == 'fp8' else 'auto'}"]
    if weights == "fp8":
        parts.append("--quantization fp8")
    if any(t.get("name") == "prefix_cache" for t in techniques):
        parts.append("--enable-prefix-caching")
    spec = _speculative(techniques)
    if spec is not None:
        cfg = {"method": "ngram" if spec.get("method", "self") == "self" else spec["method"],
               "num_speculative_tokens": int(spec.get("gamma", 4))}
        parts.append(f"--speculative-config '{json.dumps(cfg)}'")
    if role is not None:
        kv_role = "kv_producer" if role == "prefill" else "kv_consumer"
        parts.append(f"--kv-transfer-config '{json.dumps({'kv_connector': 'NixlConnector', 'kv_role': kv_role})}'")
    return " ".join(parts)


def sglang_command(model, tp: int, pp: int, replicas: int, max_num_seqs: int, max_batched_tokens: int,
                   weights: str, kv_cache: str, techniques: list[dict], role: str | None = None, ep: int = 1) -> str:
    """``python -m sglang.launch_server`` with the same layout and limits."""
    parts = [f"python -m sglang.launch_server --model-path {hf_name(model)}", f"--tp-size {tp}", f"--pp-size {pp}"]
    if ep > 1:
        parts.append(f"--ep-size {ep}")
    if replicas > 1:
        parts.append(f"--dp-size {replicas}")
    parts += [f"--max-running-requests {max_num_seqs}", f"--chunked-prefill-size {max_batched_tokens}"]
    if kv_cache == "fp8":
        parts.append("--kv-cache-dtype fp8_e4m3")
    if weights == "fp8":
        parts.append("--quantization fp8")
    if not any(t.get("name") == "prefix_cache" for t in techniques):
        parts.append("--disable-radix-cache")
    spec = _speculative(techniques)
    if spec is not None:
        parts.append(f"--speculative-algorithm NGRAM --speculative-num-draft-tokens {int(spec.get('gamma', 4))}")
    if role is not None:
        parts.append(f"--disaggregation-mode {role}")
    return " ".join(parts)
