"""The diffusing neuromodulator: one compartment per grid cell (MODEL.md §4).

Per step in the learning window: receive the direct learning signals on ``release_in`` (one per
neuron), diffuse and decay the field, release each signal at its neuron's cell and send every
neuron its local concentration on ``a_out``. Outside the window the field rests and zeros are sent.
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class Modulator(AbstractProcess):
    def __init__(self, *, n_neurons: int, spec, name: str | None = None):
        h, w = spec.modulator.grid
        super().__init__(n_neurons=n_neurons, spec=spec, name=name)
        self.release_in = InPort(shape=(n_neurons,))
        self.a_out = OutPort(shape=(n_neurons,))
        self.field = Var(shape=(h * w,), init=0)     # concentration per cell (fixed: units s_G)
