r"""e-prop (MODEL.md §3): eligibility traces times a learning signal, in two modes.

For W ∈ {W_in, W_rec} with presynaptic signal pre_i(t) (x_i(t), or z_i(t−1)):

.. math::

    \epsilon^v_i(t) &= \alpha \epsilon^v_i(t-1) + s_\mathrm{in}\, \mathrm{pre}_i(t) \\
    \epsilon^a_{ij}(t) &= s_a \psi_j(t-1) \epsilon^v_i(t-1) + (\rho - s_a \beta_j \psi_j(t-1)) \epsilon^a_{ij}(t-1) \\
    e_{ij}(t) &= \psi_j(t) (\epsilon^v_i(t) - \beta_j \epsilon^a_{ij}(t)), \qquad
    \bar e_{ij}(t) = \kappa \bar e_{ij}(t-1) + (1-\kappa) e_{ij}(t) \\
    g_{ij} &= \operatorname{red}_b \Big[ \tau_{\mathcal W} \sum_{t \in \mathcal W} L_{bj}(t) \bar e_{bij}(t)
             + \sum_t \frac{c_\mathrm{reg}}{T} (r_{bj} - f_0) e_{bij}(t) \Big]

τ_𝒲 = 1/T_LS (gradient averaged over the window) or 1 (summed). The readout gradient is
g^out_jm = red_b τ Σ_{t∈𝒲} err_bm(t) z̄_bj(t) with z̄ the κ-filtered spikes.

* ``online``: the definition above, per step and per synapse; memory does not grow with T.
* ``factorised``: since ē is a causal filter of e, Σ_t L ē = Σ_t L̃ e with L̃ the backward
  κ-filter of L; the ε^a recursion is linear with per-post coefficients, so its contribution
  is an adjoint μ_j run backward; ε^v is a causal α-filter of pre. All of it collapses into one
  per-neuron signal h̃_bj(t), and g_ij = red_b Σ_t pre_bi(t) h̃_bj(t): one matrix product.

The learning signal L comes from :mod:`.feedback` (L^dir = B err) and, for diffusion, from the
neuromodulator field of :mod:`.modulator` — the only difference between the rules.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..float.readout import Objective, output_error, rate_regulariser, readout_step, task_loss
from ..float.rsnn import Network, Params, forward, rsnn_step
from ..float.neurons import alif_init
from .modulator import Modulator, modulator_init, modulator_step
from .synapses import DenseSynapses, synapses


class Gradients(NamedTuple):
    """Gradients (masked, each (S, pre, post)) and the loss terms per seed (S,)."""
    grads: Params
    task_loss: torch.Tensor
    reg_loss: torch.Tensor
    y_window: torch.Tensor   # readout over the learning window (W, S, B, n_out)


def window_target(target: torch.Tensor, kind: str, t0: int) -> torch.Tensor:
    """Labels (S, B) as they are; regression targets (T, S, B, n_out) cut to the window."""
    return target if kind == "classification" else target[t0:]


def masked(net: Network, g: Params) -> Params:
    """g ⊙ M: masked synapses get exactly zero gradient (MODEL.md §3.4)."""
    return Params(g.w_in * net.m_in, g.w_rec * net.m_rec, g.w_out * net.m_out)


class LearningSignal:
    """Per-step L_j(t) from err(t): the release Σ_m R_c[j,m] B[j,m] err_m(t) per channel c (one
    channel, R ≡ 1: L^dir = B err), then the modulator; without a modulator L = L^dir."""

    def __init__(self, net: Network, modulator: Modulator | None, trial_keys: torch.Tensor):
        self.mod = modulator
        routing = modulator.routing if modulator is not None else torch.ones_like(net.feedback[0])[None]
        self.routed = net.feedback_weights()[:, None] * routing[None]   # (S, C, N, n_out)
        self.keys = trial_keys
        self.field = None
        self.diffuse_fn = None     # the fixed backend's field diffusion, if any

    def step(self, err: torch.Tensor, t: int) -> torch.Tensor:
        return self.local(self.release(err), t)

    def release(self, err: torch.Tensor) -> torch.Tensor:
        """Σ_m R_c[j,m] B[j,m] err_m(t), (S, B, C, N)."""
        return torch.einsum("sbm,scjm->sbcj", err, self.routed)

    def local(self, rel: torch.Tensor, t: int) -> torch.Tensor:
        """L_j(t) from the release: through the modulator field, or L^dir without one."""
        if self.mod is None:
            return rel[:, :, 0]
        if self.field is None:
            self.field = modulator_init(rel.shape[0], rel.shape[1], self.mod, rel)
        self.field, local = modulator_step(self.field, rel, self.mod, self.keys, t, self.diffuse_fn)
        return torch.einsum("sbcn,c->sbn", local, self.mod.q)


class Eligibility(NamedTuple):
    """Per-trial traces of S × B networks: ε^v (S, B, P), ε^a and ē per synapse ((S, B, P, N)
    dense or (S, B, E) sparse, :mod:`.synapses`), ψ(t−1) (S, B, N)."""
    eps_v: torch.Tensor
    eps_a: torch.Tensor | None
    ebar: torch.Tensor
    psi_prev: torch.Tensor


def eligibility_init(s: int, b: int, n_pre: int, n: int, has_alif: bool, like: torch.Tensor,
                     syn=None) -> Eligibility:
    syn = syn or DenseSynapses(n_pre, n)
    return Eligibility(like.new_zeros((s, b, n_pre)), syn.zeros(s, b, like) if has_alif else None,
                       syn.zeros(s, b, like), like.new_zeros((s, b, n)))


def eps_a_step(eps_a: torch.Tensor, eps_v_prev: torch.Tensor, psi_prev: torch.Tensor, p,
               syn=None) -> torch.Tensor:
    """ε^a_ij(t) = s_a ψ_j(t−1) ε^v_i(t−1) + (ρ − s_a β_j ψ_j(t−1)) ε^a_ij(t−1)
    (``syn``: the layout of ε^a, dense by default)."""
    syn = syn or DenseSynapses(*eps_a.shape[-2:])
    return (p.adapt_scale * syn.post(psi_prev) * syn.pre(eps_v_prev)
            + syn.post(p.rho - p.adapt_scale * p.beta * psi_prev) * eps_a)


def eps_v_step(eps_v: torch.Tensor, pre: torch.Tensor, p) -> torch.Tensor:
    """ε^v_i(t) = α ε^v_i(t−1) + s_in pre_i(t) (the presynaptic trace, per synapse row)."""
    return p.alpha * eps_v + p.input_scale * pre


def eligibility_step(tr: Eligibility, pre: torch.Tensor, psi: torch.Tensor, p, keep: float,
                     has_alif: bool, syn=None) -> tuple[Eligibility, torch.Tensor]:
    """One step of the traces of MODEL.md §3.2; returns them and e(t) per synapse.

    ε^a uses ψ(t−1) and ε^v(t−1); ē = keep·ē + (1 − keep)·e with keep = κ."""
    syn = syn or DenseSynapses(*tr.ebar.shape[-2:])
    eps_a = eps_a_step(tr.eps_a, tr.eps_v, tr.psi_prev, p, syn) if has_alif else tr.eps_a
    eps_v = eps_v_step(tr.eps_v, pre, p)
    e = syn.pre(eps_v) - syn.post(p.beta) * eps_a if has_alif else syn.pre(eps_v)
    e = syn.post(psi) * e
    return Eligibility(eps_v, eps_a, torch.lerp(e, tr.ebar, keep), psi), e


def synapse_step(tr: Eligibility, e_sum: torch.Tensor, pre: torch.Tensor, psi: torch.Tensor, p, keep: float,
                 has_alif: bool, syn) -> tuple[Eligibility, torch.Tensor]:
    """All per-synapse work of one online step: the traces (:func:`eligibility_step`) and the
    regulariser's running Σ_t e. One function, so that on CUDA it compiles to one fused kernel
    (each trace read and written once per step)."""
    tr, e = eligibility_step(tr, pre, psi, p, keep, has_alif, syn)
    return tr, e_sum + e


def compiled_synapse_step(device: torch.device):
    """:func:`synapse_step`, fused by torch.compile on CUDA (float rounding may differ from the
    eager kernels, within the tests' tolerances); the plain function elsewhere."""
    if device.type != "cuda":
        return synapse_step
    return torch.compile(synapse_step, dynamic=False, fullgraph=True)


def regulariser_coefficient(z_count: torch.Tensor, t_steps: int, obj: Objective) -> torch.Tensor:
    """(c_reg/T)(r_bj − f_0), the per-step weight of the unfiltered e in g^reg, (S, B, N)."""
    return obj.c_reg / t_steps * (z_count / t_steps - obj.f0)


def synapse_layout(net: Network, storage: str = "auto"):
    """Where the traces of the combined matrix [W_in; W_rec] (S, P, N) live (:mod:`.synapses`)."""
    return synapses(torch.cat([net.m_in, net.m_rec], dim=1), storage)


def eprop_online(net: Network, x: torch.Tensor, target: torch.Tensor, obj: Objective,
                 modulator: Modulator | None, trial_keys: torch.Tensor, syn=None,
                 step=synapse_step) -> Gradients:
    """e-prop with per-step, per-synapse traces (hardware form); ``syn``: the traces' layout
    (:func:`synapse_layout`, built here with ``auto`` storage if not given); ``step``: the
    per-synapse step (:func:`synapse_step` or its compiled form)."""
    w_in, w_rec, w_out = net.params
    p = net.neuron
    kappa = net.kappa
    t_steps, s, b, n_in = x.shape
    n = net.n_rec
    t0 = t_steps - obj.window
    has_alif = net.has_alif
    signal = LearningSignal(net, modulator, trial_keys)
    tgt = window_target(target, obj.kind, t0)

    state = alif_init((s, b, n), x)
    y = x.new_zeros((s, b, net.n_out))
    syn = syn or synapse_layout(net)
    tr = eligibility_init(s, b, n_in + n, n, has_alif, x, syn)
    e_sum = torch.zeros_like(tr.ebar)
    zbar = x.new_zeros((s, b, n))
    z_count = x.new_zeros((s, b, n))
    g_task = torch.zeros_like(tr.ebar[:, 0])
    g_out = x.new_zeros((s, n, net.n_out))
    ys = []
    for t in range(t_steps):
        pre = torch.cat([x[t], state.z], dim=-1)
        state, psi = rsnn_step(state, x[t] @ w_in, w_rec, p)
        y = readout_step(y, state.z, w_out, kappa)
        tr, e_sum = step(tr, e_sum, pre, psi, p, kappa, has_alif, syn)
        zbar = torch.lerp(state.z, zbar, kappa)
        z_count = z_count + state.z
        if t >= t0:
            tt = tgt if obj.kind == "classification" else tgt[t - t0]
            err = output_error(y, tt, obj.kind)
            learning = signal.step(err, t)
            g_task = g_task + syn.contract_post(learning, tr.ebar)
            g_out = g_out + torch.einsum("sbj,sbm->sjm", zbar, err)
            ys.append(y)
    bs = obj.batch_scale(b)
    reg = regulariser_coefficient(z_count, t_steps, obj)
    g = syn.to_dense(bs * (obj.grad_time_scale() * g_task + syn.contract_post(reg, e_sum)))
    grads = Params(g[:, :n_in], g[:, n_in:], bs * obj.time_scale() * g_out)
    y_w = torch.stack(ys)
    return Gradients(masked(net, grads), task_loss(y_w, tgt, obj),
                     rate_regulariser(z_count / t_steps, obj), y_w)


def backward_filter(learning: torch.Tensor, t_steps: int, kappa: float) -> torch.Tensor:
    """L̃(t) = (1−κ) Σ_{s≥t} κ^{s−t} L(s) for all t, from L on the window (the last W steps):
    a backward scan over the window, then pure decay L̃(t) = κ^{t0−t} L̃(t0) before it."""
    w = learning.shape[0]
    t0 = t_steps - w
    out = learning.new_empty((t_steps, *learning.shape[1:]))
    nxt = torch.zeros_like(learning[0])
    for t in range(t_steps - 1, t0 - 1, -1):
        nxt = torch.lerp(learning[t - t0], nxt, kappa, out=out[t])
    decay = kappa ** torch.arange(t0, 0, -1, device=out.device, dtype=torch.float64)
    out[:t0] = decay.to(out.dtype).reshape(-1, *[1] * (out.dim() - 1)) * out[t0]
    return out


def adjoint_scan(psi: torch.Tensor, learning: torch.Tensor, reg: torch.Tensor,
                 net: Network, obj: Objective, bs: float) -> torch.Tensor:
    """Backward scan over per-neuron quantities → h̃ (T, S, B, N) with g_ij = Σ_t pre_i h̃_j.

    c(t) = bs (τ_𝒲 L̃(t) + reg) is the weight of e(t);
    h(t) = ψ(t) c(t) + s_a ψ(t) μ(t+1),   μ(t) = −β ψ(t) c(t) + (ρ − s_a β ψ(t)) μ(t+1)  (ALIF adjoint);
    acc(t) = α acc(t+1) + h(t),   h̃ = s_in acc                                         (ε^v adjoint).
    """
    p = net.neuron
    psic = psi * (bs * (obj.grad_time_scale() * backward_filter(learning, psi.shape[0], net.kappa) + reg))
    acc = torch.empty_like(psi)
    nxt = torch.zeros_like(psi[0])
    if net.has_alif:
        sa_psi = p.adapt_scale * psi
        q = -p.beta * psic
        d = p.rho - p.beta * sa_psi
        mu = torch.zeros_like(nxt)
        for t in range(psi.shape[0] - 1, -1, -1):
            h = torch.addcmul(psic[t], sa_psi[t], mu)
            mu = torch.addcmul(q[t], d[t], mu)
            nxt = torch.add(h, nxt, alpha=p.alpha, out=acc[t])
    else:
        for t in range(psi.shape[0] - 1, -1, -1):
            nxt = torch.add(psic[t], nxt, alpha=p.alpha, out=acc[t])
    return acc.mul_(p.input_scale)


def filtered_spikes(z: torch.Tensor, window: int, kappa: float) -> torch.Tensor:
    """z̄(t) = κ z̄(t−1) + (1−κ) z(t) on the window (W, S, B, N): the state before the window
    as one weighted sum, then a scan over the window."""
    t0 = z.shape[0] - window
    weights = (1 - kappa) * kappa ** torch.arange(t0 - 1, -1, -1, device=z.device, dtype=torch.float64)
    zbar = torch.einsum("t,tsbn->sbn", weights.to(z.dtype), z[:t0])
    out = torch.empty_like(z[t0:])
    for t in range(t0, z.shape[0]):
        zbar = torch.lerp(z[t], zbar, kappa, out=out[t - t0])
    return out


def readout_gradient(z: torch.Tensor, err_w: torch.Tensor, net: Network, obj: Objective,
                     bs: float) -> torch.Tensor:
    """g^out_jm = b_s τ Σ_{t∈𝒲} z̄_j(t) err_m(t) (exact: W_out acts within the step), (S, N, n_out)."""
    return bs * obj.time_scale() * contract(filtered_spikes(z, obj.window, net.kappa), err_w)


def contract(pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """Σ_{t,b} pre[t,s,b,i] post[t,s,b,j] as one batched matrix product → (S, i, j)."""
    t, s, b, i = pre.shape
    return torch.bmm(pre.permute(1, 3, 0, 2).reshape(s, i, t * b),
                     post.permute(1, 0, 2, 3).reshape(s, t * b, post.shape[-1]))


def eprop_factorised(net: Network, x: torch.Tensor, target: torch.Tensor, obj: Objective,
                     modulator: Modulator | None, trial_keys: torch.Tensor) -> Gradients:
    """e-prop as a backward scan over per-neuron quantities plus one product per matrix."""
    t_steps, s, b, _ = x.shape
    t0 = t_steps - obj.window
    rec = forward(net, x)
    tgt = window_target(target, obj.kind, t0)
    y_w = rec.y[t0:]
    err_w = output_error(y_w, tgt, obj.kind)
    signal = LearningSignal(net, modulator, trial_keys)
    learning = torch.stack([signal.step(err_w[t - t0], t) for t in range(t0, t_steps)])
    z_count = rec.z.sum(0)
    bs = obj.batch_scale(b)
    h = adjoint_scan(rec.psi, learning, regulariser_coefficient(z_count, t_steps, obj), net, obj, bs)
    z_prev = torch.cat([torch.zeros_like(rec.z[:1]), rec.z[:-1]])
    grads = Params(contract(x, h), contract(z_prev, h), readout_gradient(rec.z, err_w, net, obj, bs))
    return Gradients(masked(net, grads), task_loss(y_w, tgt, obj),
                     rate_regulariser(z_count / t_steps, obj), y_w)
