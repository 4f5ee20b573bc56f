"""Learning rules as transforms of signals: BPTT (autograd), e-prop (online / factorised) and
e-prop with a diffusing learning signal (the neuromodulator of :mod:`.modulator`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import DiffusionConfig
from ..float.readout import Objective
from ..float.rsnn import Network
from .bptt import bptt
from .eprop import Gradients, eprop_factorised, eprop_online
from .modulator import Modulator, modulator_from_config

__all__ = ["Rule", "Gradients", "gradients", "bptt", "eprop_online", "eprop_factorised"]


@dataclass(frozen=True)
class Rule:
    """A learning rule: ``bptt``, ``eprop`` or ``diffusion`` (e-prop + modulator)."""
    name: str
    objective: Objective
    mode: str = "factorised"                 # e-prop mode: "factorised" | "online"
    diffusion: DiffusionConfig | None = None  # used by "diffusion"

    def __post_init__(self):
        if self.name not in ("bptt", "eprop", "diffusion"):
            raise ValueError(f"rule.name = {self.name!r}: must be one of bptt, eprop, diffusion")
        if self.mode not in ("factorised", "online"):
            raise ValueError(f"rule.mode = {self.mode!r}: must be factorised or online")

    def modulator(self, net: Network) -> Modulator | None:
        if self.name != "diffusion":
            return None
        return modulator_from_config(self.diffusion or DiffusionConfig(), net)


def gradients(rule: Rule, net: Network, x: torch.Tensor, target: torch.Tensor,
              trial_keys: torch.Tensor | None = None) -> Gradients:
    """Masked weight gradients of S networks on one batch, and the loss terms per seed.

    x: (T, S, B, n_in) input spikes; target: labels (S, B) or y* (T, S, B|1, n_out);
    trial_keys: (S, B) random keys of the trials (for the per-step shuffled control).
    """
    if rule.name == "bptt":
        return bptt(net, x, target, rule.objective)
    if trial_keys is None:
        trial_keys = torch.zeros(x.shape[1:3], dtype=torch.int64, device=x.device)
    fn = eprop_online if rule.mode == "online" else eprop_factorised
    with torch.no_grad():
        return fn(net, x, target, rule.objective, rule.modulator(net), trial_keys)
