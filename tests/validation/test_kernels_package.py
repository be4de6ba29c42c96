"""The kernel package must import without torch/triton; ``load`` finds every kernel's three functions."""

import subprocess
import sys

import pytest

_NO_TORCH = """
import sys
sys.modules['torch'] = None      # any 'import torch' now raises ImportError
sys.modules['triton'] = None
import validation, validation.kernels
assert 'stream_read' in validation.kernels.KERNELS
try:
    validation.kernels.load('nope')
except ValueError as e:
    assert 'unknown kernel' in str(e)
else:
    raise SystemExit('load() accepted an unknown kernel')
print('ok')
"""


def test_package_imports_without_torch():
    res = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_load_every_kernel():
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    import validation.kernels as K

    for name in K.KERNELS:
        entry = K.load(name)
        assert entry.name == name
        assert callable(entry.fn) and callable(entry.ref) and callable(entry.cost)
