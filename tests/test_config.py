"""Configuration: the examples load, TOML round-trips, and every bad value stops early with one
line naming the field and what is allowed (config.py, cli.py, trainer.setup)."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import tomli_w
import torch

from lava_diffmod import cli
from lava_diffmod import config as C
from lava_diffmod.config import ConfigError
from lava_diffmod.training import trainer

from helpers import tiny  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))

# A small valid config; error cases change one thing in it.
BASE = tiny()



def with_change(path: str, value) -> dict:
    """BASE with one dotted key set."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


def assert_one_line(msg: str, *needles: str) -> None:
    assert "\n" not in msg and "\r" not in msg, f"message spans lines: {msg!r}"
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"


# ---------------------------------------------------------------------------------------------
# examples and round trip
# ---------------------------------------------------------------------------------------------

def test_there_are_five_examples():
    assert {p.stem for p in EXAMPLES} == set(C.TASKS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads_validates_and_builds(path):
    cfg = C.load(path)
    assert cfg.task.name == path.stem
    assert cfg.validate() is cfg
    # the task accepts the example's batch (frozen tasks have few trials), networks build
    small = C.from_mapping(cfg.to_dict(), {"train.seeds": [1]})
    exp = trainer.setup(small)
    assert exp.net.n_in == exp.task.n_in and exp.net.n_rec == cfg.n_rec


def test_examples_follow_model_md():
    """Spot checks of the example configs against MODEL.md §1, §5.4, §6 tables."""
    cfgs = {p.stem: C.load(p) for p in EXAMPLES}
    cue, dms, pat = cfgs["cue_accumulation"], cfgs["dms"], cfgs["pattern_generation"]
    assert (cue.neuron.tau_a, cue.neuron.n_lif, cue.neuron.n_alif, cue.network.grid_h) == (2000, 50, 50, 10)
    assert (cue.train.batch_size, cue.train.micro_batches, cue.train.lr) == (64, 8, 0.005)
    assert cue.c_reg() == 0.005 and cue.diffusion.k == 0.75
    assert dms.neuron.tau_a == 1400
    assert (dms.network.gain_in, dms.network.gain_rec, dms.network.gain_out) == (0.5, 0.1, 0.5)
    assert {r: C.from_mapping(dms.to_dict(), {"rule.name": r}).c_reg() for r in C.RULES} == \
        {"bptt": 0.1, "eprop": 0.1, "diffusion": 0.01, "modprop": 0.1, "dopamine": 0.1}   # eprop's entry
    assert (pat.neuron.tau_m, pat.neuron.n_ref, pat.neuron.n_lif, pat.neuron.n_alif) == (30, 2, 400, 0)
    assert (pat.network.grid_h, pat.network.grid_w, pat.train.batch_size, pat.train.lr) == (20, 20, 8, 0.01)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_dumps_load_round_trip(path, tmp_path):
    cfg = C.load(path)
    text = C.dumps(cfg)
    out = tmp_path / "again.toml"
    out.write_text(text)
    again = C.load(out)
    assert again == cfg
    assert C.dumps(again) == text


def test_round_trip_non_default_values(tmp_path):
    data = with_change("rule", {"name": "bptt", "c_reg": {"bptt": 0.1, "eprop": 0.2, "diffusion": 0.3}})
    data["task"]["name"] = "cue_accumulation_bellec"
    data["task"]["params"]["channel_order"] = ["right", "left", "background", "decision"]
    data["diffusion"] = {"k": 1, "channels": "per_output", "channel_k": [0.5, 0.25],
                         "channel_q": [1.0, -2.0], "kernel": "laplacian", "D": 0.2}
    data["train"].update(dtype="float64", seeds=[3, 1, 2], adam_eps_mode="tf1", eps=1e-3)
    cfg = C.from_mapping(data)
    assert cfg.diffusion.k == 1.0 and isinstance(cfg.diffusion.k, float)   # int accepted as float
    path = tmp_path / "c.toml"
    path.write_text(C.dumps(cfg))
    again = C.load(path)
    assert again == cfg
    assert again.c_reg() == 0.1 and again.train.seeds == [3, 1, 2]
    assert again.task.params["channel_order"] == ["right", "left", "background", "decision"]


def test_overrides_apply():
    cfg = C.from_mapping(BASE, {"diffusion.k": 0.5, "rule.name": "eprop", "train.seeds": [4, 5]})
    assert (cfg.diffusion.k, cfg.rule.name, cfg.train.seeds) == (0.5, "eprop", [4, 5])
    assert C.from_mapping(BASE).diffusion.k == 0.75          # BASE untouched


# ---------------------------------------------------------------------------------------------
# error cases: one line, the dotted field, the allowed values
# ---------------------------------------------------------------------------------------------

ERRORS = [
    # (id, data, substrings the message must contain)
    ("k_above_1", with_change("diffusion.k", 1.5), ["diffusion.k", "1.5", "[0, 1]"]),
    ("k_negative", with_change("diffusion.k", -0.1), ["diffusion.k", "-0.1", "[0, 1]"]),
    ("k_nan", with_change("diffusion.k", math.nan), ["diffusion.k", "finite"]),
    ("grid_too_small", with_change("network.grid_w", 3), ["network.grid_h", "network.grid_w", "16"]),
    ("in_density_0", with_change("network.in_density", 0), ["network.in_density", "(0, 1]"]),
    ("in_density_1.2", with_change("network.in_density", 1.2), ["network.in_density", "(0, 1]"]),
    ("out_density_0", with_change("network.out_density", 0.0), ["network.out_density", "(0, 1]"]),
    ("out_density_1.2", with_change("network.out_density", 1.2), ["network.out_density", "(0, 1]"]),
    ("unknown_rule", with_change("rule.name", "hebb"), ["rule.name", "'hebb'", "bptt, eprop, diffusion"]),
    ("unknown_task", with_change("task.name", "xor"),
     ["task.name", "'xor'", "cue_accumulation", "dms", "pattern_generation"]),
    ("unknown_key_in_section", with_change("train.learning_rate", 0.1),
     ["train.learning_rate", "unknown key", "lr", "batch_size"]),
    ("unknown_section", with_change("optimizer", {"lr": 0.1}),
     ["optimizer", "unknown key", "task", "neuron", "network", "train"]),
    ("section_not_table", with_change("train", 3), ["train", "table"]),
    ("string_for_number", with_change("train.lr", "fast"), ["train.lr", "'fast'", "number"]),
    ("float_for_int", with_change("train.iterations", 10.5), ["train.iterations", "10.5", "integer"]),
    ("bool_for_int", with_change("neuron.n_lif", True), ["neuron.n_lif", "integer"]),
    ("string_for_bool", with_change("train.progress", "yes"), ["train.progress", "true or false"]),
    ("negative_count", with_change("neuron.n_ref", -1), ["neuron.n_ref", "[0, 1000]"]),
    ("bad_choice", with_change("diffusion.shuffle", "random"),
     ["diffusion.shuffle", "none", "fixed", "per_step", "legacy"]),
    ("c_reg_table_without_rule", with_change("rule.c_reg", {"bptt": 0.1, "eprop": 0.1}),
     ["rule.c_reg", "diffusion"]),
    ("c_reg_table_unknown_rule", with_change("rule.c_reg", {"diffusion": 0.1, "hebb": 0.1}),
     ["rule.c_reg.hebb", "bptt, eprop, diffusion"]),
    ("c_reg_negative", with_change("rule.c_reg", -0.5), ["rule.c_reg", "[0, inf]"]),
    ("micro_batches_not_dividing", with_change("train.micro_batches", 3),
     ["train.micro_batches", "3", "train.batch_size", "8"]),
    ("duplicate_seeds", with_change("train.seeds", [1, 2, 1]), ["train.seeds", "distinct"]),
    ("no_seeds", with_change("train.seeds", []), ["train.seeds", "non-empty"]),
    ("bad_device", with_change("train.device", "gpu"), ["train.device", "'cpu'", "'cuda'"]),
    ("radius_too_big", with_change("diffusion.radius", 2), ["diffusion.radius", "min(grid_h, grid_w)"]),
    ("task_param_even_cues", with_change("task.params.n_cues", 4), ["task.params.n_cues", "odd"]),
    ("task_param_unknown", with_change("task.params.n_trials", 4), ["task.params.n_trials", "allowed"]),
]


@pytest.mark.parametrize("data, needles", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_config_from_mapping(data, needles):
    with pytest.raises(ConfigError) as info:
        C.from_mapping(data)
    assert_one_line(str(info.value), *needles)


@pytest.mark.parametrize("data, needles", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_config_from_toml_file(data, needles, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ConfigError) as info:
        C.load(path)
    assert_one_line(str(info.value), *needles)


def test_bad_override():
    with pytest.raises(ConfigError) as info:
        C.from_mapping(BASE, {"diffusion.k": 1.5})
    assert_one_line(str(info.value), "diffusion.k", "[0, 1]")


def test_missing_config_file(tmp_path):
    path = tmp_path / "nowhere" / "cfg.toml"
    with pytest.raises(ConfigError) as info:
        C.load(path)
    assert_one_line(str(info.value), str(path), "not found")


@pytest.mark.parametrize("text", ["[train\niterations = 3\n", "[train]\niterations = \n",
                                  "[train]\nlr = 0.1\nlr = 0.2\n", "\xff\xfe[train]"])
def test_invalid_toml(tmp_path, text):
    path = tmp_path / "broken.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        C.load(path)
    assert_one_line(str(info.value), str(path), "not valid TOML")


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        cfg = C.from_mapping(with_change("train.device", device))     # valid as a config
        with pytest.raises(ConfigError) as info:
            trainer.setup(cfg)
        assert_one_line(str(info.value), "train.device", repr(device), "CUDA")


def test_frozen_task_batch_too_large():
    data = {"task": {"name": "pattern_generation", "params": {"duration_ms": 50}},
            "neuron": {"n_lif": 8, "n_alif": 0}, "network": {"grid_h": 4, "grid_w": 4},
            "train": {"batch_size": 16, "micro_batches": 1}}
    with pytest.raises(ConfigError) as info:
        trainer.setup(C.from_mapping(data))
    assert_one_line(str(info.value), "train.batch_size", "16", "task.params.n_frozen")


# ---------------------------------------------------------------------------------------------
# the command line: exit status 2, one line on stderr, no run directory
# ---------------------------------------------------------------------------------------------

def _cli_error(capsys, argv, out_dir: Path, *needles: str) -> str:
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("lava-diffmod: error: ")
    for n in needles:
        assert n in lines[0], lines[0]
    assert captured.out == ""
    assert not out_dir.exists(), "a run directory was created for a bad config"
    return lines[0]


def test_cli_bad_config_file(capsys, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(tomli_w.dumps(with_change("diffusion.k", 1.5)))
    out = tmp_path / "run"
    _cli_error(capsys, ["train", "--config", str(cfg), "--out", str(out), "--no-progress"], out,
               "diffusion.k", "[0, 1]")


@pytest.mark.parametrize("extra, needles", [
    (["--k", "-0.1"], ["diffusion.k"]),
    (["--rule", "hebb"], ["rule.name", "bptt, eprop, diffusion"]),
    (["--seeds", "1,1"], ["train.seeds", "distinct"]),
    (["--seeds", "one"], ["--seeds", "0-19"]),
    (["--micro-batches", "3"], ["train.micro_batches"]),
    (["--dtype", "float16"], ["train.dtype", "float32, float64"]),
])
def test_cli_bad_override(capsys, tmp_path, extra, needles):
    cfg = tmp_path / "good.toml"
    cfg.write_text(tomli_w.dumps(BASE))
    out = tmp_path / "run"
    _cli_error(capsys, ["train", "--config", str(cfg), "--out", str(out), "--no-progress", *extra],
               out, *needles)


def test_cli_missing_and_invalid_config(capsys, tmp_path):
    out = tmp_path / "run"
    _cli_error(capsys, ["train", "--config", str(tmp_path / "nope.toml"), "--out", str(out)], out,
               "nope.toml", "not found")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\n")
    _cli_error(capsys, ["train", "--config", str(broken), "--out", str(out)], out, "not valid TOML")


def test_cli_cuda_without_cuda(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = tmp_path / "good.toml"
    cfg.write_text(tomli_w.dumps(BASE))
    out = tmp_path / "run"
    _cli_error(capsys, ["train", "--config", str(cfg), "--out", str(out), "--device", "cuda"], out,
               "train.device", "CUDA")
