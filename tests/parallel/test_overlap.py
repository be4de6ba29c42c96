"""Overlap policies per boundary: Ladder-residual's paper check, EP and CP overlap, TP exposed by default."""

import pytest

from simulator import predict

LLAMA70_TP8 = {"model": "llama-3.1-70b", "hardware": {"gpu": "h100-sxm", "num_gpus": 8},
               "workload": {"phase": "generate", "batch_size": 1, "prompt_len": 1024, "output_len": 512}}


def _op(pred, name, phase=None):
    return next(op for op in pred.breakdown if op.name == name and (phase is None or op.phase == phase))


def test_tp_all_reduce_is_exposed_unless_asked():
    std = predict(LLAMA70_TP8)
    ar = _op(std, "attn.all_reduce", "decode")
    assert ar.hidden_s == 0.0 and ar.time_s > 0
    assert std.parallelism["overlap"]["tp"] == "none"


def test_ladder_residual_reproduces_the_paper_on_its_example():
    """Zhang et al. 2025 (arXiv 2501.06589): 29% end-to-end speed-up for a 70B model at TP 8."""
    std = predict(LLAMA70_TP8)
    lad = predict(LLAMA70_TP8, **{"parallelism.overlap.tp": "ladder"})
    speedup = std.e2e_s / lad.e2e_s
    assert speedup == pytest.approx(1.29, abs=0.08)
    # each all-reduce hides behind the next block: what stays exposed is max(0, t_comm - t_compute)
    ar = _op(lad, "attn.all_reduce", "decode")
    assert ar.time_s == pytest.approx(0.0) and ar.hidden_s > 0
    # the ceiling: all decode communication hidden
    comm = sum(op.time_s for op in std.breakdown if op.kind == "collective" and op.phase == "decode")
    assert lad.tpot_s >= std.tpot_s - comm - 1e-12


def test_expert_all_to_all_behind_shared_experts_or_the_other_batch():
    sc = {"model": "deepseek-v3", "hardware": {"gpu": "h200-sxm", "num_gpus": 16},
          "parallelism": {"tp": 1, "ep": 16}, "workload": {"phase": "decode", "batch_size": 64}}
    none = predict(sc)
    shared = predict(sc, **{"parallelism.overlap.ep": "shared_experts"})
    two = predict(sc, **{"parallelism.overlap.ep": "two_batch"})
    d0, d1, d2 = (_op(p, "moe.dispatch.all_to_all") for p in (none, shared, two))
    shared_gemms = sum(op.time_s for op in none.breakdown if op.name.startswith("moe.shared"))
    assert d1.time_s == pytest.approx(max(0.0, d0.time_s - shared_gemms))
    assert d2.time_s <= d1.time_s
    assert two.latency_s <= shared.latency_s <= none.latency_s


def test_ring_attention_hides_behind_long_blocks_and_shows_over_slow_links():
    def run(prompt, gpus):
        return predict({"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "num_gpus": gpus},
                        "parallelism": {"tp": 1, "cp": gpus},
                        "workload": {"phase": "prefill", "batch_size": 1, "prompt_len": prompt}})
    long = run(131072, 8)  # NVLink, 16K-token blocks: attention per block far above the transfer
    ring = _op(long, "attention.full.cp_send_recv")
    assert ring.time_s == pytest.approx(0.0) and ring.hidden_s > 0
    short = run(8192, 16)  # two nodes, 512-token blocks: the IB transfer exceeds a block's attention
    ring = _op(short, "attention.full.cp_send_recv")
    attn = _op(short, "attention.full")
    assert ring.link == "ib-ndr-400"
    assert ring.time_s == pytest.approx(ring.time_s + ring.hidden_s - attn.time_s * 15 / 16)
    assert ring.time_s > 0
    exposed = predict({"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "num_gpus": 16},
                       "parallelism": {"tp": 1, "cp": 16, "overlap": {"cp": "none"}},
                       "workload": {"phase": "prefill", "batch_size": 1, "prompt_len": 8192}})
    assert exposed.latency_s > short.latency_s
