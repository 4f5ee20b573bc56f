"""How the trainer computes: eagerly, or on CUDA by replaying captured CUDA graphs.

A training iteration is thousands of small kernels (one time step each), so on a GPU the
Python and launch overhead dominates. The graphed engine captures the whole gradient
computation (forward, learning signal, backward scan, products) once per input shape and
replays it; it runs the very same kernels as the eager path, so results are identical (tested
on the GPU). The eager path stays the readable reference.
"""
from __future__ import annotations

import torch

from ..float.rsnn import Network, Params, Record, forward
from ..rules import Gradients, Rule, gradient_fn


class Graphed:
    """Replay of a CUDA graph of ``fn(*inputs)`` for fixed input shapes; outputs are cloned."""

    def __init__(self, fn, inputs: tuple[torch.Tensor, ...], warmup: int = 2):
        self.inputs = tuple(t.clone() for t in inputs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = fn(*self.inputs)

    def __call__(self, *inputs):
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        return type(self.outputs)(*(o.clone() if isinstance(o, torch.Tensor) else o for o in self.outputs))


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
