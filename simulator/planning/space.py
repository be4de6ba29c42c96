"""The search space: replica kinds (GPU, TP, PP, weight and KV dtypes, technique set) and their step
tables, priced by the step model in one vectorised call per (GPU, technique set, PP).

Layouts (``layouts``): TP inside one node (powers of two up to ``max_tp``) at every PP the user allows,
and replicas spanning n = 2, 4, ... up to ``max_nodes`` nodes in the two forms vLLM documents for a
model larger than a node (https://docs.vllm.ai/en/latest/serving/parallelism_scaling/): TP = the
node's GPUs with PP = n ("tensor_parallel_size to the number of GPUs per node and
pipeline_parallel_size to the number of nodes"), and TP over all n nodes' GPUs. The step model places
the groups on the cluster and prices each collective on the slowest link it spans
(``simulator.parallel``): a TP 16 all-reduce over two DGX H100s runs over InfiniBand, TP 8 x PP 2 keeps
the all-reduce on NVLink and sends activations between the stages over InfiniBand.

A kind's tables are the serving fast path's (``simulator.serving.analytic_tables.StepTables``), priced by
``simulator.serving.tables.price`` exactly as ``simulator.serving.tables.step_tables`` prices one
replica for the simulation's comparison (one home for the serving pricing): decode steps of b sequences
at the mean context P + O/2 over ``BATCH_GRID``, the same steps carrying one prompt's chunk and a full
budget of prompt tokens (the convex extra time of prompts sharing a step), one prompt's prefill, tokens
per step; for a pp-stage kind, one micro-batch's trip through all stages and pp lanes (vLLM's batch
queue: ``simulator.serving.lanes``). KV memory is the simulation's block count (``kvcache.kv_blocks``):
a kind is left out when one request's full context P + O does not fit, and its batch is capped by the
sequences that fit in the steady state, at P + O/2 each (``tables.kv_sequences``: vLLM allocates blocks
as tokens are computed).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from hwmodels import InputError, get_accelerator
from simulator.models import get_model
from simulator.parallel import cluster_links
from simulator.resolve import resolve
from simulator.scenario import Scenario
from simulator.serving.analytic_tables import BATCH_GRID, StepTables
from simulator.serving.config import ServeConfig
from simulator.serving.kvcache import kv_blocks
from simulator.serving.tables import holds_one, kv_sequences, price

# Precision switches the planner may turn on (the others, speculative and prefix_cache, are techniques).
PRECISION_SWITCHES = {"fp8_weights": ("weights", "fp8"), "fp8_kv": ("kv_cache", "fp8")}
GPUS_PER_NODE = 8  # the largest TP degree searched inside one node (the catalog's DGX/HGX nodes hold 8)


@dataclass
class Space:
    """The replica kinds that fit, their step tables and decode-step bound codes (K, G), and the kinds
    left out because the weights and one request's KV cache do not fit."""

    kinds: list
    tables: StepTables
    decode_bound: np.ndarray
    unfit: list
    kv_bytes_per_gpu: np.ndarray  # (K,) one prompt's KV cache on one GPU (what disaggregation transfers)


@dataclass(frozen=True)
class Kind:
    """One replica layout."""

    gpu: str
    tp: int
    pp: int
    weights: str
    kv_cache: str
    techniques: tuple  # technique entries as (name, ((key, value), ...)) for hashing
    ep: int = 1  # expert-parallel degree (MoE models: experts spread over the TP group)
    node_gpus: int = GPUS_PER_NODE  # GPUs in one node of this GPU type (its scale-up domain)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def nodes(self) -> int:
        """Nodes one replica spans."""
        return -(-self.gpus // self.node_gpus)

    def pool_class(self) -> tuple:
        """What a prefill and a decode pool of one split share: everything but the GPU type and TP (the
        KV cache moves between them as it is, and ``roofsim serve --decode-gpu/--decode-tp`` changes
        only those two)."""
        return self.pp, self.weights, self.kv_cache, self.techniques, self.ep

    def decode_overrides(self, decode: "Kind") -> dict:
        """The dotted scenario fields that turn this replica into ``decode`` (same ``pool_class``)."""
        out = {}
        if decode.gpu != self.gpu:
            out["hardware.gpu"] = decode.gpu
        if decode.tp != self.tp:
            out["parallelism.tp"] = decode.tp
        return out

    def technique_dicts(self) -> list[dict]:
        return [{"name": name, **dict(params)} for name, params in self.techniques]

    def labels(self) -> list[str]:
        """Technique names as the plan reports them (fp8_weights, fp8_kv, speculative, prefix_cache)."""
        out = (["fp8_weights"] if self.weights == "fp8" else []) + (["fp8_kv"] if self.kv_cache == "fp8" else [])
        return out + [name for name, _ in self.techniques]

    def scenario(self, model, replicas: int, calibration) -> dict:
        """A scenario mapping ``predict`` and ``serve`` accept as is."""
        return {
            "model": model,
            "hardware": {"gpu": self.gpu, "num_gpus": self.gpus * replicas},
            "parallelism": {"tp": self.tp, "pp": self.pp, **({"ep": self.ep} if self.ep > 1 else {})},
            "precision": {"weights": self.weights, "kv_cache": self.kv_cache, "compute": "bf16"},
            "calibration": calibration,
            "techniques": self.technique_dicts() + quantization_techniques(self.weights),
        }


def quantization_techniques(weights: str) -> list[dict]:
    """The weight switch as the engines the plan's commands start run it: ``--quantization fp8`` (vLLM,
    SGLang) is W8A8, fp8 GEMMs on GPUs with fp8 tensor cores (compute capability 8.9 and above), and
    weight-only W8A16 (FP8 Marlin) on the others (vLLM documentation, "FP8 W8A8"); attention and the LM
    head stay in bf16. ``weight_quant`` with format fp8 prices both cases."""
    return [{"name": "weight_quant", "format": "fp8"}] if weights == "fp8" else []


def technique_sets(allowed: list[dict]) -> list[tuple[dict, tuple]]:
    """Every subset of the allowed switches: ({precision field: dtype}, technique entries)."""
    names = [a["name"] for a in allowed]
    out = []
    for on in itertools.product((False, True), repeat=len(allowed)):
        precision, techniques = {}, []
        for flag, entry, name in zip(on, allowed, names):
            if not flag:
                continue
            if name in PRECISION_SWITCHES:
                key, value = PRECISION_SWITCHES[name]
                precision[key] = value
            else:
                params = tuple(sorted((k, v) for k, v in entry.items() if k != "name"))
                techniques.append((name, params))
        out.append((precision, tuple(techniques)))
    return out


def valid_tps(model, max_tp: int) -> list[int]:
    """TP degrees (powers of two up to ``max_tp``) that divide the attention heads and fit the KV heads."""
    m = get_model(model)
    kv = m.num_kv_heads
    powers = [1 << i for i in range(max(int(max_tp), 1).bit_length())]
    return [tp for tp in powers if m.num_attention_heads % tp == 0 and (m.mla or kv % tp == 0 or tp % kv == 0)]


def layouts(model, node_gpus: int, max_tp: int, pp_options, max_nodes: int) -> list[tuple[int, int]]:
    """(TP, PP) of the replicas searched on nodes of ``node_gpus``: TP inside a node at every PP of
    ``pp_options`` (within ``max_nodes`` nodes), and for n = 2, 4, ... <= ``max_nodes`` TP u x PP n and
    TP u n, u the largest TP inside a node (see the module docstring)."""
    layers = get_model(model).num_layers
    inside = valid_tps(model, min(max_tp, node_gpus))
    limit = node_gpus * max_nodes
    out = {(tp, pp) for tp in inside for pp in pp_options if tp * pp <= limit and pp <= layers}
    u, n = max(inside), 2
    while n <= max_nodes:
        if n <= layers:
            out.add((u, n))
        if u * n in valid_tps(model, u * n):
            out.add((u * n, 1))
        n *= 2
    return sorted(out, key=lambda layout: (layout[1], layout[0]))


def _price(dep, overlap, P: float, O: float, new_prompt: float, chunk_tokens: int, budget_tokens: int, width: int,
           sizing: dict) -> dict[str, np.ndarray]:
    """One deployment's tables, (G, width) or (width,): the serving tables (``simulator.serving.tables.price``),
    the decode steps' bound codes, the sequences whose KV fits in the steady state, whether one request's
    full context fits, and one prompt's KV bytes per GPU (what disaggregation transfers)."""
    rows = price(dep, overlap, P, O, new_prompt, chunk_tokens, budget_tokens)
    size = sizing["block_size"]
    blocks = kv_blocks(dep, size, sizing["max_num_seqs"], budget_tokens, sizing["context_len"])
    grid, flat = (BATCH_GRID.size, width), (1, width)
    return {**{key: np.broadcast_to(rows[key], grid) for key in ("decode", "bound", "mixed", "full")},
            "prefill": np.broadcast_to(rows["prefill"], flat).ravel(),
            "kvcap": np.broadcast_to(kv_sequences(blocks["blocks"], P, O, size), flat).ravel(),
            "fits": np.broadcast_to(holds_one(blocks["blocks"], P, O, size), flat).ravel(),
            "kvreq": np.broadcast_to(P * blocks["kv_bytes_per_token"], flat).ravel()}


def build(model, gpus: list[str], allowed: list[dict], prompt_len: float, output_len: float, *,
          pp_options=(1,), max_tp: int = GPUS_PER_NODE, max_nodes: int = 1, chunk_tokens: int = 0,
          budget_tokens: int = 2048, max_num_seqs: int = 256, calibration="auto") -> Space:
    """Kinds over GPUs x layouts (TP x PP, and EP = TP for MoE models) x technique sets, with their step
    tables (kinds that cannot hold the weights and one request's KV are left out). ``chunk_tokens`` is
    the budget under chunked prefill, 0 for prefill-first; ``budget_tokens`` (vLLM max_num_batched_tokens)
    and ``max_num_seqs`` (the largest batch cap) size the activations the KV blocks leave room for, as the
    simulation sizes them; blocks are of the simulation's default size."""
    P, O = float(prompt_len), float(output_len)
    spec = get_model(model)
    budget = int(chunk_tokens or budget_tokens)
    sizing = {"block_size": ServeConfig().block_size, "max_num_seqs": int(max_num_seqs),
          "context_len": Scenario().workload.context_len}  # the simulation sizes a block at the default context
    kinds, unfit, rows = [], [], {k: [] for k in ("kvreq", "bound", "decode", "mixed", "full", "prefill", "kstep",
                                                  "kvcap", "chunk", "new", "lanes")}

    def add(kind, priced, i, dep, new_prompt):
        if not priced["fits"][i] or priced["kvcap"][i] < 1:
            unfit.append(kind)
            return
        kinds.append(kind)
        for key in ("kvreq", "prefill", "kvcap"):
            rows[key].append(float(priced[key][i]))
        for key in ("bound", "decode", "mixed", "full"):
            rows[key].append(priced[key][:, i])
        rows["lanes"].append(float(kind.pp))
        rows["kstep"].append(float(dep.tokens_per_step()))
        rows["chunk"].append(min(float(chunk_tokens), new_prompt) if chunk_tokens else 0.0)
        rows["new"].append(new_prompt)

    for gpu in gpus:
        accelerator = get_accelerator(gpu)
        node = cluster_links(Scenario.from_dict({"hardware": {"gpu": gpu}}), accelerator)[0]
        by_pp: dict[int, list[int]] = {}
        for tp, pp in layouts(model, node, max_tp, pp_options, max_nodes):
            by_pp.setdefault(pp, []).append(tp)
        for (precision, techniques), (pp, tp_list) in itertools.product(technique_sets(allowed), by_pp.items()):
            tps = np.array(tp_list, dtype=np.int64)
            weights, kv = precision.get("weights", "bf16"), precision.get("kv_cache", "bf16")
            base = {"model": model, "calibration": calibration, "precision": {"weights": weights, "kv_cache": kv},
                    "techniques": [{"name": n, **dict(p)} for n, p in techniques if n != "prefix_cache"]
                    + quantization_techniques(weights)}
            hit = next((dict(p).get("hit_rate", 0.5) for n, p in techniques if n == "prefix_cache"), 0.0)
            new_prompt = max(P * (1.0 - hit), 1.0)  # the scheduler's prefix cache skips cached blocks
            # a pp-stage replica keeps pp batches in flight, each one micro-batch through all stages
            lanes = {"microbatches": 1} if pp > 1 else {}
            sc = Scenario.from_dict({**base, "hardware": {"gpu": gpu, "num_gpus": int(tps.max()) * pp},
                                     "parallelism": {"tp": int(tps.max()), "pp": pp, **lanes}})
            dep, _ = resolve(sc, {"tp": tps.reshape(1, -1)})
            priced = _price(dep, dep.overlap_policy(sc.overlap), P, O, new_prompt, chunk_tokens, budget, tps.size, sizing)
            for i, tp in enumerate(tps):
                add(Kind(gpu, int(tp), pp, weights, kv, techniques, node_gpus=node), priced, i, dep, new_prompt)
            for tp in (int(t) for t in tps if spec.moe is not None and t > 1 and spec.moe.num_experts % t == 0):
                sc = Scenario.from_dict({**base, "hardware": {"gpu": gpu, "num_gpus": tp * pp},  # vLLM
                                         "parallelism": {"tp": tp, "pp": pp, "ep": tp, **lanes}})  # --enable-expert-parallel
                dep, _ = resolve(sc, {})
                priced = _price(dep, dep.overlap_policy(sc.overlap), P, O, new_prompt, chunk_tokens, budget, 1, sizing)
                add(Kind(gpu, tp, pp, weights, kv, techniques, ep=tp, node_gpus=node), priced, 0, dep, new_prompt)
    if not kinds:
        raise InputError("gpus", f"no GPU in the search space holds the model's weights and one request's KV cache "
                                 f"in a replica of up to {max_nodes} node{'s' if max_nodes > 1 else ''} (max_nodes)")
    tables = StepTables(BATCH_GRID, np.array(rows["decode"]), np.array(rows["mixed"]), np.array(rows["prefill"]),
                        np.array(rows["kstep"]), np.array(rows["kvcap"]), np.array(rows["chunk"]),
                        np.full(len(kinds), float(budget)), np.array(rows["new"]), full_s=np.array(rows["full"]),
                        lanes=np.array(rows["lanes"]))
    return Space(kinds, tables, np.array(rows["bound"]), unfit, np.array(rows["kvreq"]))


__all__ = ["GPUS_PER_NODE", "Kind", "Space", "PRECISION_SWITCHES", "build", "layouts", "technique_sets", "valid_tps"]
