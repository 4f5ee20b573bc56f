r"""Delayed XOR (RULES.md A.7), analog for the rate RNN and Poisson-encoded for spiking networks.

Cue A on channel 1 during steps [0, cue); a delay of ``delay_ms``; cue B on channel 2 during
the last ``cue_ms`` steps (T = 2·cue + delay = 900 steps of 1 ms by default). Bits c_A, c_B ~
Bernoulli(½); label 1 ("match", XNOR) iff c_A = c_B, scored at the last step.

Analog cue encoding, per channel and step:

.. math::

    s(t) = s_0 + c \, s_\mathrm{peak} \exp\!\big(-(t - t_c)^2 / (2 \sigma^2)\big) + \xi(t),
    \qquad \xi \sim \mathcal N(0, \sigma_\xi^2)

with baseline s_0 = 0.02, peak 2.0, σ = cue/4 = 25 steps, t_c the centre of the cue window
(the authors' ``linspace(−cue/2, cue/2, cue)``) and σ_ξ = 0.01 on every sample (dimensionless
rates). The spiking variant draws Poisson spikes from the noise-free s(t) scaled to ``rate_hz``
at the peak, plus a background population (spikes/ms = Hz/1000).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import rng
from .base import Batch, poisson_spikes, trial_keys


def cue_bits(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bits (S, B, 2) and labels (S, B): 1 iff the bits are equal."""
    cues = (rng.uniform(rng.derive(keys, rng.name_key("cues")), (*keys.shape, 2),
                        device=keys.device, dtype=torch.float64) < 0.5).long()
    return cues, (cues[..., 0] == cues[..., 1]).long()


def cue_profile(cues: torch.Tensor, steps: int, cue: int, baseline: float, peak: float) -> torch.Tensor:
    """Noise-free analog inputs s(t) (S, B, T, 2): cue A in [0, cue), cue B in [T − cue, T)."""
    tau = torch.linspace(-(cue // 2), cue // 2, cue, dtype=torch.float64, device=cues.device)
    bump = peak * torch.exp(-tau ** 2 / (2 * (cue / 4) ** 2))
    s = torch.full((*cues.shape[:-1], steps, 2), baseline, dtype=torch.float64, device=cues.device)
    c = cues.double()[..., None]
    s[..., :cue, 0] += c[..., 0, :] * bump
    s[..., steps - cue:, 1] += c[..., 1, :] * bump
    return s


@dataclass(frozen=True)
class DelayedXOR:
    """Analog delayed XOR for the rate RNN (A.7): x (T, S, B, 2), labels (S, B)."""
    cue_ms: int = 100
    delay_ms: int = 700
    baseline: float = 0.02
    peak: float = 2.0
    noise_sd: float = 0.01
    dt: float = 1.0

    name = "delayed_xor"
    kind = "classification"
    frozen = False
    n_in = 2
    n_out = 2
    window = 1

    def __post_init__(self):
        if self.cue_ms < 2:
            raise ValueError(f"delayed_xor.cue_ms = {self.cue_ms}: must be >= 2")
        if self.delay_ms < 0:
            raise ValueError(f"delayed_xor.delay_ms = {self.delay_ms}: must be >= 0")
        if self.dt != 1.0:
            raise ValueError(f"delayed_xor.dt = {self.dt}: the analog task is defined at dt = 1 ms")

    @property
    def steps(self) -> int:
        return 2 * self.cue_ms + self.delay_ms

    def batch(self, seeds, split: str, counter: int, trials: range, device, dtype) -> Batch:
        keys = trial_keys(seeds, self.name, split, counter, trials, device)
        cues, labels = cue_bits(keys)
        s = cue_profile(cues, self.steps, self.cue_ms, self.baseline, self.peak)
        s = s + self.noise_sd * rng.normal(rng.derive(keys, rng.name_key("noise")), tuple(s.shape))
        return Batch(s.permute(2, 0, 1, 3).to(dtype), labels, keys)


@dataclass(frozen=True)
class SpikingDelayedXOR:
    """Delayed XOR with the A.7 timing for spiking networks (A.11.7).

    Inputs, 3 × ``pop_size`` Poisson neurons in index order: cue A, cue B (rate
    ``rate_hz`` · s(t)/peak, s the noise-free analog profile), background (``background_hz``
    throughout). The loss is read out over the last ``decision_ms`` steps (1 = the A.7 last step).
    """
    cue_ms: int = 100
    delay_ms: int = 700
    decision_ms: int = 1
    pop_size: int = 10
    rate_hz: float = 100.0
    background_hz: float = 10.0
    baseline: float = 0.02
    peak: float = 2.0
    dt: float = 1.0

    name = "delayed_xor_spiking"
    kind = "classification"
    frozen = False
    n_out = 2

    def __post_init__(self):
        if self.cue_ms < 2:
            raise ValueError(f"delayed_xor_spiking.cue_ms = {self.cue_ms}: must be >= 2")
        if not 1 <= self.decision_ms <= self.cue_ms:
            raise ValueError(f"delayed_xor_spiking.decision_ms = {self.decision_ms}: must be in "
                             f"[1, cue_ms = {self.cue_ms}] (the decision lies in cue B)")
        if self.dt != 1.0:
            raise ValueError(f"delayed_xor_spiking.dt = {self.dt}: the task is defined at dt = 1 ms")

    @property
    def steps(self) -> int:
        return 2 * self.cue_ms + self.delay_ms

    @property
    def window(self) -> int:
        return self.decision_ms

    @property
    def n_in(self) -> int:
        return 3 * self.pop_size

    def batch(self, seeds, split: str, counter: int, trials: range, device, dtype) -> Batch:
        keys = trial_keys(seeds, self.name, split, counter, trials, device)
        cues, labels = cue_bits(keys)
        s = cue_profile(cues, self.steps, self.cue_ms, self.baseline, self.peak) * (self.rate_hz / self.peak)
        rates = torch.cat([s.float(), torch.full_like(s[..., :1], self.background_hz).float()], -1)
        return Batch(poisson_spikes(keys, rates.repeat_interleave(self.pop_size, -1), self.dt, dtype),
                     labels, keys)
