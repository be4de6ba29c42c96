"""MoE routing kernels: fused softmax + top-k and the one-pass weighted unpermute, against float64
references (fresh random inputs, NaN-poisoned outputs, odd sizes, ties)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from costmodels import moe as moe_cost  # noqa: E402
from validation.kernels import moe  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _random_permutation_index(T, k, gen, device):
    """A (T, k) inverse index: every row of a (T·k)-row expert-sorted buffer used exactly once."""
    return torch.randperm(T * k, generator=gen).view(T, k).to(torch.int32).to(device)


# ------------------------------------------------------------------------------------------------
# topk_softmax
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("T,E,k", [(1, 64, 8), (7, 64, 8), (5, 6, 2), (3, 60, 7), (9, 8, 8), (4, 256, 8), (2, 1, 1),
                                   (3, 300, 4)])
@pytest.mark.parametrize("renormalize", [False, True], ids=["softmax", "renorm"])
def test_topk_softmax(dtype, T, E, k, renormalize, randn, poisoned, check_close):
    logits = randn(T, E, dtype=dtype, scale=2.0)
    w = poisoned((T, k), torch.float32)
    ids = torch.full((T, k), -1, dtype=torch.int32, device=logits.device)
    rw, rid = moe.topk_softmax(logits, k, w, ids, renormalize=renormalize)
    assert rw is w and rid is ids
    ref_w, ref_ids = moe.topk_softmax_ref(logits, k, renormalize)
    assert torch.equal(ids.cpu(), ref_ids.cpu())
    # logits are exact in fp32: only the fp32 exp and sum round
    check_close(w, ref_w, torch.float32)
    assert (w[:, :-1] >= w[:, 1:]).all(), "weights not in descending order"
    if renormalize:
        assert torch.allclose(w.double().sum(-1).cpu(), torch.ones(T, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_topk_softmax_ties_go_to_the_lower_index(dtype, gen, device, poisoned):
    """Integer-valued logits in a small range: many equal values per row, the same choice every time."""
    T, E, k = 11, 40, 8
    logits = torch.randint(-2, 3, (T, E), generator=gen).to(dtype).to(device)
    logits[0] = 1.0  # a row of one value: experts 0..k-1
    ref_w, ref_ids = moe.topk_softmax_ref(logits, k)
    for _ in range(2):
        w = poisoned((T, k), torch.float32)
        w, ids = moe.topk_softmax(logits, k, w)
        assert torch.equal(ids.cpu(), ref_ids.cpu())
        assert ids[0].tolist() == list(range(k))
        torch.testing.assert_close(w.cpu().double(), ref_w.cpu(), rtol=1e-5, atol=0)
    # among equal logits, ids ascend
    x = logits.float().cpu().gather(1, ids.long().cpu())
    same = x[:, 1:] == x[:, :-1]
    assert (ids[:, 1:].cpu() > ids[:, :-1].cpu())[same].all()


def test_topk_softmax_masked_experts_and_strided_rows(randn, device, check_close):
    """-inf logits (experts masked out) are chosen only after every finite one; rows may be strided."""
    base = randn(6, 48)
    logits = base[:, :20]
    logits[:, 3:17] = float("-inf")  # 6 finite experts per row, k = 8: two -inf ones taken, in index order
    w, ids = moe.topk_softmax(logits, 8)
    ref_w, ref_ids = moe.topk_softmax_ref(logits, 8)
    assert torch.equal(ids.cpu(), ref_ids.cpu())
    assert ids[:, 6:].tolist() == [[3, 4]] * 6
    assert (w[:, 6:] == 0).all()
    check_close(w, ref_w, torch.float32)


def test_topk_softmax_empty_and_defaults(randn, device):
    w, ids = moe.topk_softmax(torch.empty((0, 16), device=device), 2)
    assert w.shape == (0, 2) and ids.shape == (0, 2) and ids.dtype == torch.int32
    w, ids = moe.topk_softmax(randn(3, 16, dtype=torch.bfloat16), 4)
    assert w.dtype == torch.float32 and w.is_contiguous() and ids.is_contiguous()


def test_topk_softmax_bad_inputs(randn, device):
    x = randn(4, 16)
    with pytest.raises(ValueError, match="2-D"):
        moe.topk_softmax(randn(2, 4, 16), 2)
    with pytest.raises(ValueError, match="k must be"):
        moe.topk_softmax(x, 0)
    with pytest.raises(ValueError, match="k must be"):
        moe.topk_softmax(x, 17)
    with pytest.raises(ValueError, match="dtype"):
        moe.topk_softmax(x.to(torch.int32), 2)
    with pytest.raises(ValueError, match="out_weights has shape"):
        moe.topk_softmax(x, 2, torch.empty((4, 3), device=device))
    with pytest.raises(ValueError, match="out_ids has dtype"):
        moe.topk_softmax(x, 2, None, torch.empty((4, 2), dtype=torch.int64, device=device))
    with pytest.raises(ValueError, match="contiguous"):
        moe.topk_softmax(randn(16, 4).t(), 2)


# ------------------------------------------------------------------------------------------------
# unpermute
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("T,k,h,block", [(1, 8, 64, None), (5, 2, 100, None), (7, 8, 130, 32), (3, 3, 17, 16),
                                         (4, 1, 33, None), (2, 8, 2048, None)])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64], ids=str)
def test_unpermute(dtype, T, k, h, block, index_dtype, gen, randn, poisoned, check_close, device):
    y = randn(T * k, h, dtype=dtype)
    w = torch.rand(T, k, generator=gen).to(device)
    pos = _random_permutation_index(T, k, gen, device).to(index_dtype)
    out = poisoned((T, h), dtype)
    res = moe.unpermute(y, w, pos, out, block_size=block)
    assert res is out
    # fp32 sums of k products, one rounding to the output dtype
    check_close(out, moe.unpermute_ref(y, w, pos), dtype)


def test_unpermute_strided_rows_and_routing_output(randn, device, check_close):
    """expert_out with strided rows (a view of a wider buffer), weights and ids from topk_softmax, the
    inverse index from a stable sort by expert, as the decoder builds them."""
    T, E, k, h = 6, 10, 3, 24
    w, ids = moe.topk_softmax(randn(T, E), k)
    order = torch.sort(ids.reshape(-1), stable=True).indices
    inv = torch.empty_like(order).scatter_(0, order, torch.arange(T * k, device=device)).view(T, k)
    wide = randn(T * k, 40)
    y = wide[:, 5:5 + h]
    out = moe.unpermute(y, w, inv)
    assert out.shape == (T, h) and out.dtype == torch.float32
    check_close(out, moe.unpermute_ref(y, w, inv), torch.float32)
    # the same sum written per token, straight from the expert rows
    direct = torch.stack([sum(w[t, j].double() * y[inv[t, j]].double() for j in range(k)) for t in range(T)])
    check_close(out, direct, torch.float32)


def test_unpermute_bad_inputs(randn, device):
    y = randn(8, 16)
    w = randn(4, 2)
    pos = torch.zeros((4, 2), dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match="expert_out has 9 rows"):
        moe.unpermute(randn(9, 16), w, pos)
    with pytest.raises(ValueError, match="inverse_index has shape"):
        moe.unpermute(y, w, pos[:, :1])
    with pytest.raises(ValueError, match="inverse_index has dtype"):
        moe.unpermute(y, w, pos.float())
    with pytest.raises(ValueError, match="2-D"):
        moe.unpermute(y.view(8, 4, 4), w, pos)
    with pytest.raises(ValueError, match="out has shape"):
        moe.unpermute(y, w, pos, torch.empty((4, 15), device=device))
    with pytest.raises(ValueError, match="out has dtype"):
        moe.unpermute(y, w, pos, torch.empty((4, 16), dtype=torch.bfloat16, device=device))
    with pytest.raises(ValueError, match="power of two"):
        moe.unpermute(y, w, pos, block_size=24)


def test_costs_are_the_step_operators():
    """The kernels' costs are costmodels.moe's ``route`` and ``unpermute``, which the step prices."""
    c = moe.topk_softmax_cost(4096, 64, 8, torch.bfloat16)
    assert c["bytes"] == 4096 * 64 * 2 + 4096 * 8 * 8 and c["flops"] == 4096 * 64 * 13
    c = moe.unpermute_cost(4096, 8, 2048, torch.bfloat16)
    flops, nbytes = moe_cost.unpermute(4096, 8, 2048, 2.0)
    assert c == {"flops": float(flops), "bytes": float(nbytes)}
    assert c["bytes"] == 4096 * 8 * (2048 * 2 + 8) + 4096 * 2048 * 2
