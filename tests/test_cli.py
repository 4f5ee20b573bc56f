"""The `lava-diffmod` command line: seed lists, train, evaluate, and its refusals."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import tomli_w
import torch

from lava_diffmod import cli
from lava_diffmod import config as C
from lava_diffmod.config import ConfigError
from lava_diffmod.float.rsnn import Params
from lava_diffmod.training import trainer

from helpers import tiny

TINY = tiny(iterations=3)



def write_config(path: Path, **train) -> Path:
    data = json.loads(json.dumps(TINY))
    data["train"].update(train)
    path.write_text(tomli_w.dumps(data))
    return path


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lava-diffmod: error: ")
    return lines[0]


# ---------------------------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seeds", [
    ("0-3", [0, 1, 2, 3]), ("1,2,5", [1, 2, 5]), ("3", [3]), ("0-2,5,7-8", [0, 1, 2, 5, 7, 8]),
    ("4-4", [4]), ("1-20", list(range(1, 21))),
])
def test_parse_seeds(text, seeds):
    assert cli.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["a", "3-1", "1,,2", "", "1-", "-1", "1.5", "1-2-3", "1;2"])
def test_parse_seeds_rejects(text):
    with pytest.raises(ConfigError) as info:
        cli.parse_seeds(text)
    msg = str(info.value)
    assert "--seeds" in msg and repr(text) in msg and "\n" not in msg


# ---------------------------------------------------------------------------------------------
# train and evaluate
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CLI training run with overrides: rule eprop, seeds 1-2."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("cli")
    cfg = write_config(tmp / "cfg.toml")
    run = tmp / "run"
    out, err = io.StringIO(), io.StringIO()      # capsys is function-scoped: capture by hand
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["train", "--config", str(cfg), "--out", str(run), "--rule", "eprop",
                         "--seeds", "1-2", "--no-progress"])
    return code, out.getvalue(), err.getvalue(), run


def test_train_prints_table_and_run_directory(trained):
    code, out, err, run = trained
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[-1] == f"run directory: {run}"
    header, rule, row = lines[0].split(), lines[1], lines[2]
    assert header[:5] == ["task", "rule", "seeds", "iterations", "wall_s"]
    assert {"accuracy", "ce", "rate_hz"} <= set(header)
    assert set(rule.replace(" ", "")) == {"-"}
    summary = json.loads((run / "summary.json").read_text())
    cells = row.split()
    assert cells[:4] == ["cue_accumulation", "eprop", "2", "3"]
    acc = summary["final"]["accuracy"]
    assert f"{acc['mean']:.4f} ± {acc['ci95']:.4f}" in row
    # the overrides reached the saved config
    cfg = C.load(run / "config.toml")
    assert cfg.rule.name == "eprop" and cfg.train.seeds == [1, 2]


def test_evaluate_prints_per_seed_metrics(trained, capsys):
    _, _, _, run = trained
    assert cli.main(["evaluate", str(run), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "cue_accumulation, eprop, iteration 3"
    header = lines[1].split()
    assert header[0] == "seed" and {"accuracy", "ce", "rate_hz"} <= set(header)
    rows = [ln.split() for ln in lines[3:5]]
    assert [r[0] for r in rows] == ["1", "2"]
    metrics = json.loads(lines[5])
    summary = json.loads((run / "summary.json").read_text())
    for key in ("accuracy", "ce", "rate_hz"):
        assert metrics[key] == pytest.approx(summary["final"][key]["per_seed"], rel=1e-12)
        col = header.index(key)
        assert [float(r[col]) for r in rows] == pytest.approx(metrics[key], abs=5e-5)


def test_evaluate_missing_run(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "not found" in one_error_line(capsys)


def test_evaluate_without_checkpoint(trained, tmp_path, capsys):
    _, _, _, run = trained
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.toml").write_text((run / "config.toml").read_text())
    assert cli.main(["evaluate", str(bare)]) == 1
    line = one_error_line(capsys)
    assert "checkpoint" in line and "not found" in line


def test_resume_needs_out(capsys):
    assert cli.main(["train", "--resume"]) == 2
    line = one_error_line(capsys)
    assert "--resume" in line and "--out" in line


def test_train_needs_config(capsys, tmp_path):
    assert cli.main(["train", "--out", str(tmp_path / "r")]) == 2
    assert "--config" in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_train_into_existing_run_refused(trained, tmp_path, capsys):
    _, _, _, run = trained
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    cfg = write_config(tmp_path / "cfg.toml")
    assert cli.main(["train", "--config", str(cfg), "--out", str(run), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert "--resume" in line and str(run) in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_default_run_directory(tmp_path, capsys):
    cfg = write_config(tmp_path / "cfg.toml", out_dir=str(tmp_path / "runs"), iterations=1)
    assert cli.main(["train", "--config", str(cfg), "--no-progress"]) == 0
    made = list((tmp_path / "runs").iterdir())
    assert len(made) == 1 and made[0].name.startswith("cue_accumulation-diffusion-")
    assert (made[0] / "checkpoint.safetensors").is_file()
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run directory: {made[0]}"


def test_resume_of_finished_run_keeps_it(trained, tmp_path, capsys):
    """--resume on a finished run trains nothing more and leaves the weights as they were."""
    _, _, _, run = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in run.iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    assert cli.main(["train", "--resume", "--out", str(copy), "--no-progress"]) == 0
    assert (copy / "checkpoint.safetensors").read_bytes() == (run / "checkpoint.safetensors").read_bytes()
    assert trainer.read_metrics(copy) == trainer.read_metrics(run)
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run directory: {copy}"


def test_divergence_reported_in_one_line(tmp_path, capsys, monkeypatch):
    real = trainer.iteration_gradients

    def poisoned(exp, net, n):
        grads, stats = real(exp, net, n)
        return (Params(*(g * math.nan for g in grads)) if n == 2 else grads), stats

    monkeypatch.setattr(trainer, "iteration_gradients", poisoned)
    cfg = write_config(tmp_path / "cfg.toml")
    assert cli.main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    line = one_error_line(capsys)
    assert "iteration 2" in line and "NaN" in line


def test_train_config_takes_a_task_name_or_a_file(tmp_path, capsys):
    assert cli.main(["train", "--config", "no_such_task", "--out", str(tmp_path / "x")]) == 2
    line = one_error_line(capsys)
    assert "--config no_such_task: no such file, and not a task name (cue_accumulation" in line
