"""Pattern generation (MODEL.md §5.1) and Bellec et al. 2020's original (§8). Regression.

paper: T = 2000 ms, 100 Poisson inputs at 50 Hz; target y*(t) = Σ_f w_f sin(2π f t/1000) over
f ∈ {0.5, 1, 2, 3, 4} Hz, w_f ~ U(0, 1) normalised to Σ w_f = 1, phases 0, minus its temporal
mean. One frozen batch of 8 input realisations serves training and evaluation.

Bellec: T = 1000 ms, 4 sines with periods 1000/500/333/200 ms, amplitudes U(0.5, 2), phases
U(0, 2π), shifted to start at 0 and scaled to max |y*| = 1; one frozen realisation, no input
spike at step 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import rng
from .base import Batch, poisson_spikes, trial_keys


@dataclass(frozen=True)
class PatternGeneration:
    duration_ms: int = 2000
    n_inputs: int = 100
    rate_hz: float = 50.0
    freqs_hz: tuple = (0.5, 1.0, 2.0, 3.0, 4.0)
    n_frozen: int = 8
    style: str = "paper"         # "paper" | "bellec" (amplitudes, phases, normalisation)
    amplitude_range: tuple = (0.5, 2.0)   # Bellec only
    silent_first_step: bool = False
    dt: float = 1.0

    kind = "regression"
    frozen = True
    n_out = 1

    def __post_init__(self):
        if self.style not in ("paper", "bellec"):
            raise ValueError(f"task.params.style = {self.style!r}: must be paper or bellec")

    @property
    def steps(self) -> int:
        return round(self.duration_ms / self.dt)

    @property
    def window(self) -> int:
        return self.steps

    @property
    def n_in(self) -> int:
        return self.n_inputs

    def target(self, seeds, device, dtype) -> torch.Tensor:
        """y* (T, S, 1, 1), one pattern per task seed."""
        t = torch.arange(self.steps, device=device, dtype=torch.float64) * self.dt   # ms
        ys = []
        for s in seeds:
            u = rng.uniform(rng.name_key(s, "pattern_generation", "target"), (2, len(self.freqs_hz)),
                            device=device, dtype=torch.float64)
            f = torch.tensor(self.freqs_hz, device=device, dtype=torch.float64)
            if self.style == "paper":
                w = u[0] / u[0].sum()
                y = (w * torch.sin(2 * math.pi * f * t[:, None] / 1000)).sum(-1)
                y = y - y.mean()
            else:
                lo, hi = self.amplitude_range
                amp, phase = lo + (hi - lo) * u[0], 2 * math.pi * u[1]
                y = (amp * torch.sin(2 * math.pi * f * t[:, None] / 1000 + phase)).sum(-1)
                y = y - y[0]
                y = y / y.abs().max()
            ys.append(y)
        return torch.stack(ys, dim=1)[:, :, None, None].to(dtype)

    def batch(self, seeds, split: str, counter: int, trials: range, device, dtype) -> Batch:
        """The frozen realisations ``trials`` (the same for every split and iteration)."""
        if trials.stop > self.n_frozen:
            raise ValueError(f"pattern generation has {self.n_frozen} frozen trials "
                             f"(task.params.n_frozen); asked for trials {trials.start}..{trials.stop - 1}")
        keys = trial_keys(seeds, "pattern_generation", "frozen", 0, trials, device)
        rates = torch.full((*keys.shape, self.steps, self.n_in), self.rate_hz, device=device)
        if self.silent_first_step:
            rates[:, :, 0] = 0.0
        return Batch(poisson_spikes(keys, rates, self.dt, dtype), self.target(seeds, device, dtype), keys)


BELLEC = dict(duration_ms=1000, freqs_hz=(1.0, 2.0, 1000 / 333, 5.0), n_frozen=1, style="bellec",
              silent_first_step=True)
