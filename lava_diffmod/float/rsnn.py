"""The spatial recurrent spiking network: parameters, constants and the forward pass.

Seeds are a leading population axis S: weights are (S, pre, post), inputs (T, S, B, n_in),
states (S, B, N). Every population member is an independent network; nothing mixes across S.
A :class:`Network` is built from a config (:meth:`Network.from_config`) or from explicit arrays
(:meth:`Network.from_arrays`), so other e-prop implementations can be checked against it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..config import Config, NeuronConfig
from ..network.structure import build_structure
from .neurons import ALIFParameters, ALIFState, alif_init, alif_parameters, alif_step
from .readout import readout_step


class Params(NamedTuple):
    """The trained weights, each (S, pre, post)."""
    w_in: torch.Tensor
    w_rec: torch.Tensor
    w_out: torch.Tensor


@dataclass(frozen=True)
class Network:
    """Weights, masks, neuron constants and grid placement of S networks."""
    params: Params
    feedback: torch.Tensor      # (S, N, n_out)
    m_in: torch.Tensor          # (S, n_in, N)
    m_rec: torch.Tensor         # (S, N, N)
    m_out: torch.Tensor         # (S, N, n_out)
    neuron: ALIFParameters
    kappa: float                # readout decay exp(−dt/τ_out)
    cells: torch.Tensor         # (S, N) grid cell of every neuron
    grid: tuple[int, int]       # (h, w)
    shuffle: torch.Tensor       # (S, h·w) fixed permutation for the shuffled control
    is_alif: torch.Tensor       # (N,) bool
    has_alif: bool              # any β ≠ 0 (then e-prop keeps the ε^a traces)
    tracking_feedback: bool = False  # feedback follows W_out ⊙ M_out

    @property
    def n_seeds(self) -> int:
        return self.params.w_in.shape[0]

    @property
    def n_in(self) -> int:
        return self.params.w_in.shape[1]

    @property
    def n_rec(self) -> int:
        return self.params.w_rec.shape[1]

    @property
    def n_out(self) -> int:
        return self.params.w_out.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        return self.params.w_in.dtype

    @property
    def device(self) -> torch.device:
        return self.params.w_in.device

    def with_params(self, params: Params) -> "Network":
        return dataclasses.replace(self, params=Params(*params))

    def feedback_weights(self) -> torch.Tensor:
        """B: frozen, or W_out ⊙ M_out for tracking feedback (MODEL.md §8)."""
        return self.params.w_out * self.m_out if self.tracking_feedback else self.feedback

    def select(self, index) -> "Network":
        """The networks at population indices ``index`` (a list or slice)."""
        def take(t):
            return t[index]
        return dataclasses.replace(
            self, params=Params(*map(take, self.params)), feedback=take(self.feedback),
            m_in=take(self.m_in), m_rec=take(self.m_rec), m_out=take(self.m_out),
            cells=take(self.cells), shuffle=take(self.shuffle))

    @classmethod
    def from_config(cls, cfg: Config, seeds: list[int], n_in: int, n_out: int,
                    device="cpu", dtype=torch.float32) -> "Network":
        """S = len(seeds) networks with the structure of MODEL.md §2, one per seed."""
        structs = [build_structure(cfg, n_in, n_out, s) for s in seeds]

        def stack(name):
            return torch.stack([getattr(s, name) for s in structs]).to(device)

        def real(name):
            return stack(name).to(dtype)

        n = cfg.n_rec
        is_alif = torch.arange(n) >= cfg.neuron.n_lif
        beta = (is_alif.double() * cfg.neuron.beta).to(device=device, dtype=dtype)
        return cls(
            params=Params(real("w_in"), real("w_rec"), real("w_out")),
            feedback=real("feedback"), m_in=real("m_in"), m_rec=real("m_rec"), m_out=real("m_out"),
            neuron=alif_parameters(cfg.neuron, beta), kappa=math.exp(-cfg.neuron.dt / cfg.neuron.tau_out),
            cells=stack("cells"), grid=(cfg.network.grid_h, cfg.network.grid_w),
            shuffle=stack("shuffle"), is_alif=is_alif.to(device), has_alif=cfg.neuron.n_alif > 0 and cfg.neuron.beta != 0,
            tracking_feedback=cfg.network.feedback == "symmetric_tracking")

    @classmethod
    def from_arrays(cls, *, w_in, w_rec, w_out, feedback=None, m_in=None, m_rec=None, m_out=None,
                    beta=None, neuron: NeuronConfig | None = None, thr=None, tau_m=None,
                    tau_out=None, tau_a=None, gamma=None, n_ref=None, dt=None, cells=None,
                    grid=None, tracking_feedback: bool = False, device="cpu",
                    dtype=torch.float64) -> "Network":
        """A network from explicit arrays (numpy or torch), (pre, post) layout.

        Arrays may have a leading seed axis or not. Masks default to the nonzero pattern of the
        weights. ``beta`` is per unit (0 = LIF), default all LIF. Neuron constants come from
        ``neuron`` (a :class:`NeuronConfig`, which also holds the conventions) with keyword
        overrides ``thr, tau_m, tau_out, tau_a, gamma, n_ref, dt``. ``cells`` (N,) places units on
        a ``grid`` = (h, w) for diffusion; by default unit j sits in cell j of a 1 × N grid.
        Feedback defaults to W_out ⊙ M_out (tracking if ``tracking_feedback``).
        """
        def t(a):
            a = torch.as_tensor(a).to(device=device, dtype=dtype)
            return a if a.dim() == 3 else a[None]

        w_in, w_rec, w_out = t(w_in), t(w_rec), t(w_out)
        s, n = w_rec.shape[0], w_rec.shape[1]
        if w_rec.shape[2] != n or w_in.shape[2] != n or w_out.shape[1] != n:
            raise ValueError(f"weights: w_in {tuple(w_in.shape)}, w_rec {tuple(w_rec.shape)}, "
                             f"w_out {tuple(w_out.shape)} do not agree on N = {n} (layout (pre, post))")
        m_in = t(m_in) if m_in is not None else (w_in != 0).to(dtype)
        m_rec = t(m_rec) if m_rec is not None else (w_rec != 0).to(dtype)
        m_out = t(m_out) if m_out is not None else (w_out != 0).to(dtype)
        over = {k: v for k, v in dict(thr=thr, tau_m=tau_m, tau_out=tau_out, tau_a=tau_a,
                                      gamma=gamma, n_ref=n_ref, dt=dt).items() if v is not None}
        ncfg = dataclasses.replace(neuron or NeuronConfig(), **over)
        beta = torch.zeros(n) if beta is None else torch.as_tensor(beta)
        beta = beta.to(device=device, dtype=dtype).reshape(n)
        grid = grid or (1, n)
        cells = torch.arange(n) if cells is None else torch.as_tensor(cells)
        cells = cells.to(device=device, dtype=torch.int64).expand(s, n).clone()
        fb = w_out * m_out if feedback is None else t(feedback)
        return cls(
            params=Params(w_in, w_rec, w_out), feedback=fb, m_in=m_in, m_rec=m_rec, m_out=m_out,
            neuron=alif_parameters(ncfg, beta), kappa=math.exp(-ncfg.dt / ncfg.tau_out),
            cells=cells, grid=tuple(grid),
            shuffle=torch.arange(grid[0] * grid[1], device=device).expand(s, -1).clone(),
            is_alif=beta != 0, has_alif=bool((beta != 0).any()), tracking_feedback=tracking_feedback)


class Record(NamedTuple):
    """Per-step traces of a forward pass, each (T, S, B, ·)."""
    z: torch.Tensor
    psi: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor | None = None
    a: torch.Tensor | None = None


def input_currents(x: torch.Tensor, w_in: torch.Tensor) -> torch.Tensor:
    """Σ_i W_in[i,j] x_i(t) for all t at once: (T, S, B, n_in) → (T, S, B, N)."""
    t, s, b, n_in = x.shape
    cur = torch.bmm(x.permute(1, 0, 2, 3).reshape(s, t * b, n_in), w_in)
    return cur.reshape(s, t, b, -1).permute(1, 0, 2, 3).contiguous()


def rsnn_step(state: ALIFState, i_in: torch.Tensor, w_rec: torch.Tensor, p: ALIFParameters,
              detach_rec: bool = False, detach_reset: bool = False):
    """One network step: recurrent input from z(t−1), then the ALIF update → (state, ψ)."""
    z_prev = state.z.detach() if detach_rec else state.z
    return alif_step(state, torch.baddbmm(i_in, z_prev, w_rec), p, detach_reset)


def forward(net: Network, x: torch.Tensor, *, keep_state: bool = False, detach_rec: bool = False,
            detach_reset: bool = False) -> Record:
    """Run S networks on inputs x (T, S, B, n_in); returns z, ψ, y (and v, a if keep_state)."""
    w_in, w_rec, w_out = net.params
    p = net.neuron
    t_steps, s, b, _ = x.shape
    i_in = input_currents(x, w_in)
    state = alif_init((s, b, net.n_rec), i_in)
    y = i_in.new_zeros((s, b, net.n_out))
    zs, psis, ys, vs, as_ = [], [], [], [], []
    for t in range(t_steps):
        state, psi = rsnn_step(state, i_in[t], w_rec, p, detach_rec, detach_reset)
        y = readout_step(y, state.z, w_out, net.kappa)
        zs.append(state.z)
        psis.append(psi)
        ys.append(y)
        if keep_state:
            vs.append(state.v)
            as_.append(state.a)
    stack = torch.stack
    return Record(stack(zs), stack(psis), stack(ys),
                  stack(vs) if keep_state else None, stack(as_) if keep_state else None)
