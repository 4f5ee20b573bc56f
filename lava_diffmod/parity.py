r"""Float / fixed / Lava parity for one network and one input batch (``lava-diffmod parity``).

Every execution runs network ``seed`` of a config (S = 1, float64 reference) on the same trials:

* **float**: the float reference (torch), the row everything is compared with;
* **fixed <profile>**: the fixed-point emulator with the config's switches, one row per hardware
  profile (``ideal`` runs with every switch off);
* **lava fixed_pt / lava floating_pt**: the Lava process graph on Lava's CPU simulator.

Columns:

* ``spikes``: share of spike entries z_j(t) equal to the float reference's, over the first
  ``steps`` steps of ``trials`` trials, learning off;
* ``v_err``: RMS(v − v_ref) / ϑ over the same steps (dimensionless);
* ``trace_err``: RMS(ε^v − ε^v_ref) / RMS(ε^v_ref) of the presynaptic traces at the last compared
  step of each trial (the fixed trace is x1 / s_x);
* ``cos W_in / W_rec / W_out``: cosine between the execution's weight update −ΔW after one
  learning trial from the initial weights (trial 0 of the training split) and the BPTT gradient
  of that trial, per weight matrix;
* ``loss``: the task loss E_task on ``eval_trials`` evaluation trials after a short training
  run of ``train_trials`` trials with an SGD step (rate ``fixed.lr``) after each trial, the
  protocol the Lava network learns with. Float weights are evaluated with the float reference,
  integer weights with the emulator (bit-exact to Lava's fixed_pt, tested).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from . import config as config_mod
from .config import Config, ConfigError
from .fixed.emulator import Emulator, Weights
from .float.readout import task_loss
from .float.rsnn import Params, forward
from .hw import shipped_profiles
from .lava.spec import NetworkSpec
from .rules import bptt, gradient_fn, Rule
from .rules.eprop import eps_v_step, window_target
from .tasks import make_task
from .training.trainer import alignment

F64 = torch.float64
LAYERS = ("W_in", "W_rec", "W_out")
COLUMNS = {"spikes": "share of spike entries equal to the float reference's (first `steps` steps, learning off)",
           "v_err": "RMS(v - v_ref) / threshold over the same steps",
           "trace_err": "RMS(eps_v - eps_v_ref) / RMS(eps_v_ref), presynaptic traces at the last compared step",
           "cos W_*": "cosine of -dW after one learning trial from the initial weights with the BPTT gradient "
                      "(NaN where either is zero, e.g. no spike reached the learning window)",
           "loss": "task loss on the evaluation trials after `train_trials` trials of SGD (lr fixed.lr)"}


@dataclass(frozen=True)
class Trace:
    """What one execution shows on the comparison trials: z, v (T, B, N) and ε^v at the last
    step of each trial (B, n_pre), all in float units."""
    z: torch.Tensor
    v: torch.Tensor
    eps_end: torch.Tensor


@dataclass(frozen=True)
class Setup:
    cfg: Config
    seed: int
    steps: int                 # compared steps per trial
    trials: int                # comparison trials
    train_trials: int
    eval_trials: int


def check_setup(cfg: Config, steps: int | None, trials: int, train_trials: int | None,
                eval_trials: int | None) -> tuple[int, int, int]:
    """Validate the options before any work; returns (steps, train_trials, eval_trials) with the
    defaults filled in (8 and 32, at most the task's frozen trials)."""
    if cfg.rule.name not in ("eprop", "diffusion"):
        raise ConfigError(f"rule.name = {cfg.rule.name!r}: parity compares the on-chip rules eprop and "
                          f"diffusion (BPTT is the column they are compared with)")
    task = make_task(cfg.task, cfg.neuron.dt)
    t_steps = task.steps
    steps = t_steps if steps is None else steps
    if not 1 <= steps <= t_steps:
        raise ConfigError(f"--steps {steps}: must be in 1..{t_steps} (the trial length of {cfg.task.name})")
    most = task.n_frozen if task.frozen else None
    train_trials = min(8, most or 8) if train_trials is None else train_trials
    eval_trials = min(32, most or 32) if eval_trials is None else eval_trials
    for name, value in (("--trials", trials), ("--train-trials", train_trials), ("--eval-trials", eval_trials)):
        if value < 1 or (most is not None and value > most):
            raise ConfigError(f"{name} {value}: must be in 1..{most} ({cfg.task.name} has {most} frozen trials)"
                              if most is not None else f"{name} {value}: must be >= 1")
    return steps, train_trials, eval_trials


def profile_config(cfg: Config, profile: str) -> Config:
    """The config with hardware profile ``profile`` (every switch off for ``ideal``)."""
    over = {"fixed.hw": profile}
    if profile == "ideal":
        over["fixed.switches"] = "off"
    return config_mod.from_mapping(cfg.to_dict(), over)


def presynaptic_traces(x: torch.Tensor, z: torch.Tensor, spec: NetworkSpec) -> torch.Tensor:
    """ε^v(t) = α ε^v(t−1) + s_in pre(t), pre(t) = [x(t), z(t−1)], at the last step: (B, n_pre)."""
    p = spec.net.neuron
    z_prev = torch.cat([torch.zeros_like(z[:1]), z[:-1]])
    eps = torch.zeros_like(torch.cat([x[0], z[0]], dim=-1))
    for pre in torch.cat([x, z_prev], dim=-1):
        eps = eps_v_step(eps, pre, p)
    return eps


def one_trial(batch, kind: str, i: int):
    """Trial i of a batch as a batch of one: (x, target, keys)."""
    target = batch.target[:, i:i + 1] if kind == "classification" else batch.target
    return batch.x[:, :, i:i + 1], target, batch.keys[:, i:i + 1]


def cosines(update: Params, grad: Params) -> dict[str, float]:
    """cos(−ΔW, g_BPTT) per weight matrix (one network)."""
    cos = alignment(Params(*(-d for d in update)), grad)
    return {f"cos {name}": float(cos[f"cos_{name.lower()}"][0]) for name in LAYERS}


def compare(trace: Trace, ref: Trace, thr: float) -> dict[str, float]:
    diff_eps = (trace.eps_end - ref.eps_end).pow(2).mean().sqrt()
    return {"spikes": float((trace.z == ref.z).double().mean()),
            "v_err": float((trace.v - ref.v).pow(2).mean().sqrt()) / thr,
            "trace_err": float(diff_eps / ref.eps_end.pow(2).mean().sqrt().clamp(min=1e-30))}


class FloatExecution:
    """The float reference: forward passes, the rule's gradient, SGD with ``fixed.lr``."""

    def __init__(self, spec: NetworkSpec, rule: Rule):
        self.spec, self.grad = spec, gradient_fn(rule, spec.net)

    def trace(self, x, steps: int) -> Trace:
        """The first ``steps`` steps of full trials x (learning off)."""
        rec = forward(self.spec.net, x, keep_state=True)
        z = rec.z[:steps, 0]
        return Trace(z, rec.v[:steps, 0], presynaptic_traces(x[:steps, 0], z, self.spec))

    def train(self, batch, kind: str, n: int) -> tuple[Params, Params]:
        """(update after trial 0, weights after n trials)."""
        net, first = self.spec.net, None
        for i in range(n):
            g = self.grad(net, *one_trial(batch, kind, i)).grads
            new = Params(*(w - self.spec.fp.lr * gi for w, gi in zip(net.params, g)))
            if i == 0:
                first = Params(*(a - b for a, b in zip(new, net.params)))
            net = net.with_params(new)
        return first, net.params

    def loss(self, params: Params, batch) -> float:
        obj = self.spec.obj
        y = forward(self.spec.net.with_params(params), batch.x).y
        return float(task_loss(y[-obj.window:], window_target(batch.target, obj.kind, -obj.window), obj)[0])


class FixedExecution:
    """The emulator with one spec's integer parameters; trial i of training is its batch i."""

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        self.em = Emulator(spec.net, spec.fp, spec.obj, spec.modulator, [spec.seed], compile=False)

    def trace(self, batch, kind: str, steps: int) -> Trace:
        """The first ``steps`` steps of the full trials of ``batch``, trial i as batch i (Lava's
        protocol: the rounding draws depend on it), learning off."""
        w0, parts = self.em.initial_weights(), []
        for i in range(batch.x.shape[2]):
            x, target, keys = one_trial(batch, kind, i)
            rec = self.em.run(w0, x, target, keys, i, learn=False, record=True).record
            z = rec["z"][:steps, 0]
            eps = rec["x1"][steps - 1, 0].to(F64) / self.spec.fp.s_x if "x1" in rec else \
                presynaptic_traces(x[:steps, 0], z, self.spec)
            parts.append(Trace(z, rec["v"][:steps, 0], eps))
        return Trace(*(torch.cat([getattr(p, f) for p in parts], dim=-2) for f in ("z", "v", "eps_end")))

    def train(self, batch, kind: str, n: int) -> tuple[Params, Weights]:
        w, first = self.em.initial_weights(), None
        for i in range(n):
            new = self.em.run(w, *one_trial(batch, kind, i), i).weights
            if i == 0:
                first = self.delta(w, new)
            w = new
        return first, w

    def delta(self, before: Weights, after: Weights) -> Params:
        return Params(*(a - b for a, b in zip(self.em.float_weights(after), self.em.float_weights(before))))

    def loss(self, weights: Weights, batch) -> float:
        return float(self.em.run(weights, batch.x, batch.target, batch.keys, 0, learn=False).task_loss[0])


def lava_rows(setup: Setup, batches: dict, ref: Trace, grad: Params, flt: "FloatExecution",
              progress: bool) -> list[dict]:
    """The two Lava rows: one run of the comparison trials cut to ``steps`` steps without
    learning, one learning run of the training trials; float weights evaluated by ``flt``."""
    from .lava import network as LN
    cfg, seed = setup.cfg, setup.seed
    task = make_task(cfg.task, cfg.neuron.dt)
    rows = []
    for backend in LN.BACKENDS:
        name = f"lava {'fixed_pt' if backend == 'fixed' else 'floating_pt'}"
        try:
            spec = LN.network_spec(cfg, seed, backend, setup.steps, learn=False)
        except ValueError as e:
            rows.append({"execution": name, "note": f"not run: {e}"})
            continue
        w0 = Weights(*LN.initial_weights(spec, backend))
        cmp = batches["compare"]
        x, target = LN.task_arrays(cmp.x[:setup.steps], cmp.target if task.kind == "classification"
                                   else cmp.target[:setup.steps], task.kind, task.n_out)
        rec = LN.run(LN.build(spec, x, target, backend, w0), setup.trials, backend, progress=progress)
        scale_v = spec.fp.s_v if backend == "fixed" else torch.ones(1, dtype=F64)
        scale_x = spec.fp.s_x if backend == "fixed" else 1.0
        z = torch.from_numpy(rec.z).double().reshape(setup.trials, setup.steps, -1).transpose(0, 1)
        v = torch.from_numpy(rec.v).double().reshape(setup.trials, setup.steps, -1).transpose(0, 1) / scale_v
        eps = torch.stack([torch.from_numpy(np.concatenate([e["x1_in"], e["x1_rec"]])).double()
                           for e in rec.trial_ends]) / scale_x
        row = {"execution": name, **compare(Trace(z, v, eps), ref, float(cfg.neuron.thr))}
        train = batches["train"]
        t_steps = train.x.shape[0]
        learn_spec = dataclasses.replace(spec, trial_steps=t_steps, learn=True)
        x, target = LN.task_arrays(train.x[:, :, :setup.train_trials], train.target[:, :setup.train_trials]
                                   if task.kind == "classification" else train.target, task.kind, task.n_out)
        rec = LN.run(LN.build(learn_spec, x, target, backend, w0), setup.train_trials, backend, progress=progress)
        ends = [Weights(*(torch.from_numpy(e[k]).T[None].to(w.dtype) for k, w in zip(LAYERS, w0)))
                for e in rec.trial_ends]
        if backend == "fixed":
            fixed = FixedExecution(learn_spec)
            row.update(cosines(fixed.delta(w0, ends[0]), grad))
            row["loss"] = fixed.loss(ends[-1], batches["eval"])
        else:
            row.update(cosines(Params(*(a - b for a, b in zip(ends[0], w0))), grad))
            row["loss"] = flt.loss(Params(*ends[-1]), batches["eval"])
        rows.append(row)
    return rows


def parity(cfg: Config, steps: int | None = None, trials: int = 2, train_trials: int | None = None,
           eval_trials: int | None = None,
           profiles: list[str] | None = None, lava: bool = True, seed: int | None = None,
           progress: bool = True) -> dict:
    """The parity table of network ``seed`` (default: the config's first seed); see the module."""
    from .lava import lava_available
    from .lava import network as LN
    steps, train_trials, eval_trials = check_setup(cfg, steps, trials, train_trials, eval_trials)
    profiles = shipped_profiles() if profiles is None else profiles
    for p in profiles:
        if p not in shipped_profiles():
            raise ConfigError(f"--hw {p!r}: unknown profile; shipped: {', '.join(shipped_profiles())}")
    seed = cfg.train.seeds[0] if seed is None else seed
    task = make_task(cfg.task, cfg.neuron.dt)
    t_steps = task.steps
    spec = LN.network_spec(cfg, seed, "float", t_steps, learn=True)
    batches = {"compare": task.batch([seed], "eval", 1, range(trials), "cpu", F64),
               "train": task.batch([seed], "train", 1, range(train_trials), "cpu", F64),
               "eval": task.batch([seed], "eval", 0, range(eval_trials), "cpu", F64)}
    cmp, train = batches["compare"], batches["train"]
    thr = float(cfg.neuron.thr)
    rule = Rule(cfg.rule.name, spec.obj, cfg.rule.mode, cfg.diffusion)
    flt = FloatExecution(spec, rule)
    ref = flt.trace(cmp.x, steps)
    grad = bptt(spec.net, *one_trial(train, task.kind, 0)[:2], spec.obj).grads
    first, final = flt.train(train, task.kind, train_trials)
    rows = [{"execution": "float", **compare(ref, ref, thr), **cosines(first, grad), "loss": flt.loss(final, batches["eval"])}]
    for profile in profiles:
        name = f"fixed {profile}"
        try:
            pcfg = profile_config(cfg, profile)
            fspec = LN.network_spec(pcfg, seed, "fixed", t_steps, learn=True, check=False)
        except (ConfigError, ValueError) as e:
            rows.append({"execution": name, "note": f"not run: {e}"})
            continue
        fixed = FixedExecution(fspec)
        trace = fixed.trace(cmp, task.kind, steps)
        first, final = fixed.train(train, task.kind, train_trials)
        rows.append({"execution": name, **compare(trace, ref, thr), **cosines(first, grad),
                     "loss": fixed.loss(final, batches["eval"]), "switches": ",".join(fspec.fp.switches.names())})
    if lava:
        if lava_available():
            setup = Setup(cfg, seed, steps, trials, train_trials, eval_trials)
            rows += lava_rows(setup, batches, ref, grad, flt, progress)
        else:
            rows.append({"execution": "lava", "note": "not run: lava-nc is not installed here"})
    return {"task": cfg.task.name, "rule": cfg.rule.name, "seed": seed, "steps": steps, "trial_steps": t_steps,
            "trials": trials, "train_trials": train_trials, "eval_trials": eval_trials,
            "fixed_lr": cfg.fixed.lr, "columns": COLUMNS, "rows": rows}
