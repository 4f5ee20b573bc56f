r"""Chaotic time-series forecasting data (RULES.md B.6): Lorenz and Rössler by RK4, windows → next state.

.. math::

    \text{Lorenz: } \dot x = 10(y - x),\ \dot y = x(28 - z) - y,\ \dot z = xy - \tfrac83 z \qquad
    \text{Rössler: } \dot x = -y - z,\ \dot y = x + 0.2y,\ \dot z = 0.2 + z(x - 5.7)

    \text{RK4: } u_{n+1} = u_n + \tfrac{dt}6 (k_1 + 2k_2 + 2k_3 + k_4)

A series is ``steps`` states (the first one is u₀ = (1, 0, 0) after ``burn_in`` discarded steps),
dt = 0.01 (time units of the ODE). It is split 80/20 in time, z-scored per dimension with the
training part's mean and std, and cut into windows of ``lookback`` states whose target is the
next state (1-step horizon): 5000 states give 4000 − 32 = 3968 training and 968 validation windows.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

SYSTEMS = ("lorenz", "rossler")


def lorenz(u: torch.Tensor) -> torch.Tensor:
    x, y, z = u.unbind(-1)
    return torch.stack([10.0 * (y - x), x * (28.0 - z) - y, x * y - (8.0 / 3.0) * z], -1)


def rossler(u: torch.Tensor) -> torch.Tensor:
    x, y, z = u.unbind(-1)
    return torch.stack([-y - z, x + 0.2 * y, 0.2 + z * (x - 5.7)], -1)


def rk4_step(f: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor, dt: float) -> torch.Tensor:
    """One classical Runge–Kutta step of du/dt = f(u) (local error O(dt⁵))."""
    k1 = f(u)
    k2 = f(u + 0.5 * dt * k1)
    k3 = f(u + 0.5 * dt * k2)
    k4 = f(u + dt * k3)
    return u + (dt / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


def trajectory(system: str, steps: int = 5000, dt: float = 0.01, u0=(1.0, 0.0, 0.0),
               burn_in: int = 0) -> torch.Tensor:
    """(steps, 3) float64 states, the first at u₀ advanced by ``burn_in`` RK4 steps."""
    if system not in SYSTEMS:
        raise ValueError(f"forecast.system = {system!r}: must be one of {', '.join(SYSTEMS)}")
    if steps < 2:
        raise ValueError(f"forecast.steps = {steps}: must be >= 2")
    if burn_in < 0:
        raise ValueError(f"forecast.burn_in = {burn_in}: must be >= 0")
    if not dt > 0:
        raise ValueError(f"forecast.dt = {dt}: must be > 0")
    f = lorenz if system == "lorenz" else rossler
    u = torch.tensor(u0, dtype=torch.float64)
    for _ in range(burn_in):
        u = rk4_step(f, u, dt)
    out = [u]
    for _ in range(steps - 1):
        u = rk4_step(f, u, dt)
        out.append(u)
    return torch.stack(out)


def windows(series: torch.Tensor, lookback: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (M, lookback, d) and next-state targets (M, d), M = len(series) − lookback."""
    if not 1 <= lookback < series.shape[0]:
        raise ValueError(f"forecast.lookback = {lookback}: must be in [1, {series.shape[0] - 1}] "
                         f"for a series of {series.shape[0]} states")
    x = series.unfold(0, lookback, 1)[:-1].transpose(1, 2)
    return x.contiguous(), series[lookback:]


class ForecastData(NamedTuple):
    x_train: torch.Tensor   # (M_train, lookback, 3), z-scored
    y_train: torch.Tensor   # (M_train, 3)
    x_val: torch.Tensor
    y_val: torch.Tensor
    mean: torch.Tensor      # (3,) training statistics
    std: torch.Tensor


def forecast_data(system: str, steps: int = 5000, lookback: int = 32, train_fraction: float = 0.8,
                  burn_in: int = 0, dtype=torch.float64) -> ForecastData:
    """The chronological split, z-scored with training statistics, cut into windows."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"forecast.train_fraction = {train_fraction}: must be in (0, 1)")
    series = trajectory(system, steps, burn_in=burn_in)
    n_train = int(round(train_fraction * steps))
    mean, std = series[:n_train].mean(0), series[:n_train].std(0)
    z = (series - mean) / std
    xt, yt = windows(z[:n_train], lookback)
    xv, yv = windows(z[n_train:], lookback)
    return ForecastData(xt.to(dtype), yt.to(dtype), xv.to(dtype), yv.to(dtype), mean, std)
