"""Figures of a run: learning curves, a spike raster, the modulator field on the grid."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..config import DiffusionConfig  # noqa: E402
from ..float.readout import output_error  # noqa: E402
from ..float.rsnn import Network, forward  # noqa: E402
from ..rules.eprop import LearningSignal, window_target  # noqa: E402
from ..rules.modulator import modulator_from_config  # noqa: E402


def learning_curves(rows: list[dict], path: Path, title: str) -> None:
    """Evaluation metric against iteration: every seed thin, mean ± 95% CI as a band."""
    evals = [r for r in rows if r["split"] == "eval"]
    metrics = [k for k in ("accuracy", "ce", "nmse") if evals and k in evals[0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    iters = sorted({r["iteration"] for r in evals})
    seeds = sorted({r["seed"] for r in evals})
    for ax, key in zip(axes[0], metrics):
        table = torch.tensor([[next(r[key] for r in evals if r["iteration"] == i and r["seed"] == s)
                               for s in seeds] for i in iters], dtype=torch.float64)
        for col in table.T:
            ax.plot(iters, col, color="0.75", lw=0.6)
        mean = table.mean(1)
        if len(seeds) > 1:
            ci = 1.96 * table.std(1) / len(seeds) ** 0.5
            ax.fill_between(iters, mean - ci, mean + ci, alpha=0.3)
        ax.plot(iters, mean, lw=1.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel(key)
        if key == "nmse":
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def spike_raster(x: torch.Tensor, z: torch.Tensor, y: torch.Tensor, is_alif: torch.Tensor,
                 path: Path, title: str) -> None:
    """Input spikes, recurrent spikes (LIF then ALIF) and the readout of one trial."""
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True,
                             gridspec_kw={"height_ratios": [1, 2, 1]})
    t_in, i_in = torch.nonzero(x, as_tuple=True)
    axes[0].scatter(t_in, i_in, s=0.5, c="k")
    axes[0].set_ylabel("input")
    order = torch.argsort(is_alif.long(), stable=True)
    t_rec, j = torch.nonzero(z[:, order], as_tuple=True)
    n_lif = int((~is_alif).sum())
    axes[1].scatter(t_rec, j, s=0.5, c=["tab:blue" if jj < n_lif else "tab:red" for jj in j.tolist()])
    axes[1].set_ylabel("neuron (LIF blue, ALIF red)")
    axes[2].plot(y)
    axes[2].set_ylabel("readout y")
    axes[2].set_xlabel("time step (ms)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def field_snapshots(fields: list[torch.Tensor], steps: list[int], grid: tuple[int, int],
                    cells: torch.Tensor, path: Path, title: str) -> None:
    """The neuromodulator concentration on the h × w grid at a few steps of the window."""
    fig, axes = plt.subplots(1, len(fields), figsize=(2.6 * len(fields) + 1, 3.0), squeeze=False,
                             layout="constrained")
    vmax = max(float(f.abs().max()) for f in fields) or 1.0
    rows, cols = cells // grid[1], cells % grid[1]
    for ax, f, t in zip(axes[0], fields, steps):
        im = ax.imshow(f.reshape(grid), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.scatter(cols, rows, s=2, c="k", alpha=0.3)
        ax.set_title(f"t = {t}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="concentration")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def run_figures(exp, net: Network, run_dir: Path, rows: list[dict]) -> list[str]:
    """Draw the three figures of a run into ``run_dir/figures``; returns their paths."""
    out = Path(run_dir) / "figures"
    out.mkdir(exist_ok=True)
    cfg = exp.cfg
    name = f"{cfg.task.name}, {cfg.rule.name}"
    paths = [out / "learning_curves.png", out / "spike_raster.png", out / "modulator_field.png"]
    learning_curves(rows, paths[0], name)
    one = net.select([0])
    batch = exp.task.batch(exp.seeds[:1], "eval", 0, range(1), net.device, net.dtype)
    rec = forward(one, batch.x)
    spike_raster(batch.x[:, 0, 0].cpu(), rec.z[:, 0, 0].cpu(), rec.y[:, 0, 0].cpu(),
                 net.is_alif.cpu(), paths[1], f"{name}: seed {exp.seeds[0]}, eval trial 0")
    # the field this rule would see (k = 0 for rules without diffusion: the released signal only)
    diffusion = cfg.diffusion if cfg.rule.name == "diffusion" else DiffusionConfig(k=0.0)
    mod = modulator_from_config(diffusion, one)
    obj = exp.rule.objective
    t0 = batch.x.shape[0] - obj.window
    err = output_error(rec.y[t0:], window_target(batch.target, obj.kind, t0), obj.kind)
    signal = LearningSignal(one, mod, batch.keys)
    picks = sorted({t0, t0 + 1, t0 + 2, t0 + min(5, obj.window - 1), batch.x.shape[0] - 1})
    fields = []
    for t in range(t0, batch.x.shape[0]):
        signal.step(err[t - t0], t)
        if t in picks:
            fields.append(signal.field[0, 0].sum(0).cpu())
    field_snapshots(fields, picks, one.grid, one.cells[0].cpu(), paths[2],
                    f"{name}: learning-signal field (k = {diffusion.k})")
    return [str(p) for p in paths]
