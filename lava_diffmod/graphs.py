"""Replay of captured CUDA graphs: one computation, launched as one graph instead of thousands of
small kernels (one per time step). A replay runs the very same kernels as the eager call, so the
results are identical (tested on the GPU); the eager code stays the readable reference."""
from __future__ import annotations

import torch
from torch.utils._pytree import tree_map


class Graphed:
    """Replay of a CUDA graph of ``fn(*inputs)`` for fixed input shapes. ``fn`` must not read
    tensor values on the host (no ``.item()``, no host-to-device copies): the graph holds only
    device work. Outputs (tensors in any nesting of tuples, named tuples and dicts) are cloned."""

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
        return tree_map(lambda o: o.clone() if isinstance(o, torch.Tensor) else o, self.outputs)
