"""fixed_pt and floating_pt models of :class:`ALIF`: they call the step functions of
``lava_diffmod.fixed`` and ``lava_diffmod.float``; nothing is re-implemented here."""
from __future__ import annotations

import numpy as np
import torch
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_diffmod.fixed import arith
from lava_diffmod.fixed.steps import clip_signal
from lava_diffmod.float.neurons import ALIFState, alif_step
from lava_diffmod.lava.spec import as_torch, to_numpy

from lava_diffmod.processes.alif.process import ALIF


def cuba_neuron(cuba: dict) -> arith.FixedNeuron:
    """Loihi's CUBA LIF (Lava ``LIF``) as integer ALIF constants: β = 0, reset to zero, no
    refractoriness, bias = bias_mant·2^bias_exp (a right shift for negative exponents)."""
    mant = torch.as_tensor(np.asarray(cuba["bias_mant"]), dtype=torch.int64)
    exp = torch.as_tensor(np.asarray(cuba["bias_exp"]), dtype=torch.int64)
    bias = torch.where(exp >= 0, mant << exp.clamp(min=0), mant >> (-exp).clamp(min=0))
    return arith.FixedNeuron(du=int(cuba["du"]), dv=int(cuba["dv"]), drho=0, vth=int(cuba["vth"]), beta=0,
                             bias=bias, n_block=0, reset="zero")


@implements(proc=ALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyALIFModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=1)
    s_out_y1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=7)
    s_out_y2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=7)
    s_out_y3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=7)
    u: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    b: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    r: np.ndarray = LavaPyType(np.ndarray, np.int64)
    z: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=1)
    y1: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=7)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.spec = proc_params["spec"]
        self.q = cuba_neuron(proc_params["cuba"]) if self.spec is None else self.spec.fp.neuron

    def run_spk(self):
        spec = self.spec
        if spec is not None and spec.clock(self.time_step)[1] == 0:   # every trial starts at rest
            for var in (self.u, self.v, self.b, self.r, self.z, self.y1):
                var[:] = 0
        state = arith.FixedState(*(as_torch(x) for x in (self.u, self.v, self.b, self.z, self.r)))
        new = arith.alif_fixed_step(state, as_torch(self.a_in.recv()), self.q)
        for var, value in zip((self.u, self.v, self.b, self.z, self.r), new):
            var[:] = to_numpy(value)
        self.s_out.send(self.z.copy())
        if spec is None:
            return
        self.y1[:] = to_numpy(arith.pseudo_derivative_fixed(new, self.q, spec.fp.y_max))
        self.s_out_y1.send(self.y1.copy())
        signal = clip_signal(as_torch(self.a_third_factor_in.recv()), spec.fp)
        pos, neg = arith.sign_split(signal, spec.fp.profile["trace_bits"])
        self.s_out_y2.send(to_numpy(pos).copy())
        self.s_out_y3.send(to_numpy(neg).copy())


@implements(proc=ALIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyALIFModelFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_third_factor_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_out_y1: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_out_y2: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_out_y3: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    b: np.ndarray = LavaPyType(np.ndarray, float)
    r: np.ndarray = LavaPyType(np.ndarray, np.int32)
    z: np.ndarray = LavaPyType(np.ndarray, float)
    y1: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.spec = proc_params["spec"]
        if self.spec is None:
            raise ValueError("ALIF floating_pt: the CUBA LIF mode is a fixed_pt model (use Lava's LIF for float)")
        p = self.spec.net.neuron
        self.p = p._replace(beta=p.beta.to(torch.float64))

    def run_spk(self):
        spec = self.spec
        if spec.clock(self.time_step)[1] == 0:
            for var in (self.v, self.b, self.r, self.z, self.y1):
                var[:] = 0
        state = ALIFState(*(as_torch(x) for x in (self.v, self.b, self.z, self.r)))
        new, psi = alif_step(state, as_torch(self.a_in.recv()), self.p)
        for var, value in zip((self.v, self.b, self.z, self.r), new):
            var[:] = to_numpy(value)
        self.y1[:] = to_numpy(psi)
        self.s_out.send(self.z.copy())
        self.s_out_y1.send(self.y1.copy())
        signal = as_torch(self.a_third_factor_in.recv())
        self.s_out_y2.send(to_numpy(signal.clamp(min=0)).copy())
        self.s_out_y3.send(to_numpy((-signal).clamp(min=0)).copy())
