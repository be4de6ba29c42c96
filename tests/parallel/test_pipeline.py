"""Pipeline parallelism for inference: the issue's 85% check and the composition of stages by hand."""

import pytest

from simulator import predict

BASE = {"model": "llama-3.1-8b", "hardware": {"gpu": "h100-sxm", "num_gpus": 2},
        "workload": {"phase": "decode", "batch_size": 32, "context_len": 4096}}


def _pp(**over):
    return predict(BASE, **{"parallelism.tp": 1, "parallelism.pp": 2, "workload.batch_size": 64, **over})


def test_pp2_batch64_reaches_85_percent_of_two_dp_replicas():
    dp = predict(BASE, **{"parallelism.tp": 1})
    pp = _pp()
    assert dp.replicas == 2 and pp.replicas == 1
    assert pp.tokens_per_s >= 0.85 * dp.tokens_per_s
    assert pp.tokens_per_s < dp.tokens_per_s  # the send/recv and the LM head's stage cost something


def test_stages_compose_by_hand():
    pp = _pp()
    pipe = pp.parallelism["pipeline"]
    stage, send = pipe["stage_s"], pipe["send_recv_s"]
    assert pipe["microbatches"] == 2
    # overlapped sends: slot = max(stage, send); decode cycle = max(m slot, p (stage + send))
    assert pipe["slot_s"] == pytest.approx(max(stage, send))
    assert pp.latency_s == pytest.approx(max(2 * max(stage, send), 2 * (stage + send)))
    assert pp.tokens_per_s == pytest.approx(64 / pp.latency_s)
    assert sum(op.time_s for op in pp.breakdown) == pytest.approx(pp.latency_s)
    # one micro-batch: no pipelining, every token waits for its trip through both stages
    one = _pp(**{"parallelism.microbatches": 1})
    assert one.tokens_per_s < 0.7 * pp.tokens_per_s
    # exposed sends: slot = stage + send
    serial = _pp(**{"parallelism.overlap.pp": "none", "parallelism.microbatches": 4})
    p4 = serial.parallelism["pipeline"]
    assert serial.latency_s == pytest.approx(4 * (p4["stage_s"] + p4["send_recv_s"]))


def test_send_recv_is_a_named_collective_between_stages():
    pp = _pp()
    send = next(op for op in pp.breakdown if op.name == "pipeline.send_recv")
    assert (send.collective, send.group, send.link, send.kind) == ("send_recv", "pp", "nvlink4", "collective")
    # 32 sequences x 4096 x 2 bytes per micro-batch, 2 micro-batches per cycle
    assert send.link_bytes == pytest.approx(2 * 32 * 4096 * 2)


def test_prefill_fill_and_drain():
    pp = _pp(**{"workload.phase": "prefill", "workload.batch_size": 8, "workload.prompt_len": 512,
                "parallelism.microbatches": 4})
    pipe = pp.parallelism["pipeline"]
    assert pp.latency_s == pytest.approx(2 * (pipe["stage_s"] + pipe["send_recv_s"]) + 3 * pipe["slot_s"])
