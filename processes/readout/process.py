"""Leaky readout, output error and fixed feedback into the modulator.

Per step: receive the spikes ``s_in`` (same step, no Dense delay) and the target ``target_in``
(regression: y*(t); classification: the label one-hot), update y(t) = κ y(t−1) + (1−κ) W_out z(t),
and in the learning window send the release Σ_m B[j, m] err_m(t) on ``release_out`` (zeros
elsewhere), while learning W_out with the readout trace z̄ and the error. ``weights`` follow
Lava's (post, pre) convention: (n_out, n_rec).
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class Readout(AbstractProcess):
    def __init__(self, *, weights, spec, name: str | None = None):
        n_out, n_rec = weights.shape
        super().__init__(weights=weights, spec=spec, name=name)
        self.s_in = InPort(shape=(n_rec,))
        self.target_in = InPort(shape=(n_out,))
        self.release_out = OutPort(shape=(n_rec,))
        self.weights = Var(shape=(n_out, n_rec), init=weights)
        self.y = Var(shape=(n_out,), init=0)           # readout (fixed: units s_o)
        self.x1 = Var(shape=(n_rec,), init=0)          # readout trace z̄ (fixed: units s_z)
