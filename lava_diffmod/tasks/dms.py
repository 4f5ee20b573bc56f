"""Delayed match-to-sample (MODEL.md §5.2).

Fixation 0–50 ms, cue 1 at 50–200, a 700 ms delay, cue 2 at 900–1050, decision window
1050–1100 (T = 1100 ms, T_LS = 50). Cues c1, c2 ~ Bernoulli(0.5); label 1 (match) iff c1 = c2.
Inputs, 4 × 20 in index order: background (10 Hz throughout), decision (40 Hz in the window),
cue-1 (40 Hz during cue 1 iff c1 = 1), cue-2 (40 Hz during cue 2 iff c2 = 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import rng
from .base import PopulationCueTask


@dataclass(frozen=True)
class DelayedMatchToSample(PopulationCueTask):
    fixation_ms: int = 50
    cue_ms: int = 150
    delay_ms: int = 700
    decision_ms: int = 50
    pop_size: int = 20
    rate_hz: float = 40.0
    background_hz: float = 10.0
    dt: float = 1.0

    name = "dms"

    @property
    def trial_ms(self) -> float:
        return self.fixation_ms + 2 * self.cue_ms + self.delay_ms + self.decision_ms

    def trials(self, keys: torch.Tensor, dtype):
        """Cues (S, B, 2), labels (S, B), input rates (S, B, T, n_in)."""
        cues = (rng.uniform(rng.derive(keys, rng.name_key("cues")), (*keys.shape, 2),
                            device=keys.device, dtype=torch.float64) < 0.5).long()
        labels = (cues[..., 0] == cues[..., 1]).long()
        t = torch.arange(self.steps, device=keys.device) * self.dt
        c1_on = self.fixation_ms
        c2_on = self.fixation_ms + self.cue_ms + self.delay_ms
        dec_on = c2_on + self.cue_ms
        cue1 = ((t >= c1_on) & (t < c1_on + self.cue_ms)).float()
        cue2 = ((t >= c2_on) & (t < c2_on + self.cue_ms)).float()
        decision = (t >= dec_on).float()
        c = cues.float()[..., None]                                  # (S, B, 2, 1)
        shape = (*keys.shape, self.steps)
        per_pop = torch.stack([
            torch.full(shape, self.background_hz, device=keys.device),
            (decision * self.rate_hz).expand(shape),
            c[:, :, 0] * cue1 * self.rate_hz,
            c[:, :, 1] * cue2 * self.rate_hz], dim=-1)
        return cues, labels, per_pop.repeat_interleave(self.pop_size, dim=-1)
