r"""Optimisers as small pure transforms over :class:`~lava_diffmod.float.rsnn.Params` (optax style).

Adam (PyTorch ε placement, the default):
    m ← β1 m + (1−β1) g,  v ← β2 v + (1−β2) g²,  θ ← θ − lr · m̂ / (√v̂ + ε),
    m̂ = m/(1−β1^t), v̂ = v/(1−β2^t).
Adam (TF1 ε placement, Bellec's code):
    θ ← θ − lr_t · m / (√v + ε),  lr_t = lr √(1−β2^t) / (1−β1^t).
SGD: θ ← θ − lr · g.

Everything is elementwise, so S networks stacked on a leading axis are S independent optimisers.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from ..float.rsnn import Params


class OptState(NamedTuple):
    step: int
    m: Params | None
    v: Params | None


class Optimizer(NamedTuple):
    init: Callable[[Params], OptState]
    update: Callable[[Params, OptState, Params], tuple[Params, OptState]]


def sgd(lr: float) -> Optimizer:
    def init(params):
        return OptState(0, None, None)

    def update(grads, state, params):
        return Params(*(p - lr * g for p, g in zip(params, grads))), OptState(state.step + 1, None, None)

    return Optimizer(init, update)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_mode: str = "pytorch") -> Optimizer:
    if eps_mode not in ("pytorch", "tf1"):
        raise ValueError(f"adam eps_mode = {eps_mode!r}: must be pytorch or tf1")

    def init(params):
        zeros = Params(*(torch.zeros_like(p) for p in params))
        return OptState(0, zeros, Params(*(torch.zeros_like(p) for p in params)))

    def update(grads, state, params):
        t = state.step + 1
        m = Params(*(b1 * m + (1 - b1) * g for m, g in zip(state.m, grads)))
        v = Params(*(b2 * v + (1 - b2) * g * g for v, g in zip(state.v, grads)))
        if eps_mode == "pytorch":
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            new = (p - lr * (mi / c1) / ((vi / c2).sqrt() + eps) for p, mi, vi in zip(params, m, v))
        else:
            lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            new = (p - lr_t * mi / (vi.sqrt() + eps) for p, mi, vi in zip(params, m, v))
        return Params(*new), OptState(t, m, v)

    return Optimizer(init, update)


def from_config(train) -> Optimizer:
    """The optimiser of a :class:`~lava_diffmod.config.TrainConfig`."""
    if train.optimizer == "sgd":
        return sgd(train.lr)
    return adam(train.lr, train.beta1, train.beta2, train.eps, train.adam_eps_mode)
