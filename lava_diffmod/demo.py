"""The README's main job: cue accumulation with plain e-prop and with diffusion (k = 0.75),
at a reduced budget that fits a 2-core CPU in a few minutes.

The two rules train side by side, one process per core, each with two seeds batched; this
process follows their metrics files with a progress bar each, then prints a table and draws
one figure that puts the two learning curves together.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from . import config as config_mod
from .training.trainer import mean_ci, read_metrics

RULES = ("eprop", "diffusion")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cue_accumulation.toml"


def demo_command(rule: str, out: Path, iterations: int, config: Path) -> list[str]:
    return [sys.executable, "-m", "lava_diffmod.cli", "train", "--config", str(config), "--rule", rule,
            "--k", "0.75", "--seeds", "1-2", "--iterations", str(iterations), "--batch-size", "16",
            "--micro-batches", "1", "--eval-every", "50", "--eval-trials", "256", "--device", "cpu",
            "--out", str(out / rule), "--no-progress"]


def comparison_figure(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for rule, rows in runs.items():
        evals = [r for r in rows if r["split"] == "eval"]
        iters = sorted({r["iteration"] for r in evals})
        acc = [[r["accuracy"] for r in evals if r["iteration"] == i] for i in iters]
        mean = [sum(a) / len(a) for a in acc]
        lo = [min(a) for a in acc]
        hi = [max(a) for a in acc]
        ax.plot(iters, mean, label=rule, lw=2)
        ax.fill_between(iters, lo, hi, alpha=0.25)
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("evaluation accuracy")
    ax.set_title("cue accumulation, 2 seeds (band: min–max)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(out: Path, iterations: int | None = None, config: Path = EXAMPLE) -> int:
    """Train both rules, print the table, write the figures; returns a process exit code."""
    iterations = iterations or 400
    config_mod.load(config)            # fail early on a broken example
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"Training cue accumulation with e-prop and with diffusion (k = 0.75): 2 seeds each, "
          f"{iterations} iterations of 16 trials, on the CPU. Runs: {out}/")
    procs, bars, logs = {}, {}, {}
    for i, rule in enumerate(RULES):
        if (out / rule).exists():
            shutil.rmtree(out / rule)
        logs[rule] = open(out / f"{rule}.log", "w")
        procs[rule] = subprocess.Popen(demo_command(rule, out, iterations, config), env=env,
                                       stdout=logs[rule], stderr=subprocess.STDOUT)
        bars[rule] = tqdm(total=iterations, desc=f"{rule:>9}", position=i, unit="it")
    t0 = time.time()
    while any(p.poll() is None for p in procs.values()):
        time.sleep(1.0)
        for rule, bar in bars.items():
            rows = read_metrics(out / rule)
            done = max((r["iteration"] for r in rows if r["split"] == "train"), default=0)
            evals = [r for r in rows if r["split"] == "eval"]
            bar.update(done - bar.n)
            if evals:
                last = max(r["iteration"] for r in evals)
                acc = [r["accuracy"] for r in evals if r["iteration"] == last]
                bar.set_postfix(accuracy=f"{sum(acc) / len(acc):.3f}")
    for bar in bars.values():
        bar.close()
    for log in logs.values():
        log.close()
    failed = [rule for rule, p in procs.items() if p.returncode != 0]
    if failed:
        for rule in failed:
            print(f"\n{rule} failed; its log ({out / (rule + '.log')}) ends with:\n"
                  + (out / f"{rule}.log").read_text()[-3000:], file=sys.stderr)
        return 1
    runs = {rule: read_metrics(out / rule) for rule in RULES}
    rows = []
    for rule in RULES:
        summary = json.loads((out / rule / "summary.json").read_text())
        acc = summary["final"]["accuracy"]["per_seed"]
        ce = summary["final"]["ce"]["per_seed"]
        m, ci = mean_ci(acc)
        rows.append({"rule": rule, "seeds": "1, 2", "iterations": summary["iteration"],
                     "accuracy (per seed)": ", ".join(f"{a:.3f}" for a in acc),
                     "accuracy mean": f"{m:.3f}", "eval CE mean": f"{sum(ce) / len(ce):.3f}",
                     "rate (Hz)": f"{summary['final']['rate_hz']['mean']:.1f}"})
    from .cli import format_table
    print()
    print(format_table(rows, list(rows[0])))
    comparison_figure(runs, out / "comparison.png")
    print(f"\nWall time {time.time() - t0:.0f} s. Figures:")
    print(f"  {out / 'comparison.png'}  (both rules' learning curves)")
    for rule in RULES:
        print(f"  {out / rule / 'figures'}/  (learning curves, spike raster, modulator field)")
    print("The paper's protocol is 2000 iterations of 64 trials and 20 seeds (see README, GPU).")
    return 0
