"""`lava-diffmod` command line: train, evaluate, demo, profile, lava-run, parity, reproduce, sweep, export-nir."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import config as config_mod
from .config import ConfigError


def parse_seeds(text: str) -> list[int]:
    """'0-19' → 0…19; '1,2,5' → [1, 2, 5]; '3' → [3]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-"))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: use a list like 0-19 or 1,2,5") from None
    return seeds


def overrides(args) -> dict:
    """Dotted config overrides from the command-line options that were given."""
    out = {}
    table = {"rule": "rule.name", "mode": "rule.mode", "k": "diffusion.k", "device": "train.device",
             "iterations": "train.iterations", "dtype": "train.dtype", "batch_size": "train.batch_size",
             "micro_batches": "train.micro_batches", "eval_every": "train.eval_every",
             "eval_trials": "train.eval_trials", "backend": "train.backend", "switches": "fixed.switches",
             "lr": "train.lr"}
    for arg, dotted in table.items():
        value = getattr(args, arg, None)
        if value is not None:
            out[dotted] = value
    if getattr(args, "seeds", None) is not None:
        out["train.seeds"] = parse_seeds(args.seeds)
    if getattr(args, "no_progress", False):
        out["train.progress"] = False
    if getattr(args, "hw", None) is not None and getattr(args, "command", None) == "train":
        out["fixed.hw"] = args.hw
    if out.get("train.backend") == "fixed" and "train.lr" in out:
        out["fixed.lr"] = out.pop("train.lr")
    return out


def default_run_dir(cfg) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.train.out_dir) / f"{cfg.task.name}-{cfg.rule.name}-{stamp}"


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def summary_row(summary: dict) -> dict:
    row = {"task": summary["task"], "rule": summary["rule"], "seeds": len(summary["seeds"]),
           "iterations": summary["iteration"], "wall_s": summary["wall_s"]}
    for key, stat in summary["final"].items():
        row[key] = f"{stat['mean']:.4f} ± {stat['ci95']:.4f}"
    return row


def cmd_train(args) -> int:
    from .training.trainer import train
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out <run directory>")
        run_dir = Path(args.out)
        cfg = config_mod.load(run_dir / "config.toml")
        extra = {k: v for k, v in overrides(args).items() if k in ("train.device", "train.progress")}
        if extra:
            cfg = config_mod.from_mapping(cfg.to_dict(), extra)
    else:
        if args.config is None:
            raise ConfigError("--config: give a TOML config (see examples/)")
        cfg = config_mod.load(config_mod.config_path(args.config), overrides(args))
        if args.out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("--out: data-parallel processes need one run directory; give --out")
        run_dir = Path(args.out) if args.out else default_run_dir(cfg)
        if (run_dir / "checkpoint.safetensors").exists():
            raise ConfigError(f"--out {run_dir}: holds a run already; use --resume or another folder")
    from .training.distributed import finish
    summary = train(cfg, run_dir, resume=args.resume)
    finish()
    if summary is not None:   # None: a data-parallel rank other than 0
        print(format_table([summary_row(summary)], list(summary_row(summary))))
        print(f"run directory: {run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from .training import checkpoint
    from .training.trainer import evaluate, setup
    run_dir = Path(args.run_dir)
    cfg = config_mod.load(run_dir / "config.toml", overrides(args))
    exp = setup(cfg)
    params, _, iteration, _ = checkpoint.load(run_dir / "checkpoint.safetensors", exp.net.params)
    metrics = evaluate(exp, exp.net.with_params(params))
    rows = [{"seed": s, **{k: f"{float(v[i]):.4f}" for k, v in metrics.items()}}
            for i, s in enumerate(exp.seeds)]
    print(f"{cfg.task.name}, {cfg.rule.name}, iteration {iteration}")
    print(format_table(rows, list(rows[0])))
    if args.json:
        print(json.dumps({k: v.tolist() for k, v in metrics.items()}))
    return 0


def cmd_demo(args) -> int:
    from .demo import EXAMPLE, run_demo
    return run_demo(Path(args.out), iterations=args.iterations, config=Path(args.config or EXAMPLE))


def _num(x) -> str:
    """A count or energy for a table: integers plainly, large floats in engineering form."""
    if isinstance(x, str):
        return x
    if float(x).is_integer() and abs(x) < 1e12:
        return str(int(x))
    return f"{x:.4g}"


def learning_rule_section(cfg, profile, seed: int) -> list[str]:
    """The end of `lava-diffmod profile`: the rule of network ``seed`` in Loihi 3-factor syntax."""
    out = ["learning rule (Loihi 3-factor syntax)"]
    if cfg.rule.name == "bptt":
        return out + ["  BPTT has no on-chip form (mapped for inference only)"]
    if profile.ideal:
        return out + ["  the ideal profile has no quantisation: the rule is the float one"]
    import torch

    from .fixed.loihi_rule import describe, learning_rules
    from .fixed.quantize import quantize
    from .fixed.switches import Switches
    from .float.rsnn import Network
    from .tasks import make_task
    from .training.trainer import objective_for
    task = make_task(cfg.task, cfg.neuron.dt)
    net = Network.from_config(cfg, [seed], task.n_in, task.n_out, dtype=torch.float64)
    switches = Switches.from_spec(cfg.fixed.switches)
    fp = quantize(net, profile, switches, cfg.fixed, objective_for(cfg, task), cfg.train.batch_size,
                  cfg.diffusion if cfg.rule.name == "diffusion" else None, [seed])
    return out + describe(learning_rules(fp, net))


def cmd_profile(args) -> int:
    from . import hw
    from .tasks import make_task
    profile = hw.load_profile(args.hw)
    cfg = config_mod.load(args.config)
    seed = cfg.train.seeds[0] if args.seed is None else args.seed
    if seed < 0:
        raise ConfigError(f"--seed {seed}: must be >= 0")
    task = make_task(cfg.task, cfg.neuron.dt)
    counts = hw.trial_spike_counts(cfg, seed)
    rep = hw.resource_report(cfg, profile, task.n_in, task.n_out, seed, counts)
    c, syn = rep["components"], rep["synapses"]
    out = [f"hardware profile: {profile.name}" + (f" ({profile.description})" if profile.description else ""),
           f"config: {args.config}; task {cfg.task.name}, rule {cfg.rule.name}, seed {seed}",
           ""]
    parts = [f"{c['recurrent']} recurrent", f"{c['readout']} readout"]
    if c["error"]:
        parts.append(f"{c['error']} error units")
    if c["grid"]:
        parts.append(f"{c['grid']} grid compartments ({c['channels']} channel{'s' * (c['channels'] > 1)})")
    axons = f"{c['input_axons']} input axons" + (f", {c['target_axons']} target axons" if c["target_axons"] else "")
    out.append(f"network: {', '.join(parts)}; {axons} (external)")
    learn = [k for k in ("input", "recurrent", "readout") if k in syn]
    fixed = [k for k in syn if k not in learn and k != "total"]
    bits = rep["bits_per_synapse"]
    lbits = f" ({bits['learning']} bits each)" if bits else ""
    fbits = f" ({bits['fixed']} bits each)" if bits else ""
    kind = "learning" if rep["plastic_synapses"] else "fixed"
    line = f"synapses: {', '.join(f'{k} {syn[k]}' for k in learn)} [{kind}]{lbits if kind == 'learning' else fbits}"
    if fixed:
        line += f"; {', '.join(f'{k} {syn[k]}' for k in fixed)} [fixed]{fbits}"
    out += [line + f"; total {syn['total']}", ""]

    if profile.ideal:
        out.append("resources: the ideal profile has no hardware limits; nothing to map")
    else:
        rows = []
        for r in rep["limits"]:
            status = r["status"]
            if status == "EXCEEDED" and not r["enforced"]:
                status = "EXCEEDED (not enforced)"
            elif status == "unknown":
                status = "unknown (not enforced)"
            note = r["detail"]
            if r["limit"] != hw.UNKNOWN and not r["verified"]:
                note = (note + "; " if note else "") + "limit unverified"
            rows.append({"resource": r["name"], "used": _num(r["used"]), "limit": _num(r["limit"]),
                         "status": status, "note": note})
        cores = rep["cores"]
        rows.append({"resource": "cores", "used": cores["total"], "limit": "", "status": "",
                     "note": ", ".join(f"{k} {v}" for k, v in cores.items() if k != "total")})
        rows.append({"resource": "chips", "used": rep["chips"], "limit": "", "status": "",
                     "note": f"{profile['cores_per_chip']} cores per chip"})
        out.append(format_table(rows, ["resource", "used", "limit", "status", "note"]))
        out.append("")
        if rep["chip_fits"]:
            out.append(f"result: fits on {rep['chips']} chip{'s' * (rep['chips'] > 1)} ({cores['total']} cores)")
        elif rep["fits"]:
            out.append(f"result: runs ({profile.name} enforces no limits), but would not fit the chip it models:")
        else:
            out.append("result: DOES NOT FIT")
        shown = rep["reasons"][:20]
        out += [f"  - {r}" for r in shown]
        if len(rep["reasons"]) > len(shown):
            out.append(f"  - ... and {len(rep['reasons']) - len(shown)} more")
    if rep["notes"]:
        out.append("notes:")
        out += [f"  - {n}" for n in rep["notes"]]
    out.append("")

    cnt, en = rep["counts"], rep["energy"]
    out.append(f"energy per trial: T = {cnt['steps']} steps; spike counts from a float forward pass of the "
               f"initial network (seed {seed}, {counts['trials']} trial): {_num(cnt['input_spikes'])} input, "
               f"{_num(cnt['recurrent_spikes'])} recurrent spikes; learning every step (t_epoch = 1)")
    rows = [{"term": t["term"], "count": _num(t["count"]), "pJ each": _num(t["pJ_each"]),
             "energy (pJ)": _num(t["energy_pJ"]), "flags": ", ".join(t["flags"])} for t in en["terms"]]
    out.append(format_table(rows, ["term", "count", "pJ each", "energy (pJ)", "flags"]))
    total = en["total_pJ"]
    if total == hw.UNKNOWN:
        out.append(f"total: unknown (no energy figure published for {profile.name})")
    else:
        out.append(f"total: {_num(total)} pJ = {total * 1e-6:.4g} uJ"
                   + (" over the known terms only" if en["partial"] else ""))
    if en["unverified"]:
        out.append(f"UNVERIFIED: {', '.join(en['unverified'])} are placeholders or unverified figures "
                   f"(LOIHI.md §8); do not quote these numbers without this flag")
    out.append("graded_synops: every fixed (graded) synapse carries a message every step, an upper bound; "
               "priced as a binary synop [inference]")
    out.append("")
    out += learning_rule_section(cfg, profile, seed)
    print("\n".join(out))
    return 0 if rep["fits"] else 3


def cmd_lava_run(args) -> int:
    from .lava import LavaUnavailableError
    try:
        from .lava.run import lava_run
        rows = lava_run(Path(args.run_dir), args.backend, args.learn, args.hw, args.trials, args.seed,
                        progress=not args.no_progress)
    except (LavaUnavailableError, RuntimeError) as e:
        print(f"lava-diffmod: error: {e}", file=sys.stderr)
        return 2
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = [{k: (f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k, ""))) for k in keys} for r in rows]
    print(f"{args.run_dir}: {args.trials} {'training' if args.learn else 'evaluation'} trials")
    print(format_table(table, keys))
    return 0


def _cell(value) -> str:
    if isinstance(value, float):
        return "—" if value != value else f"{value:.4f}"
    return str(value)


def cmd_parity(args) -> int:
    from .parity import parity
    cfg = config_mod.load(config_mod.config_path(args.config), overrides(args))
    profiles = args.hw.split(",") if args.hw else None
    out = parity(cfg, args.steps, args.trials, args.train_trials, args.eval_trials, profiles,
                 lava=not args.no_lava, seed=args.seed, progress=not args.no_progress)
    import platform
    out.update(command="lava-diffmod " + " ".join(sys.argv[1:]), date=time.strftime("%Y-%m-%d"),
               machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    keys = [k for k in ["execution", "spikes", "v_err", "trace_err", "cos W_in", "cos W_rec", "cos W_out",
                        "loss", "note"] if any(k in r for r in out["rows"])]
    print(f"{out['task']}, rule {out['rule']}, seed {out['seed']}: {out['steps']} of {out['trial_steps']} steps "
          f"x {out['trials']} trials compared; updates from trial 0; loss after {out['train_trials']} "
          f"training trials (SGD, lr {out['fixed_lr']}) on {out['eval_trials']} evaluation trials")
    print(format_table([{k: _cell(r.get(k, "")) for k in keys} for r in out["rows"]], keys))
    path = Path(args.out) if args.out else Path(cfg.train.out_dir) / \
        f"parity-{cfg.task.name}-{cfg.rule.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    from .training.checkpoint import atomic_write_text
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out, indent=2))
    print(f"written: {path}")
    return 0


def parse_sets(items: list[str]) -> dict:
    """``--set section.key=value`` (value in TOML syntax, else a string) → overrides."""
    import tomllib
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: use section.key=value, e.g. train.batch_size=32")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def cmd_reproduce(args) -> int:
    from . import reproduce
    out = Path(args.out)
    if args.report_only:
        res = reproduce.report(out)
    else:
        tasks = args.tasks.split(",") if args.tasks else list(reproduce.TASKS)
        groups = args.groups.split(",") if args.groups else list(reproduce.DEFAULT_GROUPS)
        res = reproduce.run(out, tasks, groups, parse_seeds(args.seeds), args.iterations, args.device,
                            args.align_every, parse_sets(args.set), progress=not args.no_progress)
    keys = ["task", "condition", "backend", "seeds", "iteration", "accuracy", "ce", "nmse"]
    rows = [{k: (fmt_metric(r, k) if k in ("accuracy", "ce", "nmse") else r[k]) for k in keys}
            for r in res["table"]]
    print(format_table(rows, keys))
    print(f"report: {res['report']}")
    return 0


def fmt_metric(row: dict, key: str) -> str:
    return f"{row[key]:.4f} ± {row[key + '_ci95']:.4f}" if key in row else ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lava-diffmod", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a task with a rule (seeds batched)")
    t.add_argument("--config", help="a task name (cue_accumulation, dms, pattern_generation, ...) or a TOML config")
    t.add_argument("--rule", help="bptt | eprop | diffusion | modprop | dopamine")
    t.add_argument("--mode", help="e-prop mode: factorised | online")
    t.add_argument("--k", type=float, help="diffusion retention k in [0, 1]")
    t.add_argument("--seeds", help="e.g. 0-19 or 1,2,5")
    t.add_argument("--device", help="cpu | cuda | cuda:N")
    t.add_argument("--dtype", help="float32 | float64")
    t.add_argument("--iterations", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--micro-batches", dest="micro_batches", type=int)
    t.add_argument("--eval-every", dest="eval_every", type=int)
    t.add_argument("--eval-trials", dest="eval_trials", type=int)
    t.add_argument("--lr", type=float, help="learning rate (the fixed backend's SGD rate with --backend fixed)")
    t.add_argument("--backend", help="float | fixed (Loihi-2-style integers)")
    t.add_argument("--hw", help="hardware profile of the fixed backend: loihi2, loihi1, lava_sim_0_10, ideal or a path")
    t.add_argument("--switches", help="fixed backend approximations: hardware | off")
    t.add_argument("--out", help="run directory (default runs/<task>-<rule>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run's checkpoint on its evaluation set")
    e.add_argument("run_dir")
    e.add_argument("--device")
    e.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    e.set_defaults(fn=cmd_evaluate)

    d = sub.add_parser("demo", help="train cue accumulation with e-prop and diffusion (CPU, minutes)")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--iterations", type=int, default=None)
    d.add_argument("--config", help="cue-accumulation config (default examples/cue_accumulation.toml)")
    d.set_defaults(fn=cmd_demo)

    f = sub.add_parser("profile", help="does a config's network fit a chip? cores, memory, energy per trial "
                                      "(exit 0 fits, 3 does not)")
    f.add_argument("--hw", required=True, help="shipped profile (loihi2, loihi1, lava_sim_0_10, ideal) "
                                               "or the path of a profile TOML")
    f.add_argument("--config", required=True, help="TOML config, e.g. examples/cue_accumulation.toml")
    f.add_argument("--seed", type=int, help="network seed (default: the config's first train seed)")
    f.set_defaults(fn=cmd_profile)

    r = sub.add_parser("lava-run", help="run a trained network on Lava (CPU simulator, or a Loihi 2 board) and "
                                       "compare its metric with the float reference and the emulator")
    r.add_argument("run_dir")
    r.add_argument("--backend", default="fixed", help="fixed (fixed_pt models) | float (floating_pt models)")
    r.add_argument("--learn", action="store_true", help="keep learning on Lava (training trials)")
    r.add_argument("--hw", help="loihi2: Loihi2HwCfg (needs lava-loihi)")
    r.add_argument("--trials", type=int, default=8)
    r.add_argument("--seed", type=int, help="which of the run's seeds (default: the first)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(fn=cmd_lava_run)

    q = sub.add_parser("parity", help="float vs fixed (per hardware profile) vs Lava on one network and one "
                                     "input batch: spikes, states, traces, update/BPTT cosines, loss")
    q.add_argument("--config", required=True, help="a task name (cue_accumulation, dms, pattern_generation) "
                                                   "or a TOML config")
    q.add_argument("--steps", type=int, help="compared steps per trial (default: the whole trial)")
    q.add_argument("--trials", type=int, default=2, help="compared trials (learning off)")
    q.add_argument("--train-trials", dest="train_trials", type=int,
                   help="trials of the short training run, SGD after each (default 8)")
    q.add_argument("--eval-trials", dest="eval_trials", type=int, help="default 32")
    q.add_argument("--rule", help="eprop | diffusion")
    q.add_argument("--k", type=float, help="diffusion retention k in [0, 1]")
    q.add_argument("--hw", help="comma-separated profiles (default: every shipped profile)")
    q.add_argument("--seed", type=int, help="network seed (default: the config's first train seed)")
    q.add_argument("--no-lava", dest="no_lava", action="store_true", help="skip the Lava rows")
    q.add_argument("--out", help="JSON file (default runs/parity-<task>-<rule>-<time>.json)")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(fn=cmd_parity)

    g = sub.add_parser("reproduce", help="the paper's comparison: tasks x rules x seeds, k-sweep, shuffled "
                                        "control, fixed point, alignment; table, figures, report (resumable)")
    g.add_argument("figure", choices=["fig2"])
    g.add_argument("--tasks", help="comma-separated (default: cue_accumulation,dms,pattern_generation)")
    g.add_argument("--groups", help="comma-separated among main,ksweep,shuffle,fixed,extra "
                                   "(default: main,ksweep,shuffle,fixed; extra = ModProp and dopamine rows)")
    g.add_argument("--seeds", default="1-20")
    g.add_argument("--iterations", type=int, default=2000)
    g.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    g.add_argument("--align-every", dest="align_every", type=int, default=50,
                   help="iterations between update-vs-BPTT alignment measurements (0 = off)")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra config override for every run, e.g. train.batch_size=32")
    g.add_argument("--out", default="results/fig2")
    g.add_argument("--report-only", dest="report_only", action="store_true",
                   help="only rebuild the table, figures and report from finished runs")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(fn=cmd_reproduce)

    from .export.nir import add_cli as add_export_nir
    from .sweep import add_cli as add_sweep
    add_sweep(sub)
    add_export_nir(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"lava-diffmod: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one clear line for known failure types
        from .training.checkpoint import CheckpointError
        from .training.trainer import TrainingDiverged
        if isinstance(e, (CheckpointError, TrainingDiverged)):
            print(f"lava-diffmod: error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
