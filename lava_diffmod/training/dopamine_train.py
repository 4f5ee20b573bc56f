"""Training loops of the Dopamine experiments (RULES.md B.6, B.7): XOR with the 2-H-1 MLP and
next-state forecasting of Lorenz/Rössler with the ReLU RNN, by

* ``dopamine``: :func:`lava_diffmod.rules.dopamine.dopamine` (2 forward passes per update),
* ``wp``: the same code with ``eta_law = "fixed"`` (plain weight perturbation, η = η₀),
* ``adam``: Adam on the backprop / BPTT gradient (≈ 3 forward-equivalents per update:
  the forward pass and a backward pass of about twice its cost).

Runs are compared at an equal budget of forward passes: a method gets ⌊budget / passes⌋
updates. All S seeds train together (seed axis 0); evaluation passes are not counted.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..float.mlp import bce_loss, mlp_init, mlp_logits, mse_loss, rnn_init, rnn_predict
from ..rules.dopamine import DopamineConfig, dopamine, spectral_rescale
from ..tasks.forecast import ForecastData
from ..tasks.xor import xor_data

METHODS = ("dopamine", "wp", "adam")
BPTT_FORWARD_EQUIVALENTS = 3
LOSS_SOLVED = 0.01    # XOR: epochs to a BCE below this


def passes_per_update(method: str, dcfg: DopamineConfig | None) -> int:
    """Forward(-equivalent) passes one update costs."""
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: must be one of {', '.join(METHODS)}")
    return BPTT_FORWARD_EQUIVALENTS if method == "adam" else dcfg.passes


def method_config(method: str, dcfg: DopamineConfig, eta: float | None = None) -> DopamineConfig:
    """The perturbation config of a method: ``wp`` fixes η = ``eta`` and drops the reset."""
    if method == "wp":
        return dataclasses.replace(dcfg, eta_law="fixed", eta0=eta, reset_every=0)
    return dcfg


def fit(method: str, params, loss_fn: Callable, updates: int, seeds: Sequence[int],
        dcfg: DopamineConfig | None = None, lr: float = 1e-3,
        callback: Callable[[int, tuple, dict], bool] | None = None,
        desc: str = "", progress: bool = True):
    """Run ``updates`` updates; ``callback(n, params, stats)`` after each (True stops early).
    Returns (params, wall seconds per update)."""
    bar = tqdm(range(updates), desc=desc, disable=not progress, mininterval=5, unit="upd")
    t0, done = time.perf_counter(), 0
    if method == "adam":
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        opt = torch.optim.Adam(leaves, lr=lr)
        for n in bar:
            opt.zero_grad()
            loss = loss_fn(type(params)(*leaves))
            loss.sum().backward()      # seeds are independent: each seed's leaves get its own gradient
            opt.step()
            params, done = type(params)(*(w.detach() for w in leaves)), n + 1
            if callback is not None and callback(n, params, {"loss": loss.detach()}):
                break
    else:
        opt = dopamine(dcfg, seeds)
        state = opt.init(params)
        for n in bar:
            params, state, info = opt.step(loss_fn, params, state)
            done = n + 1
            if callback is not None and callback(n, params, info._asdict()):
                break
    return params, (time.perf_counter() - t0) / max(done, 1)


def first_or_none(flags: torch.Tensor) -> list[int | None]:
    """Per seed, the first epoch (1-based) where flags (E, S) is true, else None."""
    out = []
    for col in flags.T:
        idx = torch.nonzero(col)
        out.append(int(idx[0]) + 1 if len(idx) else None)
    return out


def train_xor(method: str, seeds: Sequence[int], hidden: int, budget: int,
              dcfg: DopamineConfig | None = None, lr: float = 1e-2, progress: bool = True) -> dict:
    """Full-batch XOR: per seed, epochs (= updates) to 100 % accuracy and to BCE < 0.01 within
    ``budget`` forward passes; stops once every seed has both."""
    x, y = xor_data()
    params = mlp_init(seeds, hidden)
    updates = budget // passes_per_update(method, dcfg)
    acc_hist, loss_hist = [], []
    reached = torch.zeros(2, len(seeds), dtype=torch.bool)    # 100 % seen, BCE < 0.01 seen

    def loss_fn(p):
        return bce_loss(mlp_logits(p, x), y)

    def record(n, p, stats):
        with torch.no_grad():
            logits = mlp_logits(p, x)
            acc_hist.append(((logits > 0).to(y.dtype) == y).all(-1))
            loss_hist.append(bce_loss(logits, y))
        reached[0] |= acc_hist[-1]
        reached[1] |= loss_hist[-1] < LOSS_SOLVED
        return bool(reached.all())

    _, per_update = fit(method, params, loss_fn, updates, seeds, dcfg, lr, record,
                        desc=f"xor {method}", progress=progress)
    acc, loss = torch.stack(acc_hist), torch.stack(loss_hist)
    return {"updates_max": updates, "passes_per_update": passes_per_update(method, dcfg),
            "epochs_to_100pct": first_or_none(acc), "epochs_to_loss_0.01": first_or_none(loss < LOSS_SOLVED),
            "final_loss": loss[-1].tolist(), "final_accuracy_all4": acc[-1].tolist(),
            "s_per_update": per_update}


def train_forecast(method: str, data: ForecastData, seeds: Sequence[int], hidden: int, budget: int,
                   dcfg: DopamineConfig | None = None, lr: float = 1e-3, eval_every: int = 50,
                   rho_init: float = 1.0, progress: bool = True, desc: str = "") -> dict:
    """Full-batch next-state forecasting (the B.5 batch of 5000 exceeds the training set): per
    seed, validation MSE (z-scored units) every ``eval_every`` updates and at the end, and the
    final training MSE. Every method starts from the same weights, W_hh rescaled to ``rho_init``."""
    params = rnn_init(seeds, hidden, dtype=data.x_train.dtype)
    params = params._replace(w_hh=spectral_rescale(params.w_hh, rho_init))
    updates = budget // passes_per_update(method, dcfg)
    ppu = passes_per_update(method, dcfg)
    curve, etas, ss = [], [], []

    def loss_fn(p):
        return mse_loss(rnn_predict(p, data.x_train), data.y_train)

    def val(p):
        with torch.no_grad():
            return mse_loss(rnn_predict(p, data.x_val), data.y_val)

    def record(n, p, stats):
        if "eta" in stats and (n + 1) % eval_every == 0:
            etas.append(stats["eta"].tolist())
            ss.append(stats["s"].tolist())
        if (n + 1) % eval_every == 0 or n + 1 == updates:
            v = val(p)
            curve.append({"update": n + 1, "forward_passes": (n + 1) * ppu, "val_mse": v.tolist()})
            return not bool(torch.isfinite(v).any())
        return False

    curve.append({"update": 0, "forward_passes": 0, "val_mse": val(params).tolist()})
    final, per_update = fit(method, params, loss_fn, updates, seeds, dcfg, lr, record,
                            desc=desc or f"forecast {method}", progress=progress)
    with torch.no_grad():
        train_mse = loss_fn(final)
    out = {"updates": updates, "passes_per_update": ppu, "s_per_update": per_update,
           "final_val_mse": curve[-1]["val_mse"], "final_train_mse": train_mse.tolist(),
           "curve": curve}
    if etas:
        out["eta_log"], out["s_log"] = etas, ss
    return out


def median(values: Sequence[float | None]) -> float:
    """Median with None (not reached) and NaN counted as +inf."""
    v = sorted(math.inf if x is None or x != x else x for x in values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
