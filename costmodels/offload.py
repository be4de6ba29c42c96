"""Offloading optimizer states and parameters to host memory (or NVMe) during training.

ZeRO-Offload (Ren et al. 2021, arXiv 2101.06840, §4): gradients stream to the host during backward
over PCIe (device to host), the CPU runs Adam over the fp32 master weights and states, and the updated
16-bit parameters stream back (host to device). The CPU update is bound by host memory bandwidth: each
parameter's master weight, two moments (read and written) and gradient (read) are 4 + 4 + 4 bytes each
way plus the 16-bit copy written (:data:`CPU_ADAM_BYTES_PER_PARAM`). ZeRO-Infinity (Rajbhandari et al.
2021, arXiv 2104.07857) adds NVMe as a tier below host memory, read and written once per step.

How much of that overlaps the GPU's work is a policy (:func:`offload_step_time_s`):

* ``serial``: ZeRO-Offload without its delayed update: device-to-host not hidden beyond backward, then
  the CPU step, then host-to-device;
* ``overlapped``: the schedule of chunk-based systems (ProTrain, Huang et al. 2024, arXiv 2406.08334)
  and of Deep Optimizer States (Maurya et al. 2024, arXiv 2410.21316), whose update of each subgroup
  runs on the CPU or the GPU, whichever finishes first, while transfers of the others proceed: the step
  takes the busiest of GPU, link and CPU.
"""

from __future__ import annotations

import numpy as np

# fp32 master weight, m and v read and written (6 x 4), the gradient read (4), the 16-bit weight written (2)
CPU_ADAM_BYTES_PER_PARAM = 30.0


def cpu_adam_time_s(params, host_bandwidth_bytes_per_s):
    """Host-memory-bound CPU Adam over ``params`` parameters."""
    return np.asarray(params, dtype=float) * CPU_ADAM_BYTES_PER_PARAM / host_bandwidth_bytes_per_s


def offload_step_time_s(policy: str, gpu_s, backward_s, d2h_s, cpu_s, h2d_s):
    """Step time with offloaded optimizer work under ``policy`` (``serial`` or ``overlapped``)."""
    gpu_s, backward_s, d2h_s, cpu_s, h2d_s = (np.asarray(x, dtype=float) for x in (gpu_s, backward_s, d2h_s, cpu_s, h2d_s))
    if policy == "overlapped":
        return np.maximum.reduce([gpu_s, d2h_s + h2d_s, cpu_s + 0.0 * gpu_s])
    return gpu_s + np.maximum(d2h_s - backward_s, 0.0) + cpu_s + h2d_s
