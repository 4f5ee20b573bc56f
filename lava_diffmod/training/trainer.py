"""The trainer: batches, micro-batches, optimiser, evaluation, checkpoints, metrics, figures.

Protocol (MODEL.md §5.4): one optimiser step per iteration from the average of the
micro-batch gradients; evaluation on a fixed set at iterations 1, 1 + e, 1 + 2e, … and the last;
a checkpoint at every ``checkpoint_every`` iterations and at the end. All S seeds of the config
train together as one population.

Run directory: ``config.toml`` (resolved), ``metrics.jsonl``, ``checkpoint.safetensors``,
``figures/*.png``, ``summary.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import config as config_mod
from ..config import Config
from ..float.readout import Objective, accuracy_and_prediction, nmse, task_loss
from ..float.rsnn import Network, Params
from ..rules import Rule, bptt_fn
from ..rules.eprop import window_target
from ..tasks import make_task
from . import checkpoint, distributed, optim
from .engine import Engine

CHECKPOINT = "checkpoint.safetensors"

# tqdm's default lock is a multiprocessing lock, whose creation fixes the process's start
# method; Lava later calls multiprocessing.set_start_method('fork') and would then fail. A
# thread lock keeps training and Lava usable in one process.
tqdm.set_lock(threading.RLock())


class TrainingDiverged(RuntimeError):
    """NaN or inf in the loss or the weights."""


@dataclass(frozen=True)
class Experiment:
    """Everything a config defines: task, networks, rule, optimiser."""
    cfg: Config
    task: object
    net: Network
    rule: Rule
    optimizer: optim.Optimizer
    engine: Engine
    emulator: object = None      # the fixed backend's Emulator (train.backend = "fixed")
    dopamine: object = None      # rules.dopamine.Dopamine (rule.name = "dopamine"), used instead of optimizer
    ranks: distributed.Ranks = distributed.Ranks()   # data-parallel processes (one by default)

    @property
    def seeds(self) -> list[int]:
        return list(self.cfg.train.seeds)


def objective_for(cfg: Config, task) -> Objective:
    return Objective(kind=task.kind, window=task.window, c_reg=cfg.c_reg(), f0=cfg.rule.f0,
                     time_reduction=cfg.loss.time_reduction, batch_reduction=cfg.loss.batch_reduction,
                     grad_time_reduction=cfg.loss.grad_time_reduction)


def modprop_mu(cfg: Config, task, net: Network) -> torch.Tensor:
    """ModProp's μ per seed (S,): the configured number, or ``mu_scale`` · ⟨ψ⟩ of the initial
    networks on iteration 1's first micro-batch (the same on a resumed run)."""
    mu = cfg.modprop.mu
    if mu != "auto":
        return torch.full((net.n_seeds,), float(mu), dtype=net.dtype, device=net.device)
    from ..rules.modprop import default_mu
    size = cfg.train.batch_size // cfg.train.micro_batches
    batch = task.batch(list(cfg.train.seeds), "train", 1, range(size), net.device, net.dtype)
    return default_mu(net, batch.x, cfg.modprop.mu_scale)


def gradient_rule(cfg: Config, task, net: Network) -> Rule:
    """The config's gradient rule (dopamine: its e-prop objective only; it needs no gradient)."""
    name = "eprop" if cfg.rule.name == "dopamine" else cfg.rule.name
    mu = modprop_mu(cfg, task, net) if name == "modprop" else None
    return Rule(name, objective_for(cfg, task), cfg.rule.mode, cfg.diffusion, cfg.modprop, mu, cfg.rule.storage,
                cfg.rule.bptt_mode)


def setup(cfg: Config) -> Experiment:
    """Build the task, the S networks and the rule of a validated config."""
    task = make_task(cfg.task, cfg.neuron.dt)
    fixed = cfg.train.backend == "fixed"
    dtype = torch.float64 if fixed else getattr(torch, cfg.train.dtype)
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise config_mod.ConfigError(f"train.device = {cfg.train.device!r}: CUDA is not available here")
    net = Network.from_config(cfg, list(cfg.train.seeds), task.n_in, task.n_out, device, dtype)
    rule = gradient_rule(cfg, task, net)
    emulator = None
    if fixed:
        from ..fixed.emulator import Emulator
        from ..fixed.quantize import quantize
        profile, switches = cfg.fixed_setup()
        fp = quantize(net, profile, switches, cfg.fixed, rule.objective, cfg.train.batch_size,
                      cfg.diffusion if rule.name == "diffusion" else None, list(cfg.train.seeds))
        try:
            emulator = Emulator(net, fp, rule.objective, rule.modulator(net), list(cfg.train.seeds),
                                storage=cfg.rule.storage, graphs=cfg.train.cuda_graphs)
        except ValueError as e:
            raise config_mod.ConfigError(str(e)) from None
    dopa = None
    if cfg.rule.name == "dopamine":
        try:
            dopa = dopamine_optimizer(cfg, net, emulator)
        except ValueError as e:
            raise config_mod.ConfigError(str(e)) from None
    return Experiment(cfg, task, net, rule, optim.from_config(cfg.train),
                      # ModProp's ρ(A) guard reads eigenvalues on the host: not graph-safe
                      Engine(rule, net, graphs=cfg.train.cuda_graphs and rule.name != "modprop"), emulator, dopa)


def train_batch(exp: Experiment, iteration: int, micro: int):
    """Micro-batch ``micro`` of iteration ``iteration`` (the same trials however it is split)."""
    size = exp.cfg.train.batch_size // exp.cfg.train.micro_batches
    net = exp.net
    return exp.task.batch(exp.seeds, "train", iteration, range(micro * size, (micro + 1) * size),
                          net.device, net.dtype)


def iteration_gradients(exp: Experiment, net: Network, iteration: int):
    """Average of the micro-batch gradients (= one batch), and the mean loss terms per seed; with
    several processes each computes its share of the micro-batches and the sums are all-reduced."""
    n_micro = exp.cfg.train.micro_batches
    total, task_l, reg_l, correct = None, 0.0, 0.0, 0.0
    for micro in exp.ranks.micro_batches(n_micro):
        batch = train_batch(exp, iteration, micro)
        out = exp.engine.gradients(net.params, batch.x, batch.target, batch.keys)
        total = out.grads if total is None else Params(*(a + b for a, b in zip(total, out.grads)))
        task_l = task_l + out.task_loss
        reg_l = reg_l + out.reg_loss
        if exp.task.kind == "classification":
            correct = correct + accuracy_and_prediction(out.y_window, batch.target)[0]
    if exp.ranks.world > 1:
        *grads, task_l, reg_l, correct = exp.ranks.sum([*total, task_l, reg_l, torch.as_tensor(correct).to(task_l)])
        total = Params(*grads)
    scale = 1.0 / n_micro if exp.cfg.loss.batch_reduction == "mean" else 1.0
    stats = {"loss": (task_l + reg_l) * scale, "task_loss": task_l * scale, "reg_loss": reg_l * scale}
    if exp.task.kind == "classification":
        stats["accuracy"] = correct / n_micro
    return Params(*(g * scale for g in total)), stats


def fixed_iteration(exp: Experiment, weights, iteration: int, events: dict):
    """One iteration of the fixed backend: the whole batch in one emulator pass, written back
    once (micro-batches do not apply); adds the run's saturation events to ``events``."""
    batch = exp.task.batch(exp.seeds, "train", iteration, range(exp.cfg.train.batch_size),
                           exp.net.device, exp.net.dtype)
    res = exp.emulator.batch(weights, batch.x, batch.target, batch.keys, iteration)
    for k, v in res.events.items():
        events[k] = events.get(k, 0) + v
    stats = {"loss": res.task_loss + res.reg_loss, "task_loss": res.task_loss, "reg_loss": res.reg_loss}
    if exp.task.kind == "classification":
        stats["accuracy"] = accuracy_and_prediction(res.y_window, batch.target)[0]
    return res.weights, stats


def bptt_gradients(exp: Experiment, net: Network, iteration: int) -> Params:
    """The BPTT gradient of iteration ``iteration``'s trials (summed over its micro-batches)."""
    total = None
    fn = bptt_fn(exp.rule.bptt_mode)
    for micro in range(exp.cfg.train.micro_batches):
        batch = train_batch(exp, iteration, micro)
        g = fn(net, batch.x, batch.target, exp.rule.objective).grads
        total = g if total is None else Params(*(a + b for a, b in zip(total, g)))
    return total


def alignment(update: Params, grad: Params) -> dict[str, torch.Tensor]:
    """Per seed, cos(update, g_BPTT) for each weight matrix and the recurrent angle in degrees
    (MODEL.md §5.4 diagnostic); NaN where either is zero."""
    out = {}
    for name, u, g in zip(("w_in", "w_rec", "w_out"), update, grad):
        u, g = u.flatten(1).double(), g.flatten(1).double()
        den = u.norm(dim=1) * g.norm(dim=1)
        cos = torch.where(den > 0, (u * g).sum(1) / den.clamp(min=1e-300), torch.nan)
        out[f"cos_{name}"] = cos
    out["angle_w_rec"] = torch.rad2deg(torch.arccos(out["cos_w_rec"].clamp(-1, 1)))
    return out


def dopamine_optimizer(cfg: Config, net: Network, emu):
    """The dopamine optimizer of the config (RULES.md B) for the float weights, or for the
    emulator's integer weights (saturated to the profile's range)."""
    from ..rules.dopamine import dopamine, network_masks
    limits = None if emu is None else (-emu.fp.weight_limit - 1, emu.fp.weight_limit)
    return dopamine(cfg.dopamine_setup(), list(cfg.train.seeds), network_masks(net), limits)


def dopamine_resume(fresh, done: int, meta: dict):
    """The dopamine state after ``done`` iterations: η and s from the checkpoint's meta."""
    d = meta["dopamine"]
    return fresh._replace(step=done, eta=torch.tensor(d["eta"], dtype=fresh.eta.dtype, device=fresh.eta.device),
                          s=torch.tensor(d["s"], dtype=fresh.s.dtype, device=fresh.s.device))


def dopamine_iteration(exp: Experiment, params, state, iteration: int):
    """One dopamine update on the whole batch: a clean and a perturbed pass (float network or
    fixed-point emulator), the RPE and the adaptive rate; stats per seed."""
    from ..rules.dopamine import emulator_loss, network_loss
    batch = exp.task.batch(exp.seeds, "train", iteration, range(exp.cfg.train.batch_size),
                           exp.net.device, exp.net.dtype)
    if exp.emulator is None:
        loss = network_loss(exp.net, batch.x, batch.target, exp.rule.objective)
    else:
        loss = emulator_loss(exp.emulator, batch.x, batch.target, batch.keys, iteration)
    new, state, info = exp.dopamine.step(loss, params, state)
    return new, state, {"loss": info.loss, "rpe": info.delta, "eta": info.eta, "rpe_trace": info.s}


def iteration(exp: Experiment, params, state, n: int, events: dict):
    """One training iteration → (params, state, stats, gradient estimate or None when the rule
    only moves the weights)."""
    net = exp.net
    if exp.dopamine is not None:
        return (*dopamine_iteration(exp, params, state, n), None)
    if exp.emulator is not None:
        params, stats = fixed_iteration(exp, params, n, events)
        return params, optim.OptState(n, None, None), stats, None
    grads, stats = iteration_gradients(exp, net.with_params(params), n)
    params, state = exp.optimizer.update(grads, state, params)
    params = Params(params.w_in * net.m_in, params.w_rec * net.m_rec, params.w_out * net.m_out)
    return params, state, stats, grads


def update_alignment(exp: Experiment, before, after, grads, n: int) -> dict[str, torch.Tensor]:
    """The alignment of iteration n's update (the gradient estimate, else the weight change
    before − after in float units) with BPTT's gradient at the pre-update weights."""
    emu, net = exp.emulator, exp.net
    w0, w1 = (w if emu is None else emu.float_weights(w) for w in (before, after))
    update = grads if grads is not None else Params(*(a - b for a, b in zip(w0, w1)))
    return alignment(update, bptt_gradients(exp, net.with_params(Params(*(w.to(net.dtype) for w in w0))), n))


def eval_batches(exp: Experiment):
    """The fixed evaluation set, in chunks of ``train.eval_batch`` trials."""
    n = exp.task.n_frozen if exp.task.frozen else exp.cfg.train.eval_trials
    size = exp.cfg.train.eval_batch
    for start in range(0, n, size):
        yield exp.task.batch(exp.seeds, "eval", 0, range(start, min(start + size, n)),
                             exp.net.device, exp.net.dtype)


def window_metrics(y_w: torch.Tensor, target: torch.Tensor, obj: Objective, rate: torch.Tensor,
                   dt: float) -> dict[str, torch.Tensor]:
    """Per-seed metrics of one batch from the readout over the window: CE and accuracy (E_task
    without E_reg, mean reductions), or nMSE; the mean firing rate in Hz."""
    tgt = window_target(target, obj.kind, -obj.window)
    parts = {"rate_hz": rate * 1000.0 / dt}
    if obj.kind == "classification":
        parts["ce"] = task_loss(y_w, tgt, Objective(obj.kind, obj.window))
        parts["accuracy"] = accuracy_and_prediction(y_w, tgt)[0]
    else:
        parts["nmse"] = nmse(y_w, tgt.expand_as(y_w))
    return parts


@torch.no_grad()
def evaluate(exp: Experiment, net: Network, batches=None) -> dict[str, torch.Tensor]:
    """Evaluation metrics per seed: CE and accuracy, or nMSE; mean firing rate in Hz."""
    obj = exp.rule.objective
    sums: dict[str, torch.Tensor] = {}
    n_trials = 0
    for batch in batches if batches is not None else eval_batches(exp):
        if exp.emulator is not None:   # the fixed backend evaluates in fixed point
            res = exp.emulator.batch(net.params, batch.x, batch.target, batch.keys, 0, learn=False)
            y_w, rate = res.y_window, res.rate
        else:
            rec = exp.engine.forward(net.params, batch.x)
            y_w, rate = rec.y[batch.x.shape[0] - obj.window:], rec.z.mean((0, 2, 3))
        parts = window_metrics(y_w, batch.target, obj, rate, exp.cfg.neuron.dt)
        b = batch.x.shape[2]
        for k, v in parts.items():
            sums[k] = sums.get(k, 0) + v * b
        n_trials += b
    return {k: v / n_trials for k, v in sums.items()}


def eval_iterations(iterations: int, every: int) -> set[int]:
    """1, 1 + every, 1 + 2·every, … and the last iteration (MODEL.md §5.4)."""
    return set(range(1, iterations + 1, every)) | {iterations}


def _rows(iteration: int, split: str, seeds: list[int], stats: dict) -> list[dict]:
    rows = []
    for i, seed in enumerate(seeds):
        row = {"iteration": iteration, "split": split, "seed": seed}
        row.update({k: float(v[i]) for k, v in stats.items()})
        rows.append(row)
    return rows


def same_run(a: Config, b: Config) -> bool:
    """Configs that define the same run: equal up to device and progress display."""
    def core(c: Config) -> Config:
        return dataclasses.replace(c, train=dataclasses.replace(c.train, device="cpu", progress=True))
    return core(a) == core(b)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in lines[:-1]]
    if lines:
        try:
            rows.append(json.loads(lines[-1]))
        except json.JSONDecodeError:   # a last line torn by a kill mid-write: resume drops it
            pass
    return rows


def _finite(stats: dict, params: Params) -> bool:
    return bool(torch.isfinite(stats["loss"]).all()) and all(bool(torch.isfinite(p).all()) for p in params)


def train(cfg: Config, run_dir: str | Path, resume: bool = False,
          on_iteration: Callable[[int], None] | None = None) -> dict | None:
    """Train the config's S networks; write the run directory; return the summary.

    With ``resume`` the run continues from ``run_dir``'s checkpoint and ends with the same
    weights as an uninterrupted run. ``on_iteration(n)`` is called after each iteration.
    Started by torchrun (WORLD_SIZE > 1), the processes share every batch
    (:mod:`.distributed`); rank 0 writes the run directory and returns the summary, the others
    return None.
    """
    run_dir = Path(run_dir)
    ranks, cfg = distributed.from_environment(cfg)
    exp = dataclasses.replace(setup(cfg), ranks=ranks)
    main = ranks.main
    net, opt, emu = exp.net, exp.optimizer, exp.emulator
    params = net.params if emu is None else emu.initial_weights()   # fixed: the hardware weights
    dopa = cfg.rule.name == "dopamine"
    state = exp.dopamine.init(params) if dopa else opt.init(params) if emu is None else optim.OptState(0, None, None)
    start = 1
    events: dict = {}
    ckpt_path = run_dir / CHECKPOINT
    if resume:
        saved = config_mod.load(run_dir / "config.toml")
        if not same_run(saved, cfg):
            raise config_mod.ConfigError(f"--resume: the config differs from the one in {run_dir}/config.toml")
        params, opt_state, done, meta = checkpoint.load(ckpt_path, params)
        state = dopamine_resume(state, done, meta) if dopa else opt_state
        events = {k: torch.tensor(v, device=net.device) for k, v in meta.get("events", {}).items()}
        start = done + 1
        rows = [r for r in read_metrics(run_dir) if r["iteration"] <= done]
        if main:
            checkpoint.atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    elif main:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_write_text(run_dir / "config.toml", config_mod.dumps(cfg))
        checkpoint.atomic_write_text(run_dir / "metrics.jsonl", "")
    tc = cfg.train
    evals = eval_iterations(tc.iterations, tc.eval_every)
    aligns = eval_iterations(tc.iterations, tc.align_every) if tc.align_every and cfg.rule.name != "bptt" else set()
    eval_set = list(eval_batches(exp))
    t_start = time.time()
    metric_name = "accuracy" if exp.task.kind == "classification" else "nmse"
    last_eval: dict = {}
    bar = tqdm(range(start, tc.iterations + 1), total=tc.iterations, initial=start - 1,
               disable=not (tc.progress and main), desc=f"{cfg.task.name} {cfg.rule.name}", unit="it")
    with open(run_dir / "metrics.jsonl" if main else os.devnull, "a") as log:
        for n in bar:
            before = params
            params, state, stats, grads = iteration(exp, params, state, n, events)
            if not _finite(stats, params):
                raise TrainingDiverged(
                    f"iteration {n}: NaN or inf in the loss or weights; stopped. The last good "
                    f"checkpoint is {ckpt_path} (lower train.lr or check the inputs)")
            rows = _rows(n, "train", exp.seeds, stats)
            if n in aligns:   # the rule's update against BPTT's gradient of the same trials
                rows += _rows(n, "align", exp.seeds, update_alignment(exp, before, params, grads, n))
            if n in evals:
                last_eval = evaluate(exp, net.with_params(params), eval_set)
                rows += _rows(n, "eval", exp.seeds, last_eval)
            log.write("".join(json.dumps(r) + "\n" for r in rows))
            log.flush()
            meta = {"seeds": exp.seeds, "events": {k: v.tolist() for k, v in events.items()}}
            if dopa:   # η and s as exact floats; σ follows from the initial weights
                meta["dopamine"] = {"eta": state.eta.tolist(), "s": state.s.tolist()}
            saved_state = optim.OptState(n, None, None) if dopa else state
            if main and (n % tc.checkpoint_every == 0 or n == tc.iterations):
                checkpoint.save(ckpt_path, params, saved_state, n, meta)
            postfix = {"loss": f"{float(stats['loss'].mean()):.4f}"}
            if last_eval:
                postfix[metric_name] = f"{float(last_eval[metric_name].mean()):.3f}"
            bar.set_postfix(postfix)
            if on_iteration is not None:
                on_iteration(n)
            if tc.stop_error > 0 and exp.task.kind == "classification" and last_eval and \
                    bool((1 - last_eval["accuracy"] < tc.stop_error).all()):
                if main:
                    checkpoint.save(ckpt_path, params, saved_state, n, meta)
                break
    if not main:
        return None
    summary = summarise(exp, run_dir, read_metrics(run_dir), time.time() - t_start)
    if emu is not None:
        summary["events"] = {k: v.tolist() for k, v in events.items()}
        summary["backend"] = {"hw": emu.fp.profile_name, "switches": emu.fp.switches.names()}
    from . import plots   # matplotlib only once figures are drawn
    float_params = params if emu is None else Params(*(w.to(net.dtype) for w in emu.float_weights(params)))
    summary["figures"] = plots.run_figures(exp, net.with_params(float_params), run_dir, read_metrics(run_dir))
    checkpoint.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% CI (1.96 · SE; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n)


def summarise(exp: Experiment, run_dir: Path, rows: list[dict], wall_s: float) -> dict:
    """Final evaluation per seed, mean ± 95% CI, and the run's identity."""
    evals = [r for r in rows if r["split"] == "eval"]
    last = max((r["iteration"] for r in evals), default=0)
    final = [r for r in evals if r["iteration"] == last]
    keys = [k for k in ("accuracy", "ce", "nmse", "rate_hz") if final and k in final[0]]
    cfg = exp.cfg
    return {
        "run_dir": str(run_dir), "task": cfg.task.name, "rule": cfg.rule.name, "mode": cfg.rule.mode,
        "k": cfg.diffusion.k if cfg.rule.name == "diffusion" else None,
        "seeds": exp.seeds, "iteration": last, "wall_s": round(wall_s, 2),
        "final": {k: {"per_seed": [r[k] for r in final], "mean": mean_ci([r[k] for r in final])[0],
                      "ci95": mean_ci([r[k] for r in final])[1]} for k in keys},
    }
