import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from validation.kernels import memory  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n,num_programs,block", [(1, 1, 16), (1000, 3, 128), (4097, 4, 256), (300, 7, 32)])
def test_stream_read(dtype, n, num_programs, block, randn, poisoned, check_close):
    x = randn(n, dtype=dtype, shift=0.5)
    out = poisoned((num_programs,), torch.float32)
    res = memory.stream_read(x, out, num_programs=num_programs, block_size=block)
    assert res is out
    ref = memory.stream_read_ref(x, num_programs, block)
    # Inputs are exact in fp32; only the fp32 accumulation order differs from the reference.
    check_close(out, ref, dtype, tol=1e-5)
    check_close(out.sum().reshape(1), x.double().sum().reshape(1), dtype, tol=1e-5)


def test_stream_read_defaults(randn, check_close):
    x = randn(3, 50, 7)
    out = memory.stream_read(x)
    assert out.dtype == torch.float32 and out.dim() == 1
    check_close(out.sum().reshape(1), x.double().sum().reshape(1), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,block", [((1,), 16), ((1000,), 128), ((3, 5, 17), 32)])
def test_copy(dtype, shape, block, randn, poisoned):
    x = randn(*shape, dtype=dtype)
    out = poisoned(shape, dtype)
    memory.copy(x, out, block_size=block)
    assert torch.equal(out, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows,hidden,block", [(1, 17, None), (3, 64, None), (5, 100, None), (3, 100, 32), (2, 17, 16)])
def test_rmsnorm(dtype, rows, hidden, block, randn, poisoned, check_close):
    x = randn(rows, hidden, dtype=dtype)
    w = randn(hidden, dtype=dtype, shift=1.0, scale=0.2)
    out = poisoned(x.shape, dtype)
    memory.rmsnorm(x, w, 1e-6, out, block_size=block)
    check_close(out, memory.rmsnorm_ref(x, w, 1e-6), dtype)


def test_rmsnorm_3d_and_strided_rows(randn, check_close):
    base = randn(2, 3, 80)
    x = base[..., :48]  # rows strided by 80, last dim contiguous
    w = randn(48, shift=1.0)
    out = memory.rmsnorm(x, w)
    assert out.shape == (2, 3, 48)
    check_close(out, memory.rmsnorm_ref(x, w), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,block", [((1, 1), 16), ((3, 17), 16), ((2, 5, 70), 32)])
def test_swiglu(dtype, shape, block, randn, poisoned, check_close):
    gate = randn(*shape, dtype=dtype)
    up = randn(*shape, dtype=dtype)
    out = poisoned(shape, dtype)
    memory.swiglu(gate, up, out, block_size=block)
    check_close(out, memory.swiglu_ref(gate, up), dtype)


def test_swiglu_fused_gate_up_views(randn, poisoned, check_close):
    inter = 33
    gu = randn(4, 2 * inter, dtype=torch.float16)
    gate, up = gu[:, :inter], gu[:, inter:]
    out = poisoned((4, inter), torch.float16)
    memory.swiglu(gate, up, out, block_size=16)
    check_close(out, memory.swiglu_ref(gate, up), torch.float16)


def test_memory_bad_inputs(randn):
    x = randn(4, 16)
    with pytest.raises(ValueError, match="weight has shape"):
        memory.rmsnorm(x, randn(15))
    with pytest.raises(ValueError, match="gate has shape .* but up has shape"):
        memory.swiglu(randn(4, 16), randn(4, 17))
    with pytest.raises(ValueError, match="out has shape"):
        memory.copy(x, out=randn(16, 4))
    with pytest.raises(ValueError, match="power of two"):
        memory.stream_read(x, block_size=100)
    with pytest.raises(ValueError, match="contiguous"):
        memory.stream_read(x.t())
    with pytest.raises(ValueError, match="dtype"):
        memory.rmsnorm(x.to(torch.int32), randn(16))


def test_costs():
    assert memory.stream_read_cost(1000, torch.bfloat16)["bytes"] == 2000
    assert memory.copy_cost(1000, torch.float32)["bytes"] == 8000
    assert memory.rmsnorm_cost(10, 64, torch.float16)["bytes"] == 2 * 10 * 64 * 2 + 64 * 2
    assert memory.swiglu_cost(10, 64, torch.bfloat16)["bytes"] == 3 * 10 * 64 * 2
