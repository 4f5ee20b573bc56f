"""fixed_pt and floating_pt models of :class:`LearningConnection`, calling the emulator's and the
float reference's functions on (1, 1, ...) tensors."""
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
from lava_diffmod.fixed.steps import (StepRandom, dense_of, host_write_back, on_chip_write_back, regulariser_gradient,
                                      third_factor_product)
from lava_diffmod.lava.spec import as_torch
from lava_diffmod.rules.eprop import eligibility_init, eligibility_step

from lava_diffmod.processes.learning_connection.process import LearningConnection

F64 = torch.float64


class _Connection(PyLoihiProcessModel):
    """The part both models share: the trial clock, the delay line and the post signals."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.spec = proc_params["spec"]
        self.part, self.offset, self.delay = proc_params["part"], proc_params["pre_offset"], proc_params["delay"]
        net = self.spec.net
        self.mask = (net.m_in if self.part == "in" else net.m_rec)
        self.n_pre_all = net.n_in + net.n_rec

    def w(self) -> torch.Tensor:
        """The weights as (1, P, N) (pre, post), sharing the Var's memory."""
        return torch.from_numpy(self.weights).T[None]

    def run_spk(self):
        trial, t = self.spec.clock(self.time_step)
        if t == 0:
            self.start_trial(trial)
        if self.delay:
            pre = self.queue.pop(0)
            self.a_out.send(self.drive(pre))
            self.queue.append(as_torch(self.s_in.recv()).to(self.dtype))
        else:
            pre = as_torch(self.s_in.recv()).to(self.dtype)
            self.a_out.send(self.drive(pre))
        z, y1 = as_torch(self.s_in_bap.recv()).to(self.dtype), as_torch(self.s_in_y1.recv()).to(self.dtype)
        third = as_torch(self.s_in_y2.recv()) - as_torch(self.s_in_y3.recv())
        self.z_count = self.z_count + z
        self.learn_step(trial, t, pre, y1, third)
        if self.spec.learn and t == self.spec.trial_steps - 1:
            self.end_trial(trial)

    def start_trial(self, trial: int):
        self.queue = [torch.zeros((1, 1, self.weights.shape[1]), dtype=self.dtype)] * self.delay
        self.z_count = torch.zeros((1, 1, self.weights.shape[0]), dtype=F64)

    def end_trial(self, trial: int):
        """The host's write-back at the end of the trial (the rate regulariser, and the
        accumulated products with cadence batch)."""
        spec = self.spec
        g_reg = regulariser_gradient(self.z_count, self.e_sum, spec.trial_steps, spec.obj, spec.fp, 1)
        self.set_weights(host_write_back(self.w(), self.acc, g_reg, self.part, spec.fp,
                                         spec.step_key(trial, spec.trial_steps), self.mask))

    def set_weights(self, w: torch.Tensor) -> None:
        """Store new (1, P, N) weights in the Var."""
        self.weights[:] = w[0].T.numpy()


@implements(proc=LearningConnection, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyLearningConnectionModelFixed(_Connection):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=1)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=24)
    s_in_bap: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=1)
    s_in_y1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=7)
    s_in_y2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=7)
    s_in_y3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=7)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=9)
    x1: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=7)
    tag: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=9)
    dtype = torch.int64

    def __init__(self, proc_params):
        super().__init__(proc_params)
        fp = self.spec.fp
        self.rule = arith.TagRule(fp.tag_inc[0], fp.tag_inc[1], fp.tag_leak[0], fp.tag_leak[1], fp.ds_xy,
                                  fp.frac_bits, fp.acc_bits, *arith.tag_limits(fp.profile["tag_bits"]))
        self.dense = None

    def drive(self, pre: torch.Tensor):
        fp = self.spec.fp
        if self.dense is None:     # the Dense view of the weights changes only at write-backs
            self.dense = dense_of(self.w(), fp)
        return arith.dense_input(pre, self.dense, fp.wexp[self.part])[0, 0].numpy()

    def set_weights(self, w: torch.Tensor) -> None:
        super().set_weights(w)
        self.dense = None

    def start_trial(self, trial: int):
        super().start_trial(trial)
        self.x1[:] = 0
        self.tag[:] = 0
        self.acc = torch.zeros((1,) + tuple(self.w().shape[1:]), dtype=torch.int64)
        self.e_sum = torch.zeros((1, 1) + tuple(self.w().shape[1:]), dtype=torch.int64)   # Σ_t x1 y1

    def learn_step(self, trial, t, pre, y1, third):
        spec, fp = self.spec, self.spec.fp
        sw = fp.switches
        rand = StepRandom(spec.step_key(trial, t), fp)
        ifrac = fp.profile["trace_impulse_frac_bits"]
        n_pre = self.weights.shape[1]
        rows = slice(self.offset, self.offset + n_pre)
        whole = (1, 1, self.n_pre_all)

        x1 = as_torch(self.x1)
        raw = arith.trace_update(x1, pre, fp.x_decay, fp.x_impulse, ifrac, rand("x1_decay", whole, 12)[..., rows],
                                 rand("x1_impulse", whole, ifrac)[..., rows], fp.profile["impulse_frac_doubling"])
        x1 = arith.saturate(raw, 0, fp.y_max)
        self.x1[:] = x1[0, 0].numpy()
        if not spec.learns_at(t):
            return
        tag = torch.from_numpy(self.tag).T[None, None]
        r_tag = rand("tag", (*whole, y1.shape[-1]), fp.frac_bits)[:, :, rows].int()
        tag, _ = arith.tag_step_outer(tag, x1.int(), y1.int(), r_tag, self.rule)
        self.tag[:] = tag[0, 0].T.numpy()
        self.e_sum += x1[..., :, None] * y1[..., None, :]
        if not spec.in_window(t):
            return
        step_w = third_factor_product(tag, third.int()[:, :, None, :], fp.ds_ty, fp).long()
        if sw.cadence == "batch":
            self.acc = self.acc + step_w.sum(1)
        else:
            w = self.w()
            new = on_chip_write_back(w, step_w, fp.lr_lit[self.part],
                                     rand(f"w_{self.part}", tuple(w.shape), fp.frac_bits), fp, self.mask)
            self.set_weights(new)

    def end_trial(self, trial):
        self.e_sum >>= self.spec.fp.ds_xy
        super().end_trial(trial)


@implements(proc=LearningConnection, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLearningConnectionModelFloat(_Connection):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    s_in_bap: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_in_y1: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_in_y2: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_in_y3: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)
    x1: np.ndarray = LavaPyType(np.ndarray, float)
    tag: np.ndarray = LavaPyType(np.ndarray, float)
    dtype = F64

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.spec.net.neuron
        self.p = p._replace(beta=p.beta.to(F64))
        self.keep_alif = self.spec.net.has_alif

    def drive(self, pre: torch.Tensor):
        return torch.bmm(pre, self.w())[0, 0].numpy()

    def start_trial(self, trial: int):
        super().start_trial(trial)
        n_post, n_pre = self.weights.shape
        self.tr = eligibility_init(1, 1, n_pre, n_post, self.keep_alif, torch.zeros((), dtype=F64))
        self.e_sum = torch.zeros((1, 1, n_pre, n_post), dtype=F64)
        self.acc = torch.zeros((1, n_pre, n_post), dtype=F64)
        self.x1[:] = 0
        self.tag[:] = 0

    def learn_step(self, trial, t, pre, psi, learning):
        spec = self.spec
        self.tr, e = eligibility_step(self.tr, pre, psi, self.p, 1 - spec.fp.leak, self.keep_alif)
        self.x1[:] = self.tr.eps_v[0, 0].numpy()
        self.tag[:] = self.tr.ebar[0, 0].T.numpy()
        if not spec.learns_at(t):
            return
        self.e_sum = self.e_sum + e
        if spec.in_window(t):
            self.acc = self.acc + (-learning[:, :, None, :] * self.tr.ebar).sum(1)
