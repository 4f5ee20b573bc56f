"""GPU benchmarks of the float reference (run on the H100 through the device tool).

    python benchmarks/gpu.py [throughput] [protocol] [memory] [--out DIR]

* throughput: training trial-steps per second for BPTT (adjoint scan, and autodiff as the
  reference: their ratio is the adjoint's speed-up), e-prop online, e-prop factorised and
  diffusion, 20 seeds batched at the cue-accumulation sizes (B = 64, T = 2050), graphed; plus
  diffusion eager in the same run, as the CUDA-graph speed-up ratio.
* protocol: the full cue-accumulation protocol (2000 iterations × 64 trials, 20 seeds,
  diffusion e-prop, evaluation of 512 trials every 25 iterations) timed over the first
  iterations of a real run and extrapolated to 2000; where the time goes.
* fig2: the float protocol of ``reproduce fig2`` (three tasks x BPTT, e-prop, diffusion, 20 seeds,
  2000 iterations), each run timed over its first 30 iterations and extrapolated, per task.
* memory: peak GPU memory of e-prop online and of BPTT (adjoint and autodiff) at T and at 4T, one seed, B = 64.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS, RULES, experiment, record, timed  # noqa: E402
from lava_diffmod import config as config_mod  # noqa: E402
from lava_diffmod.training import trainer  # noqa: E402

DEV = "cuda"
SEEDS, BATCH = 20, 64


def throughput() -> dict:
    out = {}
    cases = [(*r, True) for r in RULES] + [("diffusion_eager", "diffusion", "factorised", "adjoint", False)]
    for label, rule, mode, bptt_mode, graphs in cases:
        try:
            exp = experiment(rule, mode, SEEDS, BATCH, DEV, graphs=graphs, bptt_mode=bptt_mode)
            batch = trainer.train_batch(exp, 1, 0)
            params = exp.net.params
            repeats = 2 if mode == "online" or not graphs else 5
            t = timed(lambda: exp.engine.gradients(params, batch.x, batch.target, batch.keys), DEV, repeats)
            steps = SEEDS * BATCH * exp.task.steps
            out[label] = {"seconds_per_batch": round(t, 4), "trial_steps_per_s": round(steps / t),
                          "graphed": graphs}
        except Exception as e:  # noqa: BLE001 - record and go on with the other cases
            out[label] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
        print(label, out[label], flush=True)
    if "error" not in out.get("bptt", {}) and "error" not in out.get("bptt_autograd", {}):
        out["speedup_bptt_adjoint_over_autograd"] = round(
            out["bptt_autograd"]["seconds_per_batch"] / out["bptt"]["seconds_per_batch"], 2)
    if "error" not in out.get("diffusion", {}) and "error" not in out.get("diffusion_eager", {}):
        out["cuda_graph_speedup_diffusion"] = round(
            out["diffusion_eager"]["seconds_per_batch"] / out["diffusion"]["seconds_per_batch"], 2)
    out["setup"] = {"seeds": SEEDS, "batch": BATCH, "steps": 2050, "task": "cue_accumulation",
                    "dtype": "float32", "note": "one gradient computation (forward + rule) per batch; data excluded"}
    return out


def protocol(task: str = "cue_accumulation", rule: str = "diffusion", iterations: int = 50) -> dict:
    over = {"rule.name": rule, "train.seeds": list(range(1, SEEDS + 1)), "train.device": DEV,
            "train.iterations": iterations, "train.micro_batches": 1, "train.progress": False,
            "train.checkpoint_every": 25}
    cfg = config_mod.load(config_mod.config_path(task), over)
    stamps = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = trainer.train(cfg, Path(tmp) / "run", on_iteration=lambda n: stamps.append(time.perf_counter()))
        total = time.perf_counter() - t0
    # iterations without an evaluation: 2 … 25 and 27 … 49 (1, 26, 50 evaluate)
    evals = trainer.eval_iterations(iterations, 25)
    plain = [stamps[i] - stamps[i - 1] for i in range(1, len(stamps)) if (i + 1) not in evals]
    per_iter = sorted(plain)[len(plain) // 2]
    with_eval = [stamps[i] - stamps[i - 1] for i in range(1, len(stamps)) if (i + 1) in evals]
    per_eval = sum(with_eval) / len(with_eval) - per_iter
    # where the time goes, measured on one batch with the same engine
    exp = trainer.setup(cfg)
    batch = trainer.train_batch(exp, 1, 0)
    p = exp.net.params
    t_data = timed(lambda: trainer.train_batch(exp, 1, 0), DEV, 5)
    t_fwd = timed(lambda: exp.engine.forward(p, batch.x), DEV, 5)
    t_grad = timed(lambda: exp.engine.gradients(p, batch.x, batch.target, batch.keys), DEV, 5)
    n_evals_full = len(trainer.eval_iterations(2000, 25))
    full = 2000 * per_iter + n_evals_full * per_eval
    return {
        "measured_iterations": iterations, "measured_wall_s": round(total, 2),
        "seconds_per_iteration": round(per_iter, 4), "seconds_per_evaluation_512": round(per_eval, 3),
        "extrapolated_2000_iterations_s": round(full, 1),
        "extrapolated_minutes": round(full / 60, 2), "target_minutes": 10,
        "extrapolation": f"2000 x median iteration time + {n_evals_full} evaluations x evaluation time, "
                         f"both measured in the first {iterations} iterations of a real run",
        "breakdown_s_per_iteration": {"data": round(t_data, 4), "forward": round(t_fwd, 4),
                                      "learning_signal_scan_products": round(t_grad - t_fwd, 4),
                                      "optimiser_and_bookkeeping": round(per_iter - t_grad - t_data, 4)},
        "final_eval_at_measured_iteration": {k: v["mean"] for k, v in summary["final"].items()},
        "setup": {"seeds": SEEDS, "task": task, "batch": cfg.train.batch_size, "micro_batches": 1, "rule": rule,
                  "note": "one pass over the whole batch per iteration (equal to the averaged micro-batches, "
                          "MODEL.md 3.6)"},
    }


def fig2(iterations: int = 30) -> dict:
    """The float protocol of ``reproduce fig2`` (3 tasks x BPTT, e-prop, diffusion, 20 seeds, 2000
    iterations): each run timed over its first iterations and extrapolated; per task and in all."""
    out, total = {}, 0.0
    for task in ("cue_accumulation", "dms", "pattern_generation"):
        runs = {}
        for rule in ("bptt", "eprop", "diffusion"):
            try:
                runs[rule] = protocol(task, rule, iterations)
            except Exception as e:  # noqa: BLE001 - record and go on
                runs[rule] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
            print(task, rule, runs[rule].get("extrapolated_minutes", runs[rule].get("error")), flush=True)
        minutes = sum(r.get("extrapolated_minutes", float("nan")) for r in runs.values())
        out[task] = {"runs": runs, "extrapolated_minutes": round(minutes, 2)}
        total += minutes
    out["extrapolated_minutes_all"] = round(total, 2)
    out["target_minutes"] = 30
    return out


def fixed() -> dict:
    """The fixed-point emulator (loihi2, every switch on) against the float reference, same sizes:
    time per batch of one gradient / learning pass, and the ratio of throughputs in one run. The
    emulator as training runs it (``Emulator.batch``: a replayed CUDA graph) and eagerly (``run``)."""
    from lava_diffmod.training.trainer import setup
    from benchmarks.common import ROOT
    out = {}
    over = {"train.seeds": list(range(1, SEEDS + 1)), "train.batch_size": BATCH, "train.micro_batches": 1,
            "train.device": DEV, "train.progress": False}
    float_exp = experiment("diffusion", "factorised", SEEDS, BATCH, DEV)
    online_exp = experiment("diffusion", "online", SEEDS, BATCH, DEV)
    online_eager = experiment("diffusion", "online", SEEDS, BATCH, DEV, graphs=False)
    batch = trainer.train_batch(float_exp, 1, 0)
    p = float_exp.net.params
    out["float_factorised_s"] = round(timed(lambda: float_exp.engine.gradients(p, batch.x, batch.target, batch.keys), DEV, 3), 4)
    out["float_online_s"] = round(timed(lambda: online_exp.engine.gradients(p, batch.x, batch.target, batch.keys), DEV, 2), 4)
    out["float_online_eager_s"] = round(timed(lambda: online_eager.engine.gradients(p, batch.x, batch.target, batch.keys), DEV, 1), 4)
    for name, sw in (("fixed_hardware", "hardware"), ("fixed_switches_off", "off")):
        cfg = config_mod.load(ROOT / "examples" / "cue_accumulation.toml",
                              dict(over, **{"train.backend": "fixed", "fixed.switches": sw}))
        exp = setup(cfg)
        b64 = exp.task.batch(exp.seeds, "train", 1, range(BATCH), DEV, torch.float64)
        w = exp.emulator.initial_weights()
        out[name + "_s"] = round(timed(lambda: exp.emulator.batch(w, b64.x, b64.target, b64.keys, 1), DEV, 2), 4)
        out[name + "_eager_s"] = round(timed(lambda: exp.emulator.run(w, b64.x, b64.target, b64.keys, 1), DEV, 1), 4)
    out["throughput_ratio_fixed_hw_over_float_factorised"] = round(out["float_factorised_s"] / out["fixed_hardware_s"], 3)
    out["throughput_ratio_fixed_hw_over_float_online"] = round(out["float_online_s"] / out["fixed_hardware_s"], 3)
    out["setup"] = {"seeds": SEEDS, "batch": BATCH, "steps": 2050, "task": "cue_accumulation", "rule": "diffusion",
                    "profile": "loihi2", "note": "one learning pass over a batch; fixed: Emulator.batch (CUDA graph, "
                    "tag step compiled with torch.compile) and eager run(); float: CUDA graph, and eager online"}
    return out


def memory() -> dict:
    out = {}
    delay_4t = 4 * 2050 - (2050 - 850)   # a 4x longer trial through a longer delay
    for label, rule, mode, bptt_mode in [("eprop_online", "eprop", "online", "adjoint"),
                                         ("bptt", "bptt", "factorised", "adjoint"),
                                         ("bptt_autograd", "bptt", "factorised", "autograd"),
                                         ("eprop_factorised", "eprop", "factorised", "adjoint")]:
        peaks = {}
        for name, params in (("T", None), ("4T", {"delay_ms": delay_4t})):
            exp = experiment(rule, mode, 1, BATCH, DEV, graphs=False, task_params=params, bptt_mode=bptt_mode)
            batch = trainer.train_batch(exp, 1, 0)
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            exp.engine.gradients(exp.net.params, batch.x, batch.target, batch.keys)
            torch.cuda.synchronize()
            peaks[name] = {"steps": exp.task.steps, "peak_above_inputs_MB": round((torch.cuda.max_memory_allocated() - base) / 2**20, 2)}
            del exp, batch
        peaks["ratio_4T_over_T"] = round(peaks["4T"]["peak_above_inputs_MB"] / peaks["T"]["peak_above_inputs_MB"], 3)
        out[label] = peaks
        print(label, peaks, flush=True)
    out["note"] = ("peak torch.cuda allocation during one gradient computation, above what is allocated "
                   "before it (weights and the batch's input spikes); 1 seed, B = 64, eager")
    return out


def main() -> None:
    global DEV, SEEDS, BATCH
    parser = argparse.ArgumentParser()
    parser.add_argument("sections", nargs="*", default=["throughput", "protocol", "memory"])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args()
    DEV, SEEDS, BATCH = args.device, args.seeds, args.batch
    for section in args.sections:
        fn = {"throughput": throughput, "protocol": protocol, "memory": memory, "fixed": fixed, "fig2": fig2}[section]
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001
            result = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
        record(f"gpu_{section}", DEV, result, Path(args.out))


if __name__ == "__main__":
    main()
