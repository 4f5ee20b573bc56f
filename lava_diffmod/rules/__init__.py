"""Learning rules as transforms of signals: BPTT (autograd), e-prop (online / factorised),
e-prop with a diffusing learning signal (the neuromodulator of :mod:`.modulator`) and ModProp
(:mod:`.modprop`). The dopamine optimizer (:mod:`.dopamine`) needs no gradient and is driven by
the trainer."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import DiffusionConfig, ModPropConfig
from ..float.readout import Objective
from ..float.rsnn import Network
from .bptt import bptt, bptt_adjoint, bptt_fn
from .eprop import Gradients, compiled_synapse_step, eprop_factorised, eprop_online, synapse_layout
from .modulator import Modulator, modulator_from_config

__all__ = ["Rule", "Gradients", "gradients", "gradient_fn", "bptt", "bptt_adjoint", "bptt_fn",
           "eprop_online", "eprop_factorised"]


@dataclass(frozen=True)
class Rule:
    """A gradient rule: ``bptt``, ``eprop``, ``diffusion`` (e-prop + modulator) or ``modprop``."""
    name: str
    objective: Objective
    mode: str = "factorised"                 # e-prop mode: "factorised" | "online"
    diffusion: DiffusionConfig | None = None  # used by "diffusion"
    modprop: ModPropConfig | None = None      # used by "modprop"
    mu: torch.Tensor | None = None            # modprop's μ per seed (S,), resolved by the trainer
    storage: str = "auto"                     # online e-prop's per-synapse traces: auto | dense | sparse
    bptt_mode: str = "adjoint"                # BPTT: "adjoint" (reverse scan) | "autograd" (reference)

    def __post_init__(self):
        if self.name not in ("bptt", "eprop", "diffusion", "modprop"):
            raise ValueError(f"rule.name = {self.name!r}: must be one of bptt, eprop, diffusion, modprop")
        if self.name == "modprop" and self.mu is None:
            raise ValueError("rule modprop: needs mu (per seed)")
        if self.mode not in ("factorised", "online"):
            raise ValueError(f"rule.mode = {self.mode!r}: must be factorised or online")
        bptt_fn(self.bptt_mode)

    def modulator(self, net: Network) -> Modulator | None:
        if self.name != "diffusion":
            return None
        return modulator_from_config(self.diffusion or DiffusionConfig(), net)


def gradient_fn(rule: Rule, net: Network):
    """``fn(net, x, target, trial_keys) -> Gradients`` for this rule, with all host-side set-up
    (the modulator's constants) done now, so ``fn`` only runs device work (CUDA-graph safe)."""
    if rule.name == "bptt":
        fn = bptt_fn(rule.bptt_mode)
        return lambda net, x, target, keys: fn(net, x, target, rule.objective)
    if rule.name == "modprop":
        from .modprop import modprop
        mp = rule.modprop or ModPropConfig()

        def fn(net, x, target, keys):
            with torch.no_grad():
                return modprop(net, x, target, rule.objective, keys, mu=rule.mu, truncation=mp.truncation,
                               form=mp.form, keep_diagonal=mp.keep_diagonal, remedy=mp.remedy, margin=mp.margin,
                               hop_weights=mp.hop_weights)
        return fn
    mod = rule.modulator(net)
    if rule.mode == "online":
        syn = synapse_layout(net, rule.storage)   # the masks never change: their synapse list once
        step = compiled_synapse_step(net.device)

        def fn(net, x, target, keys):
            with torch.no_grad():
                return eprop_online(net, x, target, rule.objective, mod, keys, syn, step)
        return fn

    def fn(net, x, target, keys):
        with torch.no_grad():
            return eprop_factorised(net, x, target, rule.objective, mod, keys)
    return fn


def gradients(rule: Rule, net: Network, x: torch.Tensor, target: torch.Tensor,
              trial_keys: torch.Tensor | None = None) -> Gradients:
    """Masked weight gradients of S networks on one batch, and the loss terms per seed.

    x: (T, S, B, n_in) input spikes; target: labels (S, B) or y* (T, S, B|1, n_out);
    trial_keys: (S, B) random keys of the trials (for the per-step shuffled control).
    """
    if trial_keys is None:
        trial_keys = torch.zeros(x.shape[1:3], dtype=torch.int64, device=x.device)
    return gradient_fn(rule, net)(net, x, target, trial_keys)
