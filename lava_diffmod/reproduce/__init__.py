"""``lava-diffmod reproduce fig2``: the paper's comparison (MODEL.md §5–§6), resumable.

Conditions, each one training run with all seeds batched (one program on one GPU):

* ``main``: the three tasks × {BPTT, e-prop, diffusion k = 0.75}, float;
* ``ksweep``: diffusion with k ∈ {0.25, 0.5, 0.9} (0.75 is in ``main``), cue accumulation and DMS;
* ``shuffle``: the shuffled-diffusion control (Π⁻¹ K Π, MODEL.md §7.12), cue accumulation and DMS;
* ``fixed``: e-prop and diffusion in fixed point (Loihi 2 profile, every hardware switch on), all tasks;
  and, for the tasks with ALIF units, diffusion with ALIF's ε^a kept on chip in tag_2
  (``eps_a_tag2``, 16-step learning epochs with epoch means, W_out headroom 1/32);
* ``extra`` (not run by default): ModProp and the dopamine optimizer (RULES.md), all tasks.

Every e-prop-family run logs the cosine and angle of its update with the BPTT gradient of the
same trials every ``align_every`` iterations. A run that has its summary is skipped, a run with a
checkpoint resumes, so the protocol can be spread over sessions one task or one group at a time.

Output under ``out``: ``<task>/<condition>/`` run directories, ``table.csv`` and ``table.json``
(final metrics, mean and 95% CI per task, condition, rule and backend), ``figures/*.png`` and
``report.md`` with the authors' numbers beside ours.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as config_mod
from ..config import ConfigError
from ..training import checkpoint
from ..training.trainer import mean_ci, read_metrics, same_run, train

TASKS = ("cue_accumulation", "dms", "pattern_generation")
GROUPS = ("main", "ksweep", "shuffle", "fixed", "extra")
DEFAULT_GROUPS = GROUPS[:4]          # the paper's protocol; "extra" adds ModProp and dopamine rows
SWEEP_TASKS = ("cue_accumulation", "dms")
K_SWEEP = (0.25, 0.5, 0.9)
METRICS = {"cue_accumulation": ("accuracy", "ce"), "dms": ("accuracy", "ce"), "pattern_generation": ("nmse",)}
HEADLINE = {"cue_accumulation": "accuracy", "dms": "accuracy", "pattern_generation": "nmse"}

# dopamine on the spiking networks: σ relative to each matrix's rms weight (RULES.md B.8)
DOPAMINE_SPIKING = {"dopamine.sigma": 0.1, "dopamine.sigma_relative": True}
# fixed point: the Loihi 2 profile with every hardware switch on
FIXED_LOIHI2 = {"fixed.hw": "loihi2", "fixed.switches": "hardware"}
# the same with ALIF's ε^a on chip (fixed_headroom_cpu.json: chance → within 3 points of float at 300 iterations)
FIXED_EPS_A = {"fixed.hw": "loihi2", "fixed.readout_headroom": 1 / 32,
               "fixed.switches": {"preset": "hardware", "drop_alif_eps_a": False, "eps_a_tag2": True, "t_epoch": 16,
                                  "epoch_mean": True}}

# MODEL.md §6: the authors' committed logs, final evaluation at iteration 2000, mean and 95% CI.
AUTHORS = {
    ("cue_accumulation", "bptt"): {"ce": (0.090, 0.036), "accuracy": (0.968, 0.017)},
    ("cue_accumulation", "eprop"): {"ce": (0.418, 0.029), "accuracy": (0.860, 0.018)},
    ("cue_accumulation", "diffusion"): {"ce": (0.228, 0.015), "accuracy": (0.929, 0.008)},
    ("dms", "bptt"): {"ce": (0.018, 0.007), "accuracy": (0.997, 0.002)},
    ("dms", "eprop"): {"ce": (0.549, 0.049), "accuracy": (0.740, 0.050)},
    ("dms", "diffusion"): {"ce": (0.191, 0.032), "accuracy": (0.951, 0.013)},
    ("pattern_generation", "bptt"): {"nmse": (0.0043, 0.0005)},
    ("pattern_generation", "eprop"): {"nmse": (0.0753, 0.0104)},
    ("pattern_generation", "diffusion"): {"nmse": (0.0218, 0.0025)},
}


@dataclass(frozen=True)
class Condition:
    """One training run of the protocol: a task, a rule and its overrides."""
    task: str
    name: str
    group: str
    rule: str
    backend: str = "float"
    overrides: dict = field(default_factory=dict)


def conditions(tasks: list[str], groups: list[str]) -> list[Condition]:
    """The protocol's runs for the chosen tasks and groups, in running order."""
    for t in tasks:
        if t not in TASKS:
            raise ConfigError(f"--tasks {t!r}: must be among {', '.join(TASKS)}")
    for g in groups:
        if g not in GROUPS:
            raise ConfigError(f"--groups {g!r}: must be among {', '.join(GROUPS)}")
    out = []
    for task in tasks:
        if "main" in groups:
            out += [Condition(task, rule, "main", rule, overrides={"diffusion.k": 0.75})
                    for rule in ("bptt", "eprop", "diffusion")]
        if "ksweep" in groups and task in SWEEP_TASKS:
            out += [Condition(task, f"diffusion_k{k}", "ksweep", "diffusion", overrides={"diffusion.k": k})
                    for k in K_SWEEP]
        if "shuffle" in groups and task in SWEEP_TASKS:
            out.append(Condition(task, "shuffled", "shuffle", "diffusion",
                                 overrides={"diffusion.k": 0.75, "diffusion.shuffle": "fixed"}))
        if "fixed" in groups:
            out += [Condition(task, f"fixed_{rule}", "fixed", rule, "fixed", {"diffusion.k": 0.75, **FIXED_LOIHI2})
                    for rule in ("eprop", "diffusion")]
            if task in SWEEP_TASKS:   # the tasks with ALIF units
                out.append(Condition(task, "fixed_diffusion_eps_a", "fixed", "diffusion", "fixed",
                                     {"diffusion.k": 0.75, **FIXED_EPS_A}))
        if "extra" in groups:
            out += [Condition(task, "modprop", "extra", "modprop"),
                    Condition(task, "dopamine", "extra", "dopamine", overrides=DOPAMINE_SPIKING)]
    return out


def condition_config(cond: Condition, seeds: list[int], iterations: int, device: str, align_every: int,
                     extra: dict | None = None):
    """The validated config of one condition: the task's paper config plus the protocol."""
    over = {"rule.name": cond.rule, "train.backend": cond.backend, "train.seeds": seeds,
            "train.iterations": iterations, "train.device": device, "train.align_every": align_every,
            **cond.overrides}
    cfg = config_mod.load(config_mod.config_path(cond.task), over)
    if extra:
        cfg = config_mod.from_mapping(cfg.to_dict(), extra)
    return cfg


def run_condition(cond: Condition, run_dir: Path, cfg, progress: bool = True) -> str:
    """Train (or resume, or skip) one condition; returns what happened."""
    if (run_dir / "summary.json").is_file():
        return "done"
    cfg = config_mod.from_mapping(cfg.to_dict(), {"train.progress": progress})
    if (run_dir / "checkpoint.safetensors").is_file():
        saved = config_mod.load(run_dir / "config.toml")
        if not same_run(saved, cfg):
            raise ConfigError(f"{run_dir}: holds a run with another config; use another --out")
        train(cfg, run_dir, resume=True)
        return "resumed"
    train(cfg, run_dir)
    return "trained"


def run(out: Path, tasks: list[str], groups: list[str], seeds: list[int], iterations: int = 2000,
        device: str = "cpu", align_every: int = 50, extra: dict | None = None, progress: bool = True) -> dict:
    """Run (or resume) the protocol's conditions, then write the table, figures and report."""
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    if iterations < 1:
        raise ConfigError(f"--iterations {iterations}: must be >= 1")
    out = Path(out)
    conds = conditions(tasks, groups)
    cfgs = [condition_config(c, seeds, iterations, device, align_every, extra) for c in conds]  # all checked first
    for cond, cfg in zip(conds, cfgs):
        status = run_condition(cond, out / cond.task / cond.name, cfg, progress)
        print(f"{cond.task} / {cond.name}: {status}", flush=True)
    return report(out)


# ------------------------------------------------------------------------------------ results
def finished_runs(out: Path) -> list[tuple[Condition, dict, list[dict]]]:
    """(condition, summary, metric rows) of every finished run under ``out``."""
    found = []
    for cond in conditions(list(TASKS), list(GROUPS)):
        path = out / cond.task / cond.name / "summary.json"
        if path.is_file():
            found.append((cond, json.loads(path.read_text()), read_metrics(path.parent)))
    return found


def table_rows(runs) -> list[dict]:
    """Final evaluation per condition: mean and 95% CI of each metric."""
    return [table_row(cond, [summary]) for cond, summary, _ in runs]


def table_row(cond: Condition, summaries: list[dict]) -> dict:
    """One condition's final evaluation over the seeds of its runs' summaries: mean and 95% CI
    of each metric, total seeds and wall time (a sweep splits a condition's seeds over runs)."""
    row = {"task": cond.task, "condition": cond.name, "group": cond.group, "rule": cond.rule,
           "backend": cond.backend, "k": summaries[0].get("k"), "seeds": sum(len(s["seeds"]) for s in summaries),
           "iteration": max(s["iteration"] for s in summaries),
           "wall_s": round(sum(s["wall_s"] for s in summaries), 2)}
    for key in METRICS[cond.task]:
        row[key], row[f"{key}_ci95"] = mean_ci([v for s in summaries for v in s["final"][key]["per_seed"]])
    return row


def write_table(out: Path, table: list[dict]) -> None:
    """``table.csv`` and ``table.json`` under ``out``, one row per condition."""
    keys = list(dict.fromkeys(k for r in table for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, keys)
    writer.writeheader()
    writer.writerows(table)
    checkpoint.atomic_write_text(Path(out) / "table.csv", buf.getvalue())
    checkpoint.atomic_write_text(Path(out) / "table.json", json.dumps(table, indent=2))


def curve(rows: list[dict], split: str, key: str) -> tuple[list[int], list[float], list[float]]:
    """(iterations, mean, 95% CI half-width) of ``key`` over seeds, NaNs left out."""
    iters = sorted({r["iteration"] for r in rows if r["split"] == split})
    means, cis = [], []
    for i in iters:
        vals = [r[key] for r in rows if r["split"] == split and r["iteration"] == i and r[key] == r[key]]
        m, c = mean_ci(vals) if vals else (float("nan"), 0.0)
        means.append(m)
        cis.append(c)
    return iters, means, cis


def checks(table: list[dict]) -> list[str]:
    """The acceptance checks of the issue, as report lines."""
    lines = []
    get = {(r["task"], r["condition"]): r for r in table}
    for task in TASKS:
        key = HEADLINE[task]
        sign = 1 if key == "accuracy" else -1             # higher accuracy, lower nMSE is better
        rules = [get.get((task, r)) for r in ("bptt", "diffusion", "eprop")]
        if all(rules):
            def beats(a, b):
                return sign * (a[key] - b[key]) > 0 and \
                    sign * ((a[key] - sign * a[f"{key}_ci95"]) - (b[key] + sign * b[f"{key}_ci95"])) > 0
            bd, de = beats(rules[0], rules[1]), beats(rules[1], rules[2])
            lines.append(f"- {task}: BPTT beats diffusion with non-overlapping 95% CIs: {'yes' if bd else 'NO'}; "
                         f"diffusion beats e-prop: {'yes' if de else 'NO'}")
        for rule in ("bptt", "eprop", "diffusion"):
            ours, ref = get.get((task, rule)), AUTHORS[(task, rule)].get(key)
            if ours and ref:
                inside = abs(ours[key] - ref[0]) <= ref[1]
                lines.append(f"- {task} {rule}: ours {fmt(ours[key], ours[f'{key}_ci95'], key)} vs authors "
                             f"{fmt(ref[0], ref[1], key)}: {'within' if inside else 'OUTSIDE'} the authors' 95% CI")
        for name in ("fixed_diffusion", "fixed_diffusion_eps_a"):
            lines += fixed_gap(task, key, get.get((task, "diffusion")), get.get((task, name)), name)
    return lines


def fixed_gap(task: str, key: str, fl: dict | None, fx: dict | None, name: str) -> list[str]:
    """The float-minus-fixed check of one fixed-point condition (none if either run is missing)."""
    if not (fl and fx):
        return []
    if key == "accuracy":
        gap = 100 * (fl[key] - fx[key])
        return [f"- {task}: float diffusion minus {name} accuracy = {gap:.1f} points: "
                f"{'within' if gap <= 3 else 'NOT within'} 3 points"]
    ratio = fx[key] / fl[key]
    return [f"- {task}: {name} nMSE is {ratio:.2f}x float diffusion: {'within' if ratio <= 2 else 'NOT within'} 2x"]


def fmt(mean: float, ci: float, key: str) -> str:
    if key == "accuracy":
        return f"{100 * mean:.1f} ± {100 * ci:.1f} %"
    return f"{mean:.4f} ± {ci:.4f}"


def markdown(table: list[dict], figures: list[str]) -> str:
    lines = ["# Reproduction of the paper's comparison (fig. 2)", "",
             "Final evaluation (iteration of the last evaluation), mean ± 95% CI over seeds (1.96·SE). "
             "Authors: their committed training logs (MODEL.md §6).", "",
             "| task | condition | backend | seeds | iteration | ours | authors |", "|---|---|---|---|---|---|---|"]
    for r in table:
        key = HEADLINE[r["task"]]
        ref = AUTHORS.get((r["task"], r["condition"]), {}).get(key)
        lines.append(f"| {r['task']} | {r['condition']} | {r['backend']} | {r['seeds']} | {r['iteration']} | "
                     f"{key} {fmt(r[key], r[f'{key}_ci95'], key)} | {fmt(*ref, key) if ref else ''} |")
    lines += ["", "## Checks", "", *checks(table), "", "## Figures", ""]
    lines += [f"![{Path(f).stem}](figures/{Path(f).name})" for f in figures]
    lines += ["", "## Wall time per run", "", "| task | condition | seeds | wall (s) |", "|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['condition']} | {r['seeds']} | {r['wall_s']} |" for r in table]
    return "\n".join(lines) + "\n"


def report(out: Path) -> dict:
    """Write table.csv, table.json, figures/ and report.md from the finished runs under ``out``."""
    out = Path(out)
    runs = finished_runs(out)
    if not runs:
        raise ConfigError(f"{out}: holds no finished run of the protocol")
    table = table_rows(runs)
    write_table(out, table)
    from . import plots   # matplotlib only when figures are drawn
    figures = plots.draw(runs, out / "figures")
    checkpoint.atomic_write_text(out / "report.md", markdown(table, figures))
    return {"table": table, "figures": figures, "report": str(out / "report.md")}
