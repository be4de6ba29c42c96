"""Kernel tests run under the Triton CPU interpreter unless TRITON_INTERPRET=0 is set explicitly
(then they run on the CUDA device). The variable must be set before triton is first imported, since
``@triton.jit`` picks the interpreter when a kernel module is imported.

Test modules skip themselves when torch or triton is missing (``pytest.importorskip``).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import zlib  # noqa: E402

import pytest  # noqa: E402

# Relative-error thresholds ||out - ref|| / ||ref|| against a float64 reference, by input dtype.
TOLERANCES = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


@pytest.fixture(scope="session")
def interpret() -> bool:
    return _interpret()


@pytest.fixture(scope="session")
def device(interpret):
    torch = pytest.importorskip("torch")
    if interpret:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("TRITON_INTERPRET=0 but no CUDA device")
    return torch.device("cuda")


@pytest.fixture
def gen(request):
    """A CPU generator seeded from the test id, so each parametrisation gets its own fixed data."""
    torch = pytest.importorskip("torch")
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def randn(gen, device):
    """``randn(*shape, dtype=...)``: standard normal data drawn on the CPU, cast, moved to the device."""
    import torch

    def make(*shape, dtype=torch.float32, scale=1.0, shift=0.0):
        x = torch.randn(*shape, generator=gen, dtype=torch.float32) * scale + shift
        return x.to(dtype).to(device)

    return make


@pytest.fixture
def poisoned(device):
    """``poisoned(shape, dtype)``: an output buffer full of NaN, so elements a kernel skips fail the check."""
    import torch

    def make(shape, dtype):
        return torch.full(tuple(shape), float("nan"), dtype=dtype, device=device)

    return make


@pytest.fixture
def check_close():
    """Assert ``out`` is fully written (finite) and within the dtype's relative-error threshold of ``ref``."""
    import torch

    def check(out, ref, dtype, tol=None):
        out64 = out.detach().to("cpu", torch.float64)
        ref64 = ref.detach().to("cpu", torch.float64)
        assert out64.shape == ref64.shape, f"shape {tuple(out64.shape)} != reference {tuple(ref64.shape)}"
        bad = (~torch.isfinite(out64)).sum().item()
        assert bad == 0, f"{bad} of {out64.numel()} output elements are not finite (unwritten or overflow)"
        tol = TOLERANCES[str(dtype).replace("torch.", "")] if tol is None else tol
        denom = ref64.norm().item()
        assert denom > 0, "reference is all zero; the test data is degenerate"
        err = (out64 - ref64).norm().item() / denom
        assert err <= tol, f"relative error {err:.3e} > {tol:.1e} for {dtype}"
        return err

    return check
