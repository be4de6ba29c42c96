"""One plain-language line: what bounds the step and which knob moves it.

Built only from the prediction's ``bound``, ``dominant_phase``, ``resources``, ``memory`` and
``breakdown`` and the scenario's own settings; it states numbers the other panels show and computes
nothing the simulator does not report.
"""

from __future__ import annotations

from app.fmt import count, percent, seconds, size

WIDE = ("bf16", "fp16", "fp32", "tf32", "fp64")


def _memory_knobs(pred, sc: dict, phase: str) -> str:
    m, prec = pred.memory, sc["precision"]
    knobs = []
    if phase == "decode":
        if m.kv_cache_bytes > m.weights_bytes:
            knobs.append("KV dominates, so more batch does not amortise it")
            if prec["kv_cache"] in WIDE:
                knobs.append("FP8 KV halves the KV read")
            knobs.append("a shorter context cuts it")
        else:
            if pred.max_concurrency > sc["workload"]["batch_size"]:
                knobs.append(f"more batch amortises the weights (up to {pred.max_concurrency} sequences fit)")
            if prec["kv_cache"] in WIDE and m.kv_cache_bytes > 0.1 * m.weights_bytes:
                knobs.append("FP8 KV halves the KV read")
        if prec["weights"] in WIDE:
            knobs.append("FP8 weights halve the weight read")
    else:
        knobs.append("longer prompts or more batch raise the arithmetic intensity")
    return "; ".join(knobs)


def explain(pred, sc: dict) -> str:
    m, r = pred.memory, pred.resources
    phase = pred.dominant_phase
    step = "each decode step" if phase == "decode" else "the prefill"
    ops = [o for o in pred.breakdown if o.phase == phase]
    flops = sum(o.flops for o in ops)
    moved = sum(o.bytes for o in ops)
    own = pred.phase != "generate" or phase == "prefill"  # resources describe the reported step
    prefix = ""
    if not m.fits:
        prefix = (f"Does not fit: {size(m.total_bytes)} per GPU of {size(m.capacity_bytes)} usable; "
                  f"at most {pred.max_concurrency} sequences fit at this length; more GPUs or narrower weights/KV "
                  f"make room. ")
    if pred.bound == "memory":
        if phase == "decode":
            what = f"{step} streams {size(m.weights_bytes)} of weights + {size(m.kv_cache_bytes)} KV per GPU"
        else:
            what = f"{step} moves {size(moved)} per GPU for {count(flops)} FLOPs"
        mbu = f" (MBU {percent(pred.mbu)})" if own else ""
        line = f"memory-bound: {what}{mbu}; {_memory_knobs(pred, sc, phase)}"
    elif pred.bound == "compute":
        knobs = []
        if sc["precision"]["compute"] in WIDE:
            knobs.append("FP8 compute doubles the tensor peak where the GPU has it")
        knobs.append("more tensor parallelism splits the FLOPs")
        if phase == "decode":
            knobs.append("smaller batches shorten the step but lower throughput")
        mfu = f" at {percent(pred.mfu)} MFU" if own else ""
        line = f"compute-bound: {step} does {count(flops)} FLOPs per GPU{mfu}; " + "; ".join(knobs)
    elif pred.bound == "communication":
        link = sum(o.link_bytes for o in ops)
        took = f" and take {seconds(r.link_s)} of the step" if own else ""
        line = (f"communication-bound: tensor-parallel collectives move {size(link)} per GPU{took}; "
                f"lower TP (more replicas) or a faster interconnect moves it")
    else:
        launches = sum(o.count for o in ops)
        took = f" cost {seconds(r.overhead_s)} of {seconds(pred.ttft_s or pred.latency_s)}" if own else " dominate"
        line = (f"overhead-bound: {launches} kernel launches{took}; more batch is nearly free, "
                f"fused kernels or CUDA graphs cut it")
    if pred.phase == "generate":
        line = f"{phase} takes most of the request — " + line
    return prefix + line
