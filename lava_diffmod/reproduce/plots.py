"""Figures of ``reproduce fig2``: learning curves with 95% CI bands per task, final metrics as
bars, the update-vs-BPTT angle along training, and the k-sweep with the shuffled control."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import HEADLINE, curve  # noqa: E402


def _panels(tasks: list[str]):
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.5), squeeze=False)
    return fig, dict(zip(tasks, axes[0]))


def _band(ax, iters, mean, ci, label):
    lo = [m - c for m, c in zip(mean, ci)]
    hi = [m + c for m, c in zip(mean, ci)]
    line, = ax.plot(iters, mean, lw=1.6, label=label)
    ax.fill_between(iters, lo, hi, alpha=0.25, color=line.get_color())


def _label(ax, task: str, xlabel: str, ylabel: str, log: bool = False, legend: bool = True) -> None:
    ax.set_title(task)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if legend:
        ax.legend(fontsize=7)


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def learning_curves(runs, tasks, path: Path) -> str:
    fig, axes = _panels(tasks)
    for cond, _, rows in runs:
        if cond.group in ("main", "fixed", "extra"):
            key = HEADLINE[cond.task]
            _band(axes[cond.task], *curve(rows, "eval", key), cond.name)
    for task, ax in axes.items():
        _label(ax, task, "iteration", HEADLINE[task], HEADLINE[task] == "nmse")
    return _save(fig, path)


def final_bars(table, tasks, path: Path) -> str:
    fig, axes = _panels(tasks)
    for task, ax in axes.items():
        key = HEADLINE[task]
        rows = [r for r in table if r["task"] == task]
        ax.bar(range(len(rows)), [r[key] for r in rows], yerr=[r[f"{key}_ci95"] for r in rows], capsize=3,
               color=["C0" if r["backend"] == "float" else "C3" for r in rows])
        ax.set_xticks(range(len(rows)), [r["condition"] for r in rows], rotation=45, ha="right", fontsize=7)
        _label(ax, task, "", f"final {key}", key == "nmse", legend=False)
    return _save(fig, path)


def angle_curves(runs, tasks, path: Path) -> str:
    fig, axes = _panels(tasks)
    for cond, _, rows in runs:
        if cond.group in ("main", "fixed", "extra") and any(r["split"] == "align" for r in rows):
            _band(axes[cond.task], *curve(rows, "align", "angle_w_rec"), cond.name)
    for task, ax in axes.items():
        ax.axhline(90, color="0.6", lw=0.6, ls=":")
        _label(ax, task, "iteration", "angle(ΔW_rec, BPTT gradient) (deg)")
    return _save(fig, path)


def k_sweep(table, tasks, path: Path) -> str:
    fig, axes = _panels(tasks)
    for task, ax in axes.items():
        key = HEADLINE[task]
        pts = sorted((r["k"], r[key], r[f"{key}_ci95"]) for r in table
                     if r["task"] == task and r["rule"] == "diffusion" and r["backend"] == "float"
                     and r["condition"] != "shuffled")
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label="diffusion")
        for r in table:
            if r["task"] != task or r["backend"] != "float":
                continue
            if r["condition"] == "shuffled":
                ax.errorbar([r["k"]], [r[key]], yerr=[r[f"{key}_ci95"]], marker="s", linestyle="none", capsize=3,
                            label="shuffled diffusion")
            elif r["condition"] in ("eprop", "bptt"):   # no k: a level with its CI band
                line = ax.axhline(r[key], ls="--", lw=1, color="C2" if r["condition"] == "eprop" else "C3",
                                  label=r["condition"])
                ax.axhspan(r[key] - r[f"{key}_ci95"], r[key] + r[f"{key}_ci95"], alpha=0.15, color=line.get_color())
        _label(ax, task, "retention k", f"final {key}")
    return _save(fig, path)


def draw(runs, out: Path) -> list[str]:
    """Every figure the finished runs allow; returns the paths."""
    from . import table_rows
    out.mkdir(parents=True, exist_ok=True)
    table = table_rows(runs)
    tasks = list(dict.fromkeys(c.task for c, _, _ in runs))
    figures = [learning_curves(runs, tasks, out / "learning_curves.png"),
               final_bars(table, tasks, out / "final_metrics.png")]
    if any(r["split"] == "align" for _, _, rows in runs for r in rows):
        figures.append(angle_curves(runs, tasks, out / "alignment.png"))
    sweep = [t for t in tasks if sum(r["task"] == t and r["rule"] == "diffusion" and r["backend"] == "float"
                                     for r in table) > 1]
    if sweep:
        figures.append(k_sweep(table, sweep, out / "k_sweep.png"))
    return figures
