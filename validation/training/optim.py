"""AdamW for the ``mixed`` precision: bf16 parameters and gradients, fp32 master weights and states.

What ``simulator.training.precision`` calls ``mixed`` (the ZeRO paper's 2 + 2 + 12 bytes per parameter,
Rajbhandari et al. 2019, arXiv 1910.02054, §3.1) and Apex's ``FusedAdam`` with master weights or
Megatron-LM's optimizer over bf16 parameters run on one GPU: the model computes with its bf16
parameters and autograd gives bf16 gradients; the optimizer keeps an fp32 copy of every parameter and
AdamW's two fp32 moments, and one fused pass per tensor reads the bf16 gradient, reads and writes the
master weight and both moments, and writes the bf16 parameter (the bytes
``costmodels.optimizer.step_bytes_per_param`` counts: 2 + 2·8 + 2·4 + 2 = 28 per parameter). No fp32
gradient copy is made. PyTorch's own fused AdamW cannot do this: it needs the gradient in the
parameter's dtype.

The update is ``torch.optim.AdamW``'s (Loshchilov & Hutter 2019, arXiv 1711.05101, Algorithm 2, as
PyTorch writes it): ``w ← w·(1 − lr·wd)``, ``m ← β1·m + (1 − β1)·g``, ``v ← β2·v + (1 − β2)·g²``,
``w ← w − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)``. The step count lives on the device and the
bias corrections are computed in the kernel, so the step can be captured in a CUDA graph (as
``capturable=True``). The kernel runs on CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``;
elsewhere :func:`adamw_ref` does the same update in plain torch ops.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from validation.training.fused import triton_ok

BLOCK = 4096  # elements per program: 112 KiB of traffic each, thousands of programs per large tensor


@triton.jit
def _adamw_mixed_kernel(p_ptr, g_ptr, w_ptr, m_ptr, v_ptr, step_ptr, n, lr, beta1, beta2, log_beta1, log_beta2,
                        eps, weight_decay, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    t = tl.load(step_ptr)
    bc1 = 1.0 - tl.exp(t * log_beta1)
    bc2_sqrt = tl.sqrt(1.0 - tl.exp(t * log_beta2))
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    w = w * (1.0 - lr * weight_decay)
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    w = w - (lr / bc1) * m / (tl.sqrt(v) / bc2_sqrt + eps)
    tl.store(w_ptr + offs, w, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(p_ptr + offs, w.to(p_ptr.dtype.element_ty), mask=mask)


def adamw_ref(p, g, w, m, v, step, lr, beta1, beta2, eps, weight_decay):
    """The kernel's update in plain torch ops, in place on ``w``, ``m``, ``v`` and ``p``."""
    gf = g.float()
    w.mul_(1.0 - lr * weight_decay)
    m.mul_(beta1).add_(gf, alpha=1.0 - beta1)
    v.mul_(beta2).addcmul_(gf, gf, value=1.0 - beta2)
    bc1 = 1.0 - beta1 ** step
    bc2_sqrt = (1.0 - beta2 ** step).sqrt()
    w.sub_((lr / bc1) * m / (v.sqrt() / bc2_sqrt + eps))
    p.copy_(w)


class MixedAdamW:
    """AdamW over 16-bit ``params`` with fp32 master weights and moments (see the module docstring);
    ``step()`` and ``zero_grad(set_to_none=True)`` as ``torch.optim.AdamW``'s."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.master = [p.detach().float() for p in self.params]
        self.exp_avg = [torch.zeros_like(w) for w in self.master]
        self.exp_avg_sq = [torch.zeros_like(w) for w in self.master]
        self.step_count = torch.zeros((), dtype=torch.float32, device=self.params[0].device)

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self):
        self.step_count += 1.0
        log_b1, log_b2 = math.log(self.beta1), math.log(self.beta2)
        for p, w, m, v in zip(self.params, self.master, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            if not (p.is_contiguous() and p.grad.is_contiguous()):
                raise ValueError("MixedAdamW needs contiguous parameters and gradients")
            if triton_ok(p):
                n = p.numel()
                _adamw_mixed_kernel[(triton.cdiv(n, BLOCK),)](
                    p, p.grad, w, m, v, self.step_count, n, self.lr, self.beta1, self.beta2, log_b1, log_b2,
                    self.eps, self.weight_decay, BLOCK=BLOCK, num_warps=8)
            else:
                adamw_ref(p, p.grad, w, m, v, self.step_count, self.lr, self.beta1, self.beta2, self.eps,
                          self.weight_decay)
