r"""ModProp (RULES.md Part A): credit through recurrent paths of every length, carried by
cell-type modulators through a time-invariant filter; MDGL (one hop), e-prop (μ = 0) and BPTT as
members of the same family, for the rate RNN (:mod:`lava_diffmod.float.rate`) and the spiking
LIF/ALIF network (A.10).

With Λ_j^t = f'(h_j^t) L_j^t (ψ_j^t L_j^t when spiking), presynaptic trace
ε_q^t = α ε_q^{t−1} + c_in pre_q^t and c_in the input scale (1 − α), the exact gradient is a sum
over paths crossing s = 0, 1, 2, … recurrent synapses. ModProp keeps all of them but, on the
non-local hops only, replaces W by the type-averaged surrogate Wab and f' (ψ) by the constant μ:

.. math::

    g^t &= \Lambda^t + \alpha g^{t+1} + c_\mathrm{in} \mu \, \mathrm{Wab}^\top g^{t+1}
        \qquad \text{(form 1, backward)} \\
    \partial E / \partial W_{qp} &\approx \sum_t c_\mathrm{in}\, \mathrm{pre}_q^t \, g_p^t
        = \underbrace{\sum_t \Lambda_p^t \epsilon_q^t}_{\text{e-prop}}
        + \sum_t \sum_a M_a^t \, U_{q,\mathrm{type}(p),a}^t \qquad \text{(form 3, online)}

with C types of sizes n, block means w (C × C, w[a, b] = mean of W over pre type a, post type b,
masked entries counting 0), Wab = P w Pᵀ (P the N × C membership), modulators
M_a^t = Σ_{j∈a} Λ_j^t and the filter state (C² numbers per presynaptic q)

.. math::

    U_{q,\beta}^t = A U_{q,\beta}^{t-1} + b_{:,\beta} \epsilon_q^{t-1}, \qquad
    A = \alpha I + c_\mathrm{in} \mu w^\top \mathrm{diag}(n), \quad b = c_\mathrm{in} \mu w^\top .

Forms 1 and 3 agree exactly when Wab keeps its diagonal (``keep_diagonal``); the authors zero it
(the autapse mask), which form 1 reproduces. MDGL keeps one hop of one step with the exact
first-hop f' (ψ): Σ_t [Λ_p^t + f'(h_p^t) c_in Σ_j Wab_pj Λ_j^{t+1}] ε_q^t.

The filter converges only if ρ(A) < 1 (A.6); :func:`guarded_mu` lowers μ where needed.
μ has the units of f' (of ψ, 1/ϑ, when spiking).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..float.rate import (RateNetwork, RateParams, Recurrent, activation, effective, exact_recurrent,
                          last_step_loss, l2_penalty, rate_forward, readout)
from ..float.readout import Objective, output_error
from ..float.rsnn import Network, Params, forward
from .eprop import (Gradients, LearningSignal, backward_filter, contract, eprop_factorised,
                    regulariser_coefficient, window_target)
from .modulator import Modulator

TRUNCATIONS = ("none", "mdgl")
FORMS = ("backward", "online")
REMEDIES = ("clip_mu", "raise")
RATE_RULES = ("bptt", "modprop", "mdgl", "eprop")


# ---------------------------------------------------------------- types, surrogate, filter

def type_matrix(types: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Membership P (N, C) of the types present in ``types`` (N,), in increasing label order."""
    labels = torch.unique(types)
    return (types[:, None] == labels[None, :]).to(dtype)


def cell_types(w_rec: torch.Tensor) -> torch.Tensor:
    """Every cell its own type (N,): the block means are W itself, so the hops cross the exact W."""
    return torch.arange(w_rec.shape[-1], device=w_rec.device)


def block_means(w: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """w[a, b] = mean of W (S, N, N) over pre type a × post type b (zeros count) → (S, C, C)."""
    n = members.sum(0)
    return members.T @ w @ members / (n[:, None] * n[None, :])


def surrogate(blocks: torch.Tensor, members: torch.Tensor, keep_diagonal: bool) -> torch.Tensor:
    """Wab = P w Pᵀ (S, N, N), with a zero diagonal unless ``keep_diagonal``."""
    wab = members @ blocks @ members.T
    if keep_diagonal:
        return wab
    return wab * (1 - torch.eye(wab.shape[-1], dtype=wab.dtype, device=wab.device))


def as_mu(mu, s: int, like: torch.Tensor) -> torch.Tensor:
    """μ as a per-seed tensor (S,); a float or (S,) tensor, every entry >= 0."""
    mu = torch.as_tensor(mu, dtype=like.dtype, device=like.device).expand(s).clone()
    if bool((mu < 0).any()) or not bool(torch.isfinite(mu).all()):
        raise ValueError(f"modprop.mu = {mu.tolist()}: must be finite and >= 0")
    return mu


def filter_matrices(blocks: torch.Tensor, n: torch.Tensor, alpha: float, c_in: float,
                    mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A = α I + c_in μ wᵀ diag(n) and b = c_in μ wᵀ, each (S, C, C)."""
    b = c_in * mu[:, None, None] * blocks.transpose(-1, -2)
    eye = torch.eye(b.shape[-1], dtype=b.dtype, device=b.device)
    return alpha * eye + b * n, b


def guarded_mu(blocks: torch.Tensor, n: torch.Tensor, alpha: float, c_in: float, mu: torch.Tensor,
               remedy: str = "clip_mu", margin: float = 0.01) -> torch.Tensor:
    """μ per seed such that ρ(A) ≤ r = 1 − margin·(1 − α) (A.6).

    The eigenvalues of A are α + μλ_i, λ_i those of K = c_in wᵀ diag(n). Where ρ(A) > r, warn;
    ``raise`` then raises, ``clip_mu`` returns the largest μ' ≤ μ with |α + μ''λ_i| ≤ r for all
    μ'' ∈ [0, μ'], the positive root of |λ|² μ² + 2α Re λ μ + α² − r² = 0 minimised over i.

    The margin is a fraction of the leak's distance from 1, so the slowest credit mode may be up
    to 1/margin times slower than the membrane: the spec's absolute 1 − 0.01 lies below
    α = 0.99005 itself for τ_m = 100 ms and would forbid any μ > 0 on the rate task.
    """
    if remedy not in REMEDIES:
        raise ValueError(f"modprop.remedy = {remedy!r}: must be one of {', '.join(REMEDIES)}")
    if not 0 < margin < 1:
        raise ValueError(f"modprop.margin = {margin}: must be in (0, 1)")
    lam = torch.linalg.eigvals((c_in * blocks.transpose(-1, -2) * n).double())      # (S, C)
    mu64 = mu.double()
    r = 1 - margin * (1 - alpha)
    rho = (alpha + mu64[:, None] * lam).abs().amax(-1)
    bad = rho > r
    if not bool(bad.any()):
        return mu
    msg = (f"modprop: rho(A) = {[round(v, 6) for v in rho.tolist()]} exceeds 1 - margin*(1 - alpha) = "
           f"{r:.6f} for seeds {bad.nonzero().flatten().tolist()} at mu = {mu64.tolist()}")
    if remedy == "raise":
        raise ValueError(msg + "; lower modprop.mu or use remedy='clip_mu'")
    mag2 = lam.abs() ** 2
    disc = (alpha * lam.real) ** 2 - mag2 * (alpha ** 2 - r ** 2)
    root = torch.where(mag2 > 0, (-alpha * lam.real + disc.sqrt()) / mag2.clamp(min=1e-300), torch.inf)
    clipped = torch.where(bad, torch.minimum(mu64, root.amin(-1)), mu64).to(mu.dtype)
    warnings.warn(msg + f"; mu clipped to {clipped.tolist()}", RuntimeWarning, stacklevel=3)
    return clipped


# ---------------------------------------------------------------- the non-local term

@dataclass(frozen=True)
class NonLocal:
    """How the non-local term is computed.

    truncation: ``none`` (ModProp, all hops, μ) or ``mdgl`` (one hop, exact f'/ψ, no μ);
    form: ``backward`` (form 1 as a linear backward scan) or ``online`` (form 3, U-state;
    implies a block-constant surrogate with diagonal); keep_diagonal: Wab keeps diag(P w Pᵀ);
    remedy/margin: the ρ(A) guard (:func:`guarded_mu`); hop_weights: ``type`` (the block means
    of the given types) or ``cell`` (every cell its own type: the hops cross the exact W)."""
    truncation: str = "none"
    form: str = "backward"
    keep_diagonal: bool = False
    remedy: str = "clip_mu"
    margin: float = 0.01
    hop_weights: str = "type"

    def __post_init__(self):
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"modprop.truncation = {self.truncation!r}: must be one of {', '.join(TRUNCATIONS)}")
        if self.form not in FORMS:
            raise ValueError(f"modprop.form = {self.form!r}: must be one of {', '.join(FORMS)}")
        if self.form == "online" and self.truncation != "none":
            raise ValueError("modprop.form = 'online' computes all hops: use truncation = 'none'")
        if self.remedy not in REMEDIES:
            raise ValueError(f"modprop.remedy = {self.remedy!r}: must be one of {', '.join(REMEDIES)}")
        if not 0 < self.margin < 1:
            raise ValueError(f"modprop.margin = {self.margin}: must be in (0, 1)")
        if self.hop_weights not in ("type", "cell"):
            raise ValueError(f"modprop.hop_weights = {self.hop_weights!r}: must be type or cell")
        if self.form == "online" and self.hop_weights == "cell":
            raise ValueError("modprop.form = 'online' with hop_weights = 'cell' needs N² state per neuron: "
                             "use form = 'backward'")


def modprop_backward(lam: torch.Tensor, wab: torch.Tensor, alpha: float, c_in: float,
                     mu: torch.Tensor) -> torch.Tensor:
    """Non-local part n = g − g_loc of form 1, (T, S, B, N), by a backward scan:
    n^t = α n^{t+1} + c_in μ (g_loc^{t+1} + n^{t+1}) Wabᵀ,  g_loc^t = Λ^t + α g_loc^{t+1}."""
    wab_t = wab.transpose(-1, -2).to(lam.dtype)
    scale = (c_in * mu).to(lam.dtype)[:, None, None]
    out = torch.empty_like(lam)
    g_loc = torch.zeros_like(lam[0])
    n = torch.zeros_like(lam[0])
    for t in range(lam.shape[0] - 1, -1, -1):
        n = torch.add(scale * torch.bmm(g_loc + n, wab_t), n, alpha=alpha, out=out[t])
        g_loc = torch.add(lam[t], g_loc, alpha=alpha)
    return out


def mdgl_backward(lam: torch.Tensor, deriv: torch.Tensor, wab: torch.Tensor, alpha: float,
                  c_in: float) -> torch.Tensor:
    """MDGL's non-local part (T, S, B, N): the one-hop signal f'(h_p^t) c_in Σ_j Wab_pj Λ_j^{t+1}
    (ψ when spiking), α-filtered backward like the local term: n^t = α n^{t+1} + hop^t."""
    hop = torch.zeros_like(lam)
    hop[:-1] = c_in * deriv[:-1] * torch.matmul(lam[1:], wab.transpose(-1, -2).to(lam.dtype))
    out = torch.empty_like(lam)
    n = torch.zeros_like(lam[0])
    for t in range(lam.shape[0] - 1, -1, -1):
        n = torch.add(hop[t], n, alpha=alpha, out=out[t])
    return out


def modprop_online(pre: torch.Tensor, lam: torch.Tensor, members: torch.Tensor, blocks: torch.Tensor,
                   alpha: float, c_in: float, mu: torch.Tensor) -> torch.Tensor:
    """Form 3: Σ_t Σ_a M_a^t U_{q,type(p),a}^t per presynaptic q and post p → (S, n_pre, N).

    Per step: U^t = A U^{t−1} + b ε^{t−1}, then ε^t = α ε^{t−1} + c_in pre^t, M^t = Λ^t P and
    G_{q,β} += Σ_a M_a U_{q,β,a}; finally ΔW_qp = G_{q,type(p)}. pre (T, S, B, n_pre)."""
    a_mat, b_mat = filter_matrices(blocks.to(lam.dtype), members.sum(0).to(lam.dtype), alpha, c_in, mu.to(lam.dtype))
    members = members.to(lam.dtype)
    _, s, bsz, n_pre = pre.shape
    c = members.shape[1]
    eps = pre.new_zeros((s, bsz, n_pre))
    u = pre.new_zeros((s, bsz, n_pre, c, c))
    g = pre.new_zeros((s, n_pre, c))
    for t in range(pre.shape[0]):
        u = torch.einsum("sac,sbqkc->sbqka", a_mat, u) + torch.einsum("sak,sbq->sbqka", b_mat, eps)
        eps = alpha * eps + c_in * pre[t]
        m = lam[t] @ members
        g = g + torch.einsum("sba,sbqka->sqk", m, u)
    return g @ members.T


def nonlocal_gradients(x: torch.Tensor, z_prev: torch.Tensor, lam: torch.Tensor, deriv: torch.Tensor,
                       w_rec: torch.Tensor, types: torch.Tensor, alpha: float, c_in: float, mu,
                       how: NonLocal = NonLocal()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The non-local terms of W_in and W_rec, (S, n_in, N) and (S, N, N), and the μ used (S,).

    x (T, S, B, n_in) and z_prev (T, S, B, N) are the presynaptic signals, Λ (T, S, B, N) the
    postsynaptic factor, ``deriv`` f' or ψ (T, S, B, N) for MDGL's first hop; w_rec (S, N, N)
    the current effective (signed, masked) weights: block means are recomputed from it."""
    if how.hop_weights == "cell":
        types = cell_types(w_rec)
    members = type_matrix(types, torch.float64).to(w_rec.device)
    blocks = block_means(w_rec.detach().double(), members)
    mu = as_mu(0.0 if how.truncation == "mdgl" else mu, w_rec.shape[0], blocks)
    if how.truncation == "mdgl":
        n = mdgl_backward(lam, deriv, surrogate(blocks, members, how.keep_diagonal), alpha, c_in)
    else:
        mu = guarded_mu(blocks, members.sum(0), alpha, c_in, mu, how.remedy, how.margin)
        if how.form == "online":
            g = modprop_online(torch.cat([x, z_prev], -1), lam, members, blocks, alpha, c_in, mu)
            return g[:, :x.shape[-1]].to(lam.dtype), g[:, x.shape[-1]:].to(lam.dtype), mu
        n = modprop_backward(lam, surrogate(blocks, members, how.keep_diagonal), alpha, c_in, mu)
    return contract(x, c_in * n), contract(z_prev, c_in * n), mu


# ---------------------------------------------------------------- spiking network (A.10)

def postsynaptic_factor(net: Network, x: torch.Tensor, target: torch.Tensor, obj: Objective,
                        modulator: Modulator | None, trial_keys: torch.Tensor):
    """Forward record and Λ = ψ ⊙ c (T, S, B, N), c(t) = bs (τ_𝒲 L̃(t) + reg) the weight of e(t)
    in e-prop (L̃ the backward κ-filter of the learning signal): Λ_j^t is ∂E/∂v_j^t through the
    readout and the regulariser only."""
    t_steps, _, b, _ = x.shape
    t0 = t_steps - obj.window
    rec = forward(net, x)
    err = output_error(rec.y[t0:], window_target(target, obj.kind, t0), obj.kind)
    signal = LearningSignal(net, modulator, trial_keys)
    learning = torch.stack([signal.step(err[t - t0], t) for t in range(t0, t_steps)])
    reg = regulariser_coefficient(rec.z.sum(0), t_steps, obj)
    c = obj.batch_scale(b) * (obj.grad_time_scale() * backward_filter(learning, t_steps, net.kappa) + reg)
    return rec, rec.psi * c


def default_mu(net: Network, x: torch.Tensor, k: float = 0.5) -> torch.Tensor:
    """μ = k · ⟨ψ⟩ (S,), the population-, trial- and time-mean pseudo-derivative of the
    network on inputs x (A.10: k ∈ {0.25, 0.5, 1} at initialisation); units of ψ (1/ϑ)."""
    with torch.no_grad():
        return k * forward(net, x).psi.mean((0, 2, 3))


def modprop(net: Network, x: torch.Tensor, target: torch.Tensor, obj: Objective,
            trial_keys: torch.Tensor | None = None, *, mu, types: torch.Tensor | None = None,
            truncation: str = "none", form: str = "backward", keep_diagonal: bool = False,
            remedy: str = "clip_mu", margin: float = 0.01, hop_weights: str = "type",
            modulator: Modulator | None = None) -> Gradients:
    """ModProp (or MDGL) gradients of S spiking networks, shaped like :func:`eprop_factorised`.

    g = e-prop (exact ψ, full ALIF eligibility, unchanged) + the non-local term of A.10: μ
    replaces ψ and the block-mean W replaces W on every hop through a recurrent weight, and only
    the membrane leak α is kept on those paths (c_in = s_in). μ: float or (S,), units of ψ;
    types (N,): cell types, default LIF/ALIF (``net.is_alif``); truncation ``none`` | ``mdgl``;
    form ``backward`` (form 1) | ``online`` (form 3); hop_weights ``type`` | ``cell`` (exact W);
    μ = 0 gives e-prop bit for bit."""
    how = NonLocal(truncation, form, keep_diagonal, remedy, margin, hop_weights)
    if trial_keys is None:
        trial_keys = torch.zeros(x.shape[1:3], dtype=torch.int64, device=x.device)
    types = net.is_alif.long() if types is None else types
    local = eprop_factorised(net, x, target, obj, modulator, trial_keys)
    rec, lam = postsynaptic_factor(net, x, target, obj, modulator, trial_keys)
    z_prev = torch.cat([torch.zeros_like(rec.z[:1]), rec.z[:-1]])
    g_in, g_rec, _ = nonlocal_gradients(x, z_prev, lam, rec.psi, net.params.w_rec * net.m_rec, types,
                                        net.neuron.alpha, net.neuron.input_scale, mu, how)
    g = local.grads
    return local._replace(grads=Params(g.w_in + g_in * net.m_in, g.w_rec + g_rec * net.m_rec, g.w_out))


# ---------------------------------------------------------------- rate RNN, form 1 (A.11.2)

class SurrogateMatmul(torch.autograd.Function):
    """Forward z W; backward: ∂/∂z through the detached surrogate (g Wabᵀ), ∂/∂W exact (zᵀ g)."""

    @staticmethod
    def forward(ctx, z, w, wab):
        ctx.save_for_backward(z, wab)
        return torch.bmm(z, w)

    @staticmethod
    def backward(ctx, grad):
        z, wab = ctx.saved_tensors
        return torch.bmm(grad, wab.transpose(-1, -2)), torch.bmm(z.transpose(-1, -2), grad), None


class ModulatedActivation(torch.autograd.Function):
    """Forward: the value z = f(h) (given); backward: ∂/∂h = μ · upstream (μ (S, 1, 1))."""

    @staticmethod
    def forward(ctx, z, h, mu):
        ctx.save_for_backward(mu)
        return z.clone()

    @staticmethod
    def backward(ctx, grad):
        mu, = ctx.saved_tensors
        return None, grad * mu, None


def stop_recurrent(h_prev: torch.Tensor, z_prev: torch.Tensor, w_rec: torch.Tensor) -> torch.Tensor:
    """e-prop: Σ_q W_qj z_q^{t−1} with a stop-gradient on z^{t−1}."""
    return torch.bmm(z_prev.detach(), w_rec)


def modprop_recurrent(wab: torch.Tensor, mu: torch.Tensor) -> Recurrent:
    """Form 1: the recurrent branch with backward μ (activation) and Wab (matmul)."""
    mu = mu[:, None, None]
    cast = {}

    def recurrent(h_prev, z_prev, w_rec):
        if h_prev.dtype not in cast:
            cast[h_prev.dtype] = (mu.to(h_prev.dtype), wab.to(h_prev.dtype))
        mu_t, wab_t = cast[h_prev.dtype]
        return SurrogateMatmul.apply(ModulatedActivation.apply(z_prev.detach(), h_prev, mu_t), w_rec, wab_t)
    return recurrent


@dataclass(frozen=True)
class RateRule:
    """A rule for the rate RNN: ``bptt``, ``modprop``, ``mdgl`` or ``eprop`` (A.11.4).

    mu: ModProp's constant derivative (A.8: 0.25); keep_diagonal: Wab keeps its diagonal;
    hop_weights: the weights credit crosses on ModProp's and MDGL's non-local hops, ``type`` (the
    block means Wab, A.4) or ``cell`` (the exact W: every cell its own type, so Wab = W). ``cell``
    is what the authors' released TF1 script computes in effect: its swap of Wab into the weight
    variable happens after the forward pass has read W, and the backward reuses that read.
    remedy/margin: ρ(A) guard (with ``cell``, ρ of α I + (1−α) μ Wᵀ)."""
    name: str = "modprop"
    mu: float = 0.25
    keep_diagonal: bool = False
    hop_weights: str = "type"
    remedy: str = "clip_mu"
    margin: float = 0.01

    def __post_init__(self):
        if self.name not in RATE_RULES:
            raise ValueError(f"rate_rule.name = {self.name!r}: must be one of {', '.join(RATE_RULES)}")
        if self.mu < 0:
            raise ValueError(f"rate_rule.mu = {self.mu}: must be >= 0")
        NonLocal(remedy=self.remedy, margin=self.margin, hop_weights=self.hop_weights)


def rate_loss(w: RateParams, x: torch.Tensor, labels: torch.Tensor, alpha: float, theta: float,
              types: torch.Tensor, rule: RateRule):
    """Last-step cross-entropy (S,), accuracy (S,) and μ used (S,), with the rule's backward.

    MDGL: the state path is e-prop's; the last-step readout sees a zero-valued hop
    (1 − α)[f(h^{T−2}) Wab − stop(·)] whose backward brings c_in f'(h^{T−2}) Wab Λ^{T−1} to
    h^{T−2} (the task is scored at the last step only, so no other hop is non-zero)."""
    s = w.w_rec.shape[0]
    if rule.hop_weights == "cell":
        types = cell_types(w.w_rec)
    members = type_matrix(types, torch.float64).to(w.w_rec.device)
    blocks = block_means(w.w_rec.detach().double(), members)
    mu = as_mu(rule.mu if rule.name == "modprop" else 0.0, s, blocks)
    recurrent = {"bptt": exact_recurrent, "eprop": stop_recurrent, "mdgl": stop_recurrent}.get(rule.name)
    if rule.name == "modprop":
        mu = guarded_mu(blocks, members.sum(0), alpha, 1 - alpha, mu, rule.remedy, rule.margin)
        recurrent = modprop_recurrent(surrogate(blocks, members, rule.keep_diagonal), mu)
    h = rate_forward(w, x, alpha, theta, recurrent)
    h_last = h[-1]
    if rule.name == "mdgl":
        wab = surrogate(blocks, members, rule.keep_diagonal).to(h.dtype)
        hop = (1 - alpha) * torch.bmm(activation(h[-2], theta), wab)
        h_last = h_last + (hop - hop.detach())
    ce, acc = last_step_loss(readout(activation(h_last, theta), w), labels)
    return ce, acc, mu


def rate_postsynaptic_factor(w: RateParams, x: torch.Tensor, labels: torch.Tensor, alpha: float,
                             theta: float):
    """Membrane h (T, S, B, N) and Λ = f'(h) ⊙ ∂CE/∂z through the last-step readout only."""
    with torch.no_grad():
        h = rate_forward(w, x, alpha, theta)
    z = activation(h, theta).requires_grad_(True)
    with torch.enable_grad():
        ce, _ = last_step_loss(readout(z[-1], RateParams(*(p.detach() for p in w))), labels)
        direct, = torch.autograd.grad(ce.sum(), z)
    return h, (h > theta).to(h.dtype) * direct


def rate_gradients(net: RateNetwork, x: torch.Tensor, labels: torch.Tensor, rule: RateRule,
                   l2: float = 0.0):
    """Gradients of CE + l2·½Σw² w.r.t. the trained variables, CE (S,), accuracy (S,), μ (S,)."""
    params = RateParams(*(p.detach().requires_grad_(True) for p in net.params))
    with torch.enable_grad():
        w = effective(net, params)
        ce, acc, mu = rate_loss(w, x, labels, net.alpha, net.cfg.theta, net.types, rule)
        grads = torch.autograd.grad((ce + l2 * l2_penalty(w)).sum(), params)
    return RateParams(*grads), ce.detach(), acc, mu
