r"""Dopamine: weight perturbation (WP) with an RPE-adaptive learning rate (RULES.md Part B, C.4).

One update of S independent networks stacked on a leading seed axis (everything per seed), on
one batch, from a loss closure ``L(params) -> (S,)`` run under ``torch.no_grad()``:

.. math::

    \xi &\sim \mathcal N(0, \sigma^2 I) \ \text{(or } \pm\sigma \text{ Rademacher, SPSA)},
        \quad \text{drawn from } H(\text{seed}, \text{step}, \text{trial}, \text{leaf}) \\
    \delta &= L(w + \xi) - L(w) \qquad \text{(regret / reward-prediction error, same batch)} \\
    s &\leftarrow \beta_s s + (1-\beta_s) |\delta| \\
    \eta &\leftarrow \operatorname{clip}((1-\beta_\eta)\eta + \beta_\eta s,\ \eta_\min, \eta_\max)
        \ \text{("as_written", B.2)}, \quad
        \operatorname{clip}(\beta_\eta\eta + (1-\beta_\eta) s, \cdot) \ \text{("slow_ema")}, \quad
        \eta_0 \ \text{("fixed": plain WP)} \\
    w &\leftarrow w - \eta\, \delta\, \xi / \sigma^2
        \ \text{("sigma2": } E[\delta\xi/\sigma^2] = \nabla L + O(\sigma^2))
        \quad\text{or}\quad w - \eta\, \delta\, \xi \ \text{("none")} \\
    W_\mathrm{rec} &\leftarrow W_\mathrm{rec}\, \rho^* / \rho(W_\mathrm{rec})
        \ \text{every } K \text{ steps (Dopamine-2, exact eigenvalues)}

With ``trials`` = n > 1, δξ is averaged over n perturbations against one clean pass (n + 1
passes, s sees the mean |δ|). The clean weights are never modified in place, so they are
restored exactly. σ may differ per leaf (``sigma_relative``: σ_l = σ·rms(w_l), per seed, fixed at
init); the normalisation then divides each leaf by its own σ_l², which keeps E[update] = −η∇L.

**Integer weights** (the fixed-point engine, C.4): ξ = ±σ LSB (Rademacher), the perturbed pass
saturates to [lo, hi], and the update −η δ ξ/σ² (in LSB) is stochastically rounded to whole LSBs
(uniforms from :mod:`lava_diffmod.rng`) and saturated; masked synapses never move.
Node perturbation (C.1) is not implemented.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch

from .. import rng
from ..float.readout import Objective, rate_regulariser, task_loss
from ..float.rsnn import Network, Params, forward
from .eprop import window_target

LossFn = Callable[[tuple], torch.Tensor]     # params (each (S, ...)) → losses (S,)

NOISES = ("gaussian", "rademacher")
ETA_LAWS = ("as_written", "slow_ema", "fixed")
NORMALISATIONS = ("sigma2", "none")


@dataclass(frozen=True)
class DopamineConfig:
    """Hyperparameters (B.5 defaults: the Lorenz row). Losses and η are per seed."""
    sigma: float = 1e-4            # perturbation std (weight units); LSB for integer weights
    sigma_relative: bool = False   # σ_l = sigma · rms(w_l) per leaf and seed (spiking nets, B.8)
    noise: str = "gaussian"        # "gaussian" | "rademacher"
    trials: int = 1                # perturbations averaged per update
    eta0: float = 1e-2
    s0: float | None = None        # None: s0 = sigma (B.5)
    beta_s: float = 0.9998
    beta_eta: float = 0.9998
    eta_min: float = 1e-8
    eta_max: float = 5e-2
    eta_law: str = "as_written"    # "as_written" | "slow_ema" | "fixed" (the WP baseline)
    normalise: str = "sigma2"      # "sigma2" | "none"
    reset_every: int = 0           # K; 0: no spectral reset (Dopamine-1)
    reset_leaf: str = "w_rec"      # the recurrent matrix (S, N, N) of the params NamedTuple
    rho_target: float = 1.0

    def __post_init__(self):
        def bad(name, rule):
            raise ValueError(f"dopamine.{name} = {getattr(self, name)!r}: must be {rule}")
        for name in ("sigma", "eta0", "eta_min", "rho_target"):
            if not getattr(self, name) > 0:
                bad(name, "> 0")
        if self.s0 is not None and not self.s0 >= 0:
            bad("s0", ">= 0 (or None for s0 = sigma)")
        for name in ("beta_s", "beta_eta"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, "in [0, 1)")
        if not self.eta_max >= self.eta_min:
            bad("eta_max", f">= eta_min = {self.eta_min}")
        if self.trials < 1:
            bad("trials", ">= 1")
        if self.reset_every < 0:
            bad("reset_every", ">= 0 (0 = no spectral reset)")
        for name, allowed in (("noise", NOISES), ("eta_law", ETA_LAWS), ("normalise", NORMALISATIONS)):
            if getattr(self, name) not in allowed:
                bad(name, "one of " + ", ".join(allowed))

    @property
    def passes(self) -> int:
        """Forward passes per update: ``trials`` perturbed + 1 clean."""
        return self.trials + 1


class DopamineState(NamedTuple):
    """Optimizer state per seed; ``step`` counts updates (it keys the perturbations)."""
    step: int
    eta: torch.Tensor              # (S,) learning rate
    s: torch.Tensor                # (S,) running |δ|
    sigma: tuple                   # per leaf, (S,) perturbation std


class StepInfo(NamedTuple):
    """What one update saw, per seed: clean loss L⁰, mean δ, and the new η and s."""
    loss: torch.Tensor
    delta: torch.Tensor
    eta: torch.Tensor
    s: torch.Tensor


class Dopamine(NamedTuple):
    init: Callable[[tuple], DopamineState]
    step: Callable[[LossFn, tuple, DopamineState], tuple[tuple, DopamineState, StepInfo]]


# ---------------------------------------------------------------------------------------------
# small pure pieces

def per_seed(v: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    """(S,) → (S, 1, …, 1) to broadcast over a leaf of shape (S, …)."""
    return v.reshape(v.shape + (1,) * (leaf.dim() - 1))


def like(params, leaves) -> tuple:
    """``leaves`` in the container type of ``params`` (a NamedTuple or a plain tuple)."""
    return type(params)(*leaves) if hasattr(params, "_fields") else tuple(leaves)


def seed_keys(seeds: Sequence[int], stream: str, device=None) -> torch.Tensor:
    """(S,) 32-bit keys of one random stream per seed."""
    return torch.tensor([rng.name_key(s, "dopamine", stream) for s in seeds], dtype=torch.int64, device=device)


def leaf_rms(w: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(S,) root mean square of w over its (unmasked) entries."""
    m = torch.ones_like(w, dtype=torch.float64) if mask is None else mask.to(torch.float64)
    return ((w.double() ** 2 * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)).sqrt()


def perturbation(key: torch.Tensor, step: int, trial: int, params: tuple, sigma: tuple, noise: str,
                 mask: tuple | None = None) -> tuple:
    """ξ per leaf: σ_l·N(0, 1) or σ_l·(±1), zero where masked. One draw H(key, step, trial) over
    all leaves flattened in order (regenerable from the seed); integer leaves get integer ξ."""
    flat = split_leaves(draw(rng.derive(key, step, trial), params, noise), params)
    out = []
    for i, (w, z) in enumerate(zip(params, flat)):
        xi = (z * per_seed(sigma[i], w)).to(w.dtype)
        out.append(xi if mask is None else xi * mask[i].to(w.dtype))
    return tuple(out)


def draw(key: torch.Tensor, params: tuple, noise: str) -> torch.Tensor:
    """(S, Σ leaf sizes) standard normals (float64), Rademacher ±1 (int64) or U[0, 1) ("uniform")."""
    shape = (params[0].shape[0], sum(w[0].numel() for w in params))
    device = params[0].device
    if noise == "gaussian":
        return rng.normal(key, shape, device)
    if noise == "rademacher":
        return (rng.hashes(key, shape, device) >> 31) * 2 - 1
    return rng.uniform(key, shape, device, torch.float64)


def split_leaves(flat: torch.Tensor, params: tuple) -> list[torch.Tensor]:
    """(S, Σ sizes) → one (S, …) tensor per leaf."""
    sizes = [w[0].numel() for w in params]
    return [z.reshape(w.shape) for z, w in zip(flat.split(sizes, dim=1), params)]


def rpe_trace(s: torch.Tensor, abs_delta: torch.Tensor, beta_s: float) -> torch.Tensor:
    """s ← β_s s + (1 − β_s)|δ|."""
    return beta_s * s + (1 - beta_s) * abs_delta


def learning_rate(eta: torch.Tensor, s: torch.Tensor, cfg: DopamineConfig) -> torch.Tensor:
    """η from the new s by ``cfg.eta_law`` (module docstring); "fixed" keeps η₀ unclipped."""
    if cfg.eta_law == "fixed":
        return eta
    if cfg.eta_law == "as_written":
        new = (1 - cfg.beta_eta) * eta + cfg.beta_eta * s
    else:
        new = cfg.beta_eta * eta + (1 - cfg.beta_eta) * s
    return new.clamp(cfg.eta_min, cfg.eta_max)


def spectral_radius(w: torch.Tensor) -> torch.Tensor:
    """ρ(W) = max |λ(W)| per seed, exact (float64 eigenvalues), for W (S, N, N)."""
    return torch.linalg.eigvals(w.double()).abs().amax(-1)


def spectral_rescale(w: torch.Tensor, rho_target: float = 1.0) -> torch.Tensor:
    """W · ρ*/ρ(W): the spectral radius becomes ρ*, every sign (and zero) is kept; W with ρ = 0
    is returned unchanged."""
    rho = spectral_radius(w)
    factor = torch.where(rho > 0, rho_target / rho.clamp(min=1e-300), torch.ones_like(rho))
    return w * per_seed(factor, w).to(w.dtype)


def stochastic_round(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """⌊x + u⌋ with u ~ U[0, 1) (:func:`draw` "uniform"): unbiased rounding to integers (int64)."""
    return torch.floor(x + u).long()


# ---------------------------------------------------------------------------------------------
# the optimiser

def dopamine(cfg: DopamineConfig, seeds: Sequence[int], mask: tuple | None = None,
             weight_range: tuple[int, int] | None = None) -> Dopamine:
    """Dopamine (or plain WP with ``eta_law="fixed"``) for S = len(seeds) networks.

    ``mask``: per leaf, 0/1 tensors shaped like the leaves (masked weights stay as they are).
    ``weight_range`` = (lo, hi): the weights are integers (hardware LSB) saturated to [lo, hi];
    this needs ``noise="rademacher"``, a whole-number ``sigma`` and no ``sigma_relative`` or reset.
    """
    if weight_range is not None:
        if cfg.noise != "rademacher":
            raise ValueError(f"dopamine.noise = {cfg.noise!r}: integer weights need rademacher (±sigma LSB)")
        if cfg.sigma != int(cfg.sigma) or cfg.sigma_relative:
            raise ValueError(f"dopamine.sigma = {cfg.sigma!r}: integer weights need a whole number of LSB "
                             "and sigma_relative = false")
        if cfg.reset_every:
            raise ValueError(f"dopamine.reset_every = {cfg.reset_every}: the spectral reset is for float "
                             "weights only (0 with integer weights)")
        if not weight_range[0] < weight_range[1]:
            raise ValueError(f"dopamine weight_range = {weight_range}: must be (lo, hi) with lo < hi")
    pert_key, round_key = seed_keys(seeds, "perturb"), seed_keys(seeds, "round")

    def init(params) -> DopamineState:
        ref = params[0]
        s_count = ref.shape[0]
        if s_count != len(seeds):
            raise ValueError(f"dopamine: params have {s_count} seeds on axis 0, seeds list has {len(seeds)}")
        if cfg.reset_every and cfg.reset_leaf not in getattr(params, "_fields", ()):
            raise ValueError(f"dopamine.reset_leaf = {cfg.reset_leaf!r}: not a field of the params "
                             f"({', '.join(getattr(params, '_fields', ())) or 'not a NamedTuple'})")
        def full(v):
            return torch.full((s_count,), float(v), dtype=torch.float64, device=ref.device)
        if weight_range is not None:
            sigma = tuple(torch.full((s_count,), int(cfg.sigma), dtype=torch.int64, device=ref.device)
                          for _ in params)
        elif cfg.sigma_relative:
            sigma = tuple(cfg.sigma * leaf_rms(w, None if mask is None else mask[i]) for i, w in enumerate(params))
        else:
            sigma = tuple(full(cfg.sigma) for _ in params)
        return DopamineState(0, full(cfg.eta0), full(cfg.sigma if cfg.s0 is None else cfg.s0), sigma)

    def step(loss_fn: LossFn, params, state: DopamineState):
        n = state.step
        saturate = (lambda w: w.clamp(*weight_range)) if weight_range is not None else (lambda w: w)
        with torch.no_grad():
            loss0 = loss_fn(params).double()
            acc = [torch.zeros(w.shape, dtype=torch.float64, device=w.device) for w in params]
            deltas = []
            for k in range(cfg.trials):
                xi = perturbation(pert_key, n, k, params, state.sigma, cfg.noise, mask)
                delta = loss_fn(like(params, (saturate(w + x) for w, x in zip(params, xi)))).double() - loss0
                deltas.append(delta)
                for a, x in zip(acc, xi):
                    a.add_(per_seed(delta, a) * x.double())
            delta = torch.stack(deltas)
            s = rpe_trace(state.s, delta.abs().mean(0), cfg.beta_s)
            eta = learning_rate(state.eta, s, cfg)
            new = []
            if weight_range is not None:
                uniforms = split_leaves(draw(rng.derive(round_key, n), params, "uniform"), params)
            for i, (w, a) in enumerate(zip(params, acc)):
                norm = state.sigma[i].double() ** 2 if cfg.normalise == "sigma2" else torch.ones_like(eta)
                upd = a * per_seed(eta / (cfg.trials * norm), a)
                if weight_range is None:
                    new.append(w - upd.to(w.dtype))
                else:
                    moved = saturate(w + stochastic_round(-upd, uniforms[i]))
                    new.append(moved if mask is None else torch.where(mask[i] != 0, moved, w))
            new = like(params, new)
            if cfg.reset_every and (n + 1) % cfg.reset_every == 0:
                new = new._replace(**{cfg.reset_leaf: spectral_rescale(getattr(new, cfg.reset_leaf),
                                                                       cfg.rho_target)})
        return new, DopamineState(n + 1, eta, s, state.sigma), StepInfo(loss0, delta.mean(0), eta, s)

    return Dopamine(init, step)


# ---------------------------------------------------------------------------------------------
# loss closures for the spiking network (float) and the fixed-point emulator

def network_masks(net: Network) -> Params:
    """The connectivity masks of ``net``, as a mask for :func:`dopamine`."""
    return Params(net.m_in, net.m_rec, net.m_out)


def network_loss(net: Network, x: torch.Tensor, target: torch.Tensor, obj: Objective) -> LossFn:
    """L(params) = E_task + E_reg per seed of the float spiking network on one batch (the loss
    BPTT differentiates); every call sees the same inputs, so both passes share the batch."""
    tgt = window_target(target, obj.kind, x.shape[0] - obj.window)

    def loss(params) -> torch.Tensor:
        rec = forward(net.with_params(params), x)
        return task_loss(rec.y[x.shape[0] - obj.window:], tgt, obj) + rate_regulariser(rec.z.mean(0), obj)
    return loss


def emulator_loss(emulator, x: torch.Tensor, target: torch.Tensor, trial_keys: torch.Tensor,
                  iteration: int) -> LossFn:
    """L(weights) = E_task + E_reg per seed from the fixed-point emulator's forward pass
    (``learn=False``), with the rounding randomness of ``iteration`` in every call."""
    from ..fixed.emulator import Weights

    def loss(weights) -> torch.Tensor:
        res = emulator.batch(Weights(*weights), x, target, trial_keys, iteration, learn=False)
        return res.task_loss + res.reg_loss
    return loss
