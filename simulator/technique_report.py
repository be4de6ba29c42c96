"""What each technique of a scenario buys: the scenario re-evaluated without it, side by side.

For every technique, ``after`` is the scenario as given and ``before`` the same scenario without that
one technique (the others kept), so each entry is the technique's marginal effect in this company;
``techniques_combined`` compares against no techniques at all. Each side is one evaluation of the
scenario's phase plus one of the other step (prefill or decode), so the report costs 2·(k + 2)
evaluations for k techniques.
"""

from __future__ import annotations

import numpy as np

from hwmodels.errors import InputError
from simulator.engine import evaluate
from simulator.prediction import TechniqueEffect
from simulator.scenario import Scenario
from simulator.techniques import REGISTRY


def _measure(sc: Scenario) -> dict[str, float]:
    """Memory, concurrency, prefill latency, decode latency per output token and throughput."""
    a = {k: np.asarray(v).item() for k, v in evaluate(sc).arrays.items()}
    out = {"kv": a["kv_cache_bytes"], "weights": a["weights_bytes"], "memory": a["total_bytes"],
           "concurrency": int(a["max_concurrency"]), "throughput": a["tokens_per_s"]}
    phase = sc.workload.phase
    if phase == "generate":
        out["prefill"], out["decode"] = a["ttft_s"], a["tpot_s"]
        return out
    other_phase = "decode" if phase == "prefill" else "prefill"
    b = {k: np.asarray(v).item() for k, v in evaluate(sc.with_overrides(**{"workload.phase": other_phase})).arrays.items()}
    pre, dec = (a, b) if phase == "prefill" else (b, a)
    out["prefill"], out["decode"] = pre["latency_s"], dec["latency_s"] / dec["tokens_per_step"]
    return out


def _ratio(after: float, before: float) -> float | None:
    if before > 0:
        return after / before
    return 1.0 if after == 0 else None


def _effect(name: str, params: dict, citation: str, after: dict, before: dict | None) -> TechniqueEffect:
    if before is None:  # the scenario is not valid without this technique (e.g. tp needs its head count)
        return TechniqueEffect(name=name, params=params, citation=citation,
                               max_concurrency_after=after["concurrency"])
    return TechniqueEffect(
        name=name, params=params, citation=citation,
        kv_bytes_ratio=_ratio(after["kv"], before["kv"]),
        weight_bytes_ratio=_ratio(after["weights"], before["weights"]),
        memory_ratio=_ratio(after["memory"], before["memory"]),
        max_concurrency_before=before["concurrency"], max_concurrency_after=after["concurrency"],
        prefill_latency_ratio=_ratio(after["prefill"], before["prefill"]),
        decode_latency_ratio=_ratio(after["decode"], before["decode"]),
        throughput_ratio=_ratio(after["throughput"], before["throughput"]),
    )


def _without(sc: Scenario, entries: list[dict]) -> dict | None:
    try:
        return _measure(sc.model_copy(update={"techniques": entries}))
    except InputError:
        return None


def technique_effects(sc: Scenario) -> tuple[list[TechniqueEffect], TechniqueEffect | None]:
    """Per-technique effects and the combined effect of all of them (empty without techniques)."""
    entries = list(sc.techniques)
    if not entries:
        return [], None
    after = _measure(sc)
    effects = []
    for i, entry in enumerate(entries):
        params = {k: v for k, v in entry.items() if k != "name"}
        name = entry["name"]
        before = _without(sc, entries[:i] + entries[i + 1:])
        effects.append(_effect(name, params, REGISTRY[name].citation, after, before))
    names = " + ".join(e["name"] for e in entries)
    combined = _effect(names, {}, "", after, _without(sc, []))
    return effects, combined
