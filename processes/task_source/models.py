"""fixed_pt and floating_pt models of :class:`TaskSource`: they replay the arrays, as integers
(fixed_pt: spikes and one-hot labels are exact; regression targets stay float) or as floats."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_diffmod.processes.task_source.process import TaskSource


class _Replay(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.x = np.asarray(proc_params["x"], dtype=self.spike_dtype)
        self.target = np.asarray(proc_params["target"], dtype=float)

    def run_spk(self):
        i = (self.time_step - 1) % self.x.shape[0]
        self.s_out.send(self.x[i].copy())
        self.target_out.send(self.target[i].copy())


@implements(proc=TaskSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTaskSourceModelFixed(_Replay):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=1)
    target_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    spike_dtype = np.int64


@implements(proc=TaskSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTaskSourceModelFloat(_Replay):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    target_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    spike_dtype = float
