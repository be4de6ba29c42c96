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

A kind's tables hold what the fast path needs (``simulator.serving.analytic.StepTables``): decode
steps of b sequences at the mean context P + O/2 over ``BATCH_GRID``, the same steps carrying one
prefill chunk (Sarathi-Serve's mixed batch, priced as the DES prices it: ``StepShape(b, 1, context,
"decode", chunk_tokens=C, chunk_past=...)``), one prompt's prefill, tokens per step, and the number of
sequences whose KV cache fits at P + O.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from hwmodels import InputError, get_accelerator
from simulator.engine import resolve, run_step
from simulator.footprint import kv_bytes_per_request, memory_arrays
from simulator.models import get_model
from simulator.parallel import cluster_links
from simulator.scenario import Scenario
from simulator.serving.analytic import BATCH_GRID, StepTables
from simulator.step import StepShape

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
            "techniques": self.technique_dicts(),
        }


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


def _price(dep, overlap, P: float, O: float, new_prompt: float, chunk_tokens: int, width: int) -> dict[str, np.ndarray]:
    """One deployment's tables, (G, width) or (width,): decode and mixed steps over the batch grid, the
    decode steps' bound codes, one prompt's prefill, sequences whose KV fits, one prompt's KV bytes."""
    g = BATCH_GRID.reshape(-1, 1)
    ctx = P + O / 2.0
    step = run_step(dep, dep.transform_shape(StepShape(g, 1.0, ctx, "decode")), overlap)
    if chunk_tokens:
        c = min(float(chunk_tokens), new_prompt)
        past = P - new_prompt + (new_prompt - c) / 2.0
        mixed = run_step(dep, dep.transform_shape(StepShape(g, 1.0, ctx, "decode", chunk_tokens=c, chunk_past=past)),
                         overlap).latency_s
        alone = np.ceil(new_prompt / c) * run_step(dep, StepShape(1.0, c, past, "prefill"), overlap).latency_s
    else:
        mixed = step.latency_s
        alone = run_step(dep, StepShape(1.0, new_prompt, P - new_prompt, "prefill"), overlap).latency_s
    grid, flat = (g.size, width), (1, width)
    return {"decode": np.broadcast_to(step.latency_s, grid), "bound": np.broadcast_to(step.bound, grid),
            "mixed": np.broadcast_to(mixed, grid), "prefill": np.broadcast_to(alone, flat).ravel(),
            "kvcap": np.broadcast_to(memory_arrays(dep, 1.0, P + O, 1.0)["max_concurrency"], flat).ravel(),
            "kvreq": np.broadcast_to(kv_bytes_per_request(dep, P), flat).ravel()}


def build(model, gpus: list[str], allowed: list[dict], prompt_len: float, output_len: float, *,
          pp_options=(1,), max_tp: int = GPUS_PER_NODE, max_nodes: int = 1, chunk_tokens: int = 0,
          calibration="auto") -> Space:
    """Kinds over GPUs x layouts (TP x PP, and EP = TP for MoE models) x technique sets, with their step
    tables (kinds that cannot hold the weights and one request's KV are left out)."""
    P, O = float(prompt_len), float(output_len)
    spec = get_model(model)
    kinds, unfit, rows = [], [], {k: [] for k in ("kvreq", "bound", "decode", "mixed", "prefill", "kstep", "kvcap",
                                                  "chunk", "new")}

    def add(kind, priced, i, dep, new_prompt):
        if priced["kvcap"][i] < 1:
            unfit.append(kind)
            return
        kinds.append(kind)
        for key in ("kvreq", "prefill", "kvcap"):
            rows[key].append(float(priced[key][i]))
        for key in ("bound", "decode", "mixed"):
            rows[key].append(priced[key][:, i])
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
                    "techniques": [{"name": n, **dict(p)} for n, p in techniques if n != "prefix_cache"]}
            hit = next((dict(p).get("hit_rate", 0.5) for n, p in techniques if n == "prefix_cache"), 0.0)
            new_prompt = max(P * (1.0 - hit), 1.0)  # the scheduler's prefix cache skips cached blocks
            sc = Scenario.from_dict({**base, "hardware": {"gpu": gpu, "num_gpus": int(tps.max()) * pp},
                                     "parallelism": {"tp": int(tps.max()), "pp": pp}})
            dep, _ = resolve(sc, {"tp": tps.reshape(1, -1)})
            priced = _price(dep, dep.overlap_policy(sc.overlap), P, O, new_prompt, chunk_tokens, tps.size)
            for i, tp in enumerate(tps):
                add(Kind(gpu, int(tp), pp, weights, kv, techniques, node_gpus=node), priced, i, dep, new_prompt)
            for tp in (int(t) for t in tps if spec.moe is not None and t > 1 and spec.moe.num_experts % t == 0):
                sc = Scenario.from_dict({**base, "hardware": {"gpu": gpu, "num_gpus": tp * pp},  # vLLM
                                         "parallelism": {"tp": tp, "pp": pp, "ep": tp}})  # --enable-expert-parallel
                dep, _ = resolve(sc, {})
                priced = _price(dep, dep.overlap_policy(sc.overlap), P, O, new_prompt, chunk_tokens, 1)
                add(Kind(gpu, tp, pp, weights, kv, techniques, ep=tp, node_gpus=node), priced, 0, dep, new_prompt)
    if not kinds:
        raise InputError("gpus", f"no GPU in the search space holds the model's weights and one request's KV cache "
                                 f"in a replica of up to {max_nodes} node{'s' if max_nodes > 1 else ''} (max_nodes)")
    tables = StepTables(BATCH_GRID, np.array(rows["decode"]), np.array(rows["mixed"]), np.array(rows["prefill"]),
                        np.array(rows["kstep"]), np.array(rows["kvcap"]), np.array(rows["chunk"]),
                        np.full(len(kinds), float(chunk_tokens)), np.array(rows["new"]))
    return Space(kinds, tables, np.array(rows["bound"]), unfit, np.array(rows["kvreq"]))


__all__ = ["GPUS_PER_NODE", "Kind", "Space", "PRECISION_SWITCHES", "build", "layouts", "technique_sets", "valid_tps"]
