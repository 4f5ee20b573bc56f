r"""BPTT baseline (MODEL.md §3.5): the gradient of E_task + E_reg through all time, with ∂z/∂v
replaced by the pseudo-derivative ψ, and the same masks as e-prop. Two implementations, one
answer (tested equal in float64):

* :func:`bptt`: autodiff of the forward pass, the readable reference;
* :func:`bptt_adjoint`: the same gradient from a hand-written reverse-time scan over per-neuron
  adjoints (one small matrix product and a few element-wise operations per step instead of the
  autograd tape), then one matrix product per weight matrix. Training uses it.

The adjoint scan, with δ the total derivative of E and R(t) the reset amplitude (ϑ, or A(t)
for ``reset = "adaptive"``):

.. math::

    \delta z(t) &= \tau\, b_s\, \tilde L(t) W_\mathrm{out}^\top + b_s\, \tfrac{c_\mathrm{reg}}{T}(r - f_0)
        + s_\mathrm{in}\, \delta v(t+1) W_\mathrm{rec}^\top - R(t+1)\, \delta v(t+1) + s_a\, \delta a(t+1) \\
    \delta v(t) &= \psi(t)\, \delta z(t) + \alpha\, \delta v(t+1) \\
    \delta a(t) &= -\beta \psi(t)\, \delta z(t) + \rho\, \delta a(t+1) - [\text{adaptive}]\, \beta z(t-1)\, \delta v(t) \\
    \partial E / \partial W_\mathrm{in} &= \textstyle\sum_t x(t)^\top s_\mathrm{in} \delta v(t), \quad
    \partial E / \partial W_\mathrm{rec} = \sum_t z(t-1)^\top s_\mathrm{in} \delta v(t)

with L̃ the backward κ-filter of err (:func:`.eprop.backward_filter`), τ the task loss's time
scale and b_s its batch scale; the readout gradient is e-prop's (exact for W_out).

``detach_rec`` and ``detach_reset`` stop the gradient through z(t−1) in the recurrent input and
in the reset term. With both on and tracking feedback, the result is what e-prop computes
(MODEL.md §3.7); they exist for that identity test.
"""
from __future__ import annotations

import torch

from ..float.readout import Objective, output_error, rate_regulariser, task_loss
from ..float.rsnn import Network, Params, forward
from .eprop import (Gradients, backward_filter, contract, masked, readout_gradient,
                    regulariser_coefficient, window_target)

MODES = ("adjoint", "autograd")


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


@torch.no_grad()
def bptt_adjoint(net: Network, x: torch.Tensor, target: torch.Tensor, obj: Objective,
                 detach_rec: bool = False, detach_reset: bool = False) -> Gradients:
    """:func:`bptt`'s gradients from the reverse-time adjoint scan of the module docstring."""
    p = net.neuron
    w_in, w_rec, w_out = net.params
    t_steps, s, b, _ = x.shape
    t0 = t_steps - obj.window
    adaptive_reset = p.reset_adaptive and net.has_alif and not detach_reset   # R(t) = A(t), not ϑ
    rec = forward(net, x, keep_state=adaptive_reset)
    tgt = window_target(target, obj.kind, t0)
    y_w = rec.y[t0:]
    err_w = output_error(y_w, tgt, obj.kind)
    bs = obj.batch_scale(b)
    z_count = rec.z.sum(0)
    z_prev = torch.cat([torch.zeros_like(rec.z[:1]), rec.z[:-1]])
    # the parts of δz(t) that do not depend on later adjoints, for all t at once
    readout = backward_filter(err_w, t_steps, net.kappa)                      # (T, S, B, n_out)
    direct = torch.bmm(readout.permute(1, 0, 2, 3).reshape(s, t_steps * b, -1), w_out.transpose(1, 2))
    direct = direct.reshape(s, t_steps, b, -1).permute(1, 0, 2, 3)
    direct = (bs * obj.time_scale()) * direct + bs * regulariser_coefficient(z_count, t_steps, obj)
    w_rec_t = w_rec.transpose(1, 2).contiguous()
    if adaptive_reset:   # R(t+1) = ϑ + β a(t+1) (0 after the last step); a(t) enters v(t) as −β z(t−1)
        reset_next = torch.cat([p.thr + p.beta * rec.a[1:], torch.zeros_like(rec.a[:1])])
        beta_z_prev = p.beta * z_prev
    dv = torch.empty_like(rec.psi)
    dv_next = torch.zeros_like(rec.psi[0])
    da_next = torch.zeros_like(dv_next)
    for t in range(t_steps - 1, -1, -1):
        dz = direct[t]
        if not detach_rec:
            dz = torch.baddbmm(dz, dv_next, w_rec_t, alpha=p.input_scale)
        if adaptive_reset:
            dz = torch.addcmul(dz, reset_next[t], dv_next, value=-1.0)
        elif not detach_reset:
            dz = torch.add(dz, dv_next, alpha=-p.thr)
        if net.has_alif:
            dz = torch.add(dz, da_next, alpha=p.adapt_scale)
        ddist = dz * rec.psi[t]
        dv_next = torch.add(ddist, dv_next, alpha=p.alpha, out=dv[t])
        if net.has_alif:
            da_next = torch.addcmul(p.rho * da_next, p.beta, ddist, value=-1.0)
            if adaptive_reset:
                da_next = torch.addcmul(da_next, beta_z_prev[t], dv_next, value=-1.0)
    dv.mul_(p.input_scale)
    grads = Params(contract(x, dv), contract(z_prev, dv), readout_gradient(rec.z, err_w, net, obj, bs))
    return Gradients(masked(net, grads), task_loss(y_w, tgt, obj),
                     rate_regulariser(z_count / t_steps, obj), y_w)


def bptt_fn(mode: str = "adjoint"):
    """The BPTT implementation of ``mode``: ``adjoint`` (fast) or ``autograd`` (reference)."""
    if mode not in MODES:
        raise ValueError(f"rule.bptt_mode = {mode!r}: must be one of {', '.join(MODES)}")
    return bptt_adjoint if mode == "adjoint" else bptt
