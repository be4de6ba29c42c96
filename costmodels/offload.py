"""Offloading optimizer states and parameters to host memory (or NVMe) during training.

ZeRO-Offload (Ren et al. 2021, arXiv 2101.06840, §4): gradients stream to the host during backward
over PCIe (device to host), the CPU runs Adam over the fp32 master weights and states, and the updated
16-bit parameters stream back (host to device). The CPU update is bound by host memory bandwidth: each
parameter's master weight, two moments (read and written) and gradient (read) are 4 + 4 + 4 bytes each
way plus the 16-bit copy written (:data:`CPU_ADAM_BYTES_PER_PARAM`). ZeRO-Infinity (Rajbhandari et al.
2021, arXiv 2104.07857) adds NVMe as a tier below host memory, read and written once per step.

How much of that overlaps the GPU's work is a policy (:func:`offload_step_time_s`):

* ``serial``: ZeRO-Offload without its delayed update: the gradients' device-to-host copy hidden behind
  backward as far as it lasts, then the CPU step, then the host-to-device copy of the parameters;
* ``overlapped``: interleaved offloading (Deep Optimizer States, Maurya et al. 2024, arXiv 2410.21316,
  §4; ProTrain's chunked overlap, Huang et al. 2024, arXiv 2406.08334, follows the same principle): the
  update is split into subgroups, each run on the CPU or on the GPU (its states copied over PCIe and back),
  in the proportion that makes both finish together. With t_c the CPU's time for all of it and t_g the
  GPU's (bound by moving the states both ways), the update takes ``t_g·t_c / (t_g + t_c)``, and only the
  CPU's share of parameters still has to be copied back.
"""

from __future__ import annotations

import numpy as np

# fp32 master weight, m and v read and written (6 x 4), the gradient read (4), the 16-bit weight written (2)
CPU_ADAM_BYTES_PER_PARAM = 30.0


def cpu_adam_time_s(params, host_bandwidth_bytes_per_s):
    """Host-memory-bound CPU Adam over ``params`` parameters."""
    return np.asarray(params, dtype=float) * CPU_ADAM_BYTES_PER_PARAM / host_bandwidth_bytes_per_s


def offload_step_time_s(policy: str, gpu_s, backward_s, d2h_s, cpu_s, h2d_s, gpu_update_s):
    """Step time with offloaded optimizer work under ``policy`` (``serial`` or ``overlapped``);
    ``gpu_update_s``: the whole update run on the GPU instead, its states copied in and out."""
    gpu_s, backward_s, d2h_s, cpu_s, h2d_s, gpu_update_s = (
        np.asarray(x, dtype=float) for x in (gpu_s, backward_s, d2h_s, cpu_s, h2d_s, gpu_update_s))
    exposed_d2h = np.maximum(d2h_s - backward_s, 0.0)
    if policy == "overlapped":
        cpu_share = gpu_update_s / (gpu_update_s + cpu_s)
        return gpu_s + exposed_d2h + cpu_s * cpu_share + h2d_s * cpu_share
    return gpu_s + exposed_d2h + cpu_s + h2d_s
