"""ModProp acceptance experiment (RULES.md A.11.6, A.11.7) on delayed XOR.

Subcommands (each writes one JSON under benchmarks/results/, with command, machine and date):

* ``rate``: the A.8 protocol (rate RNN, 120 units, Adam 5e-4, × 0.8 every 300 iterations, L2
  5e-4, batch 32, validation every 20) for S seeds batched and the given rules; per seed the
  validation logs, the A.11.6 quantities, and the cosine of each rule's gradient with BPTT's at
  initialisation. ``--delay`` sets the delay (700 = A.7; longer for the long-delay comparison).
* ``spiking``: a small LIF/ALIF network on the spiking delayed XOR (A.7 timing); cosine of the
  e-prop, MDGL and ModProp gradients with BPTT's, at initialisation and along training, and the
  final loss of training with e-prop versus ModProp.
* ``report``: merges the rate parts into modprop_xor.json with the acceptance verdicts.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lava_diffmod import rng  # noqa: E402
from lava_diffmod.config import NeuronConfig  # noqa: E402
from lava_diffmod.float.rate import RateConfig, effective, init_rate_network  # noqa: E402
from lava_diffmod.float.readout import Objective  # noqa: E402
from lava_diffmod.float.rsnn import Network  # noqa: E402
from lava_diffmod.rules.bptt import bptt  # noqa: E402
from lava_diffmod.rules.eprop import eprop_factorised  # noqa: E402
from lava_diffmod.rules.modprop import RateRule, default_mu, modprop, rate_loss  # noqa: E402
from lava_diffmod.tasks.delayed_xor import DelayedXOR, SpikingDelayedXOR  # noqa: E402
from lava_diffmod.training.optim import adam  # noqa: E402
from lava_diffmod.training.rate_train import RateTrainConfig, summary, train_rate  # noqa: E402
from lava_diffmod.training.trainer import mean_ci  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DATE = "2026-11-22"


def machine() -> str:
    names = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
             if l.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
    cpu = f"{names[0]} ({len(names)} cores, shared with other jobs)" if names else platform.machine()
    return f"{cpu}, 1 torch thread, torch {torch.__version__}, Python {platform.python_version()}"


def write(name: str, results: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "command": " ".join(["python", *sys.argv]), "machine": machine(),
           "date": DATE, **results}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Per-seed cosine of two gradients given as lists of (S, …) tensors (concatenated)."""
    fa = torch.cat([t.flatten(1) for t in a], 1).double()
    fb = torch.cat([t.flatten(1) for t in b], 1).double()
    return (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1))


# ------------------------------------------------------------------------------ rate RNN

def rate_alignment(net, task, seeds, rules: dict[str, RateRule], batches: int = 2) -> dict:
    """Cosine of each rule's (W_in, W_rec) gradient with BPTT's, per seed, mean over batches."""
    w = effective(net)
    out = {r: torch.zeros(len(seeds), dtype=torch.float64) for r in rules}
    for k in range(batches):
        b = task.batch(seeds, "align", k, range(32), "cpu", net.params.w_in.dtype)

        def grads(rule):
            leaves = [p.detach().requires_grad_(True) for p in w]
            ww = type(w)(*leaves)
            ce, _, _ = rate_loss(ww, b.x, b.target, net.alpha, net.cfg.theta, net.types, rule)
            return list(torch.autograd.grad(ce.sum(), leaves[:2]))
        ref = grads(RateRule("bptt"))
        for r, rule in rules.items():
            out[r] += cosine(grads(rule), ref) / batches
    return {r: v.tolist() for r, v in out.items()}


def run_rate(args) -> None:
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    task = DelayedXOR(delay_ms=args.delay)
    cfg = RateTrainConfig(iterations=max(args.iterations, 1), lr=args.lr)
    net_cfg = RateConfig(init=args.init)
    results = {"task": {"name": "delayed_xor", "delay_ms": args.delay, "steps": task.steps},
               "protocol": {**cfg.__dict__, "seeds": seeds, "network": net_cfg.__dict__},
               "reduced": args.note, "rules": {}}
    net0 = init_rate_network(net_cfg, seeds)
    # result keys: the rule's name, with "_cell" when its hops use the exact W (RateRule.hop_weights)
    rules = {name + ("_cell" if args.hop_weights == "cell" and name in ("modprop", "mdgl") else ""):
             RateRule(name, mu=args.mu, hop_weights=args.hop_weights) for name in args.rules}
    results["alignment_at_init"] = rate_alignment(net0, task, seeds, {**rules, "bptt": RateRule("bptt")})
    write(args.name, results)
    for name, rule in rules.items() if args.iterations > 0 else []:       # 0 iterations: alignment only
        t = time.perf_counter()
        ckpt = Path(args.checkpoint_dir) / f"{args.name}__{name}.pt" if args.checkpoint_dir else None
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
        hist = train_rate(net0, task, rule, seeds, cfg, progress=True, checkpoint=ckpt)
        wall = time.perf_counter() - t
        results["rules"][name] = {
            "rule": rule.__dict__, "wall_s": wall,
            "s_per_iteration": wall / max(1, cfg.iterations - hist.resumed_from),
            "resumed_from_iteration": hist.resumed_from,
            "eval_iters": hist.eval_iters.tolist(),
            "eval_loss": hist.eval_loss.T.tolist(), "eval_acc": hist.eval_acc.T.tolist(),
            **summary(hist, cfg)}
        write(args.name, results)
        print(name, json.dumps({k: results["rules"][name][k] for k in ("final_loss", "first_ma_below", "wall_s")}))


# ------------------------------------------------------------------------------ spiking

def spiking_network(seeds: list[int], n_in: int, n_lif: int, n_alif: int, ei: bool,
                    dtype=torch.float64) -> tuple[Network, torch.Tensor]:
    """A small fully connected LIF/ALIF network (zero diagonal), He-scaled seeded weights,
    dense readout, symmetric tracking feedback B = W_out (the authors' choice, A.10), and its
    cell types: LIF / ALIF, or with ``ei`` E / I, where 80 % of the units (every 5th is I) start
    with positive outgoing weights and the rest with negative ones 4 × larger (balanced at
    initialisation; the sign is not enforced during training)."""
    n = n_lif + n_alif

    def draw(name, shape, gain):
        return torch.stack([rng.normal(rng.name_key(s, "spiking_xor", name), shape) for s in seeds]) * gain
    w_in = draw("w_in", (n_in, n), math.sqrt(2 / n_in))
    w_rec = draw("w_rec", (n, n), 0.5 * math.sqrt(2 / n)) * (1 - torch.eye(n, dtype=torch.float64))
    inhibitory = torch.arange(n) % 5 == 4
    if ei:
        w_rec = w_rec.abs() * torch.where(inhibitory, -4.0, 1.0).double()[:, None]
    types = inhibitory.long() if ei else (torch.arange(n) >= n_lif).long()
    w_out = draw("w_out", (n, 2), math.sqrt(2 / n))
    neuron = NeuronConfig(tau_a=2000.0, n_lif=n_lif, n_alif=n_alif)
    beta = torch.tensor([0.0] * n_lif + [neuron.beta] * n_alif)
    return Network.from_arrays(w_in=w_in, w_rec=w_rec, w_out=w_out, beta=beta, neuron=neuron,
                               m_in=torch.ones(len(seeds), n_in, n), m_rec=(1 - torch.eye(n)).expand(len(seeds), n, n),
                               m_out=torch.ones(len(seeds), n, 2), tracking_feedback=True, dtype=dtype), types


def spiking_rule(name: str, mu, types):
    if name == "eprop":
        return lambda net, b, obj: eprop_factorised(net, b.x, b.target, obj, None, b.keys)
    if name == "bptt":
        return lambda net, b, obj: bptt(net, b.x, b.target, obj)
    trunc = "mdgl" if name == "mdgl" else "none"
    return lambda net, b, obj: modprop(net, b.x, b.target, obj, b.keys, mu=mu, types=types, truncation=trunc)


def spiking_alignment(net, task, seeds, obj, mu, types, batches: int, counter0: int) -> dict:
    out = {r: torch.zeros(len(seeds), dtype=torch.float64) for r in ("eprop", "mdgl", "modprop")}
    for k in range(batches):
        b = task.batch(seeds, "align", counter0 + k, range(32), "cpu", net.dtype)
        ref = bptt(net, b.x, b.target, obj).grads
        for r in out:
            g = spiking_rule(r, mu, types)(net, b, obj).grads
            out[r] += cosine([g.w_in, g.w_rec], [ref.w_in, ref.w_rec]) / batches
    return {r: v.tolist() for r, v in out.items()}


def run_spiking(args) -> None:
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    task = SpikingDelayedXOR(delay_ms=args.delay, decision_ms=args.decision, pop_size=args.pop)
    obj = Objective("classification", task.window, c_reg=args.c_reg)
    net0, types = spiking_network(seeds, task.n_in, args.n_lif, args.n_alif, args.types == "ei")
    probe = task.batch(seeds, "probe", 0, range(32), "cpu", net0.dtype)
    mu = default_mu(net0, probe.x, args.k)
    results = {"task": {**task.__dict__, "steps": task.steps, "window": task.window, "n_in": task.n_in},
               "network": {"n_lif": args.n_lif, "n_alif": args.n_alif, "recurrent": "dense, zero diagonal",
                           "types": args.types, "feedback": "symmetric tracking (W_out)", "dtype": "float64"},
               "mu": {"k": args.k, "mean_psi_at_init": (mu / args.k).tolist(), "mu": mu.tolist()},
               "objective": {"c_reg": args.c_reg}, "iterations": args.iterations, "lr": args.lr,
               "reduced": args.note, "training": {}, "alignment": {}}
    results["alignment"]["init"] = spiking_alignment(net0, task, seeds, obj, mu, types, args.align_batches, 0)
    write(args.name, results)
    opt = adam(args.lr)
    for name in ("eprop", "modprop"):
        net, state, losses, accs = net0, opt.init(net0.params), [], []
        rule = spiking_rule(name, mu, types)
        t = time.perf_counter()
        for k in range(args.iterations):
            b = task.batch(seeds, "train", k, range(args.batch), "cpu", net.dtype)
            g = rule(net, b, obj)
            params, state = opt.update(g.grads, state, net.params)
            net = net.with_params(params)
            losses.append(g.task_loss.tolist())
            accs.append((g.y_window[-1].argmax(-1) == b.target).double().mean(-1).tolist())
            if (k + 1) % 20 == 0:
                print(name, k + 1, f"{float(torch.tensor(losses[-20:]).mean()):.4f}", flush=True)
        wall = time.perf_counter() - t
        last = torch.tensor(losses[-args.final:])
        results["training"][name] = {"wall_s": wall, "train_loss": torch.tensor(losses).T.tolist(),
                                     "train_acc_last_step": torch.tensor(accs).T.tolist(),
                                     "final_loss": last.mean(0).tolist(),
                                     "final_acc": torch.tensor(accs[-args.final:]).mean(0).tolist()}
        results["alignment"][f"after_{name}_training"] = spiking_alignment(
            net, task, seeds, obj, mu, types, args.align_batches, 100)
        write(args.name, results)
    tr = results["training"]
    fm, fe = statistics.mean(tr["modprop"]["final_loss"]), statistics.mean(tr["eprop"]["final_loss"])
    al = results["alignment"]["init"]
    results["acceptance_A11_7"] = {
        "mean_cos_modprop_init": statistics.mean(al["modprop"]), "mean_cos_eprop_init": statistics.mean(al["eprop"]),
        "modprop_aligns_better_at_init": statistics.mean(al["modprop"]) > statistics.mean(al["eprop"]),
        "mean_final_loss_modprop": fm, "mean_final_loss_eprop": fe, "modprop_lower_final_loss": fm < fe}
    write(args.name, results)


# ------------------------------------------------------------------------------ report

def paired(a: list[float], b: list[float]) -> dict:
    """Per-seed differences a − b: mean ± 95% CI (1.96 SE) and the seeds where a is above b."""
    d = [x - y for x, y in zip(a, b)]
    mean, ci = mean_ci(d)
    return {"mean": mean, "ci95": ci, "seeds_a_above_b": sum(x > 0 for x in d), "seeds": len(d)}


def run_report(args) -> None:
    """Merge rate parts; the A.11.6 gates with ``--acceptance``, else only the rule comparison."""
    parts = [json.loads((RESULTS / f"{p}.json").read_text()) for p in args.parts]
    rules, align, notes = {}, {}, []
    for p in parts:
        rules.update(p["rules"])
        align.update(p.get("alignment_at_init", {}))
        notes.append(p.get("reduced"))
    means = {r: statistics.mean(v["final_loss"]) for r, v in rules.items()}
    comparison = {f"mean_final_ce_{r}": m for r, m in means.items()}
    comparison.update({f"mean_cos_with_bptt_at_init_{r}": statistics.mean(v) for r, v in align.items()})
    comparison.update({f"mean_final_acc_{r}": statistics.mean(v["final_acc"]) for r, v in rules.items()})
    for mp in (r for r in means if r.startswith("modprop")):
        if "eprop" in means:
            comparison[f"{mp}_mean_final_ce_below_eprop"] = means[mp] < means["eprop"]
            comparison[f"{mp}_minus_eprop_paired"] = {
                k: paired(rules[mp][k], rules["eprop"][k]) for k in ("final_loss", "final_acc")}
        if "bptt" in means:
            comparison[f"report_bptt_mean_final_ce_le_{mp}"] = means["bptt"] <= means[mp]
    doc = {"parts": args.parts, "reduced": notes, "alignment_at_init": align, "comparison": comparison}
    if args.acceptance:
        mp = args.acceptance
        m = rules[mp]
        cross = [c if c is not None else math.inf for c in m["first_ma_below"]]
        doc["acceptance_A11_6"] = {
            "seeds": len(m["final_loss"]),
            "seeds_100pct_last_10_logs": sum(m["all_correct_last_logs"]),
            "gate_at_least_7_of_8_at_100pct": sum(m["all_correct_last_logs"]) >= 7,
            "median_final_ce": statistics.median(m["final_loss"]),
            "gate_median_final_ce_le_0.01": statistics.median(m["final_loss"]) <= 0.01,
            "max_final_ce": max(m["final_loss"]),
            "gate_every_seed_le_0.07": max(m["final_loss"]) <= 0.07,
            "median_first_ma_below_0.1 (null = never)": (None if math.isinf(statistics.median(cross))
                                                        else statistics.median(cross)),
            "gate_median_first_crossing_le_1250": statistics.median(cross) <= 1250,
            "gate_modprop_mean_final_ce_below_eprop": comparison.get(f"{mp}_mean_final_ce_below_eprop"),
            "rule": mp,
        }
    doc["per_seed"] = {r: {k: v[k] for k in ("final_loss", "final_acc", "all_correct_last_logs",
                                             "first_ma_below", "s_per_iteration")} for r, v in rules.items()}
    write(args.name, doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rate")
    r.add_argument("--rules", nargs="+", default=["modprop", "eprop", "mdgl", "bptt"])
    r.add_argument("--seeds", type=int, default=8)
    r.add_argument("--iterations", type=int, default=3000)
    r.add_argument("--lr", type=float, default=5e-4)
    r.add_argument("--mu", type=float, default=0.25)
    r.add_argument("--hop-weights", choices=["type", "cell"], default="type",
                   help="ModProp/MDGL hops through the block means (A.4) or the exact W (the released code's effect)")
    r.add_argument("--init", choices=["spec", "released"], default="spec",
                   help="W_rec/W_out initialisation: A.2 as written, or the released script's order")
    r.add_argument("--delay", type=int, default=700)
    r.add_argument("--name", default="modprop_xor_rate")
    r.add_argument("--note", default=None, help="how this run departs from the full protocol")
    r.add_argument("--checkpoint-dir", default=None,
                   help="keep each rule's state here every 100 iterations; a rerun resumes from it")
    s = sub.add_parser("spiking")
    s.add_argument("--seeds", type=int, default=8)
    s.add_argument("--iterations", type=int, default=200)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--k", type=float, default=0.5)
    s.add_argument("--delay", type=int, default=700)
    s.add_argument("--decision", type=int, default=20)
    s.add_argument("--pop", type=int, default=10)
    s.add_argument("--n-lif", type=int, default=20)
    s.add_argument("--n-alif", type=int, default=20)
    s.add_argument("--c-reg", type=float, default=0.0)
    s.add_argument("--types", choices=["lif_alif", "ei"], default="lif_alif")
    s.add_argument("--final", type=int, default=20)
    s.add_argument("--align-batches", type=int, default=2)
    s.add_argument("--name", default="modprop_xor_spiking")
    s.add_argument("--note", default=None)
    p = sub.add_parser("report")
    p.add_argument("--parts", nargs="+", required=True)
    p.add_argument("--name", default="modprop_xor")
    p.add_argument("--acceptance", nargs="?", const="modprop", default=None, metavar="RULE",
                   help="evaluate the A.11.6 gates for RULE (default modprop; e.g. modprop_cell)")
    args = ap.parse_args()
    {"rate": run_rate, "spiking": run_spiking, "report": run_report}[args.cmd](args)


if __name__ == "__main__":
    main()
