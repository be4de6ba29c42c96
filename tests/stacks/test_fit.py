"""The stack fit: it recovers known corrections from synthetic steps, refuses what rows cannot identify,
prices exactly as predict does, and meets its targets on the shipped H200 measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwmodels.errors import InputError
from simulator.api import predict
from simulator.stacks import fit_measurements
from simulator.stacks.fit import build_groups, predict_groups, structure_stack
from simulator.stacks.measurements import Measurement
from simulator.stacks.profile import EfficiencyCorrection

RESULTS = Path(__file__).resolve().parents[2] / "validation" / "results" / "stacks"
GRID = [("prefill", 1, 128), ("prefill", 1, 1024), ("prefill", 4, 2048), ("prefill", 1, 16384), ("prefill", 1, 32768), ("decode", 1, 512),
        ("decode", 16, 2048), ("decode", 64, 1024), ("decode", 32, 16384)]


def _truth(execution="graph"):
    stack = structure_stack("torch-unfused", "truth", execution)
    eff = {"gemm": EfficiencyCorrection(scale=0.85), "attention_prefill": EfficiencyCorrection(scale=0.6),
           "attention_decode": EfficiencyCorrection(scale=0.7), "memory": EfficiencyCorrection(scale=0.8)}
    fixed = stack.fixed.model_copy(update={"launch_overhead_s": 2e-6, "host_launch_s": 15e-6 if execution == "eager"
                                           else 0.0})
    return stack.model_copy(update={"efficiency": eff, "fixed": fixed})


def _synthetic(truth, models=("llama-3.2-1b", "llama-2-7b", "qwen2.5-7b"), grid=GRID):
    """Steps priced with ``truth`` (the measurement a stack with those corrections would give)."""
    rows = []
    for model in models:
        for phase, batch, length in grid:
            wl = {"phase": phase, "batch_size": batch, ("prompt_len" if phase == "prefill" else "context_len"): length}
            t = predict({"model": model, "hardware": {"gpu": "h200-sxm"}, "calibration": truth.model_dump(),
                         "workload": wl}).latency_s
            rows.append(Measurement(row=len(rows) + 1, model=model, gpu="h200-sxm", phase=phase, batch=batch,
                                    latency_s=t, mode=truth.fixed.execution, **{("prompt_len" if phase == "prefill" else "context_len"): length}))
    return rows


@pytest.mark.parametrize("execution", ["graph", "eager"])
def test_a_fit_on_synthetic_steps_recovers_the_corrections(execution):
    truth = _truth(execution)
    report = fit_measurements(_synthetic(truth), structure="torch-unfused", name="fit", cross_validate=False)
    got = {p.name: p.value for p in report.parameters}
    # eager decode steps are host-bound but for the largest: they hardly see the decode attention
    kinds = ("gemm", "attention_prefill", "memory") + (("attention_decode",) if execution == "graph" else ())
    for kind in kinds:
        assert got[f"{kind}.scale"] == pytest.approx(truth.efficiency[kind].scale, rel=0.1), kind
    assert got["launch_overhead_s"] == pytest.approx(2e-6, abs=1e-6)
    if execution == "eager":
        assert got["host_launch_s"] == pytest.approx(15e-6, rel=0.05)
    assert max(abs(r.error) for r in report.rows) < 0.01


def test_held_out_models_are_predicted_from_the_others():
    report = fit_measurements(_synthetic(_truth()), structure="torch-unfused", name="fit")
    held = [abs(r.held_out_error) for r in report.rows]
    assert len(held) == 27 and max(held) < 0.03
    assert {s.label for s in report.errors} == {"in sample", "model held out"}


def test_rows_without_decode_cannot_identify_the_decode_attention():
    rows = [r for r in _synthetic(_truth(), models=("llama-3.2-1b",)) if r.phase == "prefill"]
    with pytest.raises(InputError, match="attention_decode.scale.*no decode rows"):
        fit_measurements(rows, structure="torch-unfused", cross_validate=False)
    frozen = fit_measurements(rows, structure="torch-unfused", cross_validate=False,
                              freeze=["attention_decode.scale", "attention_decode.slope"])
    assert any("frozen" in n for n in frozen.notes)


def test_the_fit_prices_steps_as_predict_does():
    truth = _truth("eager")
    rows = _synthetic(truth, models=("olmoe-1b-7b", "llama-3.2-1b"))
    got = predict_groups(build_groups(rows, truth), truth, len(rows))
    assert np.allclose(got, [r.latency_s for r in rows], rtol=1e-3)


@pytest.mark.parametrize("csv, structure", [("torch-unfused-graph", "torch-unfused"), ("torch-unfused-eager", "torch-unfused"),
                                             ("hf-graph", "hf-graph"), ("hf-eager", "hf-eager")])
def test_shipped_measurements_held_out_models(csv, structure):
    """Leave one model out on the H200 steps (docs/calibration.md#measured-out-of-sample-errors), recomputed
    from the committed CSVs: within the issue's targets, median 10% and p90 20%, prefill and decode, and the
    MoE model (olmoe-1b-7b) held out within a median 10%. The previous structure (no MoE implementation,
    20-50 launches per MoE layer missing, a per-step cost free to absorb per-launch terms) missed a p90 bound
    on every one of these CSVs (20.6% to 58.6%)."""
    report = fit_measurements(RESULTS / f"{csv}.csv", structure=structure, name=csv)
    stats = {(s.label, s.phase): s for s in report.errors}
    for phase in ("prefill", "decode"):
        held = stats[("model held out", phase)]
        assert held.median_abs <= 0.10 and held.p90_abs <= 0.20, (phase, held)
        moe = [abs(r.held_out_error) for r in report.rows if r.model == "olmoe-1b-7b" and r.phase == phase]
        assert float(np.median(moe)) <= 0.10, (phase, moe)


def test_shipped_training_rows_held_out_and_their_peak_memory():
    """Training steps of the torch-unfused stack (AdamW, bf16, no recompute) on the H200: with each model
    held out, step time within the 12% median target (p90 20%), and peak memory, which is not fitted,
    within 10% on every row."""
    report = fit_measurements(RESULTS / "torch-unfused-eager.csv", structure="torch-unfused", name="tu")
    stats = {(s.label, s.phase): s for s in report.errors}
    held = stats[("model held out", "train")]
    assert held.rows == 20 and held.median_abs <= 0.12 and held.p90_abs <= 0.20
    assert stats[("peak memory", "train")].max_abs <= 0.10
    assert {p.name for p in report.parameters} >= {"train.backward_scale", "train.host_launch_scale"}
    assert report.stack.residuals.held_out["train"]


def test_a_fit_on_synthetic_training_steps_recovers_the_training_corrections():
    from simulator.stacks.profile import TrainCorrections
    from simulator.stacks.train import fit_train, predict_train, train_terms

    stack = _truth("eager")
    shapes = [(1, 512), (1, 1024), (2, 4096), (4, 4096)]
    rows = [Measurement(row=i + 1, model="llama-3.2-1b", gpu="h200-sxm", phase="train", batch=b, seq_len=n,
                        precision="bf16", recompute="none", latency_s=1.0) for i, (b, n) in enumerate(shapes)]
    terms = train_terms(rows, stack)
    truth = stack.model_copy(update={"train": TrainCorrections(backward_scale=1.3, host_launch_scale=1.6)})
    measured = predict_train(terms, truth)
    rows = [r.model_copy(update={"latency_s": float(t)}) for r, t in zip(rows, measured)]
    fitted, log_err, _, free, _ = fit_train(rows, stack, terms)
    assert fitted.train.backward_scale == pytest.approx(1.3, rel=0.03)
    assert fitted.train.host_launch_scale == pytest.approx(1.6, rel=0.03)
    assert np.max(np.abs(log_err)) < 0.01 and "train.backward_scale" in free
