"""Disaggregation on the papers' own example setups, with roofsim's DES (numbers in docs/serving.md).

For each deployment: the largest Poisson rate at which at least 90% of requests meet both the TTFT and
the TPOT target (DistServe's goodput at 90% attainment), found by bisection over the rate with 600
requests or 90 s of arrivals per run. Lengths are lognormal stand-ins for the papers' traces (medians from the papers,
sigma 1.0 assumed), so the figures test direction and rough size, not the papers' exact numbers.

Run: ``python benchmarks/serve_papers.py`` (a few minutes on one core).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from simulator import serve  # noqa: E402

# OPT-13B as DistServe serves it (https://huggingface.co/facebook/opt-13b/blob/main/config.json)
OPT_13B = {"name": "opt-13b", "family": "opt",
           "source": "https://huggingface.co/facebook/opt-13b/blob/main/config.json",
           "num_layers": 40, "hidden_size": 5120, "num_attention_heads": 40, "num_kv_heads": 40, "head_dim": 128,
           "intermediate_size": 20480, "vocab_size": 50272, "tie_word_embeddings": True,
           "max_position_embeddings": 2048, "gated_mlp": False, "attention_bias": True, "attention_out_bias": True,
           "mlp_bias": True, "norm": "layernorm"}


def goodput_rate(scenario, workload, config, lo=0.25, hi=64.0, steps=8) -> float:
    """Largest rate (req/s) with SLO attainment >= 90%, by bisection in log space. Each run lasts about
    90 s of arrivals (at least 600 requests), long enough for a queue to build past a burst."""
    def ok(rate):
        n = max(600, int(90 * rate))
        res = serve(scenario, {**workload, "rate": rate, "num_requests": n}, config)
        return res.slo_attainment >= 0.9
    if not ok(lo):
        return 0.0
    for _ in range(steps):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def compare(title: str, sc: dict, wl: dict, rows: dict[str, dict], gpus: dict[str, int]) -> None:
    print(title)
    base = None
    for name, cfg in rows.items():
        rate = goodput_rate(sc, wl, cfg)
        per_gpu = rate / gpus[name]
        base = base or per_gpu
        print(f"  {name:44s} {rate:6.2f} req/s = {per_gpu:5.2f} req/s/GPU  ({per_gpu / base:.2f}x)")


def distserve() -> None:
    """DistServe §6 chatbot: OPT-13B on A100-80GB with its Table 1 SLOs (TTFT 0.25 s, TPOT 0.1 s), then a
    tight TPOT target, on 4 GPUs: 4 co-located replicas against prefill/decode splits."""
    sc = {"model": OPT_13B, "hardware": {"gpu": "a100-80gb-sxm", "num_gpus": 4}, "parallelism": {"tp": 1}}
    wl = {"num_requests": 600, "prompt_len": "lognormal:256,1.0", "output_len": "lognormal:256,1.0", "seed": 0}
    for tpot in (0.1, 0.025):
        slo = {"slo_ttft_s": 0.25, "slo_tpot_s": tpot, "max_model_len": 2048}
        rows = {
            "vLLM-like prefill-first, 4 replicas": {**slo, "chunked_prefill": False, "router": "least_outstanding",
                                                    "max_num_batched_tokens": 4096},
            "vLLM V1 chunked prefill, 4 replicas": {**slo, "router": "least_outstanding"},
            "disaggregated 1P:3D": {**slo, "disaggregate": "1:3"},
            "disaggregated 2P:2D": {**slo, "disaggregate": "2:2"},
        }
        compare(f"DistServe chatbot: OPT-13B, 4x A100-80GB, TTFT <= 0.25 s, TPOT <= {tpot} s, 90% attainment",
                sc, wl, rows, dict.fromkeys(rows, 4))


def splitwise() -> None:
    """Splitwise §5 conversation: Llama-2-70B on DGX machines (tp=8), prompt median 1020, output 129;
    four machines co-located against prefill/decode splits, and H100 prefill with A100 decode (HA)."""
    sc = {"model": "llama-2-70b", "hardware": {"gpu": "h100-sxm", "num_gpus": 32}, "parallelism": {"tp": 8}}
    wl = {"num_requests": 600, "prompt_len": "lognormal:1020,1.0", "output_len": "lognormal:129,1.0", "seed": 0}
    slo = {"slo_ttft_s": 1.0, "slo_tpot_s": 0.05}
    rows = {
        "4x DGX-H100 co-located": {**slo, "router": "least_outstanding"},
        "Splitwise-HH 1P:3D": {**slo, "disaggregate": "1:3"},
        "Splitwise-HH 2P:2D": {**slo, "disaggregate": "2:2"},
        "Splitwise-HA 1P H100 : 3D A100": {**slo, "disaggregate": "1:3",
                                           "decode_overrides": {"hardware.gpu": "a100-80gb-sxm"}},
        "Splitwise-HA 2P H100 : 2D A100": {**slo, "disaggregate": "2:2",
                                           "decode_overrides": {"hardware.gpu": "a100-80gb-sxm"}},
    }
    compare("Splitwise conversation: Llama-2-70B, tp=8 machines, TTFT <= 1 s, TPOT <= 50 ms, 90% attainment",
            sc, wl, rows, dict.fromkeys(rows, 32))


if __name__ == "__main__":
    distserve()
    splitwise()
