"""The GPU machine as calibration sees it: availability, device identity and software versions.

Importing this module needs neither torch nor triton; each function imports them when called.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
import subprocess
from typing import Any

# torch device name pattern -> roofsim accelerator catalog name (hwmodels/data/accelerators)
_DEVICE_NAMES = [
    (r"H100.*NVL", "h100-nvl"),
    (r"H100.*PCIe", "h100-pcie"),
    (r"H100", "h100-sxm"),
    (r"H200", "h200-sxm"),
    (r"H20\b", "h20"),
    (r"GB200", "gb200"),
    (r"B200", "b200"),
    (r"A100.*PCIE.*80|A100 80GB PCIe", "a100-80gb-pcie"),
    (r"A100.*80GB", "a100-80gb-sxm"),
    (r"A100", "a100-40gb-sxm"),
    (r"A10G", "a10g"),
    (r"L40S", "l40s"),
    (r"\bL4\b", "l4"),
    (r"RTX 4090", "rtx-4090"),
    (r"MI325X", "mi325x"),
    (r"MI300X", "mi300x"),
]


def gpu_unavailable_reason() -> str | None:
    """None when torch, triton and a CUDA device are usable here, else one line saying what is missing."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (calibration runs on a GPU machine with torch and triton)"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed (calibration runs on a GPU machine with torch and triton)"
    try:
        if not torch.cuda.is_available():
            return "no CUDA GPU is visible to torch"
    except Exception as exc:  # noqa: BLE001
        return f"CUDA is not usable: {exc.__class__.__name__}"
    return None


def catalog_name(torch_name: str) -> str | None:
    """The accelerator catalog name for a torch device name, e.g. 'NVIDIA H100 80GB HBM3' -> 'h100-sxm'."""
    for pattern, name in _DEVICE_NAMES:
        if re.search(pattern, torch_name, flags=re.IGNORECASE):
            return name
    return None


def accelerator_name(env: dict, device_name: str | None = None) -> str:
    """The catalog name of the GPU being measured: ``device_name`` if given, else recognised from ``env``."""
    name = device_name or env.get("catalog_name")
    if not name:
        raise SystemExit(f"roofsim: error: unknown GPU {env['device_name']!r}; pass --device NAME (a catalog name)")
    return name


def _nvidia_smi() -> dict[str, str]:
    fields = "driver_version,name,memory.total,clocks.max.sm,clocks.max.memory,power.limit,pci.bus_id"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    if not out:
        return {}
    vals = [v.strip() for v in out[0].split(",")]
    return dict(zip(fields.split(","), vals))


def environment(device_index: int = 0) -> dict[str, Any]:
    """Device, driver and software versions, and the date, for a profile's ``environment``."""
    import torch
    import triton

    props = torch.cuda.get_device_properties(device_index)
    smi = _nvidia_smi()
    env = {
        "device_name": props.name,
        "catalog_name": catalog_name(props.name),
        "sm_count": props.multi_processor_count,
        "memory_bytes": int(props.total_memory),
        "l2_bytes": int(getattr(props, "L2_cache_size", 0) or 0),
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_count": torch.cuda.device_count(),
        "driver": smi.get("driver_version", "unknown"),
        "max_sm_clock": smi.get("clocks.max.sm", "unknown"),
        "max_memory_clock": smi.get("clocks.max.memory", "unknown"),
        "power_limit": smi.get("power.limit", "unknown"),
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return env
