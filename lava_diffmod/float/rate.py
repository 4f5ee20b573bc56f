r"""Leaky ReLU rate RNN of the ModProp code (RULES.md A.2), S independent networks batched.

Per step t (dt = 1 ms), in the (pre, post) layout of the spiking network:

.. math::

    h_j^t &= \alpha h_j^{t-1} + (1-\alpha) \Big[ \sum_q W_{qj} z_q^{t-1} + \sum_m W^\mathrm{in}_{mj} x_m^t \Big] \\
    z_j^t &= f(h_j^t) = \max(0, h_j^t - \theta) \\
    y_k^t &= \sum_j W^\mathrm{out}_{jk} z_j^t + b_k

α = exp(−dt/τ_m) (τ_m = 100 ms: α ≈ 0.990), θ = 0, no reset, no refractoriness; h, z, x are
dimensionless rates, y are logits. The loss is the 2-way softmax cross-entropy at the last step.

Dale's law (``dale``): every presynaptic unit q has a fixed sign s_q (E = +1, I = −1) and the
trained variables of W and W_out are magnitudes ϑ: W_qj = s_q max(0, ϑ_qj) M_qj, with M the
autapse mask (zero diagonal). A magnitude pushed to ≤ 0 disconnects the synapse (deep rewiring,
LSNN). Without ``dale`` the trained variables are the signed weights and only M applies.
W_in is unconstrained.

Rewiring, documented simplification of deep rewiring (temperature 0, as in the released run):
after each optimiser step the connected magnitudes shrink by lr·l1 (L1), and disconnected
synapses are never reconnected. The released code differs in two ways we drop: it reconnects
random synapses at magnitude 1e-12 whenever fewer than 99 % of W_rec and W_out are connected (a
floor, active once more than 1 % are pruned), and it re-zeroes after the Adam step a magnitude
that was ≤ 0 before it (here Adam's momentum can revive a disconnected synapse).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from .. import rng
from .rsnn import input_currents


@dataclass(frozen=True)
class RateConfig:
    """Sizes and constants of the rate RNN (A.2, A.8 defaults)."""
    n_rec: int = 120
    n_in: int = 2
    n_out: int = 2
    tau_m: float = 100.0        # ms
    dt: float = 1.0             # ms
    theta: float = 0.0          # ReLU threshold (rate units)
    frac_exc: float = 0.8       # n_E = int(frac_exc · N) + 1
    dale: bool = True
    rewiring: bool = True
    l1: float = 0.01            # rewiring shrinkage per step, in units of lr
    init: str = "spec"          # "spec": A.2 as written; "released": the released script's order

    def __post_init__(self):
        for name in ("n_rec", "n_in", "n_out"):
            if getattr(self, name) < 1:
                raise ValueError(f"rate.{name} = {getattr(self, name)}: must be >= 1")
        if self.tau_m <= 0 or self.dt <= 0:
            raise ValueError(f"rate.tau_m = {self.tau_m}, rate.dt = {self.dt}: must be > 0")
        if not 0 <= self.frac_exc < 1:
            raise ValueError(f"rate.frac_exc = {self.frac_exc}: must be in [0, 1)")
        if self.dale and self.n_exc >= self.n_rec:
            raise ValueError(f"rate.n_rec = {self.n_rec}: Dale's law needs at least one inhibitory unit")
        if self.l1 < 0:
            raise ValueError(f"rate.l1 = {self.l1}: must be >= 0")
        if self.init not in ("spec", "released"):
            raise ValueError(f"rate.init = {self.init!r}: must be spec or released")

    @property
    def alpha(self) -> float:
        return math.exp(-self.dt / self.tau_m)

    @property
    def n_exc(self) -> int:
        return int(self.frac_exc * self.n_rec) + 1 if self.dale else self.n_rec


class RateParams(NamedTuple):
    """Trained variables, each with a leading seed axis: w_in (S, n_in, N), w_rec (S, N, N)
    and w_out (S, N, n_out) (magnitudes under Dale's law), b_out (S, n_out)."""
    w_in: torch.Tensor
    w_rec: torch.Tensor
    w_out: torch.Tensor
    b_out: torch.Tensor


@dataclass(frozen=True)
class RateNetwork:
    """S rate networks: trained variables plus fixed signs, autapse mask and cell types."""
    params: RateParams
    sign: torch.Tensor          # (N,) presynaptic sign, +1 E / −1 I (all +1 without Dale)
    types: torch.Tensor         # (N,) cell type, 0 = E, 1 = I (all 0 without Dale)
    cfg: RateConfig

    @property
    def alpha(self) -> float:
        return self.cfg.alpha

    def with_params(self, params: RateParams) -> "RateNetwork":
        return RateNetwork(RateParams(*params), self.sign, self.types, self.cfg)


def effective(net: RateNetwork, params: RateParams | None = None) -> RateParams:
    """Signed effective weights: W = s_q max(0, ϑ) M (Dale) or W = ϑ M; autograd flows to ϑ."""
    p = net.params if params is None else params
    n = net.cfg.n_rec
    mask = 1 - torch.eye(n, dtype=p.w_rec.dtype, device=p.w_rec.device)
    if not net.cfg.dale:
        return RateParams(p.w_in, p.w_rec * mask, p.w_out, p.b_out)
    s = net.sign.to(p.w_rec.dtype)[:, None]
    return RateParams(p.w_in, s * torch.relu(p.w_rec) * mask, s * torch.relu(p.w_out), p.b_out)


def balance_per_neuron(w: torch.Tensor) -> torch.Tensor:
    """Zero summed input per postsynaptic unit j (the authors' ``balance_matrix_per_neuron``):
    the imbalance Σ_q W_qj is removed by an equal shift of the E entries (if negative) or the I
    entries (if positive) of column j. w: (S, N, N) signed, zero entries stay zero."""
    e, i = w > 0, w < 0
    total = w.sum(-2, keepdim=True)
    n_e, n_i = e.sum(-2, keepdim=True), i.sum(-2, keepdim=True)
    shift_e = torch.where(total < 0, -total / n_e.clamp(min=1), 0.0)
    shift_i = torch.where(total >= 0, -total / n_i.clamp(min=1), 0.0)
    return w + e * shift_e + i * shift_i


def signed_recurrent(mag: torch.Tensor, sign: torch.Tensor, mask: torch.Tensor, dale: bool) -> torch.Tensor:
    """Steps (1)–(4) of A.2 on magnitudes ``mag`` (S, N, N): the presynaptic sign and ``mask``,
    the I rows rescaled so that Σ E weights = −Σ I weights, every unit balanced to zero summed
    input (:func:`balance_per_neuron`), then scaled to spectral radius 1. Without Dale: mag ⊙ mask
    scaled to spectral radius 1."""
    if dale:
        w = sign[:, None] * mag.abs() * mask
        exc = sign > 0
        w[:, ~exc] *= (w[:, exc].sum((-2, -1)) / -w[:, ~exc].sum((-2, -1)))[:, None, None]
        w = balance_per_neuron(w)
    else:
        w = mag * mask
    return w / torch.linalg.eigvals(w).abs().amax(-1)[:, None, None]


def init_rate_network(cfg: RateConfig, seeds: list[int], dtype=torch.float32, device="cpu") -> RateNetwork:
    """S = len(seeds) networks, per seed, E units first, W_in ~ N(0, 1), b_out = 0.

    ``init = "spec"`` (A.2 as written): W_rec by :func:`signed_recurrent` with the zero diagonal
    applied first (so ρ(W_rec) = 1 and every column sums to 0); W_out ~ N(0,1)/√N (with Dale:
    its magnitudes, with the presynaptic sign).

    ``init = "released"`` (the released script's order): :func:`signed_recurrent` on the full
    matrix, the diagonal removed afterwards (ρ(W_rec) then exceeds 1 and I units lose their
    self-inhibition); W_out the first n_out columns of another such full matrix (columns sum to 0).
    """
    n = cfg.n_rec
    sign = torch.where(torch.arange(n) < cfg.n_exc, 1.0, -1.0).double()
    keys = [rng.name_key(s, "rate_rnn") for s in seeds]

    def draw(name, shape):
        return torch.stack([rng.normal(rng.derive(k, rng.name_key(name)), shape) for k in keys])

    mask = 1 - torch.eye(n, dtype=torch.float64)
    w_in = draw("w_in", (cfg.n_in, n))
    if cfg.init == "spec":
        w = signed_recurrent(draw("w_rec", (n, n)), sign, mask, cfg.dale)
        w_out = draw("w_out", (n, cfg.n_out)) / math.sqrt(n)
    else:
        full = torch.ones_like(mask)
        w = signed_recurrent(draw("w_rec", (n, n)), sign, full, cfg.dale) * mask
        w_out = signed_recurrent(draw("w_out", (n, n)), sign, full, cfg.dale)[..., :cfg.n_out]
    if cfg.dale:
        w, w_out = w.abs(), w_out.abs()     # magnitudes; the sign lives in ``sign``
    params = RateParams(w_in, w, w_out, torch.zeros(len(seeds), cfg.n_out, dtype=torch.float64))
    params = RateParams(*(p.to(device=device, dtype=dtype) for p in params))
    types = (sign < 0).long() if cfg.dale else torch.zeros(n, dtype=torch.long)
    return RateNetwork(params, sign.to(device=device, dtype=dtype), types.to(device), cfg)


Recurrent = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def exact_recurrent(h_prev: torch.Tensor, z_prev: torch.Tensor, w_rec: torch.Tensor) -> torch.Tensor:
    """Σ_q W_qj z_q^{t−1}, differentiated exactly (BPTT)."""
    return torch.bmm(z_prev, w_rec)


def activation(h: torch.Tensor, theta: float) -> torch.Tensor:
    """z = f(h) = max(0, h − θ)."""
    return torch.relu(h - theta) if theta else torch.relu(h)


def rate_forward(w: RateParams, x: torch.Tensor, alpha: float, theta: float,
                 recurrent: Recurrent = exact_recurrent) -> torch.Tensor:
    """Membrane h (T, S, B, N) of S networks with effective weights ``w`` on x (T, S, B, n_in).

    ``recurrent(h^{t−1}, z^{t−1}, W)`` gives the recurrent drive; its backward defines the rule
    (exact, stop-gradient, ModProp's surrogate; :mod:`lava_diffmod.rules.modprop`). The state
    starts at h = z = 0."""
    drive = ((1 - alpha) * input_currents(x, w.w_in)).unbind(0)   # unbind: one backward node
    h = drive[0].new_zeros(drive[0].shape)
    z = h
    hs = []
    for d_t in drive:
        h = torch.add(d_t, recurrent(h, z, w.w_rec), alpha=1 - alpha).add_(h, alpha=alpha)
        z = activation(h, theta)
        hs.append(h)
    return torch.stack(hs)


def readout(z: torch.Tensor, w: RateParams) -> torch.Tensor:
    """y = z W_out + b for z (S, B, N) or (T, S, B, N) → (…, S, B, n_out)."""
    return torch.matmul(z, w.w_out) + w.b_out[:, None]


def last_step_loss(y_last: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (mean over trials) and accuracy of the last-step logits (S, B, 2) → (S,), (S,)."""
    ce = -torch.log_softmax(y_last, -1).gather(-1, labels[..., None])[..., 0].mean(-1)
    acc = (y_last.argmax(-1) == labels).to(y_last.dtype).mean(-1)
    return ce, acc


def l2_penalty(w: RateParams) -> torch.Tensor:
    """½ Σ w² over W_in, W_rec, W_out (effective weights), per seed (S,)."""
    return 0.5 * sum((m ** 2).sum((-2, -1)) for m in (w.w_in, w.w_rec, w.w_out))


def rewire(net: RateNetwork, lr: float) -> RateNetwork:
    """L1 shrinkage of the connected magnitudes by lr·l1 after an optimiser step (Dale only)."""
    if not (net.cfg.dale and net.cfg.rewiring):
        return net
    p = net.params
    shrink = lr * net.cfg.l1

    def step(m):
        return torch.where(m > 0, m - shrink, m)
    return net.with_params(RateParams(p.w_in, step(p.w_rec), step(p.w_out), p.b_out))
