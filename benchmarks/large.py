"""Large networks: 10,000 neurons on a 100 × 100 grid, local connectivity (σ = 0.012).

    python benchmarks/large.py [--device cpu|cuda] [--sizes 1000,2500,10000] [--batch B]
                               [--steps T] [--seeds S]
                               [--cases online_sparse,online_dense,factorised,fixed_sparse,fixed_dense]
                               [--name large_cpu] [--out DIR]

* structure: the time and peak host memory to draw one network's structure (row blocks).
* per size N (grid ⌈√N⌉²): one gradient computation on a batch of cue-accumulation trials cut to
  T steps, for e-prop online with per-synapse traces stored sparse (at the E synapses only) and,
  where they fit, dense; and e-prop factorised. Reported: seconds per batch, sample-synapse-steps
  per second of the online rule (S·B·E·T / time), the factorised path's speed-up over online,
  peak memory (GPU: torch's peak allocation).
* On CUDA the online rule's per-synapse step (traces and Σ_t e) runs as one torch.compile'd
  kernel (``rules.eprop.compiled_synapse_step``).
* GPU only: the memory-bandwidth floor, measured in the same run as a device-to-device copy
  (bytes read + written per second), divided by 16 bytes per sample-synapse-step (ALIF: ε^a and
  ē, float32, each read and written once per step); online e-prop's fraction of that floor.
* cases ``fixed_sparse``, ``fixed_dense``: the fixed-point emulator (Loihi 2 profile, hardware
  switches) at the same sizes, learning on, its per-synapse tags at the synapses only or dense
  (S, B, P, N) int32 (dense only up to ``--dense-max``).
Writes <out>/<name>.json (default benchmarks/results/large_<device>.json).
"""
from __future__ import annotations

import argparse
import math
import resource
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import RESULTS, ROOT, record, sync, timed  # noqa: E402
from lava_diffmod import config as config_mod  # noqa: E402
from lava_diffmod.network.structure import build_structure  # noqa: E402
from lava_diffmod.rules import gradient_fn  # noqa: E402
from lava_diffmod.training import trainer  # noqa: E402

BYTES_PER_SYNAPSE_STEP = 16   # ALIF online e-prop: ε^a and ē read + written, float32
CASES = ("online_sparse", "online_dense", "factorised", "fixed_sparse", "fixed_dense")


def task_params(steps: int) -> dict:
    """Cue accumulation with one cue, cut to T = ``steps`` (≥ 10, a multiple of 10) steps."""
    u = steps // 10
    return {"n_cues": 1, "cue_ms": 4 * u, "gap_ms": u, "delay_ms": u, "decision_ms": 4 * u}


def config(n: int, seeds: int, batch: int, device: str, mode: str = "online", storage: str = "auto",
           backend: str = "float", steps: int = 100):
    side = math.ceil(math.sqrt(n))
    over = {"rule.name": "eprop", "rule.mode": mode, "rule.storage": storage,
            "neuron.n_lif": n // 2, "neuron.n_alif": n - n // 2, "network.grid_h": side, "network.grid_w": side,
            "train.seeds": list(range(1, seeds + 1)), "train.batch_size": batch, "train.micro_batches": 1,
            "train.device": device, "train.cuda_graphs": False, "train.progress": False,
            "task.params": task_params(steps),
            "train.backend": backend}
    if backend == "fixed":
        over.update({"fixed.hw": "loihi2", "fixed.switches": "hardware"})
    return config_mod.load(ROOT / "examples" / "cue_accumulation.toml", over)


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 1e9, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)   # process peak RSS (kB → GB)


def copy_bandwidth(device: str) -> float:
    """Bytes read + written per second by a 2 GB device-to-device copy (median of 5)."""
    a = torch.empty(1 << 29, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    t = timed(lambda: b.copy_(a), device, 5)
    return 2 * a.numel() * 4 / t


def structure_time(n: int) -> dict:
    cfg = config(n, 1, 1, "cpu")
    t = time.perf_counter()
    s = build_structure(cfg, 40, 2, 1)
    return {"n": n, "seconds": round(time.perf_counter() - t, 2), "recurrent_density": round(float(s.m_rec.mean()), 4),
            "peak_rss_gb": peak_memory_gb("cpu")}


def gradient_case(n: int, seeds: int, batch: int, device: str, mode: str, storage: str, repeats: int,
                  steps: int) -> dict:
    exp = trainer.setup(config(n, seeds, batch, device, mode, storage, steps=steps))
    b = trainer.train_batch(exp, 1, 0)
    fn = gradient_fn(exp.rule, exp.net)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = timed(lambda: fn(exp.net, b.x, b.target, b.keys), device, repeats)
    mask = torch.cat([exp.net.m_in, exp.net.m_rec], dim=1)
    synapses = int(mask.count_nonzero()) // seeds
    steps = exp.task.steps
    out = {"seconds_per_batch": round(t, 4), "synapses_per_seed": synapses, "steps": steps,
           "peak_memory_gb": peak_memory_gb(device)}
    if mode == "online":
        out["sample_synapse_steps_per_s"] = round(seeds * batch * synapses * steps / t)
    return out


def fixed_case(n: int, seeds: int, batch: int, device: str, storage: str, steps: int) -> dict:
    exp = trainer.setup(config(n, seeds, batch, device, storage=storage, backend="fixed", steps=steps))
    b = trainer.train_batch(exp, 1, 0)
    emu = exp.emulator
    w = emu.initial_weights()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t = timed(lambda: emu.run(w, b.x, b.target, b.keys, 1), device, 1)
    return {"seconds_per_batch": round(t, 4), "steps": exp.task.steps, "peak_memory_gb": peak_memory_gb(device)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="1000,2500,10000")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100, help="trial length T (a multiple of 10)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--dense-max", type=int, default=2500, help="largest N with dense online traces")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--name", help="result file name (default large_<device>)")
    ap.add_argument("--out", default=str(RESULTS), help="result folder (default benchmarks/results)")
    args = ap.parse_args()
    dev = args.device
    cases = args.cases.split(",")
    if any(c not in CASES for c in cases) or args.steps < 10 or args.steps % 10:
        ap.error(f"--cases among {', '.join(CASES)}; --steps a multiple of 10")
    torch.set_grad_enabled(False)
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict = {"setup": {"task": "cue_accumulation", "task_params": task_params(args.steps), "seeds": args.seeds,
                           "batch": args.batch, "dtype": "float32 (fixed: integers)",
                           "connectivity": "local, sigma = 0.012",
                           "bytes_per_sample_synapse_step": BYTES_PER_SYNAPSE_STEP,
                           "note": "CPU peak memory is the process's peak RSS so far (monotone over the run)"}}
    out["structure"] = structure_time(max(sizes))
    print("structure", out["structure"], flush=True)
    if dev.startswith("cuda"):
        bw = copy_bandwidth(dev)
        out["copy_bandwidth_gb_s"] = round(bw / 1e9, 1)
        out["floor_sample_synapse_steps_per_s"] = round(bw / BYTES_PER_SYNAPSE_STEP)
    modes = {"online_sparse": ("online", "sparse"), "online_dense": ("online", "dense"),
             "factorised": ("factorised", "auto")}
    for n in sizes:
        row: dict = {}
        for label in cases:
            if label.endswith("_dense") and n > args.dense_max:
                continue
            try:
                row[label] = fixed_case(n, args.seeds, args.batch, dev, label[6:], args.steps) \
                    if label.startswith("fixed") else \
                    gradient_case(n, args.seeds, args.batch, dev, *modes[label], args.repeats, args.steps)
            except Exception as e:  # noqa: BLE001 - record and go on
                row[label] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-800:]}
            print(n, label, row[label], flush=True)

        def ok(label):
            return label in row and "error" not in row[label]
        if ok("online_sparse") and ok("factorised"):
            row["factorised_speedup_over_online_sparse"] = round(
                row["online_sparse"]["seconds_per_batch"] / row["factorised"]["seconds_per_batch"], 2)
        if ok("online_dense") and ok("online_sparse"):
            row["sparse_speedup_over_dense_online"] = round(
                row["online_dense"]["seconds_per_batch"] / row["online_sparse"]["seconds_per_batch"], 2)
        if ok("fixed_dense") and ok("fixed_sparse"):
            row["fixed_sparse_speedup_over_dense"] = round(
                row["fixed_dense"]["seconds_per_batch"] / row["fixed_sparse"]["seconds_per_batch"], 2)
        if "floor_sample_synapse_steps_per_s" in out and ok("online_sparse"):
            row["online_fraction_of_floor"] = round(
                row["online_sparse"]["sample_synapse_steps_per_s"] / out["floor_sample_synapse_steps_per_s"], 3)
        out[f"n{n}"] = row
    sync(dev)
    record(args.name or f"large_{dev.split(':')[0]}", dev, out, Path(args.out))


if __name__ == "__main__":
    main()
