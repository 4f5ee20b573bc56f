"""fixed_pt and floating_pt models of :class:`Modulator`."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_diffmod.fixed.steps import field_diffusion, fixed_field_step
from lava_diffmod.lava.spec import as_torch
from lava_diffmod.rules.eprop import LearningSignal

from lava_diffmod.processes.modulator.process import Modulator


class _Modulator(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.spec = proc_params["spec"]

    def run_spk(self):
        spec = self.spec
        trial, t = spec.clock(self.time_step)
        if t == 0:
            self.field[:] = 0
            self.start_trial()
        release = as_torch(self.release_in.recv())
        if spec.in_window(t) and spec.learns_at(t):
            self.a_out.send(self.step(release, t)[0, 0].numpy())
        else:
            self.a_out.send(np.zeros(release.shape[-1], dtype=self.field.dtype))


@implements(proc=Modulator, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyModulatorModelFixed(_Modulator):
    release_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    field: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def start_trial(self):
        self.diffuse_fn = field_diffusion(self.spec.modulator, self.spec.fp)
        self.state = None

    def step(self, release, t):
        self.state, signal = fixed_field_step(self.state, release, self.spec.modulator, self.spec.fp,
                                              self.diffuse_fn, None, t)
        self.field[:] = self.state[0, 0, 0].numpy()
        return signal


@implements(proc=Modulator, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyModulatorModelFloat(_Modulator):
    release_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    field: np.ndarray = LavaPyType(np.ndarray, float)

    def start_trial(self):
        self.signal = LearningSignal(self.spec.net, self.spec.modulator, None)

    def step(self, release, t):
        local = self.signal.local(release[:, :, None, :], t)
        self.field[:] = self.signal.field[0, 0, 0].numpy()
        return local
