"""A training step prices each of its collectives as inference does (``simulator.parallel.comm``): the same
collective (kind, message, group size and placement, cluster) costs the same seconds in ``train`` as
``group_cost`` gives inference's step, on the measured per-collective curve and the network's protocols.

Each case reads one collective's time out of a training step (an operator, or a breakdown term that holds
only that collective), works out its message by hand from the model, and prices the same message over the
same group of an inference deployment on the same cluster, its ranks ordered as training orders them
(Megatron-Core's tp-cp-ep-dp-pp)."""

import pytest

from simulator.models import get_model
from simulator.parallel.comm import group_cost, group_shape, price_collective
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.training.api import as_train_scenario, train
from simulator.training.engine import evaluate

H200 = {"gpu": "h200-sxm", "node": "dgx-h200"}  # its profile has measured all-reduce, all-gather, all-to-all curves
TRAIN_ORDER = ["tp", "cp", "edp", "dp", "pp"]  # training's rank order in inference's terms


def _inference(model, num_gpus, **parallelism):
    """An inference deployment of ``model`` on ``num_gpus`` H200 (DGX H200 nodes, NDR) with ``parallelism``."""
    dep, _ = resolve(Scenario.from_dict({"model": model, "hardware": {**H200, "num_gpus": num_gpus},
                                         "parallelism": {**parallelism, "order": TRAIN_ORDER}}), {})
    return dep


def _inference_s(dep, group, collective, message_bytes, **span):
    """Seconds of one collective as inference's step pays it: alpha terms, traffic at the achieved
    bandwidth, the curve's launch overhead."""
    cost, overhead, _, _, _ = group_cost(dep, group, collective, message_bytes, **span)
    return float(cost.achieved_time_s + overhead)


def _op_s(report, name):
    return next(op.time_s for op in report.operators if op.name == name)


def _fields(model, num_gpus, **kw):
    return dict(model=model, **H200, num_gpus=num_gpus, precision="mixed", sequence_parallel=False, **kw)


@pytest.mark.parametrize("num_gpus, tp", [(8, 1), (16, 8)])  # dp 8 inside a node; dp 2 across two nodes
def test_data_parallel_gradient_reduction_and_parameter_gather(num_gpus, tp):
    fields = _fields("llama-3.1-8b", num_gpus, tp=tp, zero=1, grad_overlap="none", micro_batch=1, seq_len=2048)
    r = train(**fields)
    assert r.dp == num_gpus // tp and r.microbatches == 1
    params = float(evaluate(as_train_scenario(None, **fields))["params_per_gpu"])
    dep = _inference("llama-3.1-8b", num_gpus, tp=tp)
    assert r.calibration == dep.profile.name
    # ZeRO 1, nothing overlapped: the exposed DP term is the reduce-scatter of the bf16 gradients and the
    # all-gather of the updated bf16 parameters over dp
    expected = (_inference_s(dep, "dp", "reduce_scatter", 2.0 * params)
                + _inference_s(dep, "dp", "all_gather", 2.0 * params))
    assert r.breakdown["dp_comm"] == pytest.approx(expected, rel=1e-9)


def test_pipeline_send_recv_between_nodes():
    m = get_model("llama-3.1-8b")
    r = train(**_fields("llama-3.1-8b", 16, tp=8, pp=2, micro_batch=1, global_batch=1, seq_len=2048))
    # one forward and one backward send per micro-batch, each tp rank its 1/tp slice of the activations
    message = 2048 * m.hidden_size * 2.0 / 8
    dep = _inference("llama-3.1-8b", 16, tp=8, pp=2)
    expected = _inference_s(dep, "pp", "send_recv", message, ranks=2, per_node=1)
    assert r.breakdown["pp_comm"] == pytest.approx(2.0 * expected, rel=1e-9)


def test_context_parallel_kv_all_gather_between_nodes():
    m = get_model("llama-3.1-8b")
    seq = 8192
    r = train(**_fields("llama-3.1-8b", 16, tp=8, cp=2, micro_batch=1, seq_len=seq, recompute="none"))
    # the whole sequence's K and V of this GPU's kv heads (8 heads over tp 8), bf16, once per layer
    message = seq * 2.0 * (m.num_kv_heads / 8) * m.head_dim * 2.0
    dep = _inference("llama-3.1-8b", 16, tp=8, cp=2)
    expected = m.num_layers * _inference_s(dep, "cp", "all_gather", message)
    assert _op_s(r, "cp.kv_all_gather") == pytest.approx(expected, rel=1e-9)


def test_expert_parallel_all_to_all_between_nodes():
    m = get_model("qwen3-30b-a3b")
    seq = 2048
    r = train(**_fields("qwen3-30b-a3b", 16, tp=1, ep=16, micro_batch=1, seq_len=seq))
    # dispatch and combine in forward: each token's top-k rows of hidden, bf16, per MoE layer
    message = seq * m.moe.top_k * m.hidden_size * 2.0
    n_moe = sum(1 for k in m.mlp_kinds() if k == "moe")
    dep = _inference("qwen3-30b-a3b", 16, tp=1, ep=16)
    expected = 2 * n_moe * _inference_s(dep, "ep", "all_to_all", message)
    assert _op_s(r, "ep.all_to_all") == pytest.approx(expected, rel=1e-9)


def test_c4_inflation_and_the_bandwidth_override_slow_the_network_only():
    """C4's congestion term divides the NIC's bandwidth by 1 + inflation: inflation 1 on NDR (50 GB/s per
    GPU) prices as a 25 GB/s NIC with NDR's protocols; a group inside one node does not see it."""
    def dp_comm(num_gpus, tp, **kw):
        fields = _fields("llama-3.1-8b", num_gpus, tp=tp, zero=1, grad_overlap="none", micro_batch=1, seq_len=2048)
        return train(**fields, **kw).breakdown["dp_comm"]

    across = dp_comm(16, 8)
    congested, slower_nic = dp_comm(16, 8, comm_inflation=1.0), dp_comm(16, 8, inter_node_bandwidth_bytes_per_s=25e9)
    assert congested == pytest.approx(slower_nic, rel=1e-12) and congested > 1.5 * across
    dep = _inference("llama-3.1-8b", 16, tp=8)
    size, per_node, intra, inter = group_shape(dep, "dp")
    assert (size, per_node, inter.bandwidth_bytes_per_s) == (2, 1, 50e9)
    half = inter.model_copy(update={"bandwidth_bytes_per_s": 25e9})
    params = float(evaluate(as_train_scenario(None, **_fields("llama-3.1-8b", 16, tp=8)))["params_per_gpu"])
    expected = 0.0
    for collective in ("reduce_scatter", "all_gather"):
        cost, overhead = price_collective(dep.profile, collective, 2.0 * params, size, per_node, intra, half)
        expected += float(cost.achieved_time_s + overhead)
    assert congested == pytest.approx(expected, rel=1e-9)
    assert dp_comm(8, 1, comm_inflation=1.0) == pytest.approx(dp_comm(8, 1), rel=1e-12)
