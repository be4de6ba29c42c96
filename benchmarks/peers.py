"""CPU time of one evaluation of the same case in two peer roofline tools and in roofsim, in one process.

The case: Llama-3.1-8B (hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 128256),
one decode step at batch 32 over a 4096-token context, bf16 weights, activations and KV cache, one
H100 SXM, no parallelism. Timed calls:

- llm-analysis (github.com/cli99/llm-analysis): ``LLMAnalysis.inference(batch_size_per_gpu=32,
  seq_len=4095, num_tokens_to_generate=1)`` on an analysis built once from a ``ModelConfig`` with the
  sizes above (its bundled configs stop at Llama 2), its ``h100-sxm-80gb`` and ``w16a16e16`` configs.
  This is the cheapest call that returns a decode-step latency (``decode_latency``, whose KV-cache read
  covers seq_len + 1 = 4096 tokens); it also evaluates the 4095-token prefill. Logging is set to
  ERROR, as ``infer(log_level="ERROR")`` would.
- LLM-Viewer (github.com/hahnyuan/LLM-Viewer): ``ModelAnalyzer.analyze(seqlen=4096, batchsize=32,
  w_bit=16, a_bit=16)`` with its ``configs/Llama.py`` on ``nvidia_H100_SXM``; it always evaluates
  prefill and decode together. Its constructor reads the model's Hugging Face config with
  ``transformers.AutoConfig``; it is given a local config.json with the sizes above (offline).
- roofsim: ``predict`` with its full breakdown on the default scenario at batch 32, as benchmarks/run.py
  times it.

Each is the median of 50 samples of 10 calls after 20 warm-up calls, in process CPU time
(``time.process_time``), BLAS/OpenMP pinned to one thread; the load average is printed beside them. The
peers are imported from the given checkouts (e.g. unpacked with ``git archive``), never copied here. They
need ``fire`` (llm-analysis) and ``transformers`` (LLM-Viewer), which roofsim does not: run this with an
interpreter that has them besides roofsim's own dependencies. A peer that cannot be imported or set up
is reported as not measured.

Run: ``python benchmarks/peers.py --llm-analysis DIR --llm-viewer DIR``
"""

from __future__ import annotations

import os
import sys

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402

from run import _median_s  # noqa: E402

from simulator import Scenario, predict  # noqa: E402

BATCH, CONTEXT = 32, 4096
LLAMA_3_1_8B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                "vocab_size": 128256, "max_position_embeddings": 131072}


def llm_analysis(checkout: str, workdir: str):
    sys.path.insert(0, os.path.abspath(checkout))
    from llm_analysis.analysis import LLMAnalysis
    from llm_analysis.config import ModelConfig, get_dtype_config_by_name, get_gpu_config_by_name
    from llm_analysis.logger import logger

    logger.setLevel(logging.ERROR)
    model = ModelConfig(name="Llama-3.1-8B", num_layers=32, n_head=32, hidden_dim=4096, vocab_size=128256,
                        max_seq_len=131072, num_key_value_heads=8, ffn_embed_dim=14336, model_type="llama",
                        mlp_gated_linear_units=True)
    analysis = LLMAnalysis(model, get_gpu_config_by_name("h100-sxm-80gb"), get_dtype_config_by_name("w16a16e16"))
    call = "LLMAnalysis.inference(batch_size_per_gpu=32, seq_len=4095, num_tokens_to_generate=1)"
    return call, lambda: analysis.inference(batch_size_per_gpu=BATCH, seq_len=CONTEXT - 1,
                                            num_tokens_to_generate=1)["decode_latency"]


def llm_viewer(checkout: str, workdir: str):
    sys.path.insert(0, os.path.abspath(checkout))
    from model_analyzer import ModelAnalyzer

    config_dir = os.path.join(workdir, "Llama-3.1-8B")
    os.makedirs(config_dir)
    with open(os.path.join(config_dir, "config.json"), "w") as f:
        json.dump(LLAMA_3_1_8B, f)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the config file it picked
        analyzer = ModelAnalyzer(config_dir, "nvidia_H100_SXM", config_file="configs/Llama.py")
    call = "ModelAnalyzer.analyze(seqlen=4096, batchsize=32, w_bit=16, a_bit=16)"
    return call, lambda: analyzer.analyze(seqlen=CONTEXT, batchsize=BATCH, w_bit=16,
                                          a_bit=16)["total_results"]["decode"]["inference_time"]


def roofsim(checkout: str | None, workdir: str):
    sc = Scenario().with_overrides(**{"workload.batch_size": BATCH})

    def evaluate() -> float:
        result = predict(sc)
        len(result.breakdown)
        return result.latency_s

    return 'predict(Scenario().with_overrides(**{"workload.batch_size": 32})) and its breakdown', evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm-analysis", required=True, help="llm-analysis checkout")
    parser.add_argument("--llm-viewer", required=True, help="LLM-Viewer checkout")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, 1 thread, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as workdir:
        for name, setup, checkout in (("llm-analysis", llm_analysis, args.llm_analysis),
                                      ("LLM-Viewer", llm_viewer, args.llm_viewer),
                                      ("roofsim", roofsim, None)):
            try:
                call, fn = setup(checkout, workdir)
                step_s = fn()
            except Exception as e:  # a peer that cannot be set up is reported, not fatal
                print(f"{name}: not measured: {type(e).__name__}: {e}")
                continue
            print(f"{name}: {_median_s(fn, 50) * 1e3:.3f} ms per evaluation of {call} "
                  f"(predicts a {step_s * 1e3:.2f} ms step)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
