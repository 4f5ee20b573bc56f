r"""Where per-synapse learning state lives: a dense (pre × post) block or a list of synapses.

e-prop's ε^a_ij, ē_ij and Σ_t e_ij exist per synapse and per trial, (S, B, P, N) when dense.
With local connectivity only a fraction ρ_M of the P·N entries are synapses (≈ 10 % for the
paper's σ = 0.012 at any N), so a 10,000-neuron network would hold B·10⁸ dense entries per
trace, ~90 % of them for synapses that do not exist. :class:`SparseSynapses` keeps the traces
at the E = nnz(M) synapses only, (S, B, E), and gathers per-neuron quantities onto them:

.. math::

    \mathrm{pre}(u)_{bk} = u_{b,i_k}, \qquad \mathrm{post}(v)_{bk} = v_{b,j_k}, \qquad
    g_{i_k j_k} = \sum_b \mathrm{post}(L)_{bk}\, \bar e_{bk}

Both layouts offer the same operations, so one e-prop code (float, and the fixed-point
emulator's) serves both; the results agree to float rounding, the emulator's integers exactly
(tested). Seeds with fewer synapses than the largest are padded with synapses whose presynaptic
value is always 0 (an extra zero column), so their traces, tags and gradients stay exactly 0.
"""
from __future__ import annotations

import torch

STORAGES = ("auto", "dense", "sparse")
AUTO_MAX_DENSITY = 0.5       # above this the gathers cost more than the saved entries


class DenseSynapses:
    """Per-synapse state as (S, B, P, N) blocks: pre(u) = u[..., :, None], post(v) = v[..., None, :]."""

    def __init__(self, n_pre: int, n_post: int):
        self.n_pre, self.n_post = n_pre, n_post

    def zeros(self, s: int, b: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros((s, b, self.n_pre, self.n_post))

    def pre(self, u: torch.Tensor) -> torch.Tensor:
        return u[..., :, None]

    def post(self, v: torch.Tensor) -> torch.Tensor:
        return v[..., None, :]

    def contract_post(self, v: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
        """Σ_b v_bj syn_bij → (S, P, N)."""
        return torch.einsum("sbj,sbij->sij", v, syn)

    def to_dense(self, g: torch.Tensor) -> torch.Tensor:
        return g

    def element_index(self, b: int) -> None:
        """Per-element random streams index the dense (B, P, N) block: nothing to gather."""
        return None


class SparseSynapses:
    """Per-synapse state as (S, B, E) lists over the nonzeros of the masks, (pre_k, post_k)."""

    def __init__(self, mask: torch.Tensor):
        """``mask`` (S, P, N): 1 where a synapse exists."""
        s, self.n_pre, self.n_post = mask.shape
        nz = [m.flatten().nonzero().squeeze(1) for m in mask]
        e = max(1, max(len(k) for k in nz))
        flat = torch.zeros((s, e), dtype=torch.int64, device=mask.device)
        self.valid = torch.zeros((s, e), dtype=mask.dtype, device=mask.device)
        for i, k in enumerate(nz):
            flat[i, :len(k)] = k
            self.valid[i, :len(k)] = 1
        self.flat = flat
        self.pre_idx = torch.where(self.valid > 0, flat // self.n_post, self.n_pre)   # pads: the zero column
        self.post_idx = flat % self.n_post

    @property
    def n_synapses(self) -> int:
        return self.flat.shape[1]

    def zeros(self, s: int, b: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros((s, b, self.n_synapses))

    @staticmethod
    def _gather(u: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """u (S|1, B|1, ·) or (·,) → u at ``index`` (S, E) along the last axis, (S, B|1, E)."""
        while u.dim() < 3:
            u = u[None]
        u = u.expand(index.shape[0], *u.shape[1:])
        return u.gather(-1, index[:, None, :].expand(-1, u.shape[1], -1))

    def pre(self, u: torch.Tensor) -> torch.Tensor:
        """u (S, B, P) at each synapse's pre unit; 0 at the pads."""
        return self._gather(torch.cat([u, u.new_zeros((*u.shape[:-1], 1))], -1), self.pre_idx)

    def post(self, v: torch.Tensor) -> torch.Tensor:
        return self._gather(v, self.post_idx)

    def contract_post(self, v: torch.Tensor, syn: torch.Tensor) -> torch.Tensor:
        """Σ_b v_{b,post_k} syn_bk → (S, E)."""
        return (self.post(v) * syn).sum(1)

    def to_dense(self, g: torch.Tensor) -> torch.Tensor:
        """(S, E) per-synapse values → (S, P, N), zero off the synapses."""
        out = g.new_zeros((g.shape[0], self.n_pre * self.n_post))
        out.scatter_add_(1, self.flat, g * self.valid.to(g.dtype))
        return out.reshape(-1, self.n_pre, self.n_post)

    def element_index(self, b: int) -> torch.Tensor:
        """(S, B, E) flat index of each synapse in a dense (B, P, N) block: the per-element
        random streams then draw the same number for a synapse as the dense layout does."""
        block = torch.arange(b, device=self.flat.device)[None, :, None] * (self.n_pre * self.n_post)
        return block + self.flat[:, None, :]


def synapses(mask: torch.Tensor, storage: str = "auto"):
    """The layout for per-synapse state of ``mask`` (S, P, N), built once (host work).

    ``auto``: sparse when at most half of the entries are synapses (measured on the CPU at the
    paper's size, N = 100 with ~10 % density: online e-prop 2.84× and the fixed emulator 2.63×
    faster than dense, benchmarks/results/cpu_throughput.json); else dense."""
    if storage not in STORAGES:
        raise ValueError(f"rule.storage = {storage!r}: must be one of {', '.join(STORAGES)}")
    s, p, n = mask.shape
    if storage == "auto":
        storage = "sparse" if float(mask.count_nonzero()) <= AUTO_MAX_DENSITY * mask.numel() else "dense"
    return SparseSynapses(mask) if storage == "sparse" else DenseSynapses(p, n)
