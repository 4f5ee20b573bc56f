"""Data-parallel training (torch.distributed, gloo on CPU) equals single-process training."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
import torch

from lava_diffmod import cli, config
from lava_diffmod.config import ConfigError
from lava_diffmod.training import checkpoint, distributed, trainer
from helpers import tiny

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_like_one(tmp_path):
    """2 processes × 1 micro-batch each = 1 process × 2 micro-batches, bit for bit: the same
    weights, Adam moments and metric rows; only rank 0 writes."""
    data = tiny(iterations=4, eval_every=2, micro_batches=2)
    cfg_path = tmp_path / "cfg.toml"
    cfg_path.write_text(tomli_w.dumps(data))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                           "-m", "lava_diffmod.cli", "train", "--config", str(cfg_path),
                           "--out", str(tmp_path / "dp"), "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1          # rank 0 reports, rank 1 does not
    assert cli.main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    like = trainer.setup(config.load(cfg_path)).net.params
    dp, dp_opt, dp_it, _ = checkpoint.load(tmp_path / "dp" / trainer.CHECKPOINT, like)
    one, one_opt, one_it, _ = checkpoint.load(tmp_path / "one" / trainer.CHECKPOINT, like)
    assert dp_it == one_it == 4
    for a, b in zip([*dp, *dp_opt.m, *dp_opt.v], [*one, *one_opt.m, *one_opt.v]):
        assert torch.equal(a, b)
    rows = [trainer.read_metrics(tmp_path / d) for d in ("dp", "one")]
    assert rows[0] == rows[1] and len(rows[0]) > 0
    assert json.loads((tmp_path / "dp" / "summary.json").read_text())["iteration"] == 4


def test_micro_batches_must_split_over_the_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = config.from_mapping(tiny(micro_batches=1, batch_size=8))
    with pytest.raises(ConfigError, match="train.micro_batches = 1: must be a multiple of the 2 processes"):
        distributed.from_environment(cfg)
    data = tiny()
    data["train"]["backend"] = "fixed"
    with pytest.raises(ConfigError, match="float gradient rules only"):
        distributed.from_environment(config.from_mapping(data))


def test_one_process_is_plain_training(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = config.from_mapping(tiny())
    ranks, same = distributed.from_environment(cfg)
    assert ranks == distributed.Ranks(0, 1) and same is cfg
    assert list(ranks.micro_batches(3)) == [0, 1, 2]
    assert list(distributed.Ranks(1, 2).micro_batches(4)) == [1, 3]
