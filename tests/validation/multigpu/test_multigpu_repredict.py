"""The multi-GPU re-prediction and collective fit, on hand-made results (no processes, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwmodels import get_accelerator, load_profile
from validation import collectives
from validation.multigpu import launch
from validation.multigpu.fold import fold
from validation.multigpu.repredict import collective_time_s, collectives as repredict_collectives

H200 = get_accelerator("h200-sxm")
LINK = H200.intra_node_link
GROUP_STEPS = {"all_reduce": lambda n: 2 * (n - 1), "all_gather": lambda n: n - 1,
               "reduce_scatter": lambda n: n - 1, "all_to_all": lambda n: n - 1, "send_recv": lambda n: 1}
GROUP_BYTES = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
               "reduce_scatter": lambda n: (n - 1) / n, "all_to_all": lambda n: (n - 1) / n, "send_recv": lambda n: 1}


def test_collective_price_at_peak_is_alpha_beta_by_hand():
    """All-reduce of 1 GiB over 8 GPUs at peak: 14 latency steps + 2*7/8 GiB over one GPU's NVLink."""
    S = 2 ** 30
    want = 14 * LINK.latency_s + 2 * 7 / 8 * S / LINK.bandwidth_bytes_per_s
    assert float(collective_time_s("all_reduce", S, 8, "h200-sxm", load_profile("peak"))) == pytest.approx(want)
    # send/recv is the cost model's p2p: the whole message, one step
    want = LINK.latency_s + S / LINK.bandwidth_bytes_per_s
    assert float(collective_time_s("send_recv", S, 4, "h200-sxm", load_profile("peak"))) == pytest.approx(want)


def _sweep(alpha_s: dict[int, float], beta: dict[int, float]) -> dict:
    """A collectives.json whose times follow alpha + traffic / beta exactly, per group size."""
    cases = []
    for name in GROUP_STEPS:
        for n in alpha_s:
            for k in range(12, 31, 2):
                S = 2 ** k
                t = alpha_s[n] + GROUP_BYTES[name](n) * S / beta[n]
                cases.append({"collective": name, "group": n, "message_bytes": S, "time_s": t, "p90_s": t})
    return {"script": "collectives", "gpu": "h200-sxm", "command": "torchrun ...", "cases": cases,
            "environment": {"device_name": "NVIDIA H200", "world": 8, "nccl": "2.27.3", "topology": "GPU0 X NV18"},
            "checks": {}}


# start-up times above the ring model's steps x NVLink latency (3 us: all-reduce over 8 GPUs, 42 us)
ALPHA = {2: 8e-6, 4: 25e-6, 8: 50e-6}
BETA = {2: 300e9, 4: 280e9, 8: 250e9}


def test_fit_recovers_alpha_beta_per_collective_and_group():
    kind, raw = collectives.fit(_sweep(ALPHA, BETA), H200)
    assert set(raw["groups"]) == set(GROUP_STEPS)
    for name, by_n in raw["groups"].items():
        assert set(by_n) == {"2", "4", "8"}
        for n, entry in by_n.items():
            assert entry["alpha_s"] == pytest.approx(ALPHA[int(n)], rel=1e-6)
            assert entry["beta_bytes_per_s"] == pytest.approx(BETA[int(n)], rel=1e-6)
            assert entry["fit"]["median_abs_err"] < 0.05
    # the profile's kind is all-reduce at the largest group; the top-level entries too
    assert kind == raw["groups"]["all_reduce"]["8"]["efficiency"]
    assert raw["all_reduce"]["alpha_s"] == pytest.approx(ALPHA[8], rel=1e-6)
    assert raw["world"] == 8


def test_folded_profile_re_predicts_its_own_sweep_within_target():
    base = json.loads(Path("hwmodels/profiles/h200-sxm.json").read_text())
    sweep = _sweep(ALPHA, BETA)
    prof = fold(base, sweep)
    assert prof["kinds"]["gemm"] == base["kinds"]["gemm"]  # kernels untouched
    assert prof["measurements"]["collectives"]["environment"]["topology"] == "GPU0 X NV18"
    from hwmodels.profile import Profile

    report = repredict_collectives(sweep, profile_ref=Profile.model_validate(prof))
    big = report["summary"]["all_reduce x8"]
    assert big["n"] == 8 and big["meets_target"], big  # 64 KiB .. 1 GiB, fitted on exactly these points


def test_small_all_reduce_over_8_gpus_needs_the_tree():
    """NCCL's small all-reduces over 8 GPUs take ~20 us: less than a ring's 2(n-1) = 14 steps of 3 us
    (42 us), more than a double binary tree's 2 log2(8) = 6 (18 us). Fitted with the default
    algorithm choice, the 64 KiB+ target holds; priced as a ring it cannot."""
    S, peak = 2 ** 16, load_profile("peak")
    ring = float(collective_time_s("all_reduce", S, 8, "h200-sxm", peak, "ring"))
    tree = float(collective_time_s("all_reduce", S, 8, "h200-sxm", peak, "tree"))
    assert ring == pytest.approx(14 * LINK.latency_s + 2 * 7 / 8 * S / LINK.bandwidth_bytes_per_s)
    assert tree == pytest.approx(6 * LINK.latency_s + 2 * S / LINK.bandwidth_bytes_per_s)
    sweep = _sweep({8: 20e-6}, {8: 250e9})
    assert tree < sweep["cases"][2]["time_s"] < ring  # the 64 KiB all-reduce
    base = json.loads(Path("hwmodels/profiles/h200-sxm.json").read_text())
    folded = fold(base, sweep)
    assert repredict_collectives(sweep, profile_ref=folded)["summary"]["all_reduce x8"]["meets_target"]
    ring_report = repredict_collectives(sweep, profile_ref=folded, algorithm="ring")
    assert not ring_report["summary"]["all_reduce x8"]["meets_target"]


def test_shipped_two_gpu_fit_is_unchanged():
    """The 2-GPU sweep inside the shipped H200 profile fits to the profile's own collective kind."""
    prof = json.loads(Path("hwmodels/profiles/h200-sxm.json").read_text())
    c = prof["measurements"]["collectives"]
    data = {"world": c["world"], "results": {k: v["points"] for k, v in c.items() if isinstance(v, dict) and "points" in v}}
    kind, raw = collectives.fit(data, H200)
    assert kind == prof["kinds"]["collective"]
    assert raw["all_reduce"]["points"] == c["all_reduce"]["points"]


def test_launcher_turns_multicast_off(monkeypatch):
    seen = {}

    def fake_run(cmd, env):
        seen.update(cmd=cmd, env=env)
        return type("R", (), {"returncode": 0})()

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    assert launch.launch(8, ["all"], "out", ["--layers", "4"]) == 0
    assert seen["env"]["NCCL_NVLS_ENABLE"] == "0" and seen["env"]["NVSHMEM_DISABLE_NVLS"] == "1"
    assert seen["env"]["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
    assert "--nproc-per-node=8" in seen["cmd"] and seen["cmd"][-2:] == ["--layers", "4"]
    assert seen["env"]["ROOFSIM_MULTIGPU_COMMAND"].startswith("torchrun --standalone --nproc-per-node=8")


def test_tp_case_is_predicted_on_its_gpus():
    """A TP-4 case is a 4-GPU scenario: faster than the same step on one GPU, not four times faster."""
    from validation.validate import predict_row

    spec = {"name": "llama-3.1-8b", "family": "llama", "num_layers": 32, "hidden_size": 4096,
            "num_attention_heads": 32, "num_kv_heads": 8, "head_dim": 128, "intermediate_size": 14336,
            "vocab_size": 128256}
    one = predict_row({"spec": spec, "phase": "decode", "batch": 8, "length": 2048, "time_s": 1e-2}, "auto", "h200-sxm")
    four = predict_row({"spec": spec, "phase": "decode", "batch": 8, "length": 2048, "time_s": 1e-2,
                        "parallelism": {"tp": 4}}, "auto", "h200-sxm")
    assert one["calibrated_s"] / 4 < four["calibrated_s"] < one["calibrated_s"]
    assert np.isfinite(four["calibrated_error"])


def test_cli_multi_gpu_needs_a_gpu_and_results(tmp_path, capsys, monkeypatch):
    from roofsim.cli import validate as cli_validate
    from roofsim.cli.main import main

    monkeypatch.setattr(cli_validate, "gpu_missing", lambda command: (print("roofsim validate: error: needs a CUDA GPU")
                                                                      or 2))
    assert main(["validate", "--multi-gpu", "8", "--out", str(tmp_path)]) == 2
    assert main(["validate", "--from", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"roofsim validate: error: no multi-GPU results in {str(tmp_path)!r}"]


def test_refit_keeps_a_folded_multi_gpu_sweep(tmp_path):
    """``roofsim calibrate --refit`` of a profile holding a multi-GPU sweep fits it again to the same kind."""
    from validation.calibrate import dumps, refit

    base = json.loads(Path("hwmodels/profiles/h200-sxm.json").read_text())
    folded = fold(base, _sweep(ALPHA, BETA))
    path = tmp_path / "h200-sxm.json"
    path.write_text(dumps(folded))
    again = refit(str(path), str(tmp_path / "again.json"))
    assert again["kinds"]["collective"] == folded["kinds"]["collective"]
    assert set(again["measurements"]["collectives"]["groups"]["reduce_scatter"]) == {"2", "4", "8"}
    assert again["measurements"]["collectives"]["environment"]["topology"] == "GPU0 X NV18"
