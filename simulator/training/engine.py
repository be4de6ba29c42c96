"""One training step on a cluster, as broadcast numpy arrays over any knobs.

``evaluate(scenario, knobs)`` resolves the scenario, builds one micro-batch's operators once
(``simulator.training.ops``) with the knobs as arrays (tp, pp, cp, ep, micro-batch, sequence length,
recompute code, ZeRO stage, GPUs, global batch), prices them with the profile (``costmodels.roofline``)
and composes the step:

``step = slots · t_stage + exposed per-step gradient reduction + optimizer step`` (or the offload
schedule, ``costmodels.offload``), where ``t_stage`` is the forward + backward (+ recompute) time of one
micro-batch on the critical pipeline stage (its layers' share plus the LM head and loss, which the last
stage carries unless vocabulary parallelism spreads them) plus its point-to-point sends and the exposed
part of its per-micro-batch ZeRO-2/3 collectives, and ``slots`` is the schedule's micro-batch slots
(``costmodels.pipeline``). Overlap of data-parallel communication with backward is an explicit policy
(``grad_overlap``): ``bucketed`` hides the gradient reduction behind the last micro-batch's backward,
except its last bucket (PyTorch DDP, Li et al. 2020, arXiv 2006.15704, §3.2.3), and ZeRO-3's parameter
gathers behind each micro-batch's compute (FSDP prefetching); ``none`` exposes everything.

Process groups are placed as Megatron-Core orders them for training (``tp-cp-ep-dp-pp``: tp innermost, ep
within dp, pp outermost), and each collective is priced as inference prices it
(``simulator.parallel.comm.price_collective``: the profile's measured curve for that collective and group
size on the node's scale-up link, the network's own protocol model on its NIC), the network's bandwidth
reduced by C4's congestion term (``comm_inflation``, Dong et al. 2024, arXiv 2406.04594).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from costmodels.offload import cpu_adam_time_s, offload_step_time_s
from costmodels.optimizer import optimizer_step
from costmodels.pipeline import inflight_microbatches, pipeline_slots
from costmodels.roofline import OpCost, price
from costmodels.training_flops import palm_flops_per_token
from hwmodels import InputError, get_accelerator, get_network, get_node, list_nodes
from hwmodels.costs import cheapest_prices
from simulator.deployment import Deployment
from simulator.models import get_model
from simulator.parallel import GENERIC_NETWORK
from simulator.parallel.comm import link_terms, price_collective
from simulator.parallel.placement import span
from simulator.stacks import apply_stack_ops, train_step_time
from simulator.stacks.resolve import resolve_calibration
from simulator.stacks.transform import train_extra_launches, train_saved_extra_bytes
from simulator.training.memory import (
    local_param_counts,
    lora_params,
    optimizer_state_elems_per_param,
    training_memory,
)
from simulator.training.ops import training_ops
from simulator.training.precision import precision
from simulator.training.scenario import DDP_BUCKET_BYTES, RECOMPUTE_CODES, TrainScenario

KNOBS = ("tp", "pp", "cp", "ep", "micro_batch", "seq_len", "recompute", "zero", "num_gpus", "global_batch")
COMPUTE_KINDS = ("gemm", "gemm_dgrad", "gemm_wgrad", "grouped_gemm", "attention_prefill", "attention_backward")


@dataclass
class Setup:
    """A resolved scenario: specs, precision and every knob as a scalar or an array."""

    sc: TrainScenario
    model: Any
    gpu: Any
    profile: Any
    node: Any
    tp: Any
    pp_arr: Any
    cp: Any
    ep: Any
    dp: Any
    micro_batch: Any
    seq_len: Any
    recompute: Any
    zero: Any
    num_gpus: Any
    global_batch: Any
    microbatches: Any
    gpus_per_node: int
    intra: Any = None  # the scale-up link (``hwmodels.Link``)
    inter: Any = None  # the scale-out network's per-GPU link, as training's collectives see it
    lora_p: Any = None
    stack: Any = None  # a stack profile's implementation and host pace (simulator.stacks), or None

    def __getattr__(self, name):  # scenario fields not overridden by knobs
        return getattr(self.sc, name)

    @property
    def sp(self):
        return self.sc.sequence_parallel & (np.asarray(self.tp) > 1)

    @property
    def flash(self):
        return self.sc.flash_attention

    @property
    def shard_ranks(self):
        """Ranks ZeRO shards over: the data-parallel group, or its part inside one node under HSDP."""
        if self.sc.hsdp:
            return np.minimum(self.dp, np.maximum(self.gpus_per_node // (np.asarray(self.tp) * self.cp), 1))
        return self.dp

    @property
    def persistent_grads(self):
        return (np.asarray(self.microbatches) > 1) | (np.asarray(self.dp) > 1) | self.sc.main_grad_fp32


@lru_cache(maxsize=None)
def _catalog_node(accelerator: str):
    """The first catalog node built from ``accelerator`` (host memory for offload), or None."""
    matches = [n for n in list_nodes() if get_node(n).accelerator == accelerator]
    return get_node(matches[0]) if matches else None


def _node(sc: TrainScenario, gpu):
    return get_node(sc.node, "node") if sc.node else _catalog_node(gpu.name)


def gpus_per_node(sc: TrainScenario) -> int:
    """GPUs per node: the scenario's, else its node's (named or the catalog's for the GPU), else 8."""
    if sc.gpus_per_node:
        return sc.gpus_per_node
    node = _node(sc, get_accelerator(sc.gpu, "gpu"))
    return node.accelerators_per_node if node else 8


def resolve(sc: TrainScenario, knobs: dict[str, Any]) -> Setup:
    gpu = get_accelerator(sc.gpu, "gpu")
    calibration = resolve_calibration(sc.calibration, gpu)  # a stack profile's corrections apply too
    profile = calibration.profile
    model = get_model(sc.model)
    node = _node(sc, gpu)
    per_node = sc.gpus_per_node or (node.accelerators_per_node if node else 8)

    def knob(name, default):
        return np.asarray(knobs[name]) if name in knobs else default

    tp, pp, cp, ep = (knob(k, getattr(sc, k)) for k in ("tp", "pp", "cp", "ep"))
    mb, seq, gpus = knob("micro_batch", sc.micro_batch), knob("seq_len", sc.seq_len), knob("num_gpus", sc.num_gpus)
    rc = knob("recompute", RECOMPUTE_CODES[sc.recompute])
    zero = knob("zero", sc.zero)
    model_par = np.asarray(tp) * pp * cp
    if np.any(np.asarray(gpus) % model_par):
        raise InputError("num_gpus", f"{int(np.max(gpus))} GPUs are not a multiple of tp x pp x cp = {int(np.max(model_par))}")
    dp = np.asarray(gpus) // model_par
    if np.any(model.num_attention_heads % np.asarray(tp)):
        raise InputError("tp", f"tp must divide num_attention_heads={model.num_attention_heads}")
    if np.any(np.asarray(tp) > per_node):
        raise InputError("tp", f"tensor parallelism beyond one node ({per_node} GPUs) is not modelled")
    if np.any(np.asarray(pp) > model.num_layers):
        raise InputError("pp", f"pp exceeds num_layers={model.num_layers}")
    if np.any(dp % np.asarray(ep)):
        raise InputError("ep", "ep must divide the data-parallel degree")
    if np.any((np.asarray(ep) > 1) & (model.moe is None)):
        raise InputError("ep", f"{model.name} has no experts")
    gb = knob("global_batch", sc.global_batch if sc.global_batch is not None else mb * dp)
    m = np.asarray(gb) / (np.asarray(mb) * dp)
    if np.any(m < 1) or np.any(m != np.round(m)):
        raise InputError("global_batch", "global_batch must be a multiple of micro_batch x data-parallel degree")
    s = Setup(sc, model, gpu, profile, node, tp, pp, cp, ep, dp, mb, seq, rc, zero, gpus, gb, m, per_node,
              *_links(sc, gpu, node), stack=calibration.stack)
    if sc.lora_rank is not None:
        s.lora_p = lora_params(model, sc.lora_rank, sc.lora_targets, tp, pp)
    if sc.offload == "nvme" and sc.nvme_bandwidth_bytes_per_s is None:
        raise InputError("nvme_bandwidth_bytes_per_s", "offload to nvme needs the drives' bandwidth")
    if sc.offload != "none" and node is None:
        raise InputError("node", f"offload needs host memory bandwidth: name a node ({', '.join(list_nodes())})")
    return s


def factorize(*arrays):
    """The distinct combinations of broadcast integer ``arrays``: (their values, one array per input; the
    index of each element's combination; the broadcast shape). Lets a function of a few knobs run once
    per distinct combination instead of once per configuration."""
    arrays = np.broadcast_arrays(*(np.asarray(a) for a in arrays))
    shape = arrays[0].shape
    values, ranks, dims = [], [], []
    for a in arrays:
        u, inv = np.unique(np.ravel(a), return_inverse=True)
        values.append(u)
        ranks.append(np.ravel(inv))
        dims.append(len(u))
    codes, inverse = np.unique(np.ravel_multi_index(ranks, dims), return_inverse=True)
    picks = np.unravel_index(codes, dims)
    return [u[i] for u, i in zip(values, picks)], np.ravel(inverse), shape


def _links(sc: TrainScenario, gpu, node):
    """(scale-up link, scale-out link) of the cluster, as inference's ``simulator.parallel.cluster_links``
    finds them: the node's NVLink domain (else the GPU's own link) and its network's per-GPU link (the
    scenario's ``network``, else the node's, else InfiniBand NDR) with its protocols and message overhead;
    ``inter_node_bandwidth_bytes_per_s`` replaces the NIC's bandwidth, and C4's congestion term divides it
    by ``1 + comm_inflation``."""
    intra = (node.scale_up_link if node is not None and node.scale_up_link else None) or gpu.intra_node_link
    net = get_network(sc.network or (node.network if node is not None else None) or GENERIC_NETWORK,
                      "network").link()
    bw = sc.inter_node_bandwidth_bytes_per_s or net.bandwidth_bytes_per_s
    if bw != net.bandwidth_bytes_per_s or sc.comm_inflation:
        net = net.model_copy(update={"bandwidth_bytes_per_s": bw / (1.0 + sc.comm_inflation)})
    return intra, net


def _group_op(s: Setup, name, collective, count, message, size, stride):
    """One collective of a group of ``size`` ranks ``stride`` apart (Megatron-Core's order tp-cp-ep-dp-pp:
    the group's ranks per node follow from the stride, ``simulator.parallel.placement.span``) as an
    operator, priced by inference's ``price_collective`` (ring, tree or hierarchical and the network
    protocol, whichever is fastest)."""
    per_node, _ = span(size, stride, s.gpus_per_node)
    # layouts repeat a few group shapes and messages: price each distinct one once
    (u_message, u_size, u_per_node), index, shape = factorize(message, size, per_node)
    terms = link_terms(*price_collective(s.profile, collective, u_message, u_size, u_per_node, s.intra, s.inter))
    return OpCost(name, "collective", count, **{k: np.broadcast_to(np.asarray(v), u_message.shape)[index].reshape(shape)
                                                for k, v in terms.items()})


def _collective_s(s, collective, message, size, stride):
    """Time of one collective of a group (see ``_group_op``)."""
    return price(_group_op(s, collective, collective, 1, message, size, stride), s.profile).time_s


def _comm_terms(s: Setup, prec) -> dict[str, Any]:
    """Times of the pipeline send and the data-parallel collectives, each computed once per distinct
    (tp, pp, cp, ep, dp, micro-batch, sequence) and indexed back onto every configuration.

    Pipeline: one activation send per boundary, each tp rank sending its 1/tp slice (Megatron-LM's
    scatter-gather, Narayanan et al. 2021, arXiv 2104.04473, §4.1). Data parallel: gradients (bf16 under
    amp's autocast) reduced over dp or the ZeRO shard group, parameters gathered in the parameter dtype."""
    (tp, pp, cp, ep, dp, mb, seq), inverse, shape = factorize(s.tp, s.pp_arr, s.cp, s.ep, s.dp, s.micro_batch,
                                                                 s.seq_len)
    total_p, _, _ = local_param_counts(s.model, tp, pp, ep)
    trainable = lora_params(s.model, s.sc.lora_rank, s.sc.lora_targets, tp, pp) if s.lora_p is not None else total_p
    grad_msg = trainable * (2.0 if prec.cast_weights else prec.grad_bytes)
    param_msg = total_p * prec.param_bytes
    tp_cp = tp * cp
    p2p_msg = mb * seq / cp * s.model.hidden_size * 2.0 / tp
    terms = {
        "p2p": _collective_s(s, "send_recv", p2p_msg, 2, tp_cp * dp),
        "dp_all_reduce": _collective_s(s, "all_reduce", grad_msg, dp, tp_cp),
        "dp_reduce_scatter": _collective_s(s, "reduce_scatter", grad_msg, dp, tp_cp),
        "dp_all_gather": _collective_s(s, "all_gather", param_msg, dp, tp_cp),
    }
    if s.sc.hsdp:  # ZeRO shards within a node; each shard's replicas across nodes all-reduce it
        shard = np.minimum(dp, np.maximum(s.gpus_per_node // tp_cp, 1))
        terms.update(shard_reduce_scatter=_collective_s(s, "reduce_scatter", grad_msg, shard, tp_cp),
                     shard_all_gather=_collective_s(s, "all_gather", param_msg, shard, tp_cp),
                     replica_all_reduce=_collective_s(s, "all_reduce", grad_msg / shard, dp / shard, tp_cp * shard))
    else:  # ZeRO shards over the data-parallel group itself
        terms.update(shard_reduce_scatter=terms["dp_reduce_scatter"], shard_all_gather=terms["dp_all_gather"])
    return {k: np.broadcast_to(np.asarray(v, dtype=float), tp.shape)[inverse].reshape(shape) for k, v in terms.items()}


def evaluate(sc: TrainScenario, knobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every output of the training step as arrays broadcast over ``knobs``."""
    s = resolve(sc, knobs or {})
    prec = precision(sc.precision, sc.main_grad_fp32, s.gpu)
    bf16_peak = s.gpu.peak_for("bf16")
    # the operators depend on a few knobs only: build and price them once per distinct combination
    # of those (``u``) and index the results back onto every configuration
    (u_tp, u_cp, u_ep, u_mb, u_seq, u_rc, u_acc), inverse, shape = factorize(
        s.tp, s.cp, s.ep, s.micro_batch, s.seq_len, s.recompute, np.asarray(s.microbatches) > 1)
    n_unique = u_tp.size
    dep = Deployment(model=s.model, gpu=s.gpu, profile=s.profile, tp=u_tp, pp=1, replicas=1,
                     weight_bytes=1.0 if prec.compute == "fp8" else 2.0, kv_bytes=2.0, act_bytes=2.0,
                     peak_flops_per_s=s.gpu.peak_for(prec.compute), memory_utilization=sc.memory_utilization)
    ops = training_ops(dep, micro_batch=u_mb, seq_len=u_seq.astype(float), cp=u_cp, ep=u_ep,
                       sp=sc.sequence_parallel & (u_tp > 1), recompute=u_rc, prec=prec,
                       microbatches=np.where(u_acc, 2, 1), lora_rank=sc.lora_rank, lora_targets=tuple(sc.lora_targets),
                       bf16_peak=bf16_peak, flash=sc.flash_attention,
                       forward_transform=None if s.stack is None else (
                           lambda fwd, shape: apply_stack_ops(s.stack, fwd, shape, dep)),
                       comm=lambda name, coll, count, msg, group: _group_op(
                           s, name, coll, count, msg, *({"cp": (u_cp, u_tp), "ep": (u_ep, u_tp * u_cp)}[group])))

    def back(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n_unique,))[inverse].reshape(shape)

    pp = np.asarray(s.pp_arr, dtype=float)
    head_share = np.where(sc.vocab_parallel, 1.0 / pp, 1.0)
    emb_share = np.where(pp > 1, 0.0, 1.0) if not sc.vocab_parallel else 1.0 / pp
    share = {"layers": 1.0 / pp, "head": head_share, "embedding": emb_share}
    sums: dict[tuple, Any] = {}  # (category, part, is forward) -> time on the distinct combinations
    priced = []
    for t in ops:
        op = t.op
        if op.kind == "collective":
            cat = f"{t.group}_comm"
        elif op.kind in COMPUTE_KINDS:
            cat = "compute"
        else:
            cat = "memory"
        time = price(op, s.profile).time_s
        key = (cat, t.part, t.phase == "forward")
        sums[key] = sums.get(key, 0.0) + time
        priced.append((t, time))
    cats: dict[str, Any] = {}
    forward_mb = backward_mb = 0.0
    for (cat, part, is_forward), time in sums.items():
        stage_time = back(time) * share[part]
        cats[cat] = cats.get(cat, 0.0) + stage_time
        if is_forward:
            forward_mb = forward_mb + stage_time
        else:
            backward_mb = backward_mb + stage_time
    per_op = [(t, back(time) * share[t.part]) for t, time in priced] if np.prod(shape) <= 1 else []
    stage_mb = sum(cats.values())

    total_p, layer_p, vocab_p = local_param_counts(s.model, s.tp, s.pp_arr, s.ep)
    trainable = s.lora_p if s.lora_p is not None else total_p
    state_elems = optimizer_state_elems_per_param(s.model, sc.optimizer)
    zero = np.asarray(s.zero)
    shard = s.shard_ranks

    chunks = sc.virtual_stages if sc.schedule == "interleaved" else 1
    comm = _comm_terms(s, prec)
    cats["pp_comm"] = np.where(pp > 1, 2.0 * chunks * comm["p2p"], 0.0)
    p2p = cats["pp_comm"]
    # ZeRO-2/3 per micro-batch: reduce-scatter of gradients; ZeRO-3 gathers parameters for forward and
    # backward (and for a full recompute)
    grad_msg = trainable * (2.0 if prec.cast_weights else prec.grad_bytes)
    param_msg = total_p * prec.param_bytes
    rs_mb = np.where(zero >= 2, comm["shard_reduce_scatter"], 0.0)
    gathers = 2.0 + (np.asarray(s.recompute) == 2)
    ag_mb = np.where(zero >= 3, gathers * comm["shard_all_gather"], 0.0)
    zero_mb = rs_mb + ag_mb
    hidden_mb = stage_mb if sc.grad_overlap == "bucketed" else 0.0
    zero_exposed_mb = np.maximum(zero_mb - hidden_mb, 0.0)
    cats["zero_comm"] = zero_exposed_mb
    if sc.offload in ("params", "nvme"):  # each stage's parameters streamed in for forward and backward
        host = s.gpu.host_link
        stream = 2.0 * param_msg / (host.bandwidth_bytes_per_s * s.profile.kind("host_transfer").memory(param_msg))
        cats["offload"] = np.maximum(stream - (stage_mb + p2p + zero_exposed_mb), 0.0)
    t_stage = sum(cats.values())
    slots = pipeline_slots(sc.schedule, pp, s.microbatches, chunks)
    m = np.asarray(s.microbatches, dtype=float)
    bubble = (slots - m) * t_stage
    pipeline_s = slots * t_stage

    # per step: the data-parallel gradient reduction and the parameter all-gather after the update
    red = np.where(zero == 0, comm["dp_all_reduce"], np.where(zero == 1, comm["dp_reduce_scatter"], 0.0))
    if sc.hsdp:  # replicas of each shard across nodes all-reduce their shard
        red = red + np.where(zero >= 2, comm["replica_all_reduce"], 0.0)
    ag = np.where((zero == 1) | (zero == 2), comm["dp_all_gather"], 0.0)
    if sc.grad_overlap == "bucketed":
        last_bucket = red * np.minimum(DDP_BUCKET_BYTES / np.maximum(grad_msg, 1.0), 1.0)
        red_exposed = np.maximum(red - backward_mb, last_bucket)
    else:
        red_exposed = red
    dp_exposed = red_exposed + ag

    opt_params = trainable / np.where(zero >= 1, shard, 1.0)
    f, b = optimizer_step(opt_params, sc.optimizer, prec.param_bytes, prec.grad_bytes, prec.master_bytes,
                          state_elems * prec.state_bytes)
    opt_kind = "optimizer_bf16" if prec.state_bytes == 2.0 else "optimizer"  # hwmodels.profile.KIND_FALLBACK
    opt_op = OpCost("optimizer.step", opt_kind, 1, flops=f, hbm_bytes=b, peak_flops_per_s=s.gpu.peak_for("fp32"),
                    hbm_bandwidth_bytes_per_s=s.gpu.hbm_bandwidth_bytes_per_s)
    optimizer_s = price(opt_op, s.profile).time_s
    gpu_s = pipeline_s + dp_exposed
    offload_s = 0.0 * gpu_s
    if sc.offload == "none":
        step = gpu_s + optimizer_s
    else:
        host = s.gpu.host_link
        eff = s.profile.kind("host_transfer").memory(grad_msg / shard)
        d2h = opt_params * (2.0 if prec.cast_weights else prec.grad_bytes) / (host.bandwidth_bytes_per_s * eff)
        h2d = opt_params * prec.param_bytes / (host.bandwidth_bytes_per_s * eff)
        cpu = cpu_adam_time_s(opt_params, s.node.host_memory.bandwidth_bytes_per_s / s.gpus_per_node)
        if sc.offload == "nvme":  # ZeRO-Infinity: the states read from and written back to NVMe each step
            states = opt_params * (prec.master_bytes + state_elems * prec.state_bytes)
            cpu = cpu + 2.0 * states / (sc.nvme_bandwidth_bytes_per_s / s.gpus_per_node)
        states = opt_params * (prec.master_bytes + state_elems * prec.state_bytes)
        gpu_update = 2.0 * states / (host.bandwidth_bytes_per_s * eff)
        step = offload_step_time_s(sc.offload_policy, gpu_s, backward_mb * m, d2h, cpu, h2d, gpu_update)
        offload_s = step - gpu_s
        optimizer_s = 0.0 * optimizer_s

    stack_s = 0.0 * step
    if s.stack is not None:  # the stack's backward and optimizer corrections, host pace and step costs
        kernels = sum((t.op.count for t in ops if t.op.kind not in ("collective", "host_transfer")), 0.0)
        # every micro-batch's kernels (the priced ones and the stack's others) and the fused optimizer step
        launches = (back(kernels) + train_extra_launches(s.stack, s.model) / pp) * m + 1.0
        backward_s = back(sums_backward(sums)) * slots / pp
        layers = s.model.num_layers / pp
        terms = {"gpu_step_s": step, "backward_s": backward_s, "optimizer_s": optimizer_s, "launches": launches,
                 "layers": layers}
        paced = train_step_time(s.stack, step, backward_s, optimizer_s, launches, layers)
        stack_s, step = paced - step, paced
    out = _report(s, prec, sc, cats, m, bubble, dp_exposed, optimizer_s, offload_s, step, per_op)
    out["breakdown"]["stack"] = stack_s
    if s.stack is not None:
        out["stack_terms"] = terms  # what simulator.stacks.train fits the training corrections on
    out["memory"] = training_memory(s, (total_p, layer_p, vocab_p), prec, state_elems)
    if s.stack is not None:  # what the stack's unfused kernels save for backward beyond the fused ones'
        mem = out["memory"]
        tokens = np.asarray(s.micro_batch, dtype=float) * s.seq_len / s.cp
        inflight = inflight_microbatches(sc.schedule, s.pp_arr, s.microbatches, sc.virtual_stages)
        extra = (tokens * train_saved_extra_bytes(s.stack, s.model) * s.model.num_layers / s.pp_arr * inflight
                 * (np.asarray(s.recompute) != 2))
        mem["activation_bytes"] = mem["activation_bytes"] + extra
        mem["total_bytes"] = mem["total_bytes"] + extra
        mem["fits"] = mem["total_bytes"] + mem["workspace_bytes"] <= mem["capacity_bytes"]
    out["params_per_gpu"] = total_p + 0.0 * step
    return out


def sums_backward(sums: dict[tuple, Any]):
    """Backward (and recompute) time of one micro-batch over every part, from ``evaluate``'s sums."""
    return sum((time for (_, _, is_forward), time in sums.items() if not is_forward), 0.0)


def _price(sc: TrainScenario, gpu: str):
    """($/GPU-hour, where it came from): the scenario's price, else the cheapest public on-demand quote
    shipped for the GPU (``hwmodels/data/costs/prices.yaml``, the planner's price list), else none."""
    if sc.usd_per_gpu_hour is not None:
        return sc.usd_per_gpu_hour, "usd_per_gpu_hour"
    quote = cheapest_prices().get(gpu)
    return (quote.usd_per_gpu_hour, quote.provider) if quote else (None, None)


def _report(s, prec, sc, cats, m, bubble, dp_exposed, optimizer_s, offload_s, step, per_op):
    model = s.model
    tokens_step = np.asarray(s.global_batch, dtype=float) * s.seq_len
    matmul_params = model.active_params(count_input_embedding=bool(model.tie_word_embeddings), count_output_head=True)
    layer_matmul = matmul_params - model.vocab_size * model.hidden_size
    heads, hd = model.num_attention_heads, model.head_dim
    per_token = palm_flops_per_token(matmul_params, model.num_layers, heads, hd, s.seq_len)
    if s.lora_p is not None:  # the base weights get no weight gradients: 4N instead of 6N
        per_token = per_token - 2.0 * matmul_params
    attention_fwd = 4.0 * model.num_layers * heads * hd * np.asarray(s.seq_len, dtype=float)
    rc = np.asarray(s.recompute)
    recompute_per_token = np.where(rc == 2, 2.0 * layer_matmul + attention_fwd, np.where(rc == 1, attention_fwd, 0.0))
    model_flops = tokens_step * per_token
    hardware_flops = tokens_step * (per_token + recompute_per_token)
    peak = s.gpu.peak_for(prec.compute) * np.asarray(s.num_gpus, dtype=float)
    breakdown = {k: m * v for k, v in cats.items()}
    breakdown.update(bubble=bubble, dp_comm=dp_exposed, optimizer=optimizer_s, offload=offload_s)
    tokens_per_s = tokens_step / step
    out = {
        "step_time_s": step, "tokens_per_s": tokens_per_s, "mfu": model_flops / (step * peak),
        "hfu": hardware_flops / (step * peak), "model_flops_per_step": model_flops,
        "hardware_flops_per_step": hardware_flops, "breakdown": breakdown, "microbatches": m, "dp": s.dp,
        "global_batch": s.global_batch, "ops": per_op, "calibration": s.profile.name,
    }
    if sc.tokens is not None:
        ttt = sc.tokens / tokens_per_s * (1.0 + sc.downtime_fraction)
        out["time_to_train_s"] = ttt
        out["gpu_hours"] = ttt * np.asarray(s.num_gpus, dtype=float) / 3600.0
        price, provider = _price(sc, s.gpu.name)
        if price is not None:
            out["cost_usd"] = out["gpu_hours"] * price
            out["usd_per_gpu_hour"], out["price_source"] = price, provider
    return out
