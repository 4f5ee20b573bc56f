"""`lava-diffmod parity`: the Lava fixed_pt row equals the emulator's row of the same profile, the
floating_pt and ideal rows equal the float reference; bad options fail before any work."""
import json
import math
import sys

import pytest

import lava_diffmod  # noqa: F401  (the Python 3.11 import fix)
from lava_diffmod import cli
from lava_diffmod import config as C
from lava_diffmod.parity import parity

from helpers import TINY

NUMBERS = ("spikes", "v_err", "trace_err", "cos W_in", "cos W_rec", "cos W_out", "loss")


@pytest.fixture(scope="module")
def table():
    return parity(C.from_mapping(TINY, {}), steps=40, trials=2, train_trials=3, eval_trials=8,
                  profiles=["ideal", "loihi2"], lava=sys.version_info < (3, 12), progress=False)


def row(table, name):
    return next(r for r in table["rows"] if r["execution"] == name)


def close(a, b, tol):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def test_the_reference_row_and_the_ideal_profile(table):
    ref = row(table, "float")
    assert (ref["spikes"], ref["v_err"], ref["trace_err"]) == (1.0, 0.0, 0.0)
    assert 0 < ref["cos W_in"] <= 1 and ref["loss"] > 0
    ideal = row(table, "fixed ideal")   # every switch off: the float maths in the emulator
    assert all(close(ideal[k], ref[k], 1e-9) for k in NUMBERS)


def test_the_fixed_profile_departs_from_float(table):
    fixed = row(table, "fixed loihi2")
    assert 0.9 < fixed["spikes"] <= 1 and fixed["trace_err"] > 0
    assert fixed["switches"].startswith("trace_bits")


@pytest.mark.lava
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="lava-nc 0.10 needs Python < 3.12")
def test_lava_rows_equal_the_emulator_and_the_float_reference(table):
    assert all(close(row(table, "lava fixed_pt")[k], row(table, "fixed loihi2")[k], 0) for k in NUMBERS)
    assert all(close(row(table, "lava floating_pt")[k], row(table, "float")[k], 1e-9) for k in NUMBERS)


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps 0: must be in 1..130"),
    (["--trials", "0"], "--trials 0: must be >= 1"),
    (["--hw", "loihi9"], "--hw 'loihi9': unknown profile"),
    (["--config", "pattern_generation", "--eval-trials", "9"], "--eval-trials 9: must be in 1..8"),
    (["--rule", "bptt"], "rule.name = 'bptt'"),
])
def test_bad_options_are_named(tmp_path, capsys, args, message):
    path = tmp_path / "tiny.toml"
    path.write_text(C.dumps(C.from_mapping(TINY, {})))
    argv = args if "--config" in args else ["--config", str(path), *args]
    assert cli.main(["parity", *argv, "--no-lava"]) == 2
    assert message in capsys.readouterr().err


def test_cli_prints_and_writes_the_table(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(C.dumps(C.from_mapping(TINY, {})))
    out = tmp_path / "p.json"
    assert cli.main(["parity", "--config", str(path), "--hw", "loihi2", "--no-lava", "--steps", "30",
                     "--train-trials", "2", "--eval-trials", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fixed loihi2" in text and "cos W_rec" in text
    saved = json.loads(out.read_text())
    assert [r["execution"] for r in saved["rows"]] == ["float", "fixed loihi2"]
    assert saved["steps"] == 30 and "spikes" in saved["columns"]


def test_a_task_name_selects_the_papers_config():
    assert C.config_path("dms").name == "dms.toml"
    with pytest.raises(C.ConfigError, match="not a task name"):
        C.config_path("no_such_task")
