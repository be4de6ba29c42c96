"""Ready-to-run command lines for a plan: vLLM and SGLang (flags from their documentation:
https://docs.vllm.ai/en/stable/configuration/engine_args/ and
https://docs.sglang.ai/advanced_features/server_arguments.html; a replica over several nodes as in
https://docs.vllm.ai/en/latest/serving/parallelism_scaling/ (one ``vllm serve`` on the head node of a
Ray cluster) and https://docs.sglang.io/references/multi_node_deployment/multi_node.html (one
``launch_server`` per node with ``--nnodes``, ``--node-rank`` and ``--dist-init-addr``)), and the
verification as a ``roofsim serve`` command."""

from __future__ import annotations

import json
import shlex

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
                 weights: str, kv_cache: str, techniques: list[dict], role: str | None = None, ep: int = 1,
                 nodes: int = 1) -> str:
    """``vllm serve``: one engine with ``replicas`` data-parallel copies of a tp x pp replica (over
    ``nodes`` nodes: started on the head node of a Ray cluster of them)."""
    parts = [f"vllm serve {hf_name(model)}", f"--tensor-parallel-size {tp}", f"--pipeline-parallel-size {pp}"]
    if nodes > 1:
        parts.append("--distributed-executor-backend ray")
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
                   weights: str, kv_cache: str, techniques: list[dict], role: str | None = None, ep: int = 1,
                   nodes: int = 1) -> str:
    """``python -m sglang.launch_server`` with the same layout and limits (over ``nodes`` nodes: run on
    each with its ``--node-rank`` 0 .. nodes - 1)."""
    parts = [f"python -m sglang.launch_server --model-path {hf_name(model)}", f"--tp-size {tp}", f"--pp-size {pp}"]
    if nodes > 1:
        parts.append(f"--nnodes {nodes} --node-rank 0 --dist-init-addr HEAD_NODE_IP:20000")
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


def serve_command(config: dict, rate: float, prompt_len: int | str, output_len: int | str, num_requests: int,
                  seed: int, prefix_tokens: int = 0) -> str:
    """``roofsim serve scenario.json ...``: the DES run that verifies a plan (the plan's ``scenario``
    saved as scenario.json, its ``serve_config`` as flags)."""
    parts = ["roofsim serve scenario.json", f"--rate {rate!r}", f"--prompt-len {shlex.quote(str(prompt_len))}",
             f"--output-len {shlex.quote(str(output_len))}", f"--num-requests {num_requests}", f"--seed {seed}",
             f"--max-batch {config['max_num_seqs']}", f"--max-batched-tokens {config['max_num_batched_tokens']}"]
    if not config.get("chunked_prefill", True):
        parts.append("--no-chunked-prefill")
    if config.get("prefix_caching"):
        parts.append("--prefix-cache")
    if prefix_tokens > 0:
        parts.append(f"--prefix {int(prefix_tokens)}:1.0")
    if config.get("disaggregate"):
        parts.append(f"--disaggregate {config['disaggregate']}")
    overrides = config.get("decode_overrides", {})
    if "hardware.gpu" in overrides:
        parts.append(f"--decode-gpu {overrides['hardware.gpu']}")
    if "parallelism.tp" in overrides:
        parts.append(f"--decode-tp {overrides['parallelism.tp']}")
    parts += [f"--slo-ttft {config['slo_ttft_s']!r}", f"--slo-tpot {config['slo_tpot_s']!r}"]
    return " ".join(parts)
