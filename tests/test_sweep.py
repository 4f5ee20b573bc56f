"""`lava-diffmod sweep`: the grid, its refusals, sweeps on a loopback LocalCluster, reruns that
recompute nothing, joining a scheduler, and a worker killed mid-sweep."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from lava_diffmod import sweep as S
from lava_diffmod.config import ConfigError
from lava_diffmod.reproduce import DOPAMINE_SPIKING, FIXED_LOIHI2
from lava_diffmod.training import trainer

from helpers import tiny

distributed = pytest.importorskip("distributed")

CUE = ("cue_accumulation",)
# tests/helpers.py's tiny cue-accumulation network and trials, as overrides of the paper config
TINY_SETS = {f"{section}.{key}": value for section, table in tiny().items() for key, value in table.items()
             if key not in ("name", "iterations", "progress")}


def grid(**fields) -> S.Grid:
    """A tiny grid on cue accumulation: runs of a second or two."""
    base = dict(tasks=CUE, rules=("eprop",), seeds=(1,), iterations=4, overrides=TINY_SETS)
    return S.Grid(**{**base, **fields})


def cli(argv: list[str]) -> int:
    """``lava-diffmod sweep ARGV`` through :func:`S.add_cli` (errors are raised, not printed)."""
    parser = argparse.ArgumentParser()
    S.add_cli(parser.add_subparsers())
    args = parser.parse_args(["sweep", *argv])
    return args.fn(args)


def set_args(overrides: dict) -> list[str]:
    """``--set section.key=value`` arguments (TOML values) of dotted overrides."""
    def toml(value) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
        return json.dumps(value)
    return [f"--set={key}={toml(value)}" for key, value in overrides.items()]


def local_cluster(n_workers: int = 2):
    return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address="127.0.0.1:0")


def summaries_mtimes(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}


# ------------------------------------------------------------------------------------ the grid
def test_the_grid_varies_k_for_diffusion_and_fixed_point_for_the_on_chip_rules_only():
    g = S.Grid(tasks=("cue_accumulation", "dms"), rules=("bptt", "eprop", "diffusion", "dopamine"),
               seeds=(1, 2, 3, 4, 5), ks=(0.25, 0.5), backends=("float", "fixed"), seeds_per_task=2,
               iterations=3)
    names = [c.name for c in g.conditions()]
    assert names == 2 * ["bptt", "eprop", "diffusion_k0.25", "diffusion_k0.5", "dopamine",
                         "fixed_eprop", "fixed_diffusion_k0.25", "fixed_diffusion_k0.5"]
    cells = g.cells()
    assert len(cells) == 16 * 3
    assert [c.name for c in cells[:3]] == ["cue_accumulation/bptt/seeds-1-2", "cue_accumulation/bptt/seeds-3-4",
                                           "cue_accumulation/bptt/seeds-5"]
    by_name = {c.name: c for c in cells}
    fixed = by_name["dms/fixed_diffusion_k0.25/seeds-3-4"]
    assert fixed.cfg.train.backend == "fixed" and fixed.cfg.diffusion.k == 0.25 and fixed.cfg.fixed.hw == "loihi2"
    assert fixed.cfg.train.seeds == [3, 4] and fixed.cfg.train.iterations == 3 and fixed.cfg.task.name == "dms"
    assert fixed.cond.overrides == {"diffusion.k": 0.25, **FIXED_LOIHI2}
    assert by_name["dms/dopamine/seeds-5"].cond.overrides == DOPAMINE_SPIKING
    assert S.seed_label((1, 3, 7)) == "1,3,7" and S.seed_label((4,)) == "4"


@pytest.mark.parametrize("fields, message", [
    ({"tasks": ("xor",)}, "--tasks 'xor': must be among cue_accumulation, dms, pattern_generation"),
    ({"rules": ("sgd",)}, "--rules 'sgd': must be among bptt, eprop, diffusion, modprop, dopamine"),
    ({"backends": ("analog",)}, "--backends 'analog': must be among float, fixed"),
    ({"rules": ("diffusion",), "ks": (1.5,)}, r"--k 1.5: give retentions in \[0, 1\]"),
    ({"seeds": (1, 1)}, "--seeds 1,1: give distinct integers >= 0"),
    ({"seeds_per_task": 0}, "--seeds-per-task 0: must be >= 1"),
    ({"iterations": 0}, "--iterations 0: must be >= 1"),
    ({"rules": ("bptt",), "backends": ("fixed",)}, "the fixed backend trains eprop, diffusion only"),
    ({"overrides": {**TINY_SETS, "train.lr": -1.0}}, r"train.lr = -1.0: must be in \(0, inf\]"),
    ({"tasks": ("pattern_generation",), "overrides": {"train.batch_size": 32}},
     "train.batch_size = 32: task pattern_generation has only 8 frozen trials"),
])
def test_bad_options_are_refused_before_anything_is_submitted(fields, message):
    with pytest.raises(ConfigError, match=message):
        grid(**fields).cells()


def test_the_command_line_checks_every_config_before_it_connects(tmp_path):
    out = tmp_path / "sweep"
    # a scheduler address nobody listens on: the config error comes first
    with pytest.raises(ConfigError, match="unknown key"):
        cli(["--tasks", "cue_accumulation", "--rules", "eprop", "--seeds", "1", "--set", "train.nope=1",
             "--scheduler", "tcp://127.0.0.1:9", "--out", str(out)])
    with pytest.raises(ConfigError, match="--k 'x'"):
        cli(["--k", "x", "--out", str(out)])
    assert not out.exists()


def test_importing_the_sweep_module_imports_neither_dask_nor_torch():
    code = ("import sys, lava_diffmod.sweep; "
            "print(sorted(m for m in ('dask', 'distributed', 'torch') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ sweeps
@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as c, distributed.Client(c) as client:
        yield c, client


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    """Float and fixed point, e-prop and diffusion, three seeds in runs of two: 8 runs."""
    out = tmp_path_factory.mktemp("sweep")
    cells = grid(rules=("eprop", "diffusion"), ks=(0.5,), backends=("float", "fixed"), seeds=(1, 2, 3),
                 seeds_per_task=2).cells()
    return out, cells, S.run(cells, out, cluster[1], progress=False)


def test_a_sweep_writes_one_table_over_every_run(swept):
    out, cells, res = swept
    assert not res["failed"] and set(res["status"].values()) == {"trained"} and len(res["status"]) == 8
    assert all((c.run_dir(out) / "summary.json").is_file() for c in cells)
    table = res["table"]
    assert [r["condition"] for r in table] == ["eprop", "diffusion_k0.5", "fixed_eprop", "fixed_diffusion_k0.5"]
    assert json.loads((out / "table.json").read_text()) == table
    assert (out / "table.csv").read_text().startswith(
        "task,condition,group,rule,backend,k,seeds,iteration,wall_s,accuracy,accuracy_ci95,ce,ce_ci95\n")
    for row in table:
        runs = [json.loads((out / "cue_accumulation" / row["condition"] / f"seeds-{s}" / "summary.json").read_text())
                for s in ("1-2", "3")]
        for key in ("accuracy", "ce"):
            per_seed = runs[0]["final"][key]["per_seed"] + runs[1]["final"][key]["per_seed"]
            assert (row[key], row[f"{key}_ci95"]) == trainer.mean_ci(per_seed)
        assert row["seeds"] == 3 and row["iteration"] == 4 and row["k"] == (0.5 if "diffusion" in row["rule"] else None)
    assert {r["backend"] for r in table if r["condition"].startswith("fixed_")} == {"fixed"}


def test_a_rerun_recomputes_nothing(swept, cluster):
    out, cells, res = swept
    before = summaries_mtimes(out)
    again = S.run(cells, out, cluster[1], progress=False)
    assert set(again["status"].values()) == {"done"} and len(again["status"]) == 8
    assert summaries_mtimes(out) == before and again["table"] == res["table"]


def test_scheduler_joins_a_running_cluster_and_starts_none(cluster, tmp_path, monkeypatch, capsys):
    def no_local_cluster(*args, **kwargs):
        raise AssertionError("--scheduler must not start a cluster")
    monkeypatch.setattr(distributed, "LocalCluster", no_local_cluster)
    out = tmp_path / "sweep"
    argv = ["--tasks", "cue_accumulation", "--rules", "bptt", "--seeds", "1-2", "--iterations", "2",
            "--out", str(out), "--no-progress", "--scheduler", cluster[0].scheduler_address]
    argv += set_args(TINY_SETS)
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert f"2 runs on {cluster[0].scheduler_address}" in printed
    assert "cue_accumulation/bptt/seeds-1: trained" in printed and "cue_accumulation/bptt/seeds-2: trained" in printed
    assert json.loads((out / "table.json").read_text())[0]["seeds"] == 2
    with pytest.raises(ConfigError, match="--workers: sizes the local cluster only"):
        cli([*argv, "--workers", "2"])


def test_a_failing_run_is_reported_and_the_others_finish(cluster, tmp_path):
    out = tmp_path / "sweep"
    first = grid(seeds=(1, 2), iterations=2).cells()
    S.run(first, out, cluster[1], progress=False)
    (first[0].run_dir(out) / "summary.json").unlink()      # a checkpoint of a 2-iteration run is left
    res = S.run(grid(seeds=(1, 3), iterations=4).cells(), out, cluster[1], retries=0, progress=False)
    assert list(res["failed"]) == ["cue_accumulation/eprop/seeds-1"]
    assert "ConfigError" in res["failed"]["cue_accumulation/eprop/seeds-1"] and "another config" in \
        res["failed"]["cue_accumulation/eprop/seeds-1"]
    assert res["status"]["cue_accumulation/eprop/seeds-3"] == "trained"
    assert res["table"][0]["seeds"] == 1 and json.loads((out / "table.json").read_text()) == res["table"]


# ------------------------------------------------------------------------------------ a worker dies
def worker_running(pids: list[int], run_dir: Path) -> int | None:
    """The worker process that trains ``run_dir`` now (it holds its metrics log open)."""
    log = str(run_dir / "metrics.jsonl")
    for pid in pids:
        try:
            if any(f.path == log for f in psutil.Process(pid).open_files()):
                return pid
        except psutil.NoSuchProcess:
            continue
    return None


def kill_mid_run(client, cells: list[S.Cell], out: Path, sweep) -> tuple[S.Cell, dict]:
    """While ``sweep`` runs, SIGKILL the worker that trains the first run seen with a checkpoint but
    no summary; returns that run's cell and the summaries' mtimes of the runs finished by then."""
    pids = list(client.run(os.getpid).values())
    while not sweep.done():
        for cell in cells:
            run_dir = cell.run_dir(out)
            if (run_dir / trainer.CHECKPOINT).is_file() and not (run_dir / "summary.json").is_file():
                pid = worker_running(pids, run_dir)
                if pid is not None:
                    finished = summaries_mtimes(out)
                    os.kill(pid, signal.SIGKILL)
                    return cell, finished
        time.sleep(0.02)
    raise AssertionError("the sweep ended before any run could be killed")


def test_a_killed_worker_loses_only_its_current_run(tmp_path):
    out = tmp_path / "sweep"
    extra = {**TINY_SETS, "train.eval_every": 10, "train.checkpoint_every": 1}
    cells = grid(rules=("eprop", "diffusion"), ks=(0.5, 0.9), seeds=(1, 2), iterations=30, overrides=extra).cells()
    with local_cluster() as cluster, distributed.Client(cluster) as client, ThreadPoolExecutor(1) as pool:
        sweep = pool.submit(S.run, cells, out, client, progress=False)
        killed, finished = kill_mid_run(client, cells, out, sweep)
        res = sweep.result(timeout=300)
    assert not res["failed"] and res["status"][killed.name] == "resumed"
    assert all((c.run_dir(out) / "summary.json").is_file() for c in cells)
    assert len(res["table"]) == 3 and all(r["seeds"] == 2 for r in res["table"])
    after = summaries_mtimes(out)
    assert all(after[p] == t for p, t in finished.items())     # nothing finished was trained again
    reference = tmp_path / "uninterrupted"
    trainer.train(killed.cfg, reference)
    got, want = (load_file(str(d / trainer.CHECKPOINT)) for d in (killed.run_dir(out), reference))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
