"""What fixed point costs: cue accumulation with diffusion, Loihi 2 profile.

    python benchmarks/fixed_accuracy.py fidelity [--device cpu] [--seeds 5] [--batch 16]
    python benchmarks/fixed_accuracy.py training [--device cuda] [--seeds 5] [--iterations 2000] [--eval-every 25]
    python benchmarks/fixed_accuracy.py forward [--seeds 5] [--iterations 300]
    python benchmarks/fixed_accuracy.py figure --curves float=KEY[+KEY] fixed=KEY [--from JSON] [--png PNG]
    python benchmarks/fixed_accuracy.py figure --gaps LABEL=KEY [LABEL=KEY ...] [--from JSON] [--png PNG] [--md MD]

* fidelity (cheap): for every approximation alone and for all of them (LOIHI.md §5.3), the weight
  update of one batch at the initial weights against the float update of the same batch:
  cosine and norm ratio per weight matrix (mean over seeds), the share of synapses whose update
  the approximation truncated to zero, and the saturation events.
* training: float (plain SGD at the fixed backend's rate; Adam does not exist on chip) against the
  fixed emulator with every switch on, the same seeds batched; final evaluation accuracy, mean
  and 95% CI, and the gap; ``--conditions`` adds single approximations or ``hardware-a,b`` (every
  hardware switch but a and b); ``--baselines`` picks which of float_sgd and fixed_hardware run
  (none: only the conditions). Every fixed row gets its gap to float_sgd when that ran.
* forward: float-trained weights evaluated, quantised, in fixed point (hardware switches; ideal):
  the cost of the fixed-point forward pass alone.
* figure: ``--curves``, evaluation accuracy along training per seed, from the curves that training
  records; ``--gaps``, the paired gap to float with its 95% CI per entry that holds one, and with
  ``--md`` the same rows as a markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS, ROOT, record  # noqa: E402
from lava_diffmod import config as config_mod  # noqa: E402
from lava_diffmod.cli import parse_sets  # noqa: E402
from lava_diffmod.fixed.switches import ALONE, APPROXIMATIONS, Switches  # noqa: E402
from lava_diffmod.training import checkpoint, trainer  # noqa: E402

EXAMPLE = ROOT / "examples" / "cue_accumulation.toml"
CURVE = "eval_curve_iteration_accuracy_ce"


def seed_list(args) -> list[int]:
    return list(range(args.first_seed, args.first_seed + args.seeds))


def base_overrides(args) -> dict:
    return {"train.seeds": seed_list(args), "train.batch_size": args.batch,
            "train.micro_batches": 1, "train.device": args.device, "train.progress": False,
            "rule.name": "diffusion", "fixed.lr": args.lr, **parse_sets(args.set)}


def condition_switches(name: str):
    """``hardware``; ``hardware-a,b``: every hardware switch but a, b (leave-out, LOIHI.md §5.3);
    ``off``; else one approximation alone (``Switches.only``). A suffix ``+c,d=v`` turns switch c
    on (its value alone) and sets d = v (TOML value) on top, e.g.
    ``hardware-drop_alif_eps_a+eps_a_tag2,t_epoch=16``."""
    name, _, extra = name.partition("+")
    if name in ("hardware", "off"):
        spec = {"preset": name}
    elif name.startswith("hardware-"):
        off = Switches.off()
        spec = {"preset": "hardware", **{f: getattr(off, f) for f in known(name.removeprefix("hardware-"), name)}}
    else:
        sw = Switches.only(known(name, name)[0])
        spec = {"preset": "off", **{f: getattr(sw, f) for f in sw.names()}}
    for item in filter(None, extra.split(",")):
        key, sep, value = item.partition("=")
        known(key, item)
        spec[key] = tomllib.loads(f"v = {value}")["v"] if sep else ALONE.get(key, True)
    return spec


def known(names: str, where: str) -> list[str]:
    """The switch names of a comma list, or a clear exit naming the unknown ones."""
    out, allowed = names.split(","), [f.name for f in dataclasses.fields(Switches)]
    unknown = [f for f in out if f not in allowed]
    if unknown:
        raise SystemExit(f"--conditions {where}: unknown switch {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return out


def fidelity(args) -> dict:
    over = base_overrides(args)
    runs = {}
    for name in ["off", "hardware", *APPROXIMATIONS]:
        spec = "off" if name == "off" else condition_switches(name)
        cfg = config_mod.load(EXAMPLE, dict(over, **{"train.backend": "fixed", "fixed.switches": spec}))
        exp = trainer.setup(cfg)
        em = exp.emulator
        batch = exp.task.batch(exp.seeds, "train", 1, range(args.batch), exp.net.device, torch.float64)
        w0 = em.initial_weights()
        res = em.run(w0, batch.x, batch.target, batch.keys, 1)
        dw = [a - b for a, b in zip(em.float_weights(res.weights), em.float_weights(w0))]
        runs[name] = (dw, {k: int(v.sum()) for k, v in res.events.items()}, em.fp.switches.weight_bits)
        print(name, flush=True)
    ref = runs["off"][0]
    out = {}
    for name, (dw, events, integer) in runs.items():
        if name == "off":
            continue
        row = {}
        for label, a, b in zip(("W_in", "W_rec", "W_out"), dw, ref):
            cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
            norm = a.flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp(min=1e-30)
            moved = b != 0
            zero = ((a == 0) & moved).sum() / moved.sum().clamp(min=1)
            row[label] = {"cosine": round(float(cos.mean()), 4), "norm_ratio": round(float(norm.mean()), 3),
                          "truncated_to_zero": round(float(zero), 4)}
        row["events"] = {k: v for k, v in events.items() if v}
        out[name] = row
    out["setup"] = {"task": "cue_accumulation", "rule": "diffusion k=0.75", "profile": "loihi2",
                    "seeds": seed_list(args), "batch": args.batch, "fixed_lr": args.lr,
                    "note": "one batch at the initial weights; each approximation alone (with the "
                            "switches it needs) and all on ('hardware'), against all off (float)"}
    return out


def eval_curves(rows: list[dict]) -> dict[str, list[list[float]]]:
    """A run's evaluations per seed: ``seed_<s>`` → [[iteration, accuracy, ce], ...]."""
    curves: dict[str, list[list[float]]] = {}
    for r in sorted((r for r in rows if r["split"] == "eval"), key=lambda r: (r["seed"], r["iteration"])):
        curves.setdefault(f"seed_{r['seed']}", []).append([r["iteration"], round(r["accuracy"], 4), round(r["ce"], 4)])
    return curves


def training(args) -> dict:
    over = dict(base_overrides(args), **{"train.iterations": args.iterations, "train.eval_every": args.eval_every})
    baselines = {"float_sgd": {"train.optimizer": "sgd", "train.lr": args.lr},
                 "fixed_hardware": {"train.backend": "fixed", "fixed.switches": "hardware"}}
    conditions = {name: baselines[name] for name in args.baselines}
    for name in args.conditions:
        conditions[f"fixed_{name}"] = {"train.backend": "fixed", "fixed.switches": condition_switches(name)}
    out = {}
    for name, extra in conditions.items():
        cfg = config_mod.load(EXAMPLE, dict(over, **extra))
        with tempfile.TemporaryDirectory() as tmp:   # --runs: kept (metrics, figures, checkpoint); a rerun resumes
            run_dir = Path(args.runs or tmp) / name
            summary = trainer.train(cfg, run_dir, resume=(run_dir / trainer.CHECKPOINT).exists())
            curves = eval_curves(trainer.read_metrics(run_dir))
        acc = summary["final"]["accuracy"]
        out[name] = {"accuracy_mean": acc["mean"], "ci95": acc["ci95"], "per_seed": acc["per_seed"],
                     "wall_s": summary["wall_s"], "saturation_events": summary.get("events", {}),
                     CURVE: curves}
        print(name, out[name], flush=True)
    if "float_sgd" in out:   # float − fixed, in accuracy points
        out["gap_float_minus_fixed_points"] = {
            name: round(100 * (out["float_sgd"]["accuracy_mean"] - row["accuracy_mean"]), 2)
            for name, row in out.items() if name.startswith("fixed_")}
    out["setup"] = {"task": "cue_accumulation", "rule": "diffusion k=0.75", "profile": "loihi2",
                    "seeds": seed_list(args), "batch": args.batch, "iterations": args.iterations, "lr": args.lr,
                    "eval_every": args.eval_every, "eval_trials": 512, "set": parse_sets(args.set)}
    return out


def forward(args) -> dict:
    """Train float (plain SGD at the fixed rate) for ``--iterations``, then evaluate those weights,
    quantised, in the emulator with every hardware switch on and with all off (ideal): what the
    fixed-point forward pass alone costs, apart from learning in fixed point."""
    over = dict(base_overrides(args), **{"train.iterations": args.iterations, "train.eval_every": args.iterations})
    float_cfg = config_mod.load(EXAMPLE, dict(over, **{"train.optimizer": "sgd", "train.lr": args.lr}))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        summary = trainer.train(float_cfg, Path(tmp) / "float")
        params = checkpoint.load(Path(tmp) / "float" / trainer.CHECKPOINT, trainer.setup(float_cfg).net.params)[0]
    out["float"] = summary["final"]["accuracy"]
    for name, spec, hw in (("fixed_hardware", "hardware", "loihi2"), ("fixed_ideal_off", "off", "ideal")):
        exp = trainer.setup(config_mod.load(EXAMPLE, dict(over, **{"train.backend": "fixed", "fixed.switches": spec,
                                                                   "fixed.hw": hw})))
        w = exp.emulator.weights_from_float(params)
        acc = trainer.evaluate(exp, exp.net.with_params(w), list(trainer.eval_batches(exp)))["accuracy"]
        out[name] = {"accuracy_mean": float(acc.mean()), "per_seed": [float(a) for a in acc]}
        print(name, out[name], flush=True)
    out["setup"] = {"task": "cue_accumulation", "rule": "diffusion k=0.75", "seeds": seed_list(args), "batch": args.batch,
                    "iterations": args.iterations, "lr": args.lr, "eval_trials": 512,
                    "note": "the float-trained weights evaluated (no learning) in fixed point"}
    return out


def entry(result: dict, key: str, flag: str, *fields: str) -> dict:
    """``a.b.c`` → result["a"]["b"]["c"], which must hold every ``fields``; else an error naming the missing part."""
    node = result
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise SystemExit(f"{flag}: no entry {part!r} in {key!r}")
        node = node[part]
    for field in fields:
        if field not in node:
            raise SystemExit(f"{flag}: {key!r} has no {field}")
    return node


def labelled(spec: str, flag: str) -> tuple[str, list[str]]:
    """``LABEL=KEY[+KEY...]`` → (LABEL, [KEY, ...]), or an error naming the flag."""
    label, sep, keys = spec.partition("=")
    if not sep or not keys:
        raise SystemExit(f"{flag}: {spec!r} is not LABEL=KEY[+KEY...]")
    return label, keys.split("+")


def axes(size: tuple[float, float]):
    """A figure and its axes, drawn off-screen (Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=size)


def save(fig, ax, args, **legend) -> None:
    """Title, legend (placed by ``legend``, default: where matplotlib finds room) and the PNG ``--png``."""
    ax.set_title(args.title)
    ax.legend(fontsize=8, **legend)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print("wrote", args.png)


def figure(args) -> None:
    """Evaluation accuracy along training, each seed a thin line and the seeds' mean a thick one, a
    colour per condition: ``--curves LABEL=KEY[+KEY...]`` pools the seeds of the entries KEY
    (dotted paths into the ``--from`` JSON, e.g. ``thousand_iterations.lr50.float``)."""
    result = json.loads(Path(args.source).read_text())
    fig, ax = axes((6.4, 3.8))
    for spec in args.curves:
        label, keys = labelled(spec, "--curves")
        seeds = {s: c for key in keys for s, c in entry(result, key, "--curves", CURVE)[CURVE].items()}
        color = None
        for curve in seeds.values():
            color = ax.plot([c[0] for c in curve], [100 * c[1] for c in curve], lw=0.7, alpha=0.45, color=color)[0].get_color()
        table = torch.tensor([[c[1] for c in curve] for curve in seeds.values()], dtype=torch.float64)
        iters = [c[0] for c in next(iter(seeds.values()))]
        ax.plot(iters, 100 * table.mean(0), lw=2.2, color=color, label=f"{label} ({len(seeds)} seeds)")
    ax.axhline(50, color="0.6", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("iteration")
    ax.set_ylabel("evaluation accuracy (%)")
    save(fig, ax, args)


SNAPSHOTS = (("", "final evaluation"), ("_last4", "mean of the last 4 evaluations"))
GAP_STATS = ("mean_points", "ci95_1.96se_points")
GAP = tuple(f"paired_gap{key}_{stat}" for key, _ in SNAPSHOTS for stat in GAP_STATS)


def gap(node: dict, key: str) -> tuple[float, float]:
    """The paired gap's mean and 95 % half-width (points) on snapshot ``key`` ("" final, "_last4")."""
    return tuple(node[f"paired_gap{key}_{stat}"] for stat in GAP_STATS)


def gap_rows(args) -> list[tuple[str, dict]]:
    """``--gaps LABEL=KEY ...`` → [(LABEL, entry KEY of the ``--from`` JSON holding every GAP field)]."""
    result = json.loads(Path(args.source).read_text())
    rows = []
    for spec in args.gaps:
        label, keys = labelled(spec, "--gaps")
        if len(keys) != 1:
            raise SystemExit(f"--gaps: {spec!r} names {len(keys)} entries; give one KEY per row")
        rows.append((label, entry(result, keys[0], "--gaps", *GAP, "paired_gap_last4_points_per_seed")))
    return rows


def gap_figure(args) -> None:
    """The paired gap, float SGD − fixed point (accuracy points, seed by seed), with its 95 % interval
    (1.96 standard errors), on the final evaluation and on the mean of the last 4 evaluations:
    ``--gaps LABEL=KEY`` draws one row per entry KEY of the ``--from`` JSON; the dashed lines are the
    3-point aim."""
    rows = gap_rows(args)
    fig, ax = axes((6.8, 0.55 * len(rows) + 1.4))
    y = range(len(rows))
    for shift, (key, name) in zip((-0.15, 0.15), SNAPSHOTS):
        mean, half = zip(*(gap(node, key) for _, node in rows))
        ax.errorbar(mean, [v + shift for v in y], xerr=half, fmt="o", capsize=3, label=name)
    for x, style in ((0, "-"), (3, "--"), (-3, "--")):
        ax.axvline(x, color="0.6", lw=0.8, ls=style)
    ax.set_yticks(list(y), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("paired gap, float − fixed point (accuracy points, 95 % CI)")
    save(fig, ax, args, loc="upper center", bbox_to_anchor=(0.5, -0.6 / fig.get_figheight()), ncol=2)   # below the rows
    if args.md:
        gap_table(rows, Path(args.md))


def gap_table(rows: list[tuple[str, dict]], md: Path) -> None:
    """The ``--gaps`` rows as a markdown table in ``md``: seeds, the paired gap mean ± 95 % half-width
    (points) on the final evaluation and on the mean of the last 4, and whether that interval lies
    inside ±3 points."""
    lines = ["| condition | seeds | gap, final (points) | gap, last 4 (points) | interval inside ±3 (final / last 4) |",
             "|---|---|---|---|---|"]
    for label, node in rows:
        cells, inside = [], []
        for key, _ in SNAPSHOTS:
            mean, half = gap(node, key)
            cells.append(f"{mean:.2f} ± {half:.2f}")
            inside.append("yes" if -3 <= mean - half and mean + half <= 3 else "no")
        lines.append(f"| {label} | {len(node['paired_gap_last4_points_per_seed'])} | {cells[0]} | {cells[1]} | {' / '.join(inside)} |")
    md.write_text("\n".join(lines) + "\n")
    print("wrote", md)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("section", choices=["fidelity", "training", "forward", "figure"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=1, help="seeds first-seed … first-seed + seeds − 1")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=100.0)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--conditions", nargs="*", default=[])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every run, e.g. fixed.weight_headroom=0.125")
    p.add_argument("--baselines", nargs="*", default=["float_sgd", "fixed_hardware"],
                   choices=["float_sgd", "fixed_hardware"],
                   help="training: the baselines beside --conditions (none given: only the conditions)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="training: keep each condition's run directory (metrics, figures, checkpoint) "
                        "in DIR/<condition>; a rerun resumes it")
    p.add_argument("--no-baselines", dest="baselines", action="store_const", const=[],
                   help="training: only the --conditions (= --baselines with none given)")
    p.add_argument("--name", default=None, help="result file name (default fixed_<section>_<device>)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--from", dest="source", default=str(RESULTS / "fixed_headroom_cpu.json"),
                   help="figure: the result JSON whose curves or gaps are drawn")
    p.add_argument("--curves", nargs="+", default=[], metavar="LABEL=KEY[+KEY...]",
                   help="figure: a labelled set of seeds, pooled from the entries KEY (dotted paths)")
    p.add_argument("--gaps", nargs="+", default=[], metavar="LABEL=KEY",
                   help="figure: a row of paired gaps to float with their 95%% CI, from the entry KEY")
    p.add_argument("--md", default=None, metavar="MD", help="figure --gaps: also write the rows as a markdown table to MD")
    p.add_argument("--title", default="cue accumulation, diffusion, loihi2")
    p.add_argument("--png", default=str(RESULTS / "fixed_vs_float.png"), help="figure: the image written")
    args = p.parse_args()
    if args.section == "figure":
        if bool(args.curves) == bool(args.gaps):
            raise SystemExit("figure: give either --curves LABEL=KEY[+KEY...] or --gaps LABEL=KEY, at least once")
        if args.md and not args.gaps:
            raise SystemExit("figure: --md writes the --gaps rows as a table; give --gaps LABEL=KEY with it")
        return figure(args) if args.curves else gap_figure(args)
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    result = {"fidelity": fidelity, "training": training, "forward": forward}[args.section](args)
    record(args.name or f"fixed_{args.section}_{args.device.split(':')[0]}", args.device, result, Path(args.out))


if __name__ == "__main__":
    main()
