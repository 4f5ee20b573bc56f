"""What every task shares: the batch record, trial keys and Poisson input spikes.

Trials are addressed, not drawn in sequence: trial ``i`` of stream ``(task seed, split,
iteration)`` always has the same content, whichever micro-batch, device or resumed run asks for
it (:mod:`lava_diffmod.rng`). Training batches of iteration n use split "train" and counter n;
the evaluation set uses split "eval" and is fixed per task seed.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .. import rng


class Batch(NamedTuple):
    """One batch for S networks: x (T, S, B, n_in) spikes; target: labels (S, B) (long) for
    classification or y* (T, S, B|1, n_out) for regression; keys (S, B) per-trial random keys."""
    x: torch.Tensor
    target: torch.Tensor
    keys: torch.Tensor


def trial_keys(seeds: list[int], task: str, split: str, counter: int, trials: range,
               device) -> torch.Tensor:
    """(S, B) keys of trials ``trials`` in stream (task seed, task, split, counter)."""
    base = torch.tensor([rng.name_key(s, task, split) for s in seeds], dtype=torch.int64, device=device)
    idx = torch.arange(trials.start, trials.stop, dtype=torch.int64, device=device)
    return rng.derive(rng.derive(base, counter)[:, None], idx[None, :])


def poisson_spikes(keys: torch.Tensor, rate_hz: torch.Tensor, dt_ms: float, dtype) -> torch.Tensor:
    """Bernoulli spikes, p = rate·dt/1000 per step. rate_hz (S, B, T, n_in) → x (T, S, B, n_in)."""
    u = rng.uniform(rng.derive(keys, rng.name_key("spikes")), tuple(rate_hz.shape), device=keys.device)
    return (u < rate_hz * (dt_ms / 1000.0)).to(dtype).permute(2, 0, 1, 3)


class PopulationCueTask:
    """Binary classification from 4 Poisson input populations of ``pop_size`` neurons, decided in
    the last ``decision_ms``. Subclasses are frozen dataclasses that define ``name``,
    ``trial_ms`` and ``trials(keys, dtype) -> (cues, labels, rates (S, B, T, n_in))``."""
    kind = "classification"
    frozen = False
    n_out = 2

    @property
    def steps(self) -> int:
        return round(self.trial_ms / self.dt)

    @property
    def window(self) -> int:
        return round(self.decision_ms / self.dt)

    @property
    def n_in(self) -> int:
        return 4 * self.pop_size

    def batch(self, seeds, split: str, counter: int, trials: range, device, dtype) -> Batch:
        keys = trial_keys(seeds, self.name, split, counter, trials, device)
        _, labels, rates = self.trials(keys, dtype)
        return Batch(poisson_spikes(keys, rates, self.dt, dtype), labels, keys)
