r"""The two small float nets of the Dopamine experiments (RULES.md B.6), S seeds on a leading axis.

XOR MLP (2-H-1):   h = tanh(x W_1 + b_1),  p = σ(h W_2 + b_2),  loss = BCE(p, y)
Forecaster (vanilla ReLU RNN, linear head on the last hidden state):
    h_t = relu(h_{t-1} W_hh + x_t W_xh + b),  h_0 = 0,   ŷ = h_T W_out + b_out,  loss = mean (ŷ − y)²
(row-vector layout, W (S, in, out); ρ(W_hh) is layout-independent).

Initial weights are drawn from :mod:`lava_diffmod.rng` keyed by (seed, name): U(±1/√fan_in) as
PyTorch's Linear, and W_hh ~ N(0, 1/H) (spectral radius ≈ 1 by the circular law).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch

from .. import rng


class MLPParams(NamedTuple):
    w1: torch.Tensor    # (S, n_in, H)
    b1: torch.Tensor    # (S, H)
    w2: torch.Tensor    # (S, H, 1)
    b2: torch.Tensor    # (S, 1)


class RNNParams(NamedTuple):
    w_xh: torch.Tensor  # (S, n_in, H)
    w_hh: torch.Tensor  # (S, H, H)
    b: torch.Tensor     # (S, H)
    w_out: torch.Tensor  # (S, H, n_out)
    b_out: torch.Tensor  # (S, n_out)


def _keys(seeds: Sequence[int], net: str, name: str) -> torch.Tensor:
    return torch.tensor([rng.name_key(s, net, name) for s in seeds], dtype=torch.int64)


def _uniform(seeds, net, name, shape, fan_in, dtype) -> torch.Tensor:
    """U(−1/√fan_in, 1/√fan_in), shape (S, …)."""
    u = rng.uniform53(_keys(seeds, net, name), (len(seeds), *shape))
    return ((2 * u - 1) / math.sqrt(fan_in)).to(dtype)


def mlp_init(seeds: Sequence[int], hidden: int = 2, n_in: int = 2, dtype=torch.float64) -> MLPParams:
    if hidden < 1:
        raise ValueError(f"mlp.hidden = {hidden}: must be >= 1")
    return MLPParams(_uniform(seeds, "mlp", "w1", (n_in, hidden), n_in, dtype),
                     _uniform(seeds, "mlp", "b1", (hidden,), n_in, dtype),
                     _uniform(seeds, "mlp", "w2", (hidden, 1), hidden, dtype),
                     _uniform(seeds, "mlp", "b2", (1,), hidden, dtype))


def mlp_logits(p: MLPParams, x: torch.Tensor) -> torch.Tensor:
    """Output logits (S, B) for inputs x (B, n_in) shared by all seeds."""
    h = torch.tanh(torch.matmul(x, p.w1) + p.b1[:, None])
    return (torch.matmul(h, p.w2) + p.b2[:, None])[..., 0]


def bce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy per seed, (S, B) logits and (B,) 0/1 targets → (S,)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, y.expand_as(logits), reduction="none").mean(-1)


def rnn_init(seeds: Sequence[int], hidden: int, n_in: int = 3, n_out: int = 3, dtype=torch.float64) -> RNNParams:
    if hidden < 1:
        raise ValueError(f"rnn.hidden = {hidden}: must be >= 1")
    w_hh = rng.normal(_keys(seeds, "rnn", "w_hh"), (len(seeds), hidden, hidden)) / math.sqrt(hidden)
    return RNNParams(_uniform(seeds, "rnn", "w_xh", (n_in, hidden), n_in, dtype), w_hh.to(dtype),
                     _uniform(seeds, "rnn", "b", (hidden,), n_in, dtype),
                     _uniform(seeds, "rnn", "w_out", (hidden, n_out), hidden, dtype),
                     _uniform(seeds, "rnn", "b_out", (n_out,), hidden, dtype))


def rnn_predict(p: RNNParams, x: torch.Tensor) -> torch.Tensor:
    """Next-state prediction (S, B, n_out) from windows x (B, T, n_in) shared by all seeds."""
    s, h_dim = p.w_hh.shape[0], p.w_hh.shape[1]
    h = x.new_zeros((s, x.shape[0], h_dim))
    bias = p.b[:, None]
    for t in range(x.shape[1]):    # one step's drive at a time: no (T, B, H) tensor is kept
        h = torch.relu(torch.baddbmm(torch.matmul(x[:, t], p.w_xh) + bias, h, p.w_hh))
    return torch.baddbmm(p.b_out[:, None], h, p.w_out)


def mse_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per seed over trials and dimensions: (S, B, d), (B, d) → (S,)."""
    return ((pred - y) ** 2).mean((-2, -1))
