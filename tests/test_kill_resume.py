"""SIGKILL at random points, then resume (issue "Hardened inputs").

One run directory is trained by the CLI in a subprocess and killed with SIGKILL several times at
seeded random points: during start-up, a random number of iterations in, and as soon as a
checkpoint's temporary file appears (a kill inside the checkpoint write). After every kill the
checkpoint either does not exist yet or loads cleanly (never half-written; the stray ``*.tmp``
is never what loads), and the run goes on as the CLI would: ``--resume`` when there is a
checkpoint, else a fresh start in the same folder. The end state must equal an uninterrupted
run of the same config bit for bit (weights, optimiser moments, iteration) and the metrics
rows must be the same.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from lava_diffmod import config as C
from lava_diffmod.training import checkpoint, trainer
from lava_diffmod.training.trainer import CHECKPOINT, setup, train

from helpers import tiny  # noqa: E402
from test_training import _checkpoint_iteration, assert_no_duplicate_rows, assert_same_state, final_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ITERATIONS = 40
SEED = 20240611
KILLS = ["startup", "iterations", "write", "iterations", "write"]


def start(cfg_path: Path, run_dir: Path, resume: bool, err) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lava_diffmod.cli", "train", "--out", str(run_dir), "--no-progress"]
    cmd += ["--resume"] if resume else ["--config", str(cfg_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)


def wait_and_kill(proc: subprocess.Popen, mode: str, ckpt: Path, rnd: random.Random) -> str:
    """SIGKILL ``proc`` at a random point of kind ``mode``; returns where it landed."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    deadline = time.monotonic() + 60
    landed = mode
    if mode == "startup":           # somewhere in the first 2 s: imports, config, first iterations
        end = time.monotonic() + rnd.uniform(0.0, 2.0)
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.002)
    else:
        target = (_checkpoint_iteration(ckpt) or 0) + rnd.randint(1, 5)
        while proc.poll() is None and time.monotonic() < deadline:
            it = _checkpoint_iteration(ckpt)
            if it is not None and it >= target:
                break
            time.sleep(0.002)
        if mode == "iterations":    # a random instant of the iteration after
            time.sleep(rnd.uniform(0.0, 0.05))
        else:                       # the moment the next checkpoint's temporary file shows up
            landed = "after a write"
            end = time.monotonic() + 5
            while proc.poll() is None and time.monotonic() < end:
                if tmp.exists():
                    landed = "during a write"
                    break
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return landed


def test_sigkill_at_random_points_then_resume(tmp_path):
    data = tiny(iterations=ITERATIONS, checkpoint_every=1, eval_every=10)
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(C.dumps(C.from_mapping(data)))
    cfg = C.load(cfg_path)
    like = setup(cfg).net.params
    run_dir = tmp_path / "killed"
    ckpt = run_dir / CHECKPOINT
    rnd = random.Random(SEED)
    plan = KILLS[:1] + rnd.sample(KILLS[1:], len(KILLS) - 1)
    log, last = [], 0
    with open(tmp_path / "stderr.txt", "wb") as err:
        for mode in plan:
            resume = ckpt.exists()
            proc = start(cfg_path, run_dir, resume, err)
            try:
                landed = wait_and_kill(proc, mode, ckpt, rnd)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == -signal.SIGKILL, \
                f"the run was not killed ({mode}): " + (tmp_path / "stderr.txt").read_text()[-2000:]
            stray = ckpt.with_name(ckpt.name + ".tmp").exists()
            if ckpt.exists():   # never half-written: it loads, whatever the kill interrupted
                params, state, it, meta = checkpoint.load(ckpt, like)
                assert 1 <= it < ITERATIONS and state.step == it and meta["seeds"] == [1]
                assert it >= last, "the checkpoint went back"
                last = it
            else:
                assert last == 0, "the checkpoint disappeared"
            log.append(f"{mode}: {landed}, checkpoint at {last}{', stray .tmp left' if stray else ''}")
        # and on to the end, as a user would: --resume if there is a checkpoint
        proc = start(cfg_path, run_dir, ckpt.exists(), err)
        assert proc.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert last > 0, f"no kill came after a checkpoint: {log}"
    assert any("iterations" in entry for entry in log)

    straight = tmp_path / "straight"
    train(cfg, straight)
    a, b = final_state(cfg, straight), final_state(cfg, run_dir)
    assert a[2] == b[2] == ITERATIONS
    assert_same_state(a, b)        # torch.equal on every weight and moment
    rows = trainer.read_metrics(run_dir)
    assert_no_duplicate_rows(rows)
    assert rows == trainer.read_metrics(straight), f"metrics differ after kills: {log}"
    print("kill/resume: " + "; ".join(log))
