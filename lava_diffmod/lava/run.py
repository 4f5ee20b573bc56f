"""``lava-diffmod lava-run``: a trained run on Lava, next to the float reference and the emulator.

The same trials (the evaluation split, or the training split with ``learn``) go through the
float reference, the fixed-point emulator and the Lava network; each reports the task metric
(accuracy or nMSE) from its readout over the learning window.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import config as config_mod
from ..config import ConfigError
from ..fixed.emulator import Emulator, Weights
from ..float.rsnn import Params, forward
from ..training import checkpoint
from ..training.trainer import setup, window_metrics
from . import network as LN

METRIC = {"classification": "accuracy", "regression": "nmse"}


def trained_params(run_dir: Path, exp) -> tuple[Params, Weights | None]:
    """The run's float weights (S networks), and its integer weights if it trained in fixed point."""
    path = run_dir / "checkpoint.safetensors"
    if exp.emulator is not None:
        w, _, _, _ = checkpoint.load(path, exp.emulator.initial_weights())
        return exp.emulator.float_weights(Weights(*w)), Weights(*w)
    params, _, _, _ = checkpoint.load(path, exp.net.params)
    return Params(*(p.double() for p in params)), None


def metric_of(y_w: torch.Tensor, target: torch.Tensor, obj, dt: float) -> float:
    return float(window_metrics(y_w, target, obj, torch.zeros(1), dt)[METRIC[obj.kind]][0])


def lava_run(run_dir: Path, backend: str = "fixed", learn: bool = False, hw: str | None = None, trials: int = 8,
             seed: int | None = None, progress: bool = True) -> list[dict]:
    """Rows (execution, metric, value) for one seed of the run in ``run_dir``."""
    if trials < 1:
        raise ConfigError(f"--trials {trials}: must be >= 1")
    if backend not in LN.BACKENDS:
        raise ConfigError(f"--backend {backend!r}: must be fixed or float")
    cfg = config_mod.load(run_dir / "config.toml", {"train.device": "cpu"})
    if hw is not None:
        LN.run_config(backend, hw)       # fails now, with one clear message, if the board is not reachable
    exp = setup(cfg)
    seeds = list(cfg.train.seeds)
    seed = seeds[0] if seed is None else seed
    if seed not in seeds:
        raise ConfigError(f"--seed {seed}: the run trained seeds {seeds}")
    i = seeds.index(seed)
    params, ints = trained_params(run_dir, exp)
    one = Params(*(p[i:i + 1] for p in params))
    task = exp.task
    batch = task.batch([seed], "train" if learn else "eval", 0, range(trials), "cpu", torch.float64)
    t_steps = batch.x.shape[0]
    obj, dt = exp.rule.objective, cfg.neuron.dt

    # the fixed spec keeps the run's integer weights when it trained in fixed point
    if backend == "fixed" and ints is not None:
        spec = LN.network_spec(cfg, seed, "fixed", t_steps, learn)
        weights = Weights(*(w[i:i + 1] for w in ints))
    else:
        spec = LN.network_spec(cfg, seed, backend, t_steps, learn, params=one)
        weights = Weights(*LN.initial_weights(spec, backend))
    rows = []
    net = spec.net.with_params(one)
    ref = forward(net, batch.x)
    rows.append({"execution": "float reference (torch)", METRIC[obj.kind]: metric_of(ref.y[-obj.window:], batch.target, obj, dt)})
    if backend == "fixed":
        em = Emulator(spec.net, spec.fp, obj, spec.modulator, [seed], compile=False)
        res = em.run(weights, batch.x, batch.target, batch.keys, 0, learn=False)
        rows.append({"execution": f"fixed emulator ({spec.fp.profile_name})",
                     METRIC[obj.kind]: metric_of(res.y_window, batch.target, obj, dt)})
    x, target = LN.task_arrays(batch.x, batch.target, task.kind, task.n_out)
    rec = LN.run(LN.build(spec, x, target, backend, weights), trials, backend, hw, record_ends=learn, progress=progress)
    y = torch.from_numpy(rec.y).double().reshape(trials, t_steps, -1)[:, -obj.window:]
    if backend == "fixed":
        y = y / spec.fp.s_o
    y_w = y.permute(1, 0, 2)[:, None]                  # (W, 1, B, n_out)
    name = f"lava {'fixed_pt' if backend == 'fixed' else 'floating_pt'} ({'Loihi2HwCfg' if hw else 'Loihi2SimCfg'})"
    rows.append({"execution": name + (", learning" if learn else ""), METRIC[obj.kind]: metric_of(y_w, batch.target, obj, dt)})
    if learn:
        last = rec.trial_ends[-1]
        moved = sum(int((torch.from_numpy(last[k]).T[None] != w).sum()) for k, w in
                    zip(("W_in", "W_rec", "W_out"), weights))
        rows[-1]["weights changed"] = moved
    return rows
