"""Decompose one forward step (a prefill or a decode iteration) into priced operators.

A step processes ``batch`` sequences, each adding ``new_tokens`` after ``past_tokens`` already in the
KV cache (prefill: new = prompt, past = 0; decode: new = 1, past = context). Layers of one kind are
identical, so each operator is built once with ``count`` = the number of layers that run it.
Attention projections and norms are shared by every layer; the attention core depends on the layer's
attention kind (full, sliding window, cross or linear; see ``simulator.deployment``); the feed-forward
part on its MLP kind (dense or MoE).

Cross layers (YOCO's cross-decoder, Sun et al. 2024, arXiv 2405.05254) attend to one shared KV cache
and project no K/V of their own; in prefill only each prompt's last position needs them, so they run
as a second stack over one token per sequence (ops named ``cross.*``). Whatever produces the shared
cache is added by the technique that makes layers cross.

Operators are ``StepOp``s: an ``OpCost`` plus what techniques need to transform it (whether it runs
once per layer, its GEMM rows and weight elements, the KV bytes an attention launch reads).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from costmodels import attention as attn
from costmodels import gemm as gemm_ops
from costmodels import moe as moe_ops
from costmodels.elementwise import (
    ADD_FLOPS_PER_ELEMENT,
    GATED_ACT_FLOPS_PER_ELEMENT,
    NORM_FLOPS_PER_ELEMENT,
    ROTARY_FLOPS_PER_ELEMENT,
    elementwise,
    embedding_lookup,
)
from costmodels.linear_attention import linear_attention_bytes, linear_attention_flops
from costmodels.moe import expected_distinct_experts  # noqa: F401  (re-exported for callers)
from costmodels.numeric import num
from costmodels.roofline import OpCost
from simulator.deployment import Deployment
from simulator.models.spec import Linear
from simulator.parallel import context
from simulator.parallel.comm import group_cost, group_shape, link_terms
from simulator.parallel.experts import expert_plan

# Projections whose output is cached (K/V, or the MLA latent); cross layers do not run them.
KV_PROJECTIONS = ("attn.k_proj", "attn.v_proj", "attn.kv_a_proj")


@dataclass
class StepShape:
    """The workload of one step; fields broadcast against each other and the deployment's arrays.

    ``chunk_tokens`` / ``chunk_past``: a prefill chunk of one more request batched into the step
    (mixed prefill/decode batches, Sarathi-Serve). ``logits_per_seq``: positions per sequence whose
    logits are computed (1, or the draft tokens + 1 of a speculative verify pass)."""

    batch: np.ndarray | float
    new_tokens: np.ndarray | float
    past_tokens: np.ndarray | float
    phase: str  # "prefill" or "decode"
    chunk_tokens: np.ndarray | float = 0.0
    chunk_past: np.ndarray | float = 0.0
    logits_per_seq: np.ndarray | float = 1.0

    @property
    def tokens(self):
        """Tokens through the GEMMs of the step."""
        return num(self.batch) * self.new_tokens + self.chunk_tokens

    @property
    def total_tokens(self):
        """Tokens per sequence in the cache after the step."""
        return num(self.past_tokens) + self.new_tokens


@dataclass(slots=True)
class StepOp(OpCost):
    """An operator with the metadata techniques transform: ``per_layer`` (its count is a number of
    layers), ``rows``, ``weight_elems`` and ``input_elems`` (rows x in-features) of a GEMM launch,
    ``weight_bytes`` read per launch, and ``kv_read_bytes``, the KV-cache bytes an attention launch reads."""

    per_layer: bool = False
    rows: np.ndarray | float = 0.0
    weight_elems: np.ndarray | float = 0.0
    weight_bytes: np.ndarray | float = 0.0
    input_elems: np.ndarray | float = 0.0
    kv_read_bytes: np.ndarray | float = 0.0
    # share of the launch's FLOPs that is work: 1, or mean / max rows for the busiest expert GPU, whose
    # extra rows the others wait for (MFU counts work, ``simulator.metrics``)
    work_fraction: float = 1.0
    # the peak of the launch's number format where ``peak_flops_per_s`` was scaled to an engine's measured
    # efficiency (fp8 GEMMs, FlashAttention versions): MFU counts FLOPs against the format's peak; None: the same
    format_peak_flops_per_s: np.ndarray | float | None = None
    # collectives: kind (all_reduce, all_gather, reduce_scatter, all_to_all, send_recv), parallel group,
    # link, algorithm, ranks; ``overlap``: the boundary policy that may hide it (simulator.parallel.overlap)
    collective: str = ""
    group: str = ""
    link: str = ""
    algorithm: str = ""
    ranks: np.ndarray | float = 0.0
    overlap: str = ""


def attention_head_dims(model, phase: str) -> tuple[int, int]:
    """(query-key dim, value dim) per head of the attention core. MLA scores over nope + rope dims with
    values of v_head_dim (DeepSeek-V2, arXiv 2405.04434); decode absorbs the up-projections into q and o
    and attends in the latent space (kv_lora_rank + rope, kv_lora_rank)."""
    m = model
    if m.mla:
        if phase == "decode":
            return m.mla.kv_lora_rank + m.mla.qk_rope_head_dim, m.mla.kv_lora_rank
        return m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim
    return m.head_dim, m.head_dim


def _fused(linears: list[Linear]) -> list[tuple[str, list[Linear]]]:
    """Merge consecutive linears that read the same input (q/k/v, gate/up) into one GEMM, as engines do."""
    groups: list[list[Linear]] = []
    for lin in linears:
        prev = groups[-1][-1] if groups else None
        if prev and prev.in_features == lin.in_features and prev.tp == lin.tp and lin.tp != "row":
            groups[-1].append(lin)
        else:
            groups.append([lin])
    named = []
    for group in groups:
        prefix = group[0].name.split(".")[0] if group[0].name.count(".") == 1 else group[0].name.rsplit(".", 1)[0]
        parts = [lin.name.rsplit(".", 1)[1].removesuffix("_proj") for lin in group]
        joiner = "" if all(len(p) == 1 for p in parts) else "_"
        suffix = joiner.join(parts) + ("_proj" if group[0].name.endswith("_proj") else "")
        named.append((f"{prefix}.{suffix}" if len(group) > 1 else group[0].name, group))
    return named


class StepBuilder:
    """Builds the operator list of one step for a deployment."""

    def __init__(self, dep: Deployment, shape: StepShape):
        self.dep = dep
        self.shape = shape
        self.model = dep.model
        self.ops: list[OpCost] = []
        # configuration-only values every operator reads, looked up once per step
        self._peak = dep.peak_flops_per_s
        self._bw = dep.hbm_bandwidth_bytes_per_s
        self._act = dep.act_bytes
        self._memo = dep.memo

    # --- operator constructors -------------------------------------------------------------------

    def _fused(self, linears: list[Linear], key: str | None = None) -> list[tuple[str, list[Linear]]]:
        """``_fused``, once per deployment and list of linears (configuration only), found under ``key``
        where the caller names the list, else under the linears' names."""
        return self.dep.cached(("fused", key) if key else ("fused", *(lin.name for lin in linears)), _fused, linears)

    def _kernel(self, name, kind, count, flops, hbm_bytes, **meta):
        self.ops.append(StepOp(name, kind, count, flops, hbm_bytes, 0.0, 0.0, 0.0, self._peak, self._bw, **meta))

    def _elementwise(self, name, count, width, reads, writes, flops_per_element, tokens, per_layer=True):
        flops, nbytes = elementwise(tokens, width, reads, writes, flops_per_element, self._act)
        self.ops.append(StepOp(name, "memory", count, flops, nbytes, 0.0, 0.0, 0.0, self._peak, self._bw,
                               per_layer=per_layer))

    def _gemm(self, name, group: list[Linear], count, tokens, weight_bytes=None, copies=1.0, bias=None,
              per_layer=True, kind="gemm"):
        """One (fused) GEMM; ``copies`` weight sets are read (routed experts: the distinct ones touched).
        ``kind="grouped_gemm"``: the routed experts' GEMMs as one grouped launch, priced on the size of the
        whole launch (all experts' FLOPs and bytes) with the profile's grouped-GEMM efficiencies."""
        key = ("gemm", name, weight_bytes is None, bias)
        dims = self._memo.get(key)
        if dims is None:  # configuration only: the local (k, n), bytes per weight element and bias
            dep = self.dep
            dims = self._memo[key] = (dep.local_in(group[0]), sum(dep.local_out(lin) for lin in group),
                                      dep.layer_weight_bytes if weight_bytes is None else weight_bytes,
                                      any(lin.bias for lin in group) if bias is None else bias)
        k, n, per_elem, has_bias = dims
        elems = copies * k * n
        nbytes = gemm_ops.grouped_gemm_bytes(tokens, k, n, self._act, per_elem, copies, bias=has_bias)
        self.ops.append(StepOp(name, kind, count, gemm_ops.gemm_flops(tokens, k, n), nbytes, 0.0, 0.0, 0.0,
                               self._peak, self._bw, per_layer=per_layer, rows=tokens, weight_elems=elems,
                               weight_bytes=elems * per_elem,
                               input_elems=(tokens if type(tokens) is float else num(tokens)) * k))

    def _collective(self, name, collective, count, message_bytes, group, per_layer=True, overlap="", **span):
        """One collective of parallel ``group`` (tp, cp, ep, etp, pp), priced on the links the group spans
        (``simulator.parallel.comm``); ``span`` overrides the group's ranks / ranks per node."""
        key = ("one_rank", name, collective, group, count, per_layer, overlap)
        op = None if span else self._memo.get(key)
        if op is not None:  # a one-rank collective of this deployment, built before
            self.ops.append(op)
            return
        size, _, intra, _ = group_shape(self.dep, group)
        if not span and isinstance(size, int | np.integer) and size == 1:
            # one rank: nothing moves (what the cost gives, cheaply); configuration only, so built once
            # per deployment (operators are never changed in place, techniques replace them)
            self.ops.append(self.dep.cached(key, lambda: StepOp(
                name, "collective", count, link_bytes=0.0, link_latency_s=0.0, link_bandwidth_bytes_per_s=1.0,
                per_layer=per_layer, collective=collective, group=group, link=intra.name, algorithm="ring", ranks=1,
                overlap=overlap)))
            return
        cost, overhead, link, algorithm, ranks = group_cost(self.dep, group, collective, message_bytes, **span)
        self.ops.append(StepOp(name, "collective", count, **link_terms(cost, overhead), per_layer=per_layer,
                               collective=collective, group=group, link=link, algorithm=algorithm,
                               ranks=ranks, overlap=overlap))

    def _sp(self, tokens):
        """Tokens a norm or residual add runs over: 1/tp of them under sequence parallelism."""
        return num(tokens) / self.dep.tp if self.dep.sp else tokens

    def _tp_all_reduce(self, name, count, tokens, per_layer=True, overlap=""):
        """The row-parallel output's all-reduce over TP; under sequence parallelism (Korthikanti et al. 2022,
        arXiv 2205.05198, §4.2.2) a reduce-scatter and an all-gather of the same total traffic."""
        message = (tokens if type(tokens) is float else num(tokens)) * self.model.hidden_size * self._act
        if self.dep.sp and np.any(np.asarray(self.dep.tp) > 1):
            self._collective(name.replace("all_reduce", "reduce_scatter"), "reduce_scatter", count, message, "tp",
                             per_layer, overlap)
            self._collective(name.replace("all_reduce", "all_gather"), "all_gather", count, message, "tp",
                             per_layer, overlap)
            return
        self._collective(name, "all_reduce", count, message, "tp", per_layer, overlap)

    # --- the step --------------------------------------------------------------------------------

    def build(self) -> list[OpCost]:
        if self.dep.cp > 1 and self.shape.phase == "prefill":  # each CP rank runs s/cp of every sequence
            self.shape = context.local_shape(self.shape, self.dep.cp)
        m, dep, shape = self.model, self.dep, self.shape
        h = m.hidden_size
        tokens = shape.tokens

        flops, nbytes = embedding_lookup(tokens, h / dep.tp, dep.emb_bytes, dep.act_bytes)
        self._kernel("embedding", "memory", 1, flops, nbytes)
        self._tp_all_reduce("embedding.all_reduce", 1, tokens, per_layer=False)

        for prefix, counts, mlp_counts, layer_shape in self._stacks():
            self._layers(prefix, counts, mlp_counts, layer_shape)

        if dep.pp > 1:  # activations between adjacent stages, once per stage boundary
            message = tokens * h * dep.act_bytes
            crosses = dep.placement.stage_boundary_crosses_nodes(dep.tp) if dep.placement is not None else False
            self._collective("pipeline.send_recv", "send_recv", dep.pp - 1, message, "pp", per_layer=False,
                             overlap="pp", ranks=2, per_node=np.where(crosses, 1, 2))

        self._elementwise("final_norm", 1, h, 1, 1, NORM_FLOPS_PER_ELEMENT, tokens, per_layer=False)
        logits_tokens = num(shape.batch) * shape.logits_per_seq  # sampled positions only
        head = dep.cached("lm_head", lambda: [Linear("lm_head", h, m.vocab_size, "lm_head")])
        self._gemm("lm_head", head, 1, logits_tokens, weight_bytes=dep.emb_bytes, per_layer=False)
        return self.ops

    def _stacks(self) -> list[tuple[str, dict[str, int], dict[str, int], StepShape]]:
        """(name prefix, layers per attention kind, layers per MLP kind, shape) of each run of layers over
        the same tokens; the layer counts are configuration only (once per deployment)."""
        dep, shape = self.dep, self.shape
        split = shape.phase == "prefill" and "cross" in dep.cached("layer_kinds", lambda: dep.layer_kinds)
        stacks = dep.cached(("stacks", split), _layer_stacks, dep, split)
        if not split:
            return [(*stacks[0], shape)]
        last = StepShape(shape.batch, 1.0, num(shape.past_tokens) + shape.new_tokens - 1.0,
                         "prefill", logits_per_seq=shape.logits_per_seq)
        return [(*stacks[0], shape), (*stacks[1], last)]

    def _layers(self, prefix: str, counts: dict[str, int], mlp_counts: dict[str, int], shape: StepShape):
        m, dep = self.model, self.dep
        h, n = m.hidden_size, sum(counts.values())
        if n == 0:
            return
        tokens = shape.tokens
        n_cross = counts.get("cross", 0)
        n_own = n - n_cross
        cross_name = (lambda name: name) if prefix.startswith("cross") else (lambda name: "cross." + name)

        self._elementwise(prefix + "attn_norm", n, h, 1, 1, NORM_FLOPS_PER_ELEMENT, self._sp(tokens))
        linears = dep.cached("attention_linears", m.attention_linears)
        if n_own:
            own = dep.cached("fused_columns", lambda: _fused([lin for lin in linears if lin.tp != "row"]))
            for name, group in own:
                self._gemm(prefix + name, group, n_own, tokens)
        if n_cross:
            cross = dep.cached("fused_cross_columns", lambda: _fused(
                [lin for lin in linears if lin.tp != "row" and lin.name not in KV_PROJECTIONS]))
            for name, group in cross:
                self._gemm(prefix + cross_name(name), group, n_cross, tokens)
        rope_dim = m.mla.qk_rope_head_dim if m.mla else m.head_dim
        if n_own:
            rope_heads = dep.q_heads_local + (1 if m.mla else dep.kv_heads_local)
            self._elementwise(prefix + "rotary", n_own, rope_heads * rope_dim, 1, 1, ROTARY_FLOPS_PER_ELEMENT, tokens)
        if n_cross:
            self._elementwise(prefix + cross_name("rotary"), n_cross, dep.q_heads_local * rope_dim, 1, 1,
                              ROTARY_FLOPS_PER_ELEMENT, tokens)
        writers = counts.get("full", 0) + counts.get("sliding", 0)
        if writers:
            kv_elems = dep.kv_elems_per_token_layer_local
            self._kernel(prefix + "kv_cache_write", "memory", writers, 0.0 * tokens,
                         tokens * kv_elems * (dep.act_bytes + dep.kv_bytes), per_layer=True)

        for kind, count in counts.items():
            self._attention(prefix, kind, count, shape)
            if shape.chunk_tokens if isinstance(shape.chunk_tokens, float) else np.any(shape.chunk_tokens):
                chunk = StepShape(1.0, shape.chunk_tokens, shape.chunk_past, "prefill")
                self._attention(prefix, kind, count, chunk, suffix=".chunk")

        for group in dep.cached("row_linears", lambda: [[lin] for lin in linears if lin.tp == "row"]):
            self._gemm(prefix + group[0].name, group, n, tokens)
        self._tp_all_reduce(prefix + "attn.all_reduce", n, tokens, overlap="tp")
        self._elementwise(prefix + "attn_residual", n, h, 2, 1, ADD_FLOPS_PER_ELEMENT, self._sp(tokens))

        for kind, count in mlp_counts.items():
            self._mlp_block(prefix, kind, count, tokens)

    def _attention(self, prefix: str, kind: str, count: int, shape: StepShape, suffix: str = ""):
        m, dep = self.model, self.dep
        name = f"{prefix}attention.{kind}{suffix}"
        op_kind = "attention_prefill" if shape.phase == "prefill" else "attention_decode"
        b = num(shape.batch)
        if kind == "linear":
            heads, state = dep.q_heads_local, dep.recurrent_state_elems
            flops = linear_attention_flops(b, shape.new_tokens, heads, state, m.head_dim, shape.phase)
            nbytes = linear_attention_bytes(b, shape.new_tokens, heads, state, m.head_dim, dep.act_bytes,
                                            dep.recurrent_state_bytes)
            self._kernel(name, op_kind, count, flops, nbytes, per_layer=True)
            return
        qk_dim, v_dim = attention_head_dims(m, shape.phase)
        kv_elems = dep.kv_elems_per_token_layer_local
        cp = self.dep.cp
        if shape.phase == "prefill":
            full = replace(shape, new_tokens=np.asarray(shape.new_tokens, dtype=float) * cp) if cp > 1 else shape
            window = m.sliding_window if kind == "sliding" else None
            pairs = dep.attention_pairs(attn.attended_pairs(full.new_tokens, full.past_tokens, window), full, kind)
            cached = dep.window_tokens(full.total_tokens, kind)
            flops = attn.attention_flops(pairs, dep.q_heads_local, qk_dim, v_dim) * b / cp
            args = (dep.q_heads_local, qk_dim, v_dim, kv_elems, dep.act_bytes, dep.kv_bytes)
            nbytes = attn.prefill_attention_bytes(b, shape.new_tokens, cached, *args)
            kv_read = b * cached * kv_elems * dep.kv_bytes
        else:  # each new query reads every kept token of its sequence once
            cached = dep.kv_tokens(shape.total_tokens, kind)
            # 1/cp of the FLOPs per CP rank, divided before the batch broadcasts them over a sweep's grid
            flops = attn.attention_flops(shape.new_tokens * cached, dep.q_heads_local, qk_dim, v_dim) / cp * b
            readers = b
            if dep.kv_shared_read_once():  # a shared prefix read once for the whole batch
                shared = dep.kv_shared_fraction()
                readers = b * (1.0 - shared) + shared
            held = cached / cp  # each CP rank holds 1/cp of the cache
            kv_read = attn.decode_kv_read_bytes(readers, held, kv_elems, dep.kv_bytes)
            nbytes = attn.decode_attention_bytes(b, held, dep.q_heads_local, qk_dim, v_dim, kv_elems, dep.act_bytes,
                                                 dep.kv_bytes, new_tokens=shape.new_tokens, kv_readers=readers,
                                                 kv_read_bytes=kv_read)
        self._kernel(name, op_kind, count, flops, nbytes, per_layer=True, kv_read_bytes=kv_read)
        if cp > 1:
            self._context_parallel(prefix + f"attention.{kind}{suffix}", count, shape, qk_dim, v_dim)

    def _context_parallel(self, name, count, shape, qk_dim, v_dim):
        """Ring-attention / TokenRing passes (prefill) or the split-KV gather (decode) over the CP group."""
        dep = self.dep
        if shape.phase == "prefill":
            method = (dep.overlap_boundaries or {}).get("cp_method", "ring")
            message = context.ring_step_bytes(dep, shape, qk_dim, v_dim, method)
            self._collective(name + ".cp_send_recv", "send_recv", count * (dep.cp - 1), message, "cp", overlap="cp",
                             ranks=2, per_node=np.where(group_shape(dep, "cp")[1] < dep.cp, 1, 2))
        else:
            message = context.decode_gather_bytes(dep, shape.batch, shape.new_tokens, v_dim)
            self._collective(name + ".cp_all_gather", "all_gather", count, message, "cp")

    def _ffn(self, prefix: str, linears: list[Linear], count: int, tokens, weight_copies=None, kind="gemm",
             key: str | None = None):
        """gate/up GEMM, activation, down GEMM. ``weight_copies`` overrides how many weight sets are read
        (routed experts: the distinct experts the batch touches); ``kind`` is the GEMMs' operation kind."""
        dep, m = self.dep, self.model
        for name, group in self._fused(linears, key):
            copies = 1.0 if weight_copies is None else weight_copies
            self._gemm(prefix + name, group, count, tokens, copies=copies, bias=False, kind=kind)
            if group[-1].name.endswith("up_proj"):
                inter = dep.local_out(group[-1])
                reads = 2 if m.gated_mlp else 1
                act_name = prefix + group[-1].name.rsplit(".", 1)[0] + ".act"
                self._elementwise(act_name, count, inter, reads, 1, GATED_ACT_FLOPS_PER_ELEMENT, tokens)

    def _mlp_block(self, prefix: str, kind: str, count: int, tokens):
        m = self.model
        h = m.hidden_size
        dense = kind == "dense"
        self._elementwise(prefix + ("mlp_norm" if dense else "moe_norm"), count, h, 1, 1, NORM_FLOPS_PER_ELEMENT,
                          self._sp(tokens))
        if dense:
            self._ffn(prefix, self.dep.cached("dense_mlp_linears", m.dense_mlp_linears), count, tokens,
                      key="dense_mlp_linears")
        else:
            assert m.moe is not None
            plan = self._routed_experts(prefix, count, tokens)
            shared = [lin for lin in m.shared_expert_linears() if lin.name != "moe.shared_gate"]
            if shared:
                self._ffn(prefix, shared, count, tokens)
            if plan.gather_tp:  # each TP rank got back its own share of the tokens
                message = np.asarray(tokens, dtype=float) * h * self.dep.act_bytes
                self._collective(prefix + "moe.all_gather", "all_gather", count, message, "tp")
        if dense or not plan.gather_tp:
            self._tp_all_reduce(prefix + ("mlp.all_reduce" if dense else "moe.all_reduce"), count, tokens,
                                overlap="tp")
        self._elementwise(prefix + ("mlp_residual" if dense else "moe_residual"), count, h, 2, 1,
                          ADD_FLOPS_PER_ELEMENT, self._sp(tokens))

    def _routed_experts(self, prefix: str, count: int, tokens):
        """Router GEMM, routing, permutation, the experts as grouped GEMMs, and the weighted sum back.

        As MoE engines run a layer (MegaBlocks, Gale et al. 2022, arXiv 2211.15841, §5; vLLM's fused_moe
        and its modular permute / grouped-GEMM / unpermute path): a fused softmax + top-k over the router
        logits (``moe.route``), the (token, expert) pairs sorted by expert with per-expert offsets
        (``moe.sort``), each token's hidden row gathered once per chosen expert into expert order
        (``moe.permute``), one grouped GEMM per projection over the T·k sorted rows reading the weights of
        the distinct experts touched (``moe.expert.*``, kind ``grouped_gemm``), and each token's k expert
        rows scaled by their routing weights and summed (``moe.unpermute``). Bytes and FLOPs of the
        routing kernels are those of ``costmodels.moe``. Under tensor parallelism every GPU routes and
        permutes all tokens (the router is replicated, the experts split along their intermediate
        dimension), so widths are the local input of the gate/up GEMM and local output of the down GEMM."""
        m, dep = self.model, self.dep
        moe = m.moe
        router = m.router_linear()
        plan = expert_plan(dep, tokens)
        routed = plan.routed_tokens
        self._gemm(prefix + "moe.router", [router], count, routed)
        experts, k = dep.local_out(router), moe.top_k
        linears = m.expert_linears()
        flops, nbytes = moe_ops.route(routed, experts, k, dep.act_bytes)
        self._kernel(prefix + "moe.route", "memory", count, flops, nbytes, per_layer=True)
        flops, nbytes = moe_ops.sort(routed, experts, k)
        self._kernel(prefix + "moe.sort", "memory", count, flops, nbytes, per_layer=True)
        rows = plan.rows / k  # permute/unpermute take tokens and multiply by k
        first = len(self.ops)  # from here the busiest expert GPU's rows: its extra work is waiting (MFU)
        flops, nbytes = moe_ops.permute(rows, k, dep.local_in(linears[0]), dep.act_bytes)
        self._kernel(prefix + "moe.permute", "memory", count, flops, nbytes, per_layer=True)
        if plan.all_to_all:
            self._collective(prefix + "moe.dispatch.all_to_all", "all_to_all", count, plan.message_bytes, "ep",
                             overlap="ep")
        self._ffn(prefix, linears, count, plan.rows, weight_copies=plan.weight_copies, kind="grouped_gemm")
        if plan.all_to_all and np.any(np.asarray(dep.etp) > 1):  # partial sums of an expert split over etp GPUs
            message = plan.rows * m.hidden_size * dep.act_bytes
            self._collective(prefix + "moe.expert_tp.all_reduce", "all_reduce", count, message, "etp")
        if plan.all_to_all:
            self._collective(prefix + "moe.combine.all_to_all", "all_to_all", count, plan.message_bytes, "ep",
                             overlap="ep")
        flops, nbytes = moe_ops.unpermute(rows, k, dep.local_out(linears[-1]), dep.act_bytes)
        self._kernel(prefix + "moe.unpermute", "memory", count, flops, nbytes, per_layer=True)
        imbalance = dep.expert_load_imbalance if dep.ep > 1 else 1.0
        if imbalance != 1.0:
            self.ops[first:] = [replace(op, work_fraction=1.0 / imbalance) for op in self.ops[first:]]
        return plan


def _layer_stacks(dep: Deployment, split: bool) -> list[tuple[str, dict[str, int], dict[str, int]]]:
    """(prefix, layers per attention kind, layers per MLP kind) of the whole stack, or with ``split`` (a
    prefill with cross layers) of the layers with their own KV and of the cross layers."""
    kinds, mlp = dep.layer_kinds, dep.model.mlp_kinds()
    if len(kinds) != dep.model.num_layers:
        raise ValueError(f"{len(kinds)} attention kinds for {dep.model.num_layers} layers")
    runs = [("", [i for i, k in enumerate(kinds) if k != "cross"]), ("cross.", [i for i, k in enumerate(kinds)
                                                                                 if k == "cross"])] \
        if split else [("", list(range(len(kinds))))]
    return [(prefix, dep.kind_counts(layers), dict(Counter(mlp[i] for i in layers))) for prefix, layers in runs]


def build_step(dep: Deployment, shape: StepShape) -> list[OpCost]:
    """The operators of one step, each with per-launch FLOPs/bytes and a launch count."""
    return StepBuilder(dep, shape).build()
