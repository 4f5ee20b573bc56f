"""A dense learning connection with per-synapse eligibility (the tag) and the e-prop update.

Serves the input and the recurrent weights, with any post-synaptic neuron that sends its spikes
(``s_in_bap``), ψ (``s_in_y1``) and the sign-split learning signal (``s_in_y2`` = L⁺,
``s_in_y3`` = L⁻) every step, as :class:`~processes.alif.process.ALIF` does.

Per step: send W·s(t − delay) on ``a_out`` (a Lava Dense has delay 1: it sends what it received
the step before), receive the pre spikes and the post signals, update the pre trace with the
spikes that reached the post neurons, then the tag every ``t_epoch`` steps and, in the learning
window, the weights (on chip) or their accumulator (host write-back at the end of the trial).
``weights`` follow Lava's (post, pre) convention.
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class LearningConnection(AbstractProcess):
    def __init__(self, *, weights, spec, part: str, pre_offset: int, delay: int = 1, name: str | None = None):
        if part not in ("in", "rec"):
            raise ValueError(f"LearningConnection: part = {part!r}: must be in or rec")
        if not 0 <= delay <= 8:
            raise ValueError(f"LearningConnection: delay = {delay}: must be in [0, 8]")
        n_post, n_pre = weights.shape
        super().__init__(weights=weights, spec=spec, part=part, pre_offset=pre_offset, delay=delay, name=name)
        self.s_in = InPort(shape=(n_pre,))
        self.a_out = OutPort(shape=(n_post,))
        self.s_in_bap = InPort(shape=(n_post,))
        self.s_in_y1 = InPort(shape=(n_post,))
        self.s_in_y2 = InPort(shape=(n_post,))
        self.s_in_y3 = InPort(shape=(n_post,))
        self.weights = Var(shape=(n_post, n_pre), init=weights)
        self.x1 = Var(shape=(n_pre,), init=0)          # pre trace (fixed: x1; float: ε^v)
        self.tag = Var(shape=(n_post, n_pre), init=0)  # filtered eligibility (fixed: tag t; float: ē)
