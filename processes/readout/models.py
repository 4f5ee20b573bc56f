"""fixed_pt and floating_pt models of :class:`Readout`."""
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
from lava_diffmod.fixed.steps import (dense_of, direct_signal, error_int, feedback_release, field_release, host_write_back,
                                      on_chip_write_back, readout_fixed_step, StepRandom, third_factor_product)
from lava_diffmod.float.readout import output_error, readout_step
from lava_diffmod.float.rsnn import Params
from lava_diffmod.lava.spec import as_torch
from lava_diffmod.rules.eprop import LearningSignal

from lava_diffmod.processes.readout.process import Readout

F64 = torch.float64


class _Readout(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.spec = proc_params["spec"]

    def w(self) -> torch.Tensor:
        return torch.from_numpy(self.weights).T[None]

    def error(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """err(t) of MODEL.md §3.1 from the float readout y (1, 1, n_out)."""
        if self.spec.obj.kind == "classification":
            return output_error(y, target.argmax(-1), "classification")
        return output_error(y, target, "regression")

    def run_spk(self):
        spec = self.spec
        trial, t = spec.clock(self.time_step)
        if t == 0:
            self.y[:] = 0
            self.x1[:] = 0
            self.acc = torch.zeros((1,) + tuple(self.w().shape[1:]), dtype=self.acc_dtype)
        z, target = as_torch(self.s_in.recv()), as_torch(self.target_in.recv())
        self.step(trial, t, z, target)
        if spec.learn and t == spec.trial_steps - 1:
            self.set_weights(host_write_back(self.w(), self.acc, None, "out", spec.fp,
                                             spec.step_key(trial, spec.trial_steps), spec.net.m_out))

    def set_weights(self, w: torch.Tensor) -> None:
        """Store new (1, N, n_out) weights in the Var."""
        self.weights[:] = w[0].T.numpy()


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutModelFixed(_Readout):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=1)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    release_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=9)
    y: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    x1: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=7)
    acc_dtype = torch.int64

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.feedback = dense_of(self.spec.fp.feedback, self.spec.fp)
        self.dense = None

    def set_weights(self, w: torch.Tensor) -> None:
        super().set_weights(w)
        self.dense = None     # the Dense view of W_out changes only at write-backs

    def step(self, trial, t, z, target):
        spec, fp = self.spec, self.spec.fp
        rand = StepRandom(spec.step_key(trial, t), fp)
        if self.dense is None:
            self.dense = dense_of(self.w(), fp)
        y_int = readout_fixed_step(as_torch(self.y), arith.dense_input(z, self.dense, fp.wexp["out"]), fp)
        self.y[:] = y_int[0, 0].numpy()
        n = z.shape[-1]
        ifrac = fp.profile["trace_impulse_frac_bits"]
        zt = arith.trace_step(as_torch(self.x1), z, fp.z_decay, fp.z_impulse, fp.profile["trace_bits"], ifrac,
                              rand("z_decay", (1, 1, n), 12), rand("z_impulse", (1, 1, n), ifrac),
                              fp.profile["impulse_frac_doubling"])
        self.x1[:] = zt[0, 0].numpy()
        if not (spec.in_window(t) and spec.learns_at(t)):
            self.release_out.send(np.zeros(n, dtype=np.int64))
            return
        err_int = error_int(self.error(y_int.to(F64) / fp.s_o, target), fp)
        rel = feedback_release(err_int, self.feedback)
        release = field_release(rel, fp) if spec.modulator is not None else direct_signal(rel, fp)
        self.release_out.send(release[0, 0].numpy())
        step_o = third_factor_product(zt[..., None], err_int[:, :, None, :], fp.ds_zz, fp)
        if fp.switches.cadence == "batch":
            self.acc = self.acc + step_o.sum(1)
        else:
            w = self.w()
            self.set_weights(on_chip_write_back(w, step_o, fp.lr_lit["out"], rand("w_out", tuple(w.shape), fp.frac_bits),
                                                fp, spec.net.m_out))


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutModelFloat(_Readout):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    target_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    release_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    y: np.ndarray = LavaPyType(np.ndarray, float)
    x1: np.ndarray = LavaPyType(np.ndarray, float)
    acc_dtype = F64

    def step(self, trial, t, z, target):
        spec, net = self.spec, self.spec.net
        if t == 0:   # frozen B, or W_out ⊙ M_out as it is at the trial start (tracking feedback)
            self.signal = LearningSignal(net.with_params(Params(*net.params[:2], self.w().clone())), None, None)
        y = readout_step(as_torch(self.y), z, self.w(), net.kappa)
        zbar = torch.lerp(z, as_torch(self.x1), net.kappa)
        self.y[:] = y[0, 0].numpy()
        self.x1[:] = zbar[0, 0].numpy()
        if not (spec.in_window(t) and spec.learns_at(t)):
            self.release_out.send(np.zeros(z.shape[-1]))
            return
        err = self.error(y, target)
        self.release_out.send(self.signal.release(err)[0, 0, 0].numpy())
        self.acc = self.acc + (-zbar[..., None] * err[:, :, None, :]).sum(1)
