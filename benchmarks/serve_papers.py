"""Disaggregation on the papers' own example setups, with roofsim's DES (numbers in docs/serving.md).

Goodput is DistServe's (Zhong et al., OSDI'24, arXiv 2401.09670, section 2): the largest Poisson rate at
which at least 90% of requests meet both the TTFT and the TPOT target, here per GPU, found by bisection
over the rate with 600 requests or 90 s of arrivals per run.

DistServe: OPT-13B on A100-80GB SXM (one node, NVLink), the chatbot SLOs of its artifact
(evaluation/ae-scripts/e2e/_plot.py: TTFT 0.25 s, TPOT 0.1 s) and tighter ones (the SLO scale of its
Figure 8). Each system gets its best layout on at most 4 GPUs, per GPU: vLLM as DistServe ran it (V0,
prefill-first, its artifact's flags --max-num-batched-tokens 16384 --max-num-seqs 1024) and vLLM V1
(chunked prefill), each at TP 1, 2 and 4; DistServe's placement search over prefill and decode TP and
instance counts (its artifact picks prefill TP 2 + decode TP 1 for OPT-13B,
evaluation/2-benchmark-serving/2-start-api-server.py), with its prefill batches of up to 8192 tokens.
Lengths: a stand-in for DistServe's ShareGPT set (multi-turn prompts, prompt + output < 2048 tokens as
its 0-prepare-dataset.py prunes them): lognormal prompt and output, written as a trace so that the
pruning matches; the medians are assumptions (the set itself is not in this repository).

"As measured": the same comparison with each engine's steps as DistServe measured them on its A100s, its
simulator's fitted profiles (simdistserve/estimators/profile_data/profiler-a100-80g.vllm.json and
.distserve.json, OPT-13B TP 1, milliseconds: prefill a + b n + c n^2 of n tokens, decode a + b tokens
+ c batch), taken as stack profiles (``simulator.stacks``: GEMM, prefill- and decode-attention
efficiency and a per-step cost) fitted to those profiles at 4 prefill and 4 decode shapes. Co-located
vLLM runs on vLLM's, DistServe's layouts on DistServe's; then both on DistServe's.

Run: ``python benchmarks/serve_papers.py [distserve|distserve-measured|splitwise]`` (the DistServe parts
take five to ten minutes each on one core).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from simulator import serve  # noqa: E402
from simulator.serving import Batch, StepTimer  # noqa: E402

# OPT-13B as DistServe serves it (https://huggingface.co/facebook/opt-13b/blob/main/config.json)
OPT_13B = {"name": "opt-13b", "family": "opt",
           "source": "https://huggingface.co/facebook/opt-13b/blob/main/config.json",
           "num_layers": 40, "hidden_size": 5120, "num_attention_heads": 40, "num_kv_heads": 40, "head_dim": 128,
           "intermediate_size": 20480, "vocab_size": 50272, "tie_word_embeddings": True,
           "max_position_embeddings": 2048, "gated_mlp": False, "attention_bias": True, "attention_out_bias": True,
           "mlp_bias": True, "norm": "layernorm"}
A100 = "a100-80gb-sxm"
# DistServe's simulator profiles for OPT-13B at TP 1 on A100-80GB (ms; github.com/LLMServe/DistServe,
# simdistserve/estimators/profile_data/profiler-a100-80g.{vllm,distserve}.json, "prefill" and
# "decoding_smallbs")
MEASURED = {"vllm": ((22.052204789310185, 0.14050923870128956, 8.076584822611088e-06),
                     (23.475041008414784, 0.000592934466077393, 0.060726861260369455)),
            "distserve": ((18.10254647486372, 0.1019122572698738, 7.122264314252114e-06),
                          (19.934702624895458, 0.0006269356524350583, 0.03850697740828398))}


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


def sharegpt_like(path: Path, n: int = 20000, prompt_median: float = 512.0, output_median: float = 200.0,
                  sigma: float = 0.8, seed: int = 0) -> Path:
    """A trace of lognormal lengths pruned to prompt + output < 2048 and >= 4 tokens each (DistServe's
    ShareGPT preparation), arrivals Poisson at 1 req/s (the workload rescales them to its rate)."""
    rng = np.random.default_rng(seed)
    prompt = np.rint(np.exp(rng.normal(np.log(prompt_median), sigma, 4 * n)))
    output = np.rint(np.exp(rng.normal(np.log(output_median), sigma, 4 * n)))
    keep = (prompt + output < 2048) & (prompt >= 4) & (output >= 4)
    prompt, output = prompt[keep][:n], output[keep][:n]
    arrival = np.cumsum(rng.exponential(1.0, prompt.size))
    rows = "\n".join(f"{a:.6f},{int(p)},{int(o)}" for a, p, o in zip(arrival, prompt, output))
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + rows + "\n")
    return path


def measured_stack(engine: str) -> dict:
    """A calibration whose OPT-13B TP 1 steps match DistServe's profile of ``engine``: GEMM, prefill- and
    decode-attention efficiency scales and a per-step cost, least squares in log time over prefills of
    256-1536 tokens and decodes of 8-90 sequences at a 700-token context (Nelder-Mead)."""
    (a, b, c), (da, db, dc) = MEASURED[engine]
    prompts, batches, ctx = (256, 512, 1024, 1536), (8, 32, 64, 90), 700
    want = np.array([a + b * n + c * n * n for n in prompts] + [da + db * ctx * k + dc * k for k in batches]) * 1e-3

    def calibration(x):
        gemm, prefill, decode, step = (float(v) for v in x)
        return {"stack": {"stack_schema_version": 1, "name": f"{engine} as DistServe measured it",
                          "efficiency": {"gemm": {"scale": gemm}, "attention_prefill": {"scale": prefill},
                                         "attention_decode": {"scale": decode}},
                          "fixed": {"execution": "graph", "step_s": step}}, "base": "auto"}

    def loss(x):
        if min(x[:3]) <= 0.05 or max(x[:3]) > 10.0 or not 0.0 <= x[3] < 0.1:
            return 1e9
        t = StepTimer({"model": OPT_13B, "hardware": {"gpu": A100, "num_gpus": 1}, "calibration": calibration(x)})
        got = np.array([t.exact(Batch([], [n], [0])) for n in prompts] + [t.exact(Batch([ctx] * k)) for k in batches])
        return float(np.sum(np.log(got / want) ** 2))

    fit = minimize(loss, [0.8, 1.0, 0.9, 0.005], method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6})
    print(f"  {engine} steps as measured: GEMM x{fit.x[0]:.3f}, prefill attention x{fit.x[1]:.3f}, decode attention "
          f"x{fit.x[2]:.3f}, {fit.x[3] * 1e3:.2f} ms a step; rms log error {np.sqrt(fit.fun / want.size):.3f}")
    return calibration(fit.x)


def distserve_layouts() -> dict[str, tuple[dict, dict, int]]:
    """(scenario, serve config, GPUs) of every layout compared, on at most 4 A100s."""
    def colocated(tp, replicas):
        return {"model": OPT_13B, "hardware": {"gpu": A100, "num_gpus": tp * replicas}, "parallelism": {"tp": tp}}
    v0 = {"chunked_prefill": False, "max_num_batched_tokens": 16384, "max_num_seqs": 1024, "router": "least_outstanding"}
    v1 = {"max_num_seqs": 1024, "router": "least_outstanding"}
    out = {}
    for tp in (1, 2, 4):
        out[f"vLLM V0 prefill-first, TP{tp} x{4 // tp}"] = (colocated(tp, 4 // tp), v0, 4)
        out[f"vLLM V1 chunked prefill, TP{tp} x{4 // tp}"] = (colocated(tp, 4 // tp), v1, 4)
    split = {"max_num_batched_tokens": 8192, "max_num_seqs": 1024, "router": "least_outstanding"}
    for tp_p, n_p, tp_d, n_d in ((1, 1, 1, 1), (1, 1, 1, 2), (1, 2, 1, 1), (1, 1, 1, 3), (1, 2, 1, 2), (1, 3, 1, 1),
                                 (2, 1, 1, 1), (2, 1, 1, 2), (2, 1, 2, 1), (1, 1, 2, 1), (1, 2, 2, 1)):
        gpus = tp_p * n_p + tp_d * n_d
        sc = {"model": OPT_13B, "hardware": {"gpu": A100, "num_gpus": tp_p * n_p}, "parallelism": {"tp": tp_p}}
        cfg = {**split, "disaggregate": f"{n_p}:{n_d}",
               "decode_overrides": {"parallelism.tp": tp_d, "hardware.num_gpus": tp_d}}
        out[f"DistServe {n_p}P TP{tp_p} : {n_d}D TP{tp_d}"] = (sc, cfg, gpus)
    return out


def distserve(prompt_median: float = 512.0, output_median: float = 200.0, measured: bool = False) -> None:
    """Per-GPU goodput of every layout under each SLO pair; the best of each system and their ratio. With
    ``measured``: co-located vLLM on vLLM's steps and DistServe on DistServe's as DistServe measured them,
    then every layout on DistServe's."""
    variants = [("roofsim's step model for every layout", None, None)]
    if measured:
        vllm, ds = measured_stack("vllm"), measured_stack("distserve")
        variants = [("vLLM's measured steps co-located, DistServe's disaggregated", vllm, ds),
                    ("DistServe's measured steps for every layout", ds, ds)]
    with tempfile.TemporaryDirectory() as tmp:
        trace = sharegpt_like(Path(tmp) / "sharegpt-like.csv", prompt_median=prompt_median, output_median=output_median)
        wl = {"arrival": f"trace:{trace}", "prompt_len": "trace", "output_len": "trace", "seed": 0}
        layouts = distserve_layouts()
        slos = ((0.25, 0.1), (0.25, 0.025)) if measured else ((0.25, 0.1), (0.125, 0.05), (0.25, 0.025))
        for label, colocated_cal, split_cal in variants:
            for ttft, tpot in slos:
                slo = {"slo_ttft_s": ttft, "slo_tpot_s": tpot, "max_model_len": 2048}
                print(f"DistServe chatbot ({label}): OPT-13B on A100s, prompt median {prompt_median:g}, output "
                      f"median {output_median:g}, TTFT <= {ttft} s, TPOT <= {tpot} s, 90% attainment")
                best: dict[str, tuple[float, str]] = {}
                for name, (sc, cfg, gpus) in layouts.items():
                    system = "DistServe" if name.startswith("DistServe") else "vLLM V0" if "V0" in name else "vLLM V1"
                    cal = split_cal if system == "DistServe" else colocated_cal
                    if measured and system == "vLLM V1" and cal is not split_cal:
                        continue  # the vLLM DistServe measured was V0
                    sc = {**sc, "calibration": cal} if cal else sc
                    per_gpu = goodput_rate(sc, wl, {**cfg, **slo}, lo=0.05 * gpus, hi=16.0 * gpus) / gpus
                    print(f"  {name:40s} {per_gpu:6.2f} req/s/GPU", flush=True)
                    if per_gpu > best.get(system, (-1.0, ""))[0]:
                        best[system] = (per_gpu, name)
                base = best["vLLM V0"][0]
                for system, (per_gpu, name) in best.items():
                    print(f"  best {system:10s} {per_gpu:6.2f} req/s/GPU ({name}): "
                          f"{per_gpu / base if base else float('nan'):.2f}x vLLM V0")


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
    which = sys.argv[1:] or ["distserve", "distserve-measured", "splitwise"]
    if "distserve" in which:
        distserve()
    if "distserve-measured" in which:
        distserve(measured=True)
    if "splitwise" in which:
        splitwise()
