"""How the trainer computes: eagerly, or on CUDA by replaying captured CUDA graphs.

A training iteration is thousands of small kernels (one time step each), so on a GPU the
Python and launch overhead dominates. The graphed engine captures the whole gradient
computation (forward, learning signal, backward scan, products) once per input shape and
replays it (:class:`..graphs.Graphed`); results are identical to the eager path (tested on
the GPU), which stays the readable reference.
"""
from __future__ import annotations

import torch

from ..float.rsnn import Network, Params, Record, forward
from ..graphs import Graphed
from ..rules import Gradients, Rule, gradient_fn


class Engine:
    """Gradients and forward passes of a rule's networks; graphed on CUDA if ``graphs``."""

    def __init__(self, rule: Rule, net: Network, graphs: bool = True):
        self.net = net
        self.grad = gradient_fn(rule, net)
        self.graphs = graphs and net.device.type == "cuda"
        self.cache: dict = {}

    def _fn(self, kind: str):
        net = self.net
        if kind == "grad":
            return lambda w_in, w_rec, w_out, x, target, keys: self.grad(
                net.with_params(Params(w_in, w_rec, w_out)), x, target, keys)
        return lambda w_in, w_rec, w_out, x: Record(*(t for t in forward(
            net.with_params(Params(w_in, w_rec, w_out)), x)[:3]))

    def _run(self, kind: str, params: Params, *tensors):
        if not self.graphs:
            return self._fn(kind)(*params, *tensors)
        key = (kind, *(tuple(t.shape) for t in tensors))
        if key not in self.cache:
            self.cache[key] = Graphed(self._fn(kind), (*params, *tensors))
        return self.cache[key](*params, *tensors)

    def gradients(self, params: Params, x, target, keys) -> Gradients:
        return self._run("grad", params, x, target, keys)

    @torch.no_grad()
    def forward(self, params: Params, x: torch.Tensor) -> Record:
        return self._run("forward", params, x)
