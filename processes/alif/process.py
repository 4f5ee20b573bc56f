"""ALIF neuron population (LIF = ALIF with β = 0), sending what its learning connections need.

Per step: receive the synaptic input ``a_in``, update the neurons, send the spikes ``s_out`` (also
the back-propagating action potential of the connections) and the pseudo-derivative ψ on
``s_out_y1``; then receive the local learning signal (the modulator's concentration, or the
direct feedback) on ``a_third_factor_in`` and send it sign-split: y2 = L⁺, y3 = L⁻.

Two modes: a network mode (``spec``: a :class:`lava_diffmod.lava.spec.NetworkSpec`) and Loihi's
standard CUBA LIF (``cuba``: du, dv, vth, bias_mant, bias_exp; current and voltage decays, reset
to zero, no refractoriness), bit-exact with Lava's ``LIF`` fixed_pt model.
"""
from __future__ import annotations

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class ALIF(AbstractProcess):
    def __init__(self, *, shape: tuple[int], spec=None, cuba: dict | None = None, name: str | None = None):
        if (spec is None) == (cuba is None):
            raise ValueError("ALIF: give exactly one of spec (network mode) and cuba (Loihi CUBA LIF mode)")
        super().__init__(shape=shape, spec=spec, cuba=cuba, name=name)
        self.a_in = InPort(shape=shape)
        self.a_third_factor_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.s_out_y1 = OutPort(shape=shape)
        self.s_out_y2 = OutPort(shape=shape)
        self.s_out_y3 = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)      # synaptic current (fixed: 24 bit; float: unused)
        self.v = Var(shape=shape, init=0)      # membrane voltage
        self.b = Var(shape=shape, init=0)      # fixed: threshold offset β·a (v units); float: adaptation a
        self.r = Var(shape=shape, init=0)      # refractory steps left
        self.z = Var(shape=shape, init=0)      # spikes of the last step
        self.y1 = Var(shape=shape, init=0)     # pseudo-derivative (fixed: 7-bit units s_y)
