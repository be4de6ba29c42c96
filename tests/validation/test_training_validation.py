"""Training validation code on the CPU: the fused kernels (under the Triton interpreter, which
tests/validation/conftest.py turns on) against plain torch autograd, the torch Llama-style decoder and its
step runner on tiny shapes, the training-kind fits against the shipped profile, and the recorded H200
steps re-predicted."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytest.importorskip("triton")

from simulator.models import get_model  # noqa: E402
from validation.training import fused, steps  # noqa: E402
from validation.training.fit import TRAINING_KINDS, fit_training_kinds  # noqa: E402
from validation.training.kernels import model_param_shapes  # noqa: E402
from validation.training.model import from_spec  # noqa: E402
from validation.training.report import repredict, summary  # noqa: E402

ROOT = Path(__file__).parents[2]
RAW = ROOT / "validation" / "results" / "h200-sxm.training.json"
TINY = {"name": "tiny", "num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_kv_heads": 2,
        "head_dim": 16, "intermediate_size": 96, "vocab_size": 100}


def test_decoder_has_the_specs_parameters():
    for cfg in (TINY, {**TINY, "attention_bias": True}, {**TINY, "tie_word_embeddings": True}):
        spec = get_model(cfg)
        model = from_spec(spec)
        assert sum(p.numel() for p in model.parameters()) == spec.total_params()
        assert (model.lm_head.weight is model.embed.weight) == spec.tie_word_embeddings
        assert (model.blocks[0].qkv.bias is not None) == spec.attention_bias
    for name in ("llama-3.2-3b", "qwen2.5-7b"):  # the held-out shapes: tied 3B, Qwen2's QKV bias
        spec = get_model(steps.MODELS[name])
        with torch.device("meta"):
            assert sum(p.numel() for p in from_spec(spec).parameters()) == spec.total_params()


def test_optimizer_points_use_the_decoders_parameter_lists():
    for name in ("llama-1.5b", "llama-3.1-8b"):
        shapes = model_param_shapes(name)
        assert sum(int(np.prod(s)) for s in shapes) == get_model(steps.MODELS[name]).total_params()


def _grads(fn, inputs, dy):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    outs = out if isinstance(out, tuple) else (out,)
    torch.autograd.backward(outs, dy)
    return outs, [x.grad for x in leaves]


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@pytest.mark.skipif(not fused.triton_ok(torch.zeros(1)), reason="needs TRITON_INTERPRET=1 on the CPU")
@pytest.mark.parametrize("x_dtype, w_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32)])
def test_fused_rmsnorm_forward_and_backward(x_dtype, w_dtype):
    torch.manual_seed(3)
    x = torch.randn(3, 5, 96).to(x_dtype)  # 96: a row shorter than its power-of-two block
    w = (1.0 + 0.3 * torch.randn(96)).to(w_dtype)
    dy = torch.randn(3, 5, 96).to(x_dtype)
    (y,), (dx, dw) = _grads(lambda a, b: fused.RMSNormFn.apply(a, b, 1e-5), (x, w), (dy,))
    (yr,), (dxr, dwr) = _grads(lambda a, b: fused.rmsnorm_ref(a.float(), b.float(), 1e-5), (x.float(), w.float()),
                               (dy.float(),))
    tol = 1e-5 if x_dtype == torch.float32 else 1e-2
    assert y.dtype == x_dtype and dx.dtype == x_dtype and dw.dtype == w_dtype
    assert _rel(y, yr) < tol and _rel(dx, dxr) < tol and _rel(dw, dwr) < tol


@pytest.mark.skipif(not fused.triton_ok(torch.zeros(1)), reason="needs TRITON_INTERPRET=1 on the CPU")
def test_fused_rotary_and_swiglu_match_autograd():
    torch.manual_seed(4)
    b, s, n_q, n_kv, d = 2, 6, 4, 2, 16
    qkv = torch.randn(b, s, (n_q + 2 * n_kv) * d)
    ang = torch.outer(torch.arange(s, dtype=torch.float32), torch.rand(d // 2))
    cos, sin = ang.cos(), ang.sin()
    dys = tuple(torch.randn(b, s, n, d) for n in (n_q, n_kv, n_kv))
    outs, (dqkv,) = _grads(lambda t: fused.RotaryQKVFn.apply(t, cos, sin, n_q, n_kv, d), (qkv,), dys)
    refs, (dref,) = _grads(lambda t: fused.rotary_ref(t, cos, sin, n_q, n_kv, d), (qkv,), dys)
    for o, r in zip(outs, refs):
        assert o.is_contiguous() and _rel(o, r) < 1e-6
    assert _rel(dqkv, dref) < 1e-6
    assert _rel(outs[0], fused._split_heads(qkv, n_q, n_kv, d)[0]) > 0.1  # Q is rotated, not copied
    gu = torch.randn(3, 7, 2 * 40)
    dy = torch.randn(3, 7, 40)
    (y,), (dgu,) = _grads(fused.SwiGLUFn.apply, (gu,), (dy,))
    (yr,), (dgr,) = _grads(fused.swiglu_ref, (gu,), (dy,))
    assert _rel(y, yr) < 1e-6 and _rel(dgu, dgr) < 1e-6


@pytest.mark.parametrize("cfg", [TINY, {**TINY, "attention_bias": True, "tie_word_embeddings": True}])
def test_fused_decoder_computes_the_reference_decoder_and_checkpointing_keeps_it(cfg):
    spec = get_model(cfg)
    torch.manual_seed(1)
    ref = from_spec(spec, fused=False)
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.2)
    ids = torch.randint(0, 100, (2, 8))
    expected = ref(ids, ids)
    expected.backward()
    for ckpt, attn in ((False, False), (True, False), (False, True)):
        model = from_spec(spec, checkpoint_blocks=ckpt, checkpoint_attention=attn)
        model.load_state_dict(ref.state_dict())
        loss = model(ids, ids)
        loss.backward()
        assert torch.allclose(loss, expected, rtol=1e-6)
        for p, q in zip(model.parameters(), ref.parameters()):
            assert _rel(p.grad, q.grad) < 1e-5


@pytest.mark.parametrize("precision, recompute", [("bf16", "full"), ("amp", "full"), ("mixed", "selective")])
def test_step_runner_on_cpu(monkeypatch, precision, recompute):
    monkeypatch.setitem(steps.MODELS, "tiny", {**TINY, "tie_word_embeddings": True})
    case = steps.run_case("tiny", precision, recompute, 1, 8, device="cpu", repeats=1, warmup=1)
    assert case["fits"] and case["step_time_s"] > 0 and np.isfinite(case["loss"])
    assert abs(case["loss"] - np.log(100)) < 1.0  # random weights: near uniform over the vocabulary


def test_mixed_adamw_is_torch_adamw_on_fp32_master_weights():
    from validation.training.optim import MixedAdamW

    torch.manual_seed(5)
    params = [torch.nn.Parameter(torch.randn(5000).bfloat16()),  # 5000: a partial last block
              torch.nn.Parameter(torch.randn(33, 7).bfloat16())]
    ref = [torch.nn.Parameter(p.detach().float()) for p in params]
    opt = MixedAdamW(params, lr=1e-2, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref, lr=1e-2, weight_decay=0.1, foreach=False)
    for _ in range(3):  # the bias corrections change with the step count the kernel reads
        for p, r in zip(params, ref):
            p.grad = torch.randn_like(p)
            r.grad = p.grad.float()
        opt.step()
        ref_opt.step()
    for p, w, r in zip(params, opt.master, ref):
        assert w.dtype == torch.float32 and p.dtype == torch.bfloat16
        assert _rel(w, r) < 1e-6 and _rel(w, p.detach().float()) > 0  # moved, and fp32 kept apart from bf16
        assert bool(((p.detach().float() - w).abs() <= w.abs() * 2.0 ** -7).all())  # p is w to bf16's ulp
    assert float(opt.step_count) == 3.0


def test_fits_reproduce_the_shipped_training_kinds():
    raw = json.loads(RAW.read_text())
    profile = json.loads((ROOT / "hwmodels" / "profiles" / "h200-sxm.json").read_text())
    kinds = fit_training_kinds(raw["kernels"], "h200-sxm", profile["kinds"])
    assert set(kinds) == set(TRAINING_KINDS)
    for kind, eff in kinds.items():
        assert eff["compute"] == profile["kinds"][kind]["compute"]
        assert eff["memory"] == profile["kinds"][kind]["memory"]


def test_adamw_over_bf16_and_fp32_lists_has_a_curve_each():
    """Torch's fused AdamW streams bf16 lists slower per byte than fp32 ones (2.7-2.8 against 3.4-3.5 TB/s
    at 1G parameters in the raw points): each has its own kind, and each reproduces its own measured points
    within 3% median (one curve over both was 10.5% off); a bf16 training step prices ``optimizer_bf16``."""
    from costmodels.roofline import OpCost, price
    from hwmodels import get_accelerator
    from hwmodels.profile import Profile

    raw = json.loads(RAW.read_text())
    prof = Profile.model_validate(json.loads((ROOT / "hwmodels" / "profiles" / "h200-sxm.json").read_text()))
    gpu = get_accelerator("h200-sxm")
    rate = {}
    for param_bytes, kind in ((2.0, "optimizer_bf16"), (4.0, "optimizer")):
        pts = [p for p in raw["kernels"] if p["kind"] == "optimizer" and p["param_bytes"] == param_bytes]
        err = [price(OpCost("o", kind, 1, flops=p["flops"], hbm_bytes=p["bytes"], peak_flops_per_s=gpu.peak_for("fp32"),
                            hbm_bandwidth_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s), prof).time_s / p["time_s"] - 1
               for p in pts]
        assert len(pts) >= 6 and np.median(np.abs(err)) < 0.03, kind
        big = max(pts, key=lambda p: p["params"])
        rate[kind] = big["bytes"] / big["time_s"]
    assert rate["optimizer_bf16"] < 0.85 * rate["optimizer"]
    assert prof.kind("optimizer_bf16") is not prof.kind("optimizer")
    bare = prof.model_copy(update={"kinds": {k: v for k, v in prof.kinds.items() if not k.startswith("optimizer")}})
    assert bare.kind("optimizer_bf16") is bare.kind("memory")  # a profile without either: the chain ends at memory

    from simulator.training.api import train
    base = {"model": "llama-3.2-1b", "gpu": "h200-sxm", "micro_batch": 1, "seq_len": 2048}
    t_bf16, t_amp = train(**base, precision="bf16"), train(**base, precision="amp")
    n = get_model("llama-3.2-1b").total_params()
    priced = {k: price(OpCost("o", k, 1, flops=12.0 * n, hbm_bytes=b * n, peak_flops_per_s=gpu.peak_for("fp32"),
                                hbm_bandwidth_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s), prof).time_s
              for k, b in (("optimizer_bf16", 14.0), ("optimizer", 28.0))}
    assert t_bf16.breakdown["optimizer"] == pytest.approx(priced["optimizer_bf16"], rel=1e-9)
    assert t_amp.breakdown["optimizer"] == pytest.approx(priced["optimizer"], rel=1e-9)


def test_the_loss_forward_and_backward_have_a_curve_each():
    """The fp32 cross-entropy's forward runs at 2.0-2.3 TB/s and its backward at 2.9-3.8 TB/s against the bytes
    counted: each phase's kind reproduces its own recorded points within 5% median (one curve over both was 20%
    off), and a training step prices its loss backward with ``cross_entropy_backward``."""
    from costmodels.roofline import OpCost, price
    from hwmodels import get_accelerator
    from hwmodels.profile import Profile

    raw = json.loads(RAW.read_text())
    prof = Profile.model_validate(json.loads((ROOT / "hwmodels" / "profiles" / "h200-sxm.json").read_text()))
    gpu = get_accelerator("h200-sxm")
    for phase, kind in (("forward", "cross_entropy"), ("backward", "cross_entropy_backward")):
        pts = [p for p in raw["kernels"] if p["kind"] == "cross_entropy" and p["phase"] == phase]
        err = [price(OpCost("l", kind, 1, flops=p["flops"], hbm_bytes=p["bytes"], peak_flops_per_s=gpu.peak_for("fp32"),
                            hbm_bandwidth_bytes_per_s=gpu.hbm_bandwidth_bytes_per_s), prof).time_s / p["time_s"] - 1
               for p in pts]
        assert len(pts) == 6 and np.median(np.abs(err)) < 0.05, kind
    from simulator.training.api import train
    report = train(model="llama-3.2-1b", gpu="h200-sxm", micro_batch=1, seq_len=2048, precision="bf16")
    kinds = {(op.name, op.phase): op.kind for op in report.operators}
    assert kinds[("cross_entropy", "forward")] == "cross_entropy"
    assert kinds[("cross_entropy.backward", "backward")] == "cross_entropy_backward"


def test_recorded_h200_steps_repredicted():
    raw = json.loads(RAW.read_text())
    rows = repredict(raw)
    s = summary(rows)
    assert s["cases"] == len(raw["steps"]) and s["fits_agree"] == s["cases"]
    assert all(r["timing"] == "graph" for r in rows)  # every step was captured whole in a CUDA graph
    # the targets of issue 12 (docs/validation.md has the table): median error at most 10% for each
    assert s["time_err"]["median"] <= 0.10 and s["memory_err"]["median"] <= 0.10
    # the eager steps of the same model are slower than the graph replays roofsim prices
    assert all(r["eager_s"] >= 0.98 * r["measured_s"] for r in rows)


def test_h100_training_kinds_are_the_h200s_carried_and_labelled(tmp_path):
    import math

    from hwmodels import get_accelerator, load_profile
    from validation.training.fit import transfer_training_kinds

    profiles = ROOT / "hwmodels" / "profiles"
    shipped = json.loads((profiles / "h100-sxm.json").read_text())
    again = transfer_training_kinds(profiles / "h200-sxm.json", profiles / "h100-sxm.json", out=tmp_path / "h100.json")
    h200 = json.loads((profiles / "h200-sxm.json").read_text())
    shift = math.log10(get_accelerator("h100-sxm").hbm_bandwidth_bytes_per_s
                       / get_accelerator("h200-sxm").hbm_bandwidth_bytes_per_s)
    assert shipped["measurements"]["training_kernels"]["transferred_from"] == "h200-sxm"
    for kind in TRAINING_KINDS:
        eff, src = shipped["kinds"][kind], h200["kinds"][kind]
        assert eff == again["kinds"][kind]  # the shipped kinds are exactly the transfer of the shipped H200's
        assert eff["basis"].startswith("transferred from h200-sxm, not measured on h100-sxm")
        assert eff["compute"] == src["compute"]  # 132 SMs on both
        assert eff["memory"]["efficiency"] == src["memory"]["efficiency"]
        assert eff["memory"]["log10_size"] == pytest.approx([x + shift for x in src["memory"]["log10_size"]], abs=1e-4)
        assert load_profile("h100-sxm").has_kind(kind)


HELD_OUT = ROOT / "validation" / "results" / "h200-sxm.training-heldout.json"


def _decoder_matrices(spec):
    """(in, out) of each GEMM weight of the validation decoder: packed QKV and gate/up, o, down, head."""
    h, d = spec.hidden_size, spec.head_dim
    return {(h, (spec.num_attention_heads + 2 * spec.num_kv_heads) * d), (spec.num_attention_heads * d, h),
            (h, 2 * spec.intermediate_size), (spec.intermediate_size, h), (h, spec.vocab_size)}


def test_held_out_steps_share_no_shape_with_the_fits():
    from validation.sweeps import HEADS, LAYER_SHAPES

    raw, fitted = json.loads(HELD_OUT.read_text()), json.loads(RAW.read_text())
    assert raw["cases"] == "held-out" and len(raw["steps"]) == len(steps.HELD_OUT)
    seen = {tuple(c[k] for k in ("model", "precision", "recompute", "micro_batch", "seq_len")) for c in fitted["steps"]}
    fitted_models = {c["model"] for c in fitted["steps"]}
    mats = {(p["K"], p["N"]) for p in fitted["kernels"] if p["kind"].startswith("gemm")}
    mats |= {(k, n) for _, _, k, n in LAYER_SHAPES}  # the forward kinds' GEMM shapes
    mats |= {(n, k) for k, n in mats}
    heads = {(p["H"], p["Hkv"]) for p in fitted["kernels"] if p["kind"] == "attention_backward"} | set(HEADS)
    lists = {p["param_list"] for p in fitted["kernels"] if p["kind"] == "optimizer"}
    new_models = 0
    for c in raw["steps"]:
        assert tuple(c[k] for k in ("model", "precision", "recompute", "micro_batch", "seq_len")) not in seen
        if c["model"] in fitted_models:  # a fitted model's shape: its micro-batch and sequence are new
            assert c["micro_batch"] not in {f["micro_batch"] for f in fitted["steps"]}
            assert c["seq_len"] not in {f["seq_len"] for f in fitted["steps"]}
            continue
        spec = get_model(steps.MODELS[c["model"]])
        assert not _decoder_matrices(spec) & mats  # no weight matrix of the model was timed
        assert (spec.num_attention_heads, spec.num_kv_heads) not in heads and c["model"] not in lists
        new_models += 1
    assert new_models >= len(raw["steps"]) - 1


def test_held_out_h200_steps_repredicted():
    """Steps of shapes no fit saw, predicted with the shipped profile as it is: the issue's 10% median
    targets and a 20% p90 (docs/validation.md, "Held out")."""
    raw = json.loads(HELD_OUT.read_text())
    rows = repredict(raw)
    s = summary(rows)
    assert s["cases"] == len(raw["steps"]) and s["fits_agree"] == s["cases"]
    assert s["n"] < s["cases"]  # one case is out of memory, and predicted so
    assert all(r["timing"] == "graph" for r in rows if "time_err" in r)
    assert {r["precision"] for r in rows} == {"bf16", "amp", "mixed"}
    assert {r["recompute"] for r in rows} == {"none", "selective", "full"}
    for key in ("time_err", "memory_err"):
        assert s[key]["median"] <= 0.10 and s[key]["p90"] <= 0.20
