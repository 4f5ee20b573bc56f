"""Backend-neutral network structure: grid placement, torus distance, masks, initial weights.

Everything here follows MODEL.md §2 and §3.3. Matrices are stored (pre, post): entry (i, j) is
the synapse i → j. Each structural draw uses its own random key derived from
(seed, component name), so changing one component never shifts another, and the counter-based
draws of :mod:`lava_diffmod.rng` build the same network on any device or torch version.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import Config, NetworkConfig
from .. import rng

HE_TRUNC_STD = 0.8796256610342398  # std of a standard normal truncated to [-2, 2]


def key(seed: int, component: str) -> int:
    """The random key of one structural component of network ``seed``."""
    return rng.name_key(seed, component)


def place_neurons(n: int, h: int, w: int, k: int) -> torch.Tensor:
    """Distinct grid cells p_j = row·w + col for n neurons, uniform without replacement."""
    return rng.permutation(k, (h * w,))[:n]


def coordinates(cells: torch.Tensor, h: int, w: int, max_coord_norm: bool = True):
    """x_j = col_j / w, y_j = row_j / h; with the max-coordinate quirk divided by the max
    over placed cells, per axis (so col 0 and col w−1 coincide on a full grid)."""
    x = (cells % w).double() / w
    y = (cells // w).double() / h
    if max_coord_norm:
        x = x / x.max() if x.max() > 0 else x
        y = y / y.max() if y.max() > 0 else y
    return x, y


def torus_sq_distance(x: torch.Tensor, y: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
    """d²_ij = d_x² + d_y² with d = min(|Δ|, 1 − |Δ|) per axis on the unit torus, for pre i in
    ``rows`` and every post j."""
    dx = (x[rows, None] - x[None, :]).abs()
    dy = (y[rows, None] - y[None, :]).abs()
    dx = torch.minimum(dx, 1 - dx)
    dy = torch.minimum(dy, 1 - dy)
    return dx ** 2 + dy ** 2


def local_connection_probability(d2: torch.Tensor, sigma: float) -> torch.Tensor:
    """P(M_rec[i,j] = 1) = 1 / (1 + exp(d²_ij / (4σ))), logistic in d², 0.5 at d = 0."""
    return torch.sigmoid(-d2 / (4 * sigma))


BLOCK = 1 << 22   # elements per row block of an N × N draw: memory stays O(BLOCK), not O(N²)


def by_rows(shape: tuple[int, int], rows_fn) -> torch.Tensor:
    """A (R, C) matrix from ``rows_fn(r0, r1)`` → rows r0 … r1−1, built in blocks of ≤ BLOCK
    elements; the counter-based draws make the blocks equal to one whole-matrix draw."""
    r, c = shape
    step = max(1, BLOCK // max(c, 1))
    return torch.cat([rows_fn(r0, min(r, r0 + step)) for r0 in range(0, r, step)]) if r else \
        torch.zeros(shape, dtype=torch.float64)


def exact_count_mask(shape: tuple[int, ...], density: float, k: int) -> torch.Tensor:
    """A 0/1 mask with exactly ⌊density·N⌋ ones at uniformly drawn entries (N = numel)."""
    n = math.prod(shape)
    ones = int(math.floor(density * n + 1e-9))
    mask = torch.zeros(n, dtype=torch.float64)
    mask[rng.permutation(k, (n,))[:ones]] = 1.0
    return mask.reshape(shape)


def recurrent_mask(cfg: NetworkConfig, cells: torch.Tensor, k: int) -> torch.Tensor:
    """M_rec (pre, post) for the configured connectivity; the diagonal is always 0."""
    n = cells.numel()
    h, w = cfg.grid_h, cfg.grid_w
    if cfg.connectivity == "local":
        x, y = coordinates(cells, h, w, cfg.max_coord_norm)

        def rows(r0, r1):
            p = local_connection_probability(torus_sq_distance(x, y, slice(r0, r1)), cfg.sigma)
            return (rng.uniform53(k, (r1 - r0, n), start=r0 * n) < p).double()
    elif cfg.connectivity == "sparse":
        def rows(r0, r1):
            return (rng.uniform53(k, (r1 - r0, n), start=r0 * n) < cfg.rec_density).double()
    elif cfg.connectivity == "full":
        def rows(r0, r1):
            return torch.ones((r1 - r0, n), dtype=torch.float64)
    else:  # nearest_neighbours: the Moore neighbourhood of each neuron's cell on the grid torus
        row, col = cells // w, cells % w

        def rows(r0, r1):
            dr = (row[r0:r1, None] - row[None, :]).remainder(h)
            dc = (col[r0:r1, None] - col[None, :]).remainder(w)
            return (((dr == 0) | (dr == 1) | (dr == h - 1)) & ((dc == 0) | (dc == 1) | (dc == w - 1))).double()
    mask = by_rows((n, n), rows)
    mask.fill_diagonal_(0.0)
    return mask


def initial_weights(shape: tuple[int, int], init: str, k: int) -> torch.Tensor:
    """He: N(0,1) truncated to [−2, 2], scaled to variance 2/fan_in; Gaussian: std 1/√fan_in.
    fan_in is the pre dimension (rows) before masking."""
    fan_in, c = shape
    if init == "he":
        def rows(r0, r1):
            return rng.truncated_normal(k, (r1 - r0, c), -2.0, 2.0, start=r0 * c) * \
                (math.sqrt(2.0 / fan_in) / HE_TRUNC_STD)
    else:
        def rows(r0, r1):
            return rng.normal(k, (r1 - r0, c), start=r0 * c) / math.sqrt(fan_in)
    return by_rows(shape, rows)


def readout_mask(cfg: NetworkConfig, n_rec: int, n_out: int, k: int) -> torch.Tensor:
    """M_out: ⌊density·n_rec·n_out⌋ single synapses, or (per_neuron) ⌊density·n_rec⌋ whole rows."""
    if cfg.readout_mode == "per_synapse":
        return exact_count_mask((n_rec, n_out), cfg.out_density, k)
    rows = exact_count_mask((n_rec,), cfg.out_density, k)
    return rows[:, None].expand(n_rec, n_out).clone()


def feedback_matrix(cfg: NetworkConfig, w_out_masked: torch.Tensor, k: int, mask_k: int) -> torch.Tensor:
    """Feedback B (n_rec, n_out): symmetric (initial masked W_out), or random dense/sparse ·g_fb.

    For ``symmetric_tracking`` this is the initial value; the rule refreshes it from W_out."""
    if cfg.feedback in ("symmetric_init", "symmetric_tracking"):
        return w_out_masked.clone()
    xi = rng.normal(k, tuple(w_out_masked.shape))
    if cfg.feedback == "random_sparse":
        xi = xi * (rng.uniform53(mask_k, tuple(xi.shape)) < cfg.feedback_density)
    return cfg.gain_fb * xi


@dataclass(frozen=True)
class Structure:
    """One network's structure and initial weights (float64, CPU). Shapes (pre, post)."""
    cells: torch.Tensor        # (N,) grid cell of each neuron
    m_in: torch.Tensor         # (n_in, N)
    m_rec: torch.Tensor        # (N, N), zero diagonal
    m_out: torch.Tensor        # (N, n_out)
    w_in: torch.Tensor
    w_rec: torch.Tensor
    w_out: torch.Tensor
    feedback: torch.Tensor     # (N, n_out)
    shuffle: torch.Tensor      # (h·w,) permutation for the fixed shuffled-diffusion control


def build_structure(cfg: Config, n_in: int, n_out: int, seed: int) -> Structure:
    """Draw the structure of network ``seed`` (MODEL.md §2): 7 structural draws + weights."""
    net = cfg.network
    n = cfg.n_rec
    cells = place_neurons(n, net.grid_h, net.grid_w, key(seed, "placement"))
    m_rec = recurrent_mask(net, cells, key(seed, "recurrent_mask"))
    m_in = exact_count_mask((n_in, n), net.in_density, key(seed, "input_mask"))
    m_out = readout_mask(net, n, n_out, key(seed, "readout_mask"))
    w_in = net.gain_in * initial_weights((n_in, n), net.init, key(seed, "w_in")) * m_in
    w_rec = net.gain_rec * initial_weights((n, n), net.init, key(seed, "w_rec")) * m_rec
    w_out = net.gain_out * initial_weights((n, n_out), net.init, key(seed, "w_out")) * m_out
    fb = feedback_matrix(net, w_out, key(seed, "feedback"), key(seed, "feedback_mask"))
    shuffle = rng.permutation(key(seed, "shuffle"), (net.grid_h * net.grid_w,))
    return Structure(cells, m_in, m_rec, m_out, w_in, w_rec, w_out, fb, shuffle)
