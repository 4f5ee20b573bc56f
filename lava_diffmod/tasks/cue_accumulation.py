"""Cue (evidence) accumulation (MODEL.md §5.3) and Bellec et al. 2020's original (§8).

Seven 100 ms cues, each left or right, then a delay and a decision window; the label is 1 if
right cues outnumber left ones. Inputs are 4 populations of ``pop_size`` Poisson neurons:
background (10 Hz throughout), decision (40 Hz in the decision window), left and right (40 Hz
during their cues). ``channel_order`` gives the populations in index order.

* paper: each cue preceded by a 50 ms gap (cue c at [50 + 150c, 150 + 150c) ms), an 850 ms delay,
  a 150 ms window: T = 2050 ms; sides independent with p = 0.5.
* Bellec: cue then gap, a 1050 ms delay, a 150 ms recall window: T = 2250 ms; each trial picks a
  favoured side, and each cue goes to it with probability 0.7; order left, right, recall, background.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import rng
from .base import PopulationCueTask

POPULATIONS = ("background", "decision", "left", "right")


@dataclass(frozen=True)
class CueAccumulation(PopulationCueTask):
    n_cues: int = 7
    cue_ms: int = 100
    gap_ms: int = 50
    gap_first: bool = True
    delay_ms: int = 850
    decision_ms: int = 150
    pop_size: int = 10
    rate_hz: float = 40.0
    background_hz: float = 10.0
    p_favoured: float = 0.5
    channel_order: tuple = POPULATIONS
    dt: float = 1.0

    name = "cue_accumulation"

    def __post_init__(self):
        if sorted(self.channel_order) != sorted(POPULATIONS):
            raise ValueError(f"task.params.channel_order = {list(self.channel_order)}: must order "
                             f"{', '.join(POPULATIONS)}")
        if not 0 <= self.p_favoured <= 1:
            raise ValueError(f"task.params.p_favoured = {self.p_favoured}: must be in [0, 1]")
        if self.n_cues % 2 == 0:
            raise ValueError(f"task.params.n_cues = {self.n_cues}: must be odd (no ties)")

    @property
    def trial_ms(self) -> float:
        return self.n_cues * (self.cue_ms + self.gap_ms) + self.delay_ms + self.decision_ms

    def cue_onsets_ms(self) -> list[int]:
        period = self.cue_ms + self.gap_ms
        return [c * period + (self.gap_ms if self.gap_first else 0) for c in range(self.n_cues)]

    def trials(self, keys: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cue sides (S, B, n_cues) with 1 = right, labels (S, B), input rates (S, B, T, n_in)."""
        u = rng.uniform(rng.derive(keys, rng.name_key("cues")), (*keys.shape, self.n_cues + 1),
                        device=keys.device, dtype=torch.float64)
        favoured = (u[..., :1] < 0.5).long()          # 1 = right favoured
        to_favoured = (u[..., 1:] < self.p_favoured).long()
        right = favoured * to_favoured + (1 - favoured) * (1 - to_favoured)
        labels = (2 * right.sum(-1) > self.n_cues).long()
        t = torch.arange(self.steps, device=keys.device) * self.dt   # ms
        cue_on = torch.zeros((self.n_cues, self.steps), device=keys.device)
        for c, onset in enumerate(self.cue_onsets_ms()):
            cue_on[c] = ((t >= onset) & (t < onset + self.cue_ms)).float()
        right_on = torch.einsum("sbc,ct->sbt", right.float(), cue_on)
        left_on = torch.einsum("sbc,ct->sbt", 1 - right.float(), cue_on)
        decision = (t >= t[-1] + self.dt - self.decision_ms).float().expand_as(right_on)
        background = torch.ones_like(right_on)
        rates = {"background": background * self.background_hz, "decision": decision * self.rate_hz,
                 "left": left_on * self.rate_hz, "right": right_on * self.rate_hz}
        per_pop = torch.stack([rates[name] for name in self.channel_order], dim=-1)   # (S,B,T,4)
        return right, labels, per_pop.repeat_interleave(self.pop_size, dim=-1)


BELLEC = dict(gap_first=False, delay_ms=1050, p_favoured=0.7,
              channel_order=("left", "right", "decision", "background"))
