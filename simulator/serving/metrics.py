"""From a finished simulation to a ``ServeResult`` (definitions in ``simulator.serving.result``)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from simulator.serving.cluster import Simulation
from simulator.serving.lanes import lanes_of
from simulator.serving.replica import Replica
from simulator.serving.result import ReplicaReport, ServeResult, Stats


def itl_samples(rep: Replica) -> np.ndarray:
    """Every token gap the replica's decode steps produced: a step of duration d gives each of its b
    sequences a gap of d, plus the prefill-only steps since the previous decode step (prefill-first) for
    those already decoding, plus the wait of a request resumed from elsewhere (swap-in, KV transfer)."""
    if not rep.itl_rows:
        return np.zeros(0)
    rows = np.array(rep.itl_rows, dtype=float)
    dur, b, pending, fresh = rows.T
    b = b.astype(np.int64)
    fresh = fresh.astype(np.int64)
    samples = np.repeat(dur + pending, b)
    offsets = np.cumsum(b) - b
    for k in np.nonzero(fresh)[0]:
        samples[offsets[k]:offsets[k] + fresh[k]] -= pending[k]
    rank: dict[int, int] = {}
    for k, extra in rep.itl_extra:
        j = rank.get(k, 0)
        rank[k] = j + 1
        if k < len(b) and j < b[k]:
            samples[offsets[k] + b[k] - 1 - j] += extra
    return samples


def is_saturated(arrival: np.ndarray, output_tokens: np.ndarray, step_end: np.ndarray,
                 step_tokens: np.ndarray) -> bool:
    """Whether the offered load exceeds what the deployment serves. Over the second half of the arrival
    window a stable system produces output tokens as fast as they are asked for (the work in progress
    is bounded); an overloaded one produces them at its capacity and the rest piles up. Saturated: the
    tokens produced in that half are fewer than 93% of the tokens its arrivals ask for."""
    if len(arrival) < 50:
        return False
    lo, hi = float(np.median(arrival)), float(arrival.max())
    if hi <= lo:
        return False
    asked = output_tokens[(arrival >= lo) & (arrival <= hi)].sum()
    made = step_tokens[(step_end >= lo) & (step_end <= hi)].sum()
    return bool(asked > 0 and made < 0.93 * asked)


def summarise(sim: Simulation, request_rate: float) -> ServeResult:
    led, cfg = sim.ledger, sim.cfg
    rec = led.records()
    done = rec["finish_s"] >= 0
    arrival, out = rec["arrival_s"], rec["output_tokens"]
    ttft = rec["first_token_s"] - arrival
    e2e = rec["finish_s"] - arrival
    multi = done & (out > 1)
    tpot = np.where(multi, (e2e - ttft) / np.maximum(out - 1, 1), np.nan)
    queue = rec["first_scheduled_s"] - arrival
    lanes = [lane for g in sim.groups for lane in g.lanes()]
    itl = np.concatenate([itl_samples(r) for r in lanes] + [np.asarray(led.resume_gaps, dtype=float)])
    start = float(arrival.min()) if len(arrival) else 0.0
    end = float(rec["finish_s"][done].max()) if done.any() else start
    duration = max(end - start, 1e-12)
    ok = done.copy()
    if cfg.slo_ttft_s is not None:
        ok &= ttft <= cfg.slo_ttft_s
    if cfg.slo_tpot_s is not None:
        ok &= ~(tpot > cfg.slo_tpot_s)
    has_slo = cfg.slo_ttft_s is not None or cfg.slo_tpot_s is not None
    input_tokens = float(rec["prompt_tokens"][done].sum())
    output_tokens = float(out[done].sum())

    rows, timeline = [], {k: [] for k in ("replica", "start_s", "duration_s", "decode", "chunk_tokens",
                                          "kv_blocks_used", "kv_occupancy", "waiting", "running", "tokens_out")}
    energy = 0.0
    for group in sim.groups:
        for r in group.replicas:
            ls = lanes_of(r)  # a pipeline-parallel replica reports its lanes' steps together
            col = {name: np.concatenate([np.asarray(getattr(lane, name), dtype=float) for lane in ls])
                   for name in ("t_start", "t_dur", "t_decode", "t_chunk", "t_blocks", "t_waiting", "t_running",
                                "t_tokens")}
            steps = len(col["t_dur"])
            dur = col["t_dur"]
            busy = float(sum(lane.busy_s for lane in ls))
            blocks = col["t_blocks"]
            # each lane's time-average running count, summed over lanes (they run at once)
            running = sum(float(np.sum(np.asarray(lane.t_running) * np.asarray(lane.t_dur)) / max(sum(lane.t_dur), 1e-300))
                          for lane in ls if lane.t_dur)
            weight = dur / dur.sum() if steps and dur.sum() > 0 else dur
            rows.append(ReplicaReport(
                index=r.index, group=group.name, model=r.timer.dep.model.name, gpu=r.timer.dep.gpu.name,
                gpus=group.gpus_per_replica, kv_blocks=r.pool.total, steps=steps, busy_s=busy,
                mean_batch_size=running if steps else 0.0,
                mean_kv_occupancy=float(np.sum(blocks * weight) / r.pool.total) if steps else 0.0,
                preemptions=sum(lane.preemptions for lane in ls), energy_j=busy * group.gpus_per_replica * group.tdp_w))
            energy += busy * group.gpus_per_replica * group.tdp_w
            timeline["replica"].append(np.full(steps, r.index))
            timeline["start_s"].append(col["t_start"])
            timeline["duration_s"].append(dur)
            timeline["decode"].append(col["t_decode"].astype(np.int64))
            timeline["chunk_tokens"].append(col["t_chunk"].astype(np.int64))
            timeline["kv_blocks_used"].append(blocks)
            timeline["kv_occupancy"].append(blocks / r.pool.total)
            timeline["waiting"].append(col["t_waiting"].astype(np.int64))
            timeline["running"].append(col["t_running"].astype(np.int64))
            timeline["tokens_out"].append(col["t_tokens"])
    timeline = {k: np.concatenate(v) if v else np.zeros(0) for k, v in timeline.items()}
    saturated = is_saturated(arrival, out, timeline["start_s"] + timeline["duration_s"], timeline["tokens_out"])
    busy_total = sum(r.busy_s for r in rows)
    result = ServeResult(
        completed=int(done.sum()), rejected=len(led.rejected), duration_s=duration, request_rate=request_rate,
        throughput_tokens_per_s=(input_tokens + output_tokens) / duration, output_tokens_per_s=output_tokens / duration,
        ttft_s=Stats.of(ttft[done]), tpot_s=Stats.of(tpot[multi]), itl_s=Stats.of(itl), e2e_s=Stats.of(e2e[done]),
        queue_s=Stats.of(queue[done]),
        slo_attainment=float(ok.sum() / max(len(rec), 1)) if has_slo else None,
        goodput_req_per_s=float(ok.sum()) / duration, preemptions=int(rec["preemptions"].sum()),
        kv_transfer_s=Stats.of(rec["kv_transfer_s"][done]),
        kv_transfer_exposed_s=Stats.of(rec["kv_exposed_s"][done]),
        requests_per_s=float(done.sum()) / duration, input_tokens_per_s=input_tokens / duration,
        rejections=dict(Counter(led.rejected.values())), saturated=saturated,
        mean_batch_size=float(np.sum([r.mean_batch_size * r.busy_s for r in rows]) / busy_total) if busy_total else 0.0,
        mean_kv_occupancy=float(np.sum([r.mean_kv_occupancy * r.busy_s for r in rows]) / busy_total)
        if busy_total else 0.0,
        cached_prompt_tokens=int(sum(r.cached_tokens for g in sim.groups for r in g.replicas)),
        energy_j=energy, energy_per_request_j=energy / done.sum() if done.any() else None,
        escalated=int(rec["escalated"].sum()), replicas=rows,
    )
    result._records = rec
    result._timeline = timeline
    return result
