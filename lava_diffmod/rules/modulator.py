r"""The diffusing neuromodulator: a transform of the direct learning signal (MODEL.md §4, §8).

State: C concentration grids G_c ∈ R^{h×w} per trial, zero at the trial start. Per step t
("aligned" order):

1. diffuse and decay: box  G̃_c[r,c'] = k_c/(2ρ+1)² Σ_{|δr|,|δc|≤ρ} G_c(t−1)[r+δr, c'+δc] (periodic),
   or Laplacian  G̃_c = k_c (G_c + D ΔG_c) (5-point, periodic, n_sub sub-steps);
2. release:  G_c(t)[p_j] = G̃_c[p_j] + Σ_m R_c[j,m] B[j,m] err_m(t);
3. read out at the own cell:  L_j(t) = Σ_c q_c G_c(t)[p_j].

Total mass decays exactly as k^t on the torus. With k = 0 the field holds only the current
release, so L = L^dir: plain e-prop. The shuffled controls conjugate step 1 with a permutation
Π of the cells (G̃ = Π⁻¹ K ⊛ Π G): one Π per network (``fixed``) or a fresh one per trial and
step (``per_step``); ``legacy`` applies a per-trial Π after diffusing and never inverts it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import rng
from ..config import DiffusionConfig


@dataclass(frozen=True)
class Modulator:
    """Constants of the field for S networks."""
    grid: tuple[int, int]
    cells: torch.Tensor            # (S, N) cell of every neuron
    k: tuple[float, ...]           # retention per channel
    radius: tuple[int, ...]        # box radius per channel
    q: torch.Tensor                # (C,) readout weight per channel
    routing: torch.Tensor          # (C, N, n_out) 0/1: output m releases into channel c
    kernel: str = "box"            # "box" | "laplacian"
    D: float = 1 / 9
    n_sub: int = 1
    shuffle: str = "none"          # "none" | "fixed" | "per_step" | "legacy"
    perm: torch.Tensor | None = None  # (S, h·w) for "fixed"

    @property
    def n_channels(self) -> int:
        return len(self.k)


def routing_matrix(channels: str, is_alif: torch.Tensor, n_out: int, dtype) -> torch.Tensor:
    """R (C, N, n_out): ``single`` all ones; ``per_output`` output m → channel m;
    ``cell_type`` LIF units → channel 0, ALIF units → channel 1."""
    n = is_alif.numel()
    ones = torch.ones((n, n_out), dtype=dtype, device=is_alif.device)
    if channels == "single":
        return ones[None]
    if channels == "per_output":
        return torch.eye(n_out, dtype=dtype, device=is_alif.device)[:, None, :].expand(n_out, n, n_out).clone()
    alif = is_alif.to(dtype)[:, None]
    return torch.stack([ones * (1 - alif), ones * alif])


def modulator_from_config(cfg: DiffusionConfig, net) -> Modulator:
    """Field constants for network ``net`` (a :class:`~lava_diffmod.float.rsnn.Network`)."""
    routing = routing_matrix(cfg.channels, net.is_alif, net.n_out, net.dtype)
    c = routing.shape[0]
    k = tuple(cfg.channel_k) if cfg.channel_k else (cfg.k,) * c
    radius = tuple(cfg.channel_radius) if cfg.channel_radius else (cfg.radius,) * c
    q = torch.tensor(cfg.channel_q if cfg.channel_q else [1.0] * c, dtype=net.dtype, device=net.device)
    for name, values in (("channel_k", k), ("channel_radius", radius), ("channel_q", q)):
        if len(values) != c:
            raise ValueError(f"diffusion.{name} has {len(values)} entries; "
                             f"channels = {cfg.channels!r} needs {c}")
    return Modulator(grid=net.grid, cells=net.cells, k=k, radius=radius, q=q, routing=routing,
                     kernel=cfg.kernel, D=cfg.D, n_sub=cfg.n_sub, shuffle=cfg.shuffle,
                     perm=net.shuffle if cfg.shuffle == "fixed" else None)


def _periodic_sum(g: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Σ_{|δ|≤ρ} roll(g, δ) along ``dim``."""
    out = g
    for d in range(1, radius + 1):
        out = out + torch.roll(g, d, dims=dim) + torch.roll(g, -d, dims=dim)
    return out


def box_diffuse(g: torch.Tensor, k: float, radius: int) -> torch.Tensor:
    """k/(2ρ+1)² · periodic box sum over the (2ρ+1)² neighbourhood, on (..., h, w)."""
    box = _periodic_sum(_periodic_sum(g, radius, -1), radius, -2)
    return box * (k / (2 * radius + 1) ** 2)


def laplacian_diffuse(g: torch.Tensor, k: float, D: float, n_sub: int) -> torch.Tensor:
    """n_sub sub-steps of G ← k^{1/n_sub} (G + (D/n_sub) ΔG), Δ the periodic 5-point Laplacian."""
    k_sub, d_sub = k ** (1.0 / n_sub), D / n_sub
    for _ in range(n_sub):
        lap = (torch.roll(g, 1, -2) + torch.roll(g, -1, -2) + torch.roll(g, 1, -1)
               + torch.roll(g, -1, -1) - 4 * g)
        g = k_sub * (g + d_sub * lap)
    return g


def diffuse(g: torch.Tensor, mod: Modulator) -> torch.Tensor:
    """Step 1 on flat grids (S, B, C, h·w), channel by channel."""
    h, w = mod.grid
    grids = g.reshape(*g.shape[:-1], h, w)
    out = []
    for c in range(mod.n_channels):
        gc = grids[:, :, c]
        if mod.kernel == "box":
            out.append(box_diffuse(gc, mod.k[c], mod.radius[c]))
        else:
            out.append(laplacian_diffuse(gc, mod.k[c], mod.D, mod.n_sub))
    return (out[0].unsqueeze(2) if len(out) == 1 else torch.stack(out, dim=2)).reshape(g.shape)


def _permute(g: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """(Π G)[c] = G[perm[c]] along the last axis; perm broadcasts over (S, B)."""
    return g.gather(-1, perm.unsqueeze(2).expand(g.shape))


def _unpermute(g: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Π⁻¹: out[perm[c]] = G[c]."""
    return torch.empty_like(g).scatter_(-1, perm.unsqueeze(2).expand(g.shape), g)


def shuffle_perm(mod: Modulator, trial_keys: torch.Tensor, t: int) -> torch.Tensor | None:
    """The permutation used at step t, broadcastable to (S, B, h·w), or None."""
    hw = mod.grid[0] * mod.grid[1]
    if mod.shuffle == "fixed":
        return mod.perm[:, None, :]
    if mod.shuffle == "per_step":
        return rng.permutation(rng.derive(trial_keys, rng.name_key("shuffle"), t), (*trial_keys.shape, hw),
                               device=trial_keys.device)
    if mod.shuffle == "legacy":
        return rng.permutation(rng.derive(trial_keys, rng.name_key("legacy_shuffle")),
                               (*trial_keys.shape, hw), device=trial_keys.device)
    return None


def modulator_step(g: torch.Tensor, release: torch.Tensor, mod: Modulator, trial_keys: torch.Tensor,
                   t: int, diffuse_fn=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: diffuse G(t−1), release (S, B, C, N) at the own cells, read the own cells.

    Returns the field and the per-channel local values (S, B, C, N); L = Σ_c q_c local_c.
    ``diffuse_fn`` replaces the float diffusion (the integer field of the fixed backend)."""
    diffuse_fn = diffuse_fn or (lambda field: diffuse(field, mod))
    perm = shuffle_perm(mod, trial_keys, t)
    if perm is None:
        g = diffuse_fn(g)
    elif mod.shuffle == "legacy":
        g = _permute(diffuse_fn(g), perm)
    else:
        g = _unpermute(diffuse_fn(_permute(g, perm)), perm)
    idx = mod.cells[:, None, None, :].expand(release.shape)
    g = g.scatter_add(-1, idx, release)
    return g, g.gather(-1, idx)


def modulator_init(s: int, b: int, mod: Modulator, like: torch.Tensor) -> torch.Tensor:
    """Empty field (S, B, C, h·w)."""
    return like.new_zeros((s, b, mod.n_channels, mod.grid[0] * mod.grid[1]))
