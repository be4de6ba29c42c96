"""The stack timing code on a CPU with tiny shapes: the unfused decoder and the transformers stack compute
finite logits, decode steps can run again (the cache is restored), and the CSV has the documented columns."""

from __future__ import annotations

import csv

import pytest

torch = pytest.importorskip("torch")

from simulator.stacks.measurements import read_measurements  # noqa: E402
from validation.stacks import measure, unfused  # noqa: E402

DENSE = dict(num_layers=2, hidden_size=64, num_attention_heads=4, num_kv_heads=2, head_dim=16, intermediate_size=128,
             vocab_size=256)
MOE = dict(DENSE, moe=dict(num_experts=4, top_k=2, expert_intermediate_size=32))


def _factories():
    out = [("unfused", lambda s: unfused.factory(s, "cpu", torch.float32))]
    try:
        import transformers  # noqa: F401

        from validation.stacks import hf  # noqa: F401

        out += [(f"hf-{m}", lambda s, m=m: hf.factory(s, "cpu", torch.float32, m)) for m in ("eager", "graph")]
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("name, make", _factories())
@pytest.mark.parametrize("spec", [DENSE, MOE], ids=["dense", "moe"])
def test_steps_run_and_run_again(name, make, spec):
    torch.manual_seed(0)
    stack = make(spec)
    for step in (stack.prefill(2, 8), stack.decode(2, 16)):
        first = step.run().float()
        if step.reset:
            step.reset()
        again = step.run().float()
        assert first.shape[0] == 2 and first.shape[-1] == spec["vocab_size"]
        assert torch.isfinite(first).all()
        assert torch.allclose(first, again, rtol=1e-4, atol=1e-4)


def test_unfused_decode_matches_its_prefill():
    """The decode step's logits equal those of the last position of a prefill over the same tokens."""
    torch.manual_seed(0)
    st = unfused.factory(DENSE, "cpu", torch.float64)
    ids = torch.randint(0, 256, (1, 9))
    caches = st._caches(1, 9)
    pos = torch.arange(9)
    with torch.inference_mode():
        full = st.module(ids, pos, caches, 0, "prefill")
        caches2 = st._caches(1, 9)
        st.module(ids[:, :8], pos[:8], caches2, 0, "prefill")
        step = st.module(ids[:, 8:], pos[8:], caches2, 8, "decode")
    assert torch.allclose(full, step, rtol=1e-9, atol=1e-9)


def test_measure_writes_the_documented_csv(tmp_path):
    out = tmp_path / "m.csv"
    rows = measure.measure(lambda s: unfused.factory(s, "cpu", torch.float32), {"tiny": DENSE}, gpu="h200-sxm",
                           mode="eager", out=out, quick=True, device="cpu", precision="fp32")
    assert len(rows) == 6
    header = next(csv.reader(out.open()))
    assert header[:13] == ["model", "gpu", "num_gpus", "tp", "phase", "batch", "prompt_len", "context_len", "seq_len",
                           "precision", "recompute", "latency_s", "peak_memory_bytes"]
    with pytest.raises(Exception, match="tiny"):  # 'tiny' is no preset: the fit's reader names it
        from simulator.stacks import fit_measurements

        fit_measurements(read_measurements(out))


def test_training_steps_learn_and_rounds_pool_their_samples(tmp_path):
    """``train`` runs forward, fp32 loss, backward and AdamW (the loss falls on repeated data); with
    ``rounds=2`` every point is visited twice and its row pools both rounds' samples."""
    torch.manual_seed(0)
    st = unfused.factory(DENSE, "cpu", torch.float32)
    step = st.train(2, 16)
    losses = [float(step.run()) for _ in range(3)]
    assert losses[-1] < losses[0]
    step.release()
    out = tmp_path / "t.csv"
    rows = measure.measure(lambda s: unfused.factory(s, "cpu", torch.float32), {"tiny": DENSE}, gpu="h200-sxm",
                           mode="eager", out=out, quick=True, device="cpu", precision="fp32",
                           phases=("prefill", "train"), rounds=2)
    train_rows = [r for r in rows if r["phase"] == "train"]
    assert len(rows) == 4 and len(train_rows) == 1
    assert train_rows[0]["seq_len"] == 1024 and train_rows[0]["recompute"] == "none"
    assert all(int(r["repeats"]) >= 10 for r in rows)  # at least 5 per round, two rounds
    assert [m.phase for m in read_measurements(out)].count("train") == 1
