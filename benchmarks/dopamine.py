"""Dopamine acceptance (RULES.md B.7): Dopamine vs fixed-learning-rate WP at an equal budget of
forward passes, Adam + backprop/BPTT beside, and compute / memory per update against BPTT.

    python benchmarks/dopamine.py xor        → results/dopamine_xor.json
    python benchmarks/dopamine.py forecast   → results/dopamine_forecast.json
    python benchmarks/dopamine.py compute    → results/dopamine_compute.json

Every run uses normalise = "sigma2" (w ← w − η δ ξ/σ²). WP uses the same ξ distribution, σ,
normalisation and 2 passes per update, with the best constant η of a log grid, picked on the
same seeds (which favours WP). One core (torch.set_num_threads(1)).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import record  # noqa: E402
from lava_diffmod.float.mlp import mse_loss, rnn_init, rnn_predict  # noqa: E402
from lava_diffmod.rules.dopamine import DopamineConfig, dopamine, spectral_rescale  # noqa: E402
from lava_diffmod.tasks.forecast import forecast_data  # noqa: E402
from lava_diffmod.training.dopamine_train import (BPTT_FORWARD_EQUIVALENTS, median, method_config,  # noqa: E402
                                                  train_forecast, train_xor)

MACHINE_NOTE = "2-core CPU shared with other jobs, one torch thread, no GPU"


def xor(args) -> None:
    seeds = list(range(args.seeds))
    out = {"normalise": "sigma2", "budget_forward_passes": args.budget, "seeds": seeds,
           "protocol": "2-H-1 MLP (tanh hidden, sigmoid output), BCE, full batch of the 4 patterns, "
                       "1 update = 1 epoch; solved = all 4 patterns correct (logit sign); evaluation "
                       "passes not counted in the budget; runs stop once every seed has reached "
                       "100 % and BCE < 0.01",
           "dopamine": f"eta_law {args.eta_law}, eta0 = {args.eta0}, s0 = sigma, beta_s = beta_eta = 0.9998, "
                       f"eta clip [1e-8, {args.eta_max}]",
           "wp_eta_grid": args.wp_grid, "adam_lr_grid": args.adam_grid, "runs": []}
    for hidden in args.hidden:
        for lr in args.adam_grid:
            r = train_xor("adam", seeds, hidden, args.budget, lr=lr, progress=False)
            out["runs"].append({"hidden": hidden, "method": "adam", "lr": lr, **r})
            print("xor adam", hidden, lr, median(r["epochs_to_100pct"]), flush=True)
        for sigma in args.sigmas:
            dcfg = DopamineConfig(sigma=sigma, eta_law=args.eta_law, eta0=args.eta0, eta_max=args.eta_max)
            r = train_xor("dopamine", seeds, hidden, args.budget, dcfg, progress=False)
            out["runs"].append({"hidden": hidden, "method": "dopamine", "sigma": sigma, **r})
            print("xor dopamine", hidden, sigma, median(r["epochs_to_100pct"]), flush=True)
            for eta in args.wp_grid:
                r = train_xor("wp", seeds, hidden, args.budget, method_config("wp", dcfg, eta), progress=False)
                out["runs"].append({"hidden": hidden, "method": "wp", "sigma": sigma, "eta": eta, **r})
                print("xor wp", hidden, sigma, eta, median(r["epochs_to_100pct"]), flush=True)
    out["summary"] = xor_summary(out["runs"], args)
    record(args.name, "cpu", {**out, "machine_note": MACHINE_NOTE})


def solved(run) -> int:
    return sum(e is not None for e in run["epochs_to_100pct"])


def xor_summary(runs, args) -> list[dict]:
    """Per (H, σ): Dopamine against the best WP η (most seeds solved, then fewest median epochs)."""
    rows = []
    for hidden in args.hidden:
        for sigma in args.sigmas:
            dop = next(r for r in runs if r["method"] == "dopamine" and r["hidden"] == hidden and r["sigma"] == sigma)
            wps = [r for r in runs if r["method"] == "wp" and r["hidden"] == hidden and r["sigma"] == sigma]
            best = min(wps, key=lambda r: (-solved(r), median(r["epochs_to_100pct"])))
            d, w = (solved(dop), median(dop["epochs_to_100pct"])), (solved(best), median(best["epochs_to_100pct"]))
            rows.append({"hidden": hidden, "sigma": sigma, "n_seeds": len(dop["epochs_to_100pct"]),
                         "dopamine_solved": d[0], "dopamine_median_epochs_to_100pct": d[1],
                         "wp_best_eta": best["eta"], "wp_solved": w[0], "wp_median_epochs_to_100pct": w[1],
                         "gate_dopamine_beats_wp": d[0] > w[0] or (d[0] == w[0] and d[1] < w[1])})
    return rows


def forecast(args) -> None:
    seeds = list(range(args.seeds))
    dtype = getattr(torch, args.dtype)
    out = {"normalise": "sigma2", "budget_forward_passes": args.budget, "seeds": seeds,
           "hidden": args.hidden, "dtype": args.dtype,
           "reduction": (f"hidden {args.hidden} (paper 512), a budget of {args.budget} forward passes = "
                         f"{args.budget // 2} Dopamine/WP updates (paper 2000 epochs), {args.dtype}; "
                         "full-size updates timed in dopamine_compute.json: about 1.5 s each on one core, "
                         "so 2000 epochs x 10 seeds x (Dopamine + WP grid + BPTT) x 2 systems would take days"),
           "protocol": "RK4 dt 0.01 from (1,0,0), 5000 states, no burn-in, 80/20 chronological split, "
                       "z-scored with training statistics, 32-step windows -> next state; full batch "
                       "(3968 windows < the paper's batch of 5000); validation MSE in z-scored units; "
                       "every method starts from the same weights (W_hh rescaled to rho = 1)",
           "dopamine": "Dopamine-2: eta_law as_written, spectral reset of W_hh to rho 1 every step (K = 1), "
                       "B.5 hyperparameters; WP: same sigma and xi, fixed eta, no reset",
           "wp_eta_grid": args.wp_grid, "adam_lr": args.adam_lr, "systems": {}}
    for system, sigma in (("lorenz", 1e-4), ("rossler", 1e-5)):
        data = forecast_data(system, dtype=dtype)
        dcfg = DopamineConfig(sigma=sigma, reset_every=1, reset_leaf="w_hh")
        res = {"sigma": sigma, "s0": sigma}
        common = dict(eval_every=args.eval_every, progress=args.progress)
        res["dopamine"] = train_forecast("dopamine", data, seeds, args.hidden, args.budget, dcfg,
                                         desc=f"{system} dopamine", **common)
        res["wp"] = {}
        for eta in args.wp_grid:
            res["wp"][str(eta)] = train_forecast("wp", data, seeds, args.hidden, args.budget,
                                                 method_config("wp", dcfg, eta), desc=f"{system} wp {eta}", **common)
        # Adam + BPTT for as many updates as Dopamine makes; the equal-budget point is on its curve
        adam_updates = args.budget // 2
        res["adam_bptt"] = train_forecast("adam", data, seeds, args.hidden, adam_updates * BPTT_FORWARD_EQUIVALENTS,
                                          lr=args.adam_lr, desc=f"{system} adam", **common)
        res["summary"] = forecast_summary(res, args)
        out["systems"][system] = res
        print(system, json.dumps(res["summary"]), flush=True)
        complete = len(out["systems"]) == 2     # written after each system, so a cut run keeps Lorenz
        record("dopamine_forecast", "cpu", {**out, "complete": complete, "machine_note": MACHINE_NOTE})


def val_at(run: dict, passes: int) -> list[float]:
    """Validation MSE per seed at the last evaluation within ``passes`` forward passes."""
    return [p for p in max((c for c in run["curve"] if c["forward_passes"] <= passes),
                           key=lambda c: c["forward_passes"])["val_mse"]]


def forecast_summary(res: dict, args) -> dict:
    dop = res["dopamine"]["final_val_mse"]
    best_eta = min(res["wp"], key=lambda e: median(res["wp"][e]["final_val_mse"]))
    wp = res["wp"][best_eta]["final_val_mse"]
    adam_equal_budget = val_at(res["adam_bptt"], args.budget)
    adam_equal_epochs = res["adam_bptt"]["final_val_mse"]
    return {"dopamine_median_val_mse": median(dop), "wp_best_eta": float(best_eta),
            "wp_median_val_mse": median(wp), "paired_dopamine_better": sum(a < b for a, b in zip(dop, wp)),
            "adam_bptt_median_val_mse_equal_forward_passes": median(adam_equal_budget),
            "adam_bptt_median_val_mse_equal_epochs": median(adam_equal_epochs),
            "gate_dopamine_beats_wp": median(dop) < median(wp)}


# ---------------------------------------------------------------------------------------------
# compute and memory per update, at the paper's size, each method in a fresh process

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def saved_activation_bytes(params, data) -> int:
    """Bytes of the tensors autograd keeps for BPTT's backward (unique storages)."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    leaves = type(params)(*(w.detach().requires_grad_(True) for w in params))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mse_loss(rnn_predict(leaves, data.x_train), data.y_train).sum()
    weights = {w.untyped_storage().data_ptr() for w in leaves}
    return sum(v for k, v in seen.items() if k not in weights)


def compute_one(args) -> None:
    """One method, ``args.updates`` updates at hidden ``args.hidden``: time per update and the
    peak RSS growth over the state before the first update (ru_maxrss − RSS at start)."""
    torch.set_num_threads(1)
    data = forecast_data("lorenz", dtype=torch.float32)
    params = rnn_init([0], args.hidden, dtype=torch.float32)
    params = params._replace(w_hh=spectral_rescale(params.w_hh, 1.0))

    def loss_fn(p):
        return mse_loss(rnn_predict(p, data.x_train), data.y_train)
    times, info = [], {}
    if args.method == "bptt":
        info["saved_activation_bytes"] = saved_activation_bytes(params, data)
        leaves = [w.clone().requires_grad_(True) for w in params]
        opt = torch.optim.Adam(leaves, lr=1e-3)
        base = rss_bytes()
        for _ in range(args.updates):
            t = time.perf_counter()
            opt.zero_grad()
            loss_fn(type(params)(*leaves)).sum().backward()
            opt.step()
            times.append(time.perf_counter() - t)
    else:
        opt = dopamine(DopamineConfig(reset_every=args.reset_every, reset_leaf="w_hh"), [0])
        state = opt.init(params)
        base = rss_bytes()
        for _ in range(args.updates):
            t = time.perf_counter()
            params, state, _ = opt.step(loss_fn, params, state)
            times.append(time.perf_counter() - t)
    info.update(seconds_per_update=times, peak_rss_growth_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
    print(json.dumps(info))


def float32_delta_error(system: str, sigma: float, hidden: int = 32, steps: int = 5) -> float:
    """max |δ_fp32 − δ_fp64| / mean |δ_fp64| over ``steps`` updates of 3 seeds from the same
    weights and perturbations: is float32 precise enough for the forecasting runs?"""
    deltas = {}
    for dtype in (torch.float32, torch.float64):
        data = forecast_data(system, dtype=dtype)
        params = rnn_init([0, 1, 2], hidden, dtype=dtype)
        params = params._replace(w_hh=spectral_rescale(params.w_hh, 1.0))
        opt = dopamine(DopamineConfig(sigma=sigma, eta_law="fixed", eta0=1e-3), [0, 1, 2])
        state, out = opt.init(params), []
        for _ in range(steps):   # the same weights every step: only ξ changes
            _, state, info = opt.step(lambda p: mse_loss(rnn_predict(p, data.x_train), data.y_train), params, state)
            out.append(info.delta)
        deltas[dtype] = torch.stack(out)
    ref = deltas[torch.float64]
    return float((deltas[torch.float32] - ref).abs().max() / ref.abs().mean())


def compute(args) -> None:
    out = {"normalise": "sigma2", "dtype": "float32", "updates_per_method": args.updates,
           "memory_method": "peak RSS growth of a fresh process during the updates (ru_maxrss - RSS before the "
                            "first update; includes allocator slack) and, for BPTT, the bytes of the tensors "
                            "autograd saves for backward (saved_tensors_hooks, unique storages)",
           "analytic": "Dopamine keeps no activations: xi and the perturbed weights (2 x #params) plus the live "
                       "hidden state and one step's drive (2 x B x H floats); BPTT keeps about T x B x H "
                       "hidden states and the ReLU masks", "sizes": {}}
    for hidden in args.hiddens:
        row = {}
        for method, reset in (("dopamine", 0), ("dopamine", 1), ("bptt", 0)):
            cmd = [sys.executable, __file__, "compute-one", "--method", method, "--hidden", str(hidden),
                   "--updates", str(args.updates), "--reset-every", str(reset)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            label = method if method == "bptt" else f"dopamine_reset_every_{reset}"
            res["forward_equivalents_per_update"] = BPTT_FORWARD_EQUIVALENTS if method == "bptt" else 2
            row[label] = res
            print(hidden, label, res, flush=True)
        b, t, h = 3968, 32, hidden
        row["analytic_bytes"] = {"bptt_hidden_states_fp32": t * b * h * 4, "dopamine_live_state_fp32": 2 * b * h * 4}
        out["sizes"][str(hidden)] = row
    out["float32_delta_relative_error"] = {s: float32_delta_error(s, sig) for s, sig in (("lorenz", 1e-4), ("rossler", 1e-5))}
    record("dopamine_compute", "cpu", {**out, "machine_note": MACHINE_NOTE})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("xor")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--budget", type=int, default=20000)
    p.add_argument("--hidden", type=int, nargs="+", default=[2, 4])
    p.add_argument("--sigmas", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4])
    p.add_argument("--wp-grid", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    p.add_argument("--adam-grid", type=float, nargs="*", default=[1e-2, 1e-1])
    p.add_argument("--eta-law", default="as_written")
    p.add_argument("--eta0", type=float, default=1e-2)
    p.add_argument("--eta-max", type=float, default=5e-2)
    p.add_argument("--name", default="dopamine_xor", help="the result file's name")
    p = sub.add_parser("forecast")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--budget", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--wp-grid", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    p.add_argument("--adam-lr", type=float, default=1e-3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--progress", action="store_true")
    p = sub.add_parser("compute")
    p.add_argument("--hiddens", type=int, nargs="+", default=[32, 512])
    p.add_argument("--updates", type=int, default=3)
    p = sub.add_parser("compute-one")
    p.add_argument("--method", choices=["dopamine", "bptt"])
    p.add_argument("--hidden", type=int)
    p.add_argument("--updates", type=int)
    p.add_argument("--reset-every", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"xor": xor, "forecast": forecast, "compute": compute, "compute-one": compute_one}[args.what](args)


if __name__ == "__main__":
    main()
