"""Shared helpers for the benchmarks: configs at paper sizes, timing, the result record."""
from __future__ import annotations

import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

from lava_diffmod import config as config_mod
from lava_diffmod.training.trainer import setup

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# the training paths the issue compares: (label, rule, e-prop mode, BPTT mode); BPTT twice, by
# its adjoint scan (what training uses) and by autodiff (the reference)
RULES = [("bptt", "bptt", "factorised", "adjoint"), ("bptt_autograd", "bptt", "factorised", "autograd"),
         ("eprop_online", "eprop", "online", "adjoint"), ("eprop_factorised", "eprop", "factorised", "adjoint"),
         ("diffusion", "diffusion", "factorised", "adjoint")]


def experiment(rule: str, mode: str, seeds: int, batch: int, device: str, graphs: bool = True,
               task_params: dict | None = None, example: str = "cue_accumulation", storage: str = "auto",
               bptt_mode: str = "adjoint"):
    """The cue-accumulation experiment of examples/ with S seeds and one pass of ``batch``."""
    over = {"rule.name": rule, "rule.mode": mode, "rule.storage": storage, "rule.bptt_mode": bptt_mode,
            "train.seeds": list(range(1, seeds + 1)),
            "train.batch_size": batch, "train.micro_batches": 1, "train.device": device,
            "train.cuda_graphs": graphs, "train.progress": False}
    if task_params:
        over["task.params"] = task_params
    return setup(config_mod.load(ROOT / "examples" / f"{example}.toml", over))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, Python {platform.python_version()})"
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [l.split(":", 1)[1].strip() for l in cpuinfo.read_text().splitlines() if l.startswith("model name")]
        model = f"{names[0]} ({len(names)} cores)" if names else model
    return f"{model}, torch {torch.__version__}, Python {platform.python_version()}"


def record(name: str, device: str, results: dict, out_dir: Path = RESULTS) -> Path:
    """Write ``results`` with the command, machine and date as ``<out_dir>/<name>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "machine": machine(device), "date": datetime.date.today().isoformat(), **results}
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return path
