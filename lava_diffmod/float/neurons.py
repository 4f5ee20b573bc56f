r"""LIF and ALIF neurons (MODEL.md §1), float reference.

Every recurrent unit runs the ALIF update; LIF units have β_j = 0. Per step t, with input
current I_j(t) = Σ_i W_rec[i,j] z_i(t−1) + Σ_i W_in[i,j] x_i(t):

.. math::

    r_j(t) &= n_\mathrm{ref} \text{ if } z_j(t-1) \text{ else } \max(0, r_j(t-1) - 1) \\
    v_j(t) &= \alpha v_j(t-1) + s_\mathrm{in} I_j(t) - \vartheta z_j(t-1) \\
    a_j(t) &= \rho a_j(t-1) + s_a z_j(t-1), \qquad A_j(t) = \vartheta + \beta_j a_j(t) \\
    z_j(t) &= H(v_j(t) - A_j(t)) \, [r_j(t) = 0] \\
    \psi_j(t) &= [r_j(t) = 0] \, \frac{\gamma}{\vartheta} \max(0, 1 - |v_j(t) - A_j(t)| / \vartheta)

with α = exp(−dt/τ_m), ρ = exp(−dt/τ_a), s_in = 1 − α and s_a = 1 − ρ by default. Voltages are
in the units of the threshold ϑ (dimensionless in the paper, thr = 0.03); time in steps of dt ms.

Conventions of other e-prop codes are switches on :class:`ALIFParameters`: the spike test
``>`` or ``>=``, s_in ∈ {1 − α, 1}, s_a ∈ {1 − ρ, 1}, the refractory length (``after_spike``:
a spike at t blocks t+1 … t+n_ref; ``including_spike``, Bellec's TF code: t+1 … t+n_ref−1) and
the reset (``base`` ϑ, or ``adaptive`` A(t) as in Bellec's ALIF cell).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..config import NeuronConfig


class ALIFParameters(NamedTuple):
    """Constants of an ALIF population; tensors broadcast against (S, B, N)."""
    thr: float
    alpha: float
    rho: float
    beta: torch.Tensor          # (N,) or (S, 1, N); 0 for LIF units
    gamma: float
    n_block: int                # steps blocked after a spike
    input_scale: float          # s_in
    adapt_scale: float          # s_a
    spike_ge: bool = False      # spike test v − A >= 0 instead of > 0
    reset_adaptive: bool = False


class ALIFState(NamedTuple):
    v: torch.Tensor  # membrane
    a: torch.Tensor  # adaptation
    z: torch.Tensor  # spikes of the last step (0/1)
    r: torch.Tensor  # refractory counter (steps left)


def alif_parameters(cfg: NeuronConfig, beta: torch.Tensor) -> ALIFParameters:
    """Constants from a neuron config; ``beta`` is the per-unit β vector (0 for LIF)."""
    alpha = math.exp(-cfg.dt / cfg.tau_m)
    rho = math.exp(-cfg.dt / cfg.tau_a)
    n_block = cfg.n_ref if cfg.refractory == "after_spike" else max(cfg.n_ref - 1, 0)
    return ALIFParameters(
        thr=cfg.thr, alpha=alpha, rho=rho, beta=beta, gamma=cfg.gamma, n_block=n_block,
        input_scale=1 - alpha if cfg.input_scaling == "1-alpha" else 1.0,
        adapt_scale=1 - rho if cfg.adapt_increment == "1-rho" else 1.0,
        spike_ge=cfg.spike_condition == ">=", reset_adaptive=cfg.reset == "adaptive")


def alif_init(shape: tuple[int, ...], like: torch.Tensor) -> ALIFState:
    """All-zero state (every trial starts at rest)."""
    zero = like.new_zeros(shape)
    return ALIFState(zero, zero, zero, torch.zeros(shape, dtype=torch.int32, device=like.device))


def pseudo_derivative(dist: torch.Tensor, free: torch.Tensor, p: ALIFParameters) -> torch.Tensor:
    """ψ = [free] (γ/ϑ) max(0, 1 − |v − A|/ϑ) = [free] (γ/ϑ²) max(0, ϑ − |v − A|): ∂z/∂v (= −∂z/∂A)."""
    return torch.where(free, (p.thr - dist.abs()).clamp_(min=0), 0.0) * (p.gamma / p.thr ** 2)


def alif_step(s: ALIFState, current: torch.Tensor, p: ALIFParameters,
              detach_reset: bool = False) -> tuple[ALIFState, torch.Tensor]:
    """One ALIF step. Returns the new state and ψ(t).

    Under autograd the spike has derivative ψ with respect to v − A (straight-through:
    the forward value is exactly the Heaviside spike). ``detach_reset`` stops the gradient
    through the reset term, as e-prop's derivation assumes.
    """
    z_prev = s.z
    r = torch.where(z_prev > 0, p.n_block, (s.r - 1).clamp_(min=0))
    a = torch.add(p.rho * s.a, z_prev, alpha=p.adapt_scale)
    thr_adapt = p.beta * a + p.thr
    reset = (thr_adapt if p.reset_adaptive else p.thr) * z_prev
    if detach_reset:
        reset = reset.detach()
    v = torch.add(p.alpha * s.v, current, alpha=p.input_scale) - reset
    dist = v - thr_adapt
    free = r == 0
    psi = pseudo_derivative(dist.detach(), free, p)
    z = (((dist >= 0) if p.spike_ge else (dist > 0)) & free).to(v.dtype)
    if dist.requires_grad:
        z = z + psi * (dist - dist.detach())
    return ALIFState(v, a, z, r), psi
