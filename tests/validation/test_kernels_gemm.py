import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from validation.kernels import gemm as G  # noqa: E402
from validation.kernels._common import fp8_supported  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SMALL = G.GemmConfig(16, 16, 16, GROUP_M=2, num_warps=4, num_stages=2)
SHAPES = [(1, 5, 7), (3, 33, 40), (17, 64, 100), (64, 17, 33)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_gemm(dtype, M, N, K, randn, poisoned, check_close, interpret):
    a = randn(M, K, dtype=dtype)
    b = randn(K, N, dtype=dtype)
    out = poisoned((M, N), dtype)
    # Interpreter: one small pinned config. GPU: the autotuned path.
    res = G.gemm(a, b, out, config=SMALL if interpret else None)
    assert res is out
    check_close(out, G.gemm_ref(a, b), dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_gemm_transposed_weight(dtype, randn, poisoned, check_close):
    """nn.Linear layout: y = x @ W.T with W (N, K) contiguous, so B has strides (1, K)."""
    x = randn(3, 48, dtype=dtype)
    w = randn(20, 48, dtype=dtype)
    out = poisoned((3, 20), dtype)
    G.gemm(x, w.t(), out, config="BLOCK_M=16,BLOCK_N=16,BLOCK_K=32")
    check_close(out, G.gemm_ref(x, w.t()), dtype)


def test_gemm_fp32_output_from_bf16(randn, check_close):
    a = randn(17, 40, dtype=torch.bfloat16)
    b = randn(40, 9, dtype=torch.bfloat16)
    out = G.gemm(a, b, out_dtype=torch.float32, config=SMALL)
    assert out.dtype == torch.float32
    check_close(out, G.gemm_ref(a, b), torch.float32)  # exact products, fp32 sums: fp32 threshold holds


def test_gemm_config_from_env(monkeypatch, randn, poisoned, check_close):
    monkeypatch.setenv(G.GEMM_CONFIG_ENV, "BLOCK_M=16, BLOCK_N=32, BLOCK_K=16, GROUP_M=1")
    a = randn(5, 19, dtype=torch.float16)
    b = randn(19, 40, dtype=torch.float16)
    out = poisoned((5, 40), torch.float16)
    G.gemm(a, b, out)
    check_close(out, G.gemm_ref(a, b), torch.float16)


def test_gemm_config_parsing():
    cfg = G.GemmConfig.parse("BLOCK_M=32,BLOCK_N=64,BLOCK_K=128,num_warps=8,num_stages=4")
    assert cfg == G.GemmConfig(32, 64, 128, 8, 8, 4)
    assert G.GemmConfig.parse({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}) == G.GemmConfig(16, 16, 16)
    assert G.GemmConfig.parse(cfg) is cfg
    with pytest.raises(ValueError, match="unknown GemmConfig keys"):
        G.GemmConfig.parse("BLOCK_M=16,BLOCK_N=16,BLOCK_K=16,BLOCK_Q=2")
    with pytest.raises(ValueError, match="power of two >= 16"):
        G.GemmConfig.parse("BLOCK_M=8,BLOCK_N=16,BLOCK_K=16")
    with pytest.raises(ValueError, match="must be an integer"):
        G.GemmConfig.parse("BLOCK_M=big,BLOCK_N=16,BLOCK_K=16")
    with pytest.raises(ValueError, match="incomplete"):
        G.GemmConfig.parse("BLOCK_M=16")


def test_gemm_autotune_configs():
    import triton

    configs = [c.to_triton() for c in G.GEMM_CONFIGS]
    for c in G.GEMM_CONFIGS:
        c.validate()
    decode = G._prune_configs(configs, {"M": 1})
    assert decode and all(c.kwargs["BLOCK_M"] == 16 for c in decode)
    assert all(c.kwargs["BLOCK_M"] <= 64 for c in G._prune_configs(configs, {"M": 64}))
    prefill = G._prune_configs(configs, {"M": 4096})
    assert prefill and all(c.kwargs["BLOCK_M"] >= 64 for c in prefill)
    assert isinstance(configs[0], triton.Config)


def test_gemm_bad_inputs(randn):
    a = randn(4, 16)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        G.gemm(a, randn(15, 8))
    with pytest.raises(ValueError, match="both inputs must have one dtype"):
        G.gemm(a, randn(16, 8, dtype=torch.float16))
    with pytest.raises(ValueError, match="must be 2-D"):
        G.gemm(a, randn(2, 16, 8))
    with pytest.raises(ValueError, match="out has shape"):
        G.gemm(a, randn(16, 8), out=randn(8, 4))


@pytest.mark.skipif(not fp8_supported(), reason="float8_e4m3fn GEMM needs CUDA with compute capability >= 8.9")
@pytest.mark.parametrize("M", [1, 17, 256])
def test_gemm_fp8(M, randn, poisoned, check_close):
    K, N = 256, 192
    a = randn(M, K).to(torch.float8_e4m3fn)
    w = randn(N, K).to(torch.float8_e4m3fn)  # weight (N, K): K-major B
    out = poisoned((M, N), torch.bfloat16)
    G.gemm(a, w.t(), out)
    check_close(out, G.gemm_ref(a, w.t()), torch.bfloat16)


def test_gemm_cost():
    c = G.gemm_cost(2, 3, 4, torch.bfloat16)
    assert c == {"flops": 48, "bytes": (8 + 12) * 2 + 6 * 2}
