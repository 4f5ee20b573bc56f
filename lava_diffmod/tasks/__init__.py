"""Task generators (vectorised, seeded): pattern generation, delayed match-to-sample, cue
accumulation, delayed XOR (spiking; the analog variant in :mod:`.delayed_xor` feeds the rate RNN),
and Bellec et al. 2020's original cue accumulation and pattern generation.

Every task object has ``steps`` (T), ``window`` (T_LS), ``n_in``, ``n_out``, ``kind``
("classification" | "regression"), ``frozen`` (the same trials every iteration) and
``batch(seeds, split, counter, trials, device, dtype) -> Batch``.
"""
from __future__ import annotations

import dataclasses

from ..config import ConfigError, TaskConfig, check_field
from . import cue_accumulation, pattern_generation
from .base import Batch
from .cue_accumulation import CueAccumulation
from .delayed_xor import DelayedXOR, SpikingDelayedXOR
from .dms import DelayedMatchToSample
from .pattern_generation import PatternGeneration

__all__ = ["Batch", "make_task", "CueAccumulation", "DelayedMatchToSample",
           "PatternGeneration", "DelayedXOR", "SpikingDelayedXOR"]

# name → (task class, preset overrides)
REGISTRY = {
    "cue_accumulation": (CueAccumulation, {}),
    "cue_accumulation_bellec": (CueAccumulation, cue_accumulation.BELLEC),
    "dms": (DelayedMatchToSample, {}),
    "delayed_xor_spiking": (SpikingDelayedXOR, {}),
    "pattern_generation": (PatternGeneration, {}),
    "pattern_generation_bellec": (PatternGeneration, pattern_generation.BELLEC),
}


def make_task(cfg: TaskConfig, dt: float = 1.0):
    """The task object for a config: preset of ``cfg.name``, ``cfg.params`` on top, step dt (ms)."""
    cls, preset = REGISTRY[cfg.name]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "dt"}
    values = dict(preset, dt=dt)
    for key, value in cfg.params.items():
        path = f"task.params.{key}"
        if key not in fields:
            raise ConfigError(f"{path}: unknown parameter of task {cfg.name}; allowed: {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{path} = {value!r}: must be a list")
            value = tuple(value)
        else:
            value = check_field(path, fields[key], value, type(default))
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{path} = {value!r}: must be >= 0")
        values[key] = value
    try:
        task = cls(**values)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not 1 <= task.window <= task.steps:
        raise ConfigError(f"task {cfg.name}: learning window of {task.window} steps must lie in a "
                          f"trial of {task.steps} steps")
    return task
