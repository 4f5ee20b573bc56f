"""What every process of one Lava network shares: its network, integer parameters and trial clock.

Imports no lava: the builder fills a :class:`NetworkSpec` and hands it to each process as a
process parameter; the models of ``processes/`` read what they need from it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fixed import arith
from ..fixed.quantize import FixedParams
from ..fixed.steps import rounding_key
from ..float.readout import Objective
from ..float.rsnn import Network
from ..rules.modulator import Modulator


@dataclass(frozen=True)
class NetworkSpec:
    """One network (S = 1, float64) in trials of ``trial_steps``; trial i is the emulator's batch
    ``first_iteration + i`` with one trial (B = 1). ``fp`` holds the integer parameters (fixed_pt)
    or, with every switch off, the float learning rates (floating_pt)."""
    net: Network
    fp: FixedParams
    obj: Objective
    modulator: Modulator | None
    seed: int
    trial_steps: int
    learn: bool
    first_iteration: int = 0

    def clock(self, time_step: int) -> tuple[int, int]:
        """(trial index, step within the trial) of Lava's ``time_step`` (1, 2, ...)."""
        return divmod(time_step - 1, self.trial_steps)

    def in_window(self, t: int) -> bool:
        return t >= self.trial_steps - self.obj.window

    def learns_at(self, t: int) -> bool:
        """The learning rule is evaluated at step t (every ``t_epoch`` steps)."""
        return self.learn and (t + 1) % self.fp.switches.t_epoch == 0

    def step_key(self, trial: int, t: int) -> torch.Tensor:
        """The (1,) rounding key of step t of trial ``trial``: the emulator's key."""
        return arith.step_key(rounding_key(self.seed, self.first_iteration + trial), t)


def as_torch(a) -> torch.Tensor:
    """A numpy array (a port's message or a Var) as a (1, 1, ...) torch tensor sharing its memory."""
    t = torch.from_numpy(a)
    return t.reshape(1, 1, *t.shape)


def to_numpy(t: torch.Tensor):
    """A (1, 1, ...) tensor as a flat-leading numpy array for a port or a Var."""
    return t.reshape(t.shape[2:]).numpy()
