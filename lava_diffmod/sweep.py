"""``lava-diffmod sweep``: a grid of training runs on Dask distributed, fault tolerant and resumable.

The grid is tasks × rules × k (diffusion only) × backends (fixed point for the on-chip rules
only) × chunks of seeds. Each cell is one training run, its seeds batched, in
``<out>/<task>/<condition>/seeds-<seeds>/`` with the condition names of ``reproduce``
(``eprop``, ``diffusion_k0.5``, ``fixed_eprop``, …). :func:`run_cell` trains a cell on a worker:
a run with its ``summary.json`` is skipped, a run with a checkpoint resumes from it (ending with
the weights of an uninterrupted run), anything else trains from the start. Dask reschedules the
task of a worker that dies, so the cell continues from its last checkpoint and no finished run is
recomputed. Once every cell has finished, ``table.csv`` and ``table.json`` hold the table that
``reproduce`` writes, each row pooled over all seeds of its condition. See docs/sweep.md.

Dask and torch are imported inside the functions: the command line starts fast.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ONCHIP_RULES, RULES, ConfigError

if TYPE_CHECKING:
    from .config import Config
    from .reproduce import Condition

BACKENDS = ("float", "fixed")


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep: a condition and the chunk of seeds it batches."""
    cond: Condition
    seeds: tuple[int, ...]
    cfg: Config

    @property
    def name(self) -> str:
        """``<task>/<condition>/seeds-<seeds>``: the run directory under the sweep's output."""
        return f"{self.cond.task}/{self.cond.name}/seeds-{seed_label(self.seeds)}"

    def run_dir(self, out: Path) -> Path:
        return Path(out) / self.name


@dataclass(frozen=True)
class Grid:
    """The options of a sweep; :meth:`cells` expands them into training runs."""
    tasks: tuple[str, ...]
    rules: tuple[str, ...]
    seeds: tuple[int, ...]
    ks: tuple[float, ...] = (0.75,)
    backends: tuple[str, ...] = ("float",)
    seeds_per_task: int = 1
    iterations: int = 2000
    device: str = "cpu"
    overrides: dict = field(default_factory=dict)   # {"section.key": value} for every run (--set)

    def check(self) -> None:
        """Refuse bad options; each message names the option and its allowed values."""
        from .reproduce import TASKS
        for option, values, allowed in (("--tasks", self.tasks, TASKS), ("--rules", self.rules, RULES),
                                        ("--backends", self.backends, BACKENDS)):
            if not values:
                raise ConfigError(f"{option}: give at least one of {', '.join(allowed)}")
            for v in values:
                if v not in allowed:
                    raise ConfigError(f"{option} {v!r}: must be among {', '.join(allowed)}")
        if not self.ks or any(not 0 <= k <= 1 for k in self.ks):
            raise ConfigError(f"--k {','.join(map(str, self.ks))}: give retentions in [0, 1]")
        if not self.seeds or any(s < 0 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds {','.join(map(str, self.seeds))}: give distinct integers >= 0")
        if self.seeds_per_task < 1:
            raise ConfigError(f"--seeds-per-task {self.seeds_per_task}: must be >= 1")
        if self.iterations < 1:
            raise ConfigError(f"--iterations {self.iterations}: must be >= 1")

    def conditions(self) -> list[Condition]:
        """The grid's conditions: k only varies diffusion, fixed point only the on-chip rules."""
        out = []
        for task in unique(self.tasks):
            for backend in unique(self.backends):
                for rule in unique(self.rules):
                    if backend == "fixed" and rule not in ONCHIP_RULES:
                        continue
                    for k in unique(self.ks) if rule == "diffusion" else (None,):
                        out.append(condition(task, rule, backend, k))
        if not out:
            raise ConfigError(f"--backends {','.join(self.backends)} with --rules {','.join(self.rules)}: no "
                              f"run; the fixed backend trains {', '.join(ONCHIP_RULES)} only")
        return out

    def seed_chunks(self) -> list[tuple[int, ...]]:
        """The seeds in runs of ``seeds_per_task`` (the last one may be shorter)."""
        n = self.seeds_per_task
        return [tuple(self.seeds[i:i + n]) for i in range(0, len(self.seeds), n)]

    def cells(self) -> list[Cell]:
        """Every run of the grid with its validated config: any error is raised here, before
        anything is submitted."""
        from .reproduce import condition_config
        self.check()
        return [Cell(cond, seeds, condition_config(cond, list(seeds), self.iterations, self.device, 0,
                                                   self.overrides))
                for cond in self.conditions() for seeds in self.seed_chunks()]


def unique(values) -> list:
    """``values`` without repeats, in order."""
    return list(dict.fromkeys(values))


def condition(task: str, rule: str, backend: str, k: float | None) -> Condition:
    """A sweep condition named as in ``reproduce``: ``eprop``, ``diffusion_k0.5``, ``fixed_eprop``…"""
    from .reproduce import DOPAMINE_SPIKING, FIXED_LOIHI2, Condition
    name, over = rule, dict(DOPAMINE_SPIKING) if rule == "dopamine" else {}
    if k is not None:
        name, over["diffusion.k"] = f"{rule}_k{k}", k
    if backend == "fixed":
        name, over = f"fixed_{name}", {**over, **FIXED_LOIHI2}
    return Condition(task, name, "sweep", rule, backend, over)


def seed_label(seeds: tuple[int, ...]) -> str:
    """'3', '1-4' for consecutive seeds, else '1,3,7' (the --seeds syntax)."""
    if len(seeds) > 1 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def run_cell(cell: Cell, run_dir: str, threads: int = 1) -> str:
    """Train, resume or skip one cell (on a worker); returns "trained", "resumed" or "done"."""
    import torch
    from .reproduce import run_condition
    torch.set_num_threads(threads)
    return run_condition(cell.cond, Path(run_dir), cell.cfg, progress=False)


@contextmanager
def connect(scheduler: str | None = None, workers: int | None = None):
    """A Dask client: of the cluster at ``scheduler`` (never starts one), else of a new
    LocalCluster on loopback of ``workers`` single-threaded worker processes (default: one per
    CPU core), closed on exit."""
    from distributed import Client, LocalCluster
    if scheduler:
        if workers is not None:
            raise ConfigError("--workers: sizes the local cluster only; the cluster at --scheduler has its own")
        try:
            client = Client(scheduler)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        with client:
            yield client
        return
    n = os.cpu_count() if workers is None else workers
    if n < 1:
        raise ConfigError(f"--workers {n}: must be >= 1")
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:8787") as cluster, Client(cluster) as client:
        yield client


def run(cells: list[Cell], out: str | Path, client, retries: int = 2, threads: int = 1,
        progress: bool = True) -> dict:
    """Run every cell on ``client``'s cluster, then write the table of the finished runs.

    A cell whose worker dies is rescheduled by Dask (up to the scheduler's
    ``distributed.scheduler.allowed-failures``) and resumes from its checkpoint; a cell that
    raises is retried ``retries`` times, then reported as failed while the others go on.
    ``out`` must be on a filesystem every worker sees. Returns ``{"table": rows, "status":
    {cell name: status}, "failed": {cell name: error}}``.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm
    if retries < 0:
        raise ConfigError(f"--retries {retries}: must be >= 0")
    if threads < 1:
        raise ConfigError(f"--threads {threads}: must be >= 1")
    out = Path(out).resolve()
    futures = client.map(run_cell, cells, [str(c.run_dir(out)) for c in cells], threads=threads,
                         pure=False, retries=retries)
    by_key = {f.key: c for f, c in zip(futures, cells)}
    status, failed = {}, {}
    with tqdm(total=len(cells), disable=not progress, desc="sweep", unit="run") as bar:
        for future in as_completed(futures):
            cell = by_key[future.key]
            try:
                status[cell.name] = future.result()
            except Exception as e:  # noqa: BLE001 - the cell's error, or KilledWorker; the others go on
                status[cell.name] = failed[cell.name] = f"failed: {type(e).__name__}: {e}"
            tqdm.write(f"{cell.name}: {status[cell.name]}", file=sys.stdout)
            bar.update()
    rows = table(cells, out)
    if rows:
        from .reproduce import write_table
        write_table(out, rows)
    return {"table": rows, "status": status, "failed": failed}


def table(cells: list[Cell], out: Path) -> list[dict]:
    """One row per condition with a finished run: final metrics pooled over its runs' seeds."""
    from .reproduce import table_row
    groups: dict[tuple[str, str], tuple] = {}
    for cell in cells:
        path = cell.run_dir(out) / "summary.json"
        if path.is_file():
            groups.setdefault((cell.cond.task, cell.cond.name), (cell.cond, []))[1].append(
                json.loads(path.read_text()))
    return [table_row(cond, summaries) for cond, summaries in groups.values()]


# ------------------------------------------------------------------------------------ command line
def add_cli(sub) -> None:
    """Register ``lava-diffmod sweep`` on an argparse subparsers object."""
    s = sub.add_parser("sweep", help="a grid of runs (tasks x rules x k x backends x seeds) on Dask "
                                    "distributed: a local cluster or --scheduler; resumable, one table")
    s.add_argument("--tasks", help="comma-separated (default: cue_accumulation,dms,pattern_generation)")
    s.add_argument("--rules", default="bptt,eprop,diffusion", help=f"comma-separated among {','.join(RULES)}")
    s.add_argument("--k", default="0.75", help="comma-separated diffusion retentions in [0, 1] (diffusion only)")
    s.add_argument("--seeds", default="1-20", help="e.g. 1-20 or 1,2,5")
    s.add_argument("--seeds-per-task", dest="seeds_per_task", type=int, default=1,
                   help="seeds batched in one run (one Dask task)")
    s.add_argument("--backends", default="float",
                   help=f"float,fixed (fixed point for {', '.join(ONCHIP_RULES)} only)")
    s.add_argument("--iterations", type=int, default=2000)
    s.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra config override for every run, e.g. train.batch_size=32")
    s.add_argument("--out", default="results/sweep", help="output folder, on a filesystem every worker sees")
    s.add_argument("--workers", type=int, help="worker processes of the local cluster (default: CPU cores)")
    s.add_argument("--scheduler", help="join the Dask cluster at this address, e.g. tcp://host:8786")
    s.add_argument("--retries", type=int, default=2, help="retries of a run that raises an error")
    s.add_argument("--threads", type=int, default=1, help="torch threads per run")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=cmd_sweep)


def cmd_sweep(args) -> int:
    from .cli import fmt_metric, format_table, parse_seeds, parse_sets
    from .reproduce import TASKS
    grid = Grid(tasks=tuple(args.tasks.split(",")) if args.tasks else TASKS, rules=tuple(args.rules.split(",")),
                seeds=tuple(parse_seeds(args.seeds)), ks=parse_ks(args.k), backends=tuple(args.backends.split(",")),
                seeds_per_task=args.seeds_per_task, iterations=args.iterations, device=args.device,
                overrides=parse_sets(args.set))
    cells = grid.cells()
    with connect(args.scheduler, args.workers) as client:
        print(f"{len(cells)} runs on {client.scheduler.address} (dashboard: {client.dashboard_link})", flush=True)
        res = run(cells, args.out, client, args.retries, args.threads, progress=not args.no_progress)
    keys = ["task", "condition", "backend", "seeds", "iteration", "accuracy", "ce", "nmse"]
    print(format_table([{k: fmt_metric(r, k) if k in ("accuracy", "ce", "nmse") else r[k] for k in keys}
                        for r in res["table"]], keys))
    if res["table"]:
        print(f"table: {Path(args.out) / 'table.csv'}")
    for name, error in res["failed"].items():
        print(f"lava-diffmod: error: {name}: {error}", file=sys.stderr)
    return 1 if res["failed"] else 0


def parse_ks(text: str) -> tuple[float, ...]:
    """'0.25,0.5' → (0.25, 0.5)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--k {text!r}: use numbers like 0.25,0.5,0.9") from None
