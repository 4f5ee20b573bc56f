"""Speed of the Lava network, measured as ratios within one run (CPU).

1. Our Lava network (fixed_pt and floating_pt, learning on) against Lava's own processes of the
   same size: RingBuffer → LearningDense (input) → LIF ⇄ LearningDense (recurrent), LIF → Dense →
   LIF (readout), with our Loihi 3-factor rule on the learning synapses; steps per second.
2. The batched emulator against the Lava fixed_pt network on the same workload (the same network,
   trials and learning), in sample-steps per second.

    python benchmarks/lava_speed.py [--trials 4] [--batch 64]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import lava_diffmod  # noqa: E402,F401  (the Python 3.11 import fix before lava)
from common import record  # noqa: E402
from lava_diffmod.fixed.emulator import Emulator, Weights  # noqa: E402
from lava_diffmod.lava import network as LN  # noqa: E402
from lava_diffmod.lava.rules import loihi3f_rules  # noqa: E402
from test_lava_network import grid_cfg  # noqa: E402
from lava_diffmod.tasks import make_task  # noqa: E402


def lava_rate(proc, steps_per_run: int, runs: int, cfg) -> float:
    """Steps per second of ``runs`` RunSteps after a first (compiling) one."""
    session = LN.Session(proc)
    try:
        session.run_steps(steps_per_run, cfg)
        t = time.perf_counter()
        for _ in range(runs):
            session.run_steps(steps_per_run, cfg)
        return steps_per_run * runs / (time.perf_counter() - t)
    finally:
        session.close()


def lavas_own(spec, x: np.ndarray, backend: str):
    """Lava's LIF / Dense / LearningDense network of the same size; returns a process of it."""
    from lava.proc.dense.process import Dense, LearningDense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    net, fp = spec.net, spec.fp
    rules = loihi3f_rules(fp, net)
    ints = backend == "fixed"
    w_in, w_rec, w_out = (np.ascontiguousarray(w[0].T.numpy()) for w in
                          ((fp.w_in, fp.w_rec, fp.w_out) if ints else net.params))
    lif = dict(du=4095, dv=fp.neuron.dv, vth=int(fp.neuron.vth.reshape(-1)[0])) if ints else \
        dict(du=1.0, dv=1 - net.neuron.alpha, vth=net.neuron.thr)
    src = RingBuffer(data=x.T.astype(np.int32 if ints else float))
    conn_in = LearningDense(weights=w_in, learning_rule=rules["input"], name="in")
    conn_rec = LearningDense(weights=w_rec, learning_rule=rules["recurrent"], name="rec")
    neurons = LIF(shape=(net.n_rec,), **lif)
    readout = LIF(shape=(net.n_out,), du=lif["du"], dv=fp.dkappa if ints else 1 - net.kappa, vth=10 ** 6)
    dense_out = Dense(weights=w_out)
    src.s_out.connect(conn_in.s_in)
    for conn in (conn_in, conn_rec):
        conn.a_out.connect(neurons.a_in)
        neurons.s_out.connect(conn.s_in_bap)
    neurons.s_out.connect(conn_rec.s_in)
    neurons.s_out.connect(dense_out.s_in)
    dense_out.a_out.connect(readout.a_in)
    return neurons


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4, help="timed Lava trials after a compiling one")
    ap.add_argument("--batch", type=int, default=64, help="emulator trials per batch")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = grid_cfg()
    task = make_task(cfg.task, cfg.neuron.dt)
    seed = 3
    batch = task.batch([seed], "train", 0, range(args.batch), "cpu", torch.float64)
    t_steps = batch.x.shape[0]
    results = {"setup": {"task": cfg.task.name, "grid": "6x6", "n_rec": cfg.n_rec, "steps_per_trial": t_steps,
                         "learning": True, "timed_lava_trials": args.trials, "emulator_batch": args.batch,
                         "note": "Lava: steps/s over the timed trials after a compiling first trial; "
                                 "ratios are within this run"}}
    for backend in ("fixed", "float"):
        spec = LN.network_spec(cfg, seed, backend, t_steps, learn=True)
        x, target = LN.task_arrays(batch.x[:, :, :1], batch.target[:, :1], task.kind, task.n_out)
        ours = lava_rate(LN.build(spec, x, target, backend).neurons, t_steps, args.trials, LN.run_config(backend))
        theirs = lava_rate(lavas_own(spec, x, backend), t_steps, args.trials, LN.run_config(backend))
        tag = "fixed_pt" if backend == "fixed" else "floating_pt"
        results[f"lava_{tag}"] = {"ours_steps_per_s": round(ours, 1), "lava_builtin_steps_per_s": round(theirs, 1),
                                  "ratio_ours_over_builtin": round(ours / theirs, 3)}
        if backend == "fixed":
            em = Emulator(spec.net, spec.fp, spec.obj, spec.modulator, [seed], compile=False)
            w = Weights(*LN.initial_weights(spec, "fixed"))
            em.run(w, batch.x, batch.target, batch.keys, 0, learn=True)
            t = time.perf_counter()
            em.run(w, batch.x, batch.target, batch.keys, 1, learn=True)
            em_rate = args.batch * t_steps / (time.perf_counter() - t)
            results["emulator_vs_lava_fixed_pt"] = {
                "emulator_sample_steps_per_s": round(em_rate, 1), "lava_sample_steps_per_s": round(ours, 1),
                "ratio": round(em_rate / ours, 1)}
    record("lava_speed_cpu", "cpu", results)


if __name__ == "__main__":
    main()
