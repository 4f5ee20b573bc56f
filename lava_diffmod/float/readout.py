r"""Leaky readout, task losses, output errors and the firing-rate regulariser (MODEL.md §1, §3.1).

.. math::

    y_m(t) &= \kappa y_m(t-1) + (1-\kappa) \sum_j W_\mathrm{out}[j,m] z_j(t) \\
    E_\mathrm{task} &= \operatorname{red}_b \operatorname{red}_{t \in \mathcal W}
        \begin{cases} -\sum_m \pi^*_{bm} \log \pi_{bm}(t) & \text{classification, } \pi = \mathrm{softmax}(y) \\
                      \tfrac12 \sum_m (y_{bm}(t) - y^*_m(t))^2 & \text{regression} \end{cases} \\
    \mathrm{err}_{bm}(t) &= \pi_{bm}(t) - \pi^*_{bm} \;\text{ or }\; y_{bm}(t) - y^*_m(t) \quad (t \in \mathcal W,\ 0 \text{ outside}) \\
    E_\mathrm{reg} &= \tfrac12 c_\mathrm{reg} \sum_j \operatorname{red}_b (r_{bj} - f_0)^2, \qquad
        r_{bj} = \tfrac1T \sum_t z_{bj}(t) \ \text{(spikes/ms)}

"red" is a mean (default) or a sum; 𝒲 is the last ``window`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Objective:
    """What is optimised: task kind, learning window and reductions, regulariser."""
    kind: str                       # "classification" | "regression"
    window: int                     # T_LS, the last steps of the trial
    c_reg: float = 0.0
    f0: float = 0.01                # target rate, spikes per ms
    time_reduction: str = "mean"    # of E_task over the window
    batch_reduction: str = "mean"   # of every term over trials
    grad_time_reduction: str = "mean"  # of the e-prop task gradient over the window

    def __post_init__(self):
        if self.kind not in ("classification", "regression"):
            raise ValueError(f"objective.kind = {self.kind!r}: must be classification or regression")
        if self.window < 1:
            raise ValueError(f"objective.window = {self.window}: must be >= 1")
        for name in ("time_reduction", "batch_reduction", "grad_time_reduction"):
            if getattr(self, name) not in ("mean", "sum"):
                raise ValueError(f"objective.{name} = {getattr(self, name)!r}: must be mean or sum")

    def time_scale(self) -> float:
        """Factor of E_task's sum over the window: 1/T_LS (mean) or 1 (sum)."""
        return 1.0 / self.window if self.time_reduction == "mean" else 1.0

    def grad_time_scale(self) -> float:
        return 1.0 / self.window if self.grad_time_reduction == "mean" else 1.0

    def batch_scale(self, batch: int) -> float:
        return 1.0 / batch if self.batch_reduction == "mean" else 1.0


def readout_step(y: torch.Tensor, z: torch.Tensor, w_out: torch.Tensor, kappa: float) -> torch.Tensor:
    """y(t) = κ y(t−1) + (1−κ) z(t) W_out, from the spikes of the same step."""
    return torch.lerp(z @ w_out, y, kappa)


def output_error(y: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """err = softmax(y) − onehot(label) or y − y*; ``target`` is labels (S, B) or y*."""
    if kind == "classification":
        labels = torch.arange(y.shape[-1], device=y.device)      # one-hot without a host-side range check
        return torch.softmax(y, dim=-1) - (target[..., None] == labels).to(y.dtype)
    return y - target


def task_loss(y_window: torch.Tensor, target: torch.Tensor, obj: Objective) -> torch.Tensor:
    """E_task per seed, from readouts over the window, (W, S, B, n_out) → (S,)."""
    if obj.kind == "classification":
        per_step = -torch.log_softmax(y_window, dim=-1).gather(
            -1, target[None, ..., None].expand(y_window.shape[0], *target.shape, 1))[..., 0]
    else:
        per_step = 0.5 * ((y_window - target) ** 2).sum(-1)
    return per_step.sum(0).sum(-1) * obj.time_scale() * obj.batch_scale(y_window.shape[2])


def rate_regulariser(rates: torch.Tensor, obj: Objective) -> torch.Tensor:
    """E_reg per seed from rates (S, B, N) in spikes per step."""
    dev = (rates - obj.f0) ** 2
    return 0.5 * obj.c_reg * dev.sum(-1).sum(-1) * obj.batch_scale(rates.shape[1])


def accuracy_and_prediction(y_window: torch.Tensor, labels: torch.Tensor):
    """Predicted class = argmax of the logits summed over the window (ties → lowest index)."""
    pred = y_window.sum(0).argmax(-1)
    return (pred == labels).to(y_window.dtype).mean(-1), pred


def nmse(y_window: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Σ_t (y − y*)² / Σ_t y*² per trial, averaged over trials → (S,)."""
    num = ((y_window - target) ** 2).sum(0).sum(-1)
    den = (target ** 2).sum(0).sum(-1)
    return (num / den).mean(-1)
