"""Input source: replays a task's spike trains and targets, one step per time step.

``x`` (steps, n_in) spikes and ``target`` (steps, n_out): y*(t) for regression, the label one-hot
for classification; trials follow each other. The fixed_pt model sends integer spikes, the
floating_pt model floats.
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess


class TaskSource(AbstractProcess):
    def __init__(self, *, x, target, name: str | None = None):
        if x.shape[0] != target.shape[0]:
            raise ValueError(f"TaskSource: x has {x.shape[0]} steps, target {target.shape[0]}; they must match")
        super().__init__(x=x, target=target, name=name)
        self.s_out = OutPort(shape=(x.shape[1],))
        self.target_out = OutPort(shape=(target.shape[1],))
