"""BPTT baseline (MODEL.md §3.5): the autodiff gradient of E_task + E_reg through all time,
with ∂z/∂v replaced by the pseudo-derivative ψ, and the same masks as e-prop.

``detach_rec`` and ``detach_reset`` stop the gradient through z(t−1) in the recurrent input and
in the reset term. With both on and tracking feedback, the result is what e-prop computes
(MODEL.md §3.7); they exist for that identity test.
"""
from __future__ import annotations

import torch

from ..float.readout import Objective, rate_regulariser, task_loss
from ..float.rsnn import Network, Params, forward
from .eprop import Gradients, masked, window_target


def bptt(net: Network, x: torch.Tensor, target: torch.Tensor, obj: Objective,
         detach_rec: bool = False, detach_reset: bool = False) -> Gradients:
    """Autodiff gradients of the per-seed loss E_task + E_reg (seeds are independent)."""
    params = Params(*(w.detach().requires_grad_(True) for w in net.params))
    t_steps = x.shape[0]
    t0 = t_steps - obj.window
    with torch.enable_grad():
        rec = forward(net.with_params(params), x, detach_rec=detach_rec, detach_reset=detach_reset)
        y_w = rec.y[t0:]
        e_task = task_loss(y_w, window_target(target, obj.kind, t0), obj)
        e_reg = rate_regulariser(rec.z.mean(0), obj)
        grads = torch.autograd.grad((e_task + e_reg).sum(), params)
    return Gradients(masked(net, Params(*grads)), e_task.detach(), e_reg.detach(), y_w.detach())
