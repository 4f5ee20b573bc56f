"""The model of :class:`TaskSource`, for both tags (it only replays arrays)."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_diffmod.processes.task_source.process import TaskSource


@implements(proc=TaskSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyTaskSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    target_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.x, self.target = proc_params["x"], proc_params["target"]

    def run_spk(self):
        i = (self.time_step - 1) % self.x.shape[0]
        self.s_out.send(np.asarray(self.x[i], dtype=float))
        self.target_out.send(np.asarray(self.target[i], dtype=float))
