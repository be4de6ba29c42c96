import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from validation.kernels import attention as A  # noqa: E402
from validation.kernels import decode_attention as Dec  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
N_HEADS = 8  # GQA ratios 1, 4 and N_HEADS: 8, 2 and 1 KV heads


def _prefill_config(interpret):
    # Interpreter: small tiles so 17- and 70-token sequences span several masked and unmasked blocks.
    return A.AttentionConfig(16, 16, 4, 1) if interpret else None


# ------------------------------------------------------------------------------------------------
# Prefill
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seq", [1, 17, 70])
@pytest.mark.parametrize("gqa", [1, 4, N_HEADS], ids=lambda g: f"gqa{g}")
def test_flash_attention_causal(dtype, seq, gqa, randn, poisoned, check_close, interpret):
    B, D = 1, 64
    q = randn(B, N_HEADS, seq, D, dtype=dtype)
    k = randn(B, N_HEADS // gqa, seq, D, dtype=dtype)
    v = randn(B, N_HEADS // gqa, seq, D, dtype=dtype)
    out = poisoned(q.shape, dtype)
    res = A.flash_attention(q, k, v, out, causal=True, config=_prefill_config(interpret))
    assert res is out
    check_close(out, A.attention_ref(q, k, v, causal=True), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seq", [17, 70])
def test_flash_attention_head_dim_128(dtype, seq, randn, poisoned, check_close, interpret):
    q = randn(1, 2, seq, 128, dtype=dtype)
    k = randn(1, 1, seq, 128, dtype=dtype)
    v = randn(1, 1, seq, 128, dtype=dtype)
    out = poisoned(q.shape, dtype)
    A.flash_attention(q, k, v, out, config=_prefill_config(interpret))
    check_close(out, A.attention_ref(q, k, v), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_flash_attention_chunked_prefill(dtype, causal, randn, poisoned, check_close, interpret):
    """Sq < Sk: a 17-token chunk after 23 cached tokens (bottom-right causal alignment)."""
    q = randn(2, N_HEADS, 17, 64, dtype=dtype)
    k = randn(2, 2, 40, 64, dtype=dtype)
    v = randn(2, 2, 40, 64, dtype=dtype)
    out = poisoned(q.shape, dtype)
    A.flash_attention(q, k, v, out, causal=causal, config=_prefill_config(interpret))
    check_close(out, A.attention_ref(q, k, v, causal=causal), dtype)


def test_flash_attention_strided_layout(randn, poisoned, check_close, interpret):
    """(B, S, H, D) storage viewed as (B, H, S, D), plus an explicit sm_scale."""
    qkv = randn(2, 33, 3, 4, 64, dtype=torch.float16)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    out = poisoned(q.shape, torch.float16)
    A.flash_attention(q, k, v, out, sm_scale=0.1, config=_prefill_config(interpret))
    check_close(out, A.attention_ref(q, k, v, sm_scale=0.1), torch.float16)


def test_flash_attention_bad_inputs(randn):
    q = randn(1, 4, 8, 64)
    kv = randn(1, 3, 8, 64)
    with pytest.raises(ValueError, match="must be a multiple of n_kv_heads"):
        A.flash_attention(q, kv, kv)
    with pytest.raises(ValueError, match="head_dim differs"):
        A.flash_attention(q, randn(1, 2, 8, 32), randn(1, 2, 8, 32))
    with pytest.raises(ValueError, match="head_dim must be a power of two"):
        A.flash_attention(randn(1, 4, 8, 80), randn(1, 2, 8, 80), randn(1, 2, 8, 80))
    with pytest.raises(ValueError, match="must be 4-D"):
        A.flash_attention(randn(4, 8, 64), kv, kv)
    with pytest.raises(ValueError, match="at least as many keys as queries"):
        A.flash_attention(q, randn(1, 2, 4, 64), randn(1, 2, 4, 64))
    with pytest.raises(ValueError, match="dtypes differ"):
        A.flash_attention(q, randn(1, 2, 8, 64, dtype=torch.float16), randn(1, 2, 8, 64))


# ------------------------------------------------------------------------------------------------
# Decode
# ------------------------------------------------------------------------------------------------


def _decode_config(interpret):
    return Dec.DecodeConfig(16, 4, 1) if interpret else None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("gqa", [1, 4, N_HEADS], ids=lambda g: f"gqa{g}")
@pytest.mark.parametrize(
    "lens,num_splits",
    [
        (37, 3),             # scalar length, 37 positions over splits of 16: last split partial
        ([1, 70, 45], 4),    # per-sequence lengths, none a multiple of the split size
        ([70, 0, 23], 5),    # an empty sequence and splits past some sequences' ends
    ],
    ids=["scalar37", "lens1-70-45", "lens70-0-23"],
)
def test_decode_attention(dtype, gqa, lens, num_splits, randn, poisoned, check_close, interpret, device):
    B = 1 if isinstance(lens, int) else len(lens)
    S_max, D = 70, 64
    q = randn(B, N_HEADS, D, dtype=dtype)
    k = randn(B, N_HEADS // gqa, S_max, D, dtype=dtype)
    v = randn(B, N_HEADS // gqa, S_max, D, dtype=dtype)
    ctx = lens if isinstance(lens, int) else torch.tensor(lens, dtype=torch.int32, device=device)
    cfg = _decode_config(interpret)
    block_n = cfg.BLOCK_N if cfg else Dec.DecodeConfig().BLOCK_N
    max_len = lens if isinstance(lens, int) else max(lens)
    split_size, n_splits = Dec.decode_split_layout(max_len, num_splits, block_n)
    workspace = tuple(t.fill_(float("nan")) for t in Dec.decode_workspace(B, N_HEADS, D, n_splits, device))
    out = poisoned(q.shape, dtype)
    Dec.decode_attention(q, k, v, ctx, out, num_splits=num_splits, config=cfg, workspace=workspace)
    ref = Dec.decode_attention_ref(q, k, v, ctx)
    check_close(out, ref, dtype)
    if not isinstance(lens, int):
        for b, L in enumerate(lens):
            if L == 0:
                assert torch.all(out[b] == 0), "an empty context must give a zero output"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_decode_attention_head_dim_128_default_splits(dtype, randn, poisoned, check_close):
    q = randn(2, 8, 1, 128, dtype=dtype)  # (B, H, 1, D) form
    k = randn(2, 2, 50, 128, dtype=dtype)
    v = randn(2, 2, 50, 128, dtype=dtype)
    out = poisoned(q.shape, dtype)
    Dec.decode_attention(q, k, v, 41, out)
    check_close(out, Dec.decode_attention_ref(q, k, v, 41), dtype)


def test_decode_matches_prefill_last_row(randn, check_close, interpret):
    """Decoding token t over a cache of t+1 positions equals row t of causal prefill."""
    S, D = 29, 64
    q = randn(1, N_HEADS, S, D)
    k = randn(1, 2, S, D)
    v = randn(1, 2, S, D)
    pre = A.flash_attention(q, k, v, config=_prefill_config(interpret))
    dec = Dec.decode_attention(q[:, :, -1], k, v, S, num_splits=2, config=_decode_config(interpret))
    check_close(dec, pre[:, :, -1], torch.float32)


def test_decode_attention_bad_inputs(randn, device):
    q = randn(2, 4, 64)
    kv = randn(2, 2, 16, 64)  # 4 query heads over 2 KV heads
    with pytest.raises(ValueError, match="outside \\[0, 16\\]"):
        Dec.decode_attention(q, kv, kv, 17)
    with pytest.raises(ValueError, match="context_lens must have shape \\(2,\\)"):
        Dec.decode_attention(q, kv, kv, torch.tensor([3, 4, 5], device=device))
    with pytest.raises(ValueError, match="context_lens must lie in"):
        Dec.decode_attention(q, kv, kv, torch.tensor([3, 40], device=device))
    with pytest.raises(ValueError, match="must be a multiple of n_kv_heads"):
        Dec.decode_attention(randn(2, 5, 64), kv, kv, 8)
    with pytest.raises(ValueError, match="batch differs"):
        Dec.decode_attention(randn(3, 4, 64), kv, kv, 8)
    with pytest.raises(ValueError, match="decode q must be"):
        Dec.decode_attention(randn(2, 4, 3, 64), kv, kv, 8)
    with pytest.raises(ValueError, match="workspace shapes"):
        Dec.decode_attention(q, kv, kv, 8, num_splits=1, workspace=Dec.decode_workspace(2, 4, 64, 3, device))


def test_attention_costs():
    c = A.attention_cost(1, 2, 1, 4, 4, 8, torch.float16, causal=True)
    assert c["flops"] == 4 * 2 * 10 * 8  # 10 visible pairs of a 4x4 causal mask
    c = A.attention_cost(1, 2, 1, 2, 5, 8, torch.float16, causal=True)
    assert c["flops"] == 4 * 2 * (4 + 5) * 8  # rows see 4 and 5 keys
    d = Dec.decode_attention_cost(2, 8, 2, 100, 64, torch.bfloat16)
    assert d["flops"] == 4 * 2 * 8 * 100 * 64
    assert d["bytes"] == 2 * (2 * 2 * 2 * 100 * 64 + 2 * 2 * 8 * 64)
