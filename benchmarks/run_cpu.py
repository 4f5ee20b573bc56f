"""CPU training throughput of the float paths and of the fixed emulator, in one run (`make bench`).

Cue accumulation at the paper's sizes (100 neurons, T = 2050), one seed, batch 16: trial-steps
per second of one gradient computation for BPTT (adjoint scan and autodiff), e-prop online, e-prop factorised and
diffusion (factorised), and each path's speed relative to e-prop factorised; e-prop online and
the fixed emulator with their per-synapse state at the synapses (``rule.storage`` auto = sparse
here) and dense. Absolute CPU times on a shared machine are noisy; the ratios, measured in the
same run, are the result.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RULES, experiment, record, timed  # noqa: E402
from lava_diffmod.training import trainer  # noqa: E402

SEEDS, BATCH = 1, 16


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    cases = [(*r, "auto") for r in RULES] + [("eprop_online_dense", "eprop", "online", "adjoint", "dense")]
    for label, rule, mode, bptt_mode, storage in cases:
        exp = experiment(rule, mode, SEEDS, BATCH, "cpu", storage=storage, bptt_mode=bptt_mode)
        batch = trainer.train_batch(exp, 1, 0)
        params = exp.net.params
        t = timed(lambda: exp.engine.gradients(params, batch.x, batch.target, batch.keys), "cpu", 3)
        out[label] = {"seconds_per_batch": round(t, 3),
                      "trial_steps_per_s": round(SEEDS * BATCH * exp.task.steps / t)}
        print(label, out[label], flush=True)
    base = out["eprop_factorised"]["seconds_per_batch"]
    for label in list(out):
        out[label]["time_relative_to_eprop_factorised"] = round(out[label]["seconds_per_batch"] / base, 2)
    # the fixed-point emulator (loihi2, every switch on) on the same workload
    from benchmarks.common import ROOT
    from lava_diffmod import config as config_mod
    for label, storage in (("fixed_hardware", "auto"), ("fixed_hardware_dense", "dense")):
        cfg = config_mod.load(ROOT / "examples" / "cue_accumulation.toml", {
            "train.seeds": list(range(1, SEEDS + 1)), "train.batch_size": BATCH, "train.micro_batches": 1,
            "train.backend": "fixed", "train.progress": False, "rule.storage": storage})
        fexp = trainer.setup(cfg)
        fb = fexp.task.batch(fexp.seeds, "train", 1, range(BATCH), "cpu", torch.float64)
        w = fexp.emulator.initial_weights()
        t = timed(lambda: fexp.emulator.run(w, fb.x, fb.target, fb.keys, 1), "cpu", 1)
        out[label] = {"seconds_per_batch": round(t, 3), "trial_steps_per_s": round(SEEDS * BATCH * fexp.task.steps / t),
                      "time_relative_to_eprop_factorised": round(t / out["eprop_factorised"]["seconds_per_batch"], 2),
                      "storage": type(fexp.emulator.syn).__name__}
    t = out["fixed_hardware"]["seconds_per_batch"]
    out["throughput_ratio_fixed_over_float_factorised"] = round(out["eprop_factorised"]["seconds_per_batch"] / t, 3)
    out["throughput_ratio_fixed_over_float_online"] = round(out["eprop_online"]["seconds_per_batch"] / t, 3)
    out["speedup_bptt_adjoint_over_autograd"] = round(
        out["bptt_autograd"]["seconds_per_batch"] / out["bptt"]["seconds_per_batch"], 2)
    out["speedup_sparse_over_dense_state"] = {
        "eprop_online": round(out["eprop_online_dense"]["seconds_per_batch"] / out["eprop_online"]["seconds_per_batch"], 2),
        "fixed_hardware": round(out["fixed_hardware_dense"]["seconds_per_batch"] / t, 2)}
    exp = experiment("diffusion", "factorised", SEEDS, BATCH, "cpu")
    out["data_seconds_per_batch"] = round(timed(lambda: trainer.train_batch(exp, 1, 0), "cpu", 3), 3)
    out["setup"] = {"task": "cue_accumulation", "seeds": SEEDS, "batch": BATCH, "steps": 2050,
                    "dtype": "float32", "threads": 1,
                    "note": "median of 3 gradient computations (forward + rule), data excluded"}
    record("cpu_throughput", "cpu", out)


if __name__ == "__main__":
    main()
