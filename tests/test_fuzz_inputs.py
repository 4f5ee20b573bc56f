"""Fuzzed inputs (issue "Hardened inputs"): the config loader, the hardware-profile loader and the
checkpoint loader get random, truncated, mutated and corrupt inputs. Every case must end either
in the loader's documented error (ConfigError / ProfileError / CheckpointError, one line) or in
valid acceptance, checked independently (schema ranges, cross-field rules, round trip). Any
other exception, and any accepted invalid input, fails the test.

The CI variants are deterministic (derandomize, no example database, fixed max_examples); the
``slow`` variants (``make test-all``) try many more cases. Each test adds its counts to a tally
printed at the end of the module, e.g. ``fuzz config loader: 400 cases (312 rejected with
ConfigError, 88 valid)``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import struct
import sys
import typing
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import tomli_w
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from lava_diffmod import config as C
from lava_diffmod import hw
from lava_diffmod.config import ConfigError
from lava_diffmod.float.rsnn import Params
from lava_diffmod.hw import ProfileError
from lava_diffmod.training import checkpoint
from lava_diffmod.training.checkpoint import CheckpointError

from helpers import tiny  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

INT64 = (-2**63, 2**63 - 1)


def fuzz(n: int):
    """Deterministic hypothesis settings with ``n`` examples."""
    return settings(derandomize=True, database=None, max_examples=n, deadline=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


def sizes(ci: int, slow: int):
    """Parametrisation: a CI run of ``ci`` examples and a slow one of ``slow`` examples."""
    return pytest.mark.parametrize("n", [pytest.param(ci, id="ci"),
                                         pytest.param(slow, id="many", marks=pytest.mark.slow)])


# ---------------------------------------------------------------------------------------------
# the tally
# ---------------------------------------------------------------------------------------------

TALLY: dict[str, Counter] = defaultdict(Counter)
ERRORS = {"config loader": "ConfigError", "hw profile loader": "ProfileError",
          "checkpoint loader": "CheckpointError"}


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    TALLY.clear()
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    for loader, counts in TALLY.items():
        total = sum(counts.values())
        line = (f"fuzz {loader}: {total} cases ({counts['rejected']} rejected with {ERRORS[loader]}, "
                f"{counts['valid']} valid)")
        if reporter is None:  # pragma: no cover
            print(line)
        elif capture is None:  # pragma: no cover
            reporter.write_line(line)
        else:   # past the output capture of this teardown, so that `pytest -q` shows it
            with capture.global_and_fixture_disabled():
                reporter.write_line(("\n" if loader == next(iter(TALLY)) else "") + line)


def attempt(loader: str, error: type, call):
    """Run ``call``; return (result, None) or (None, the documented error). Anything else fails."""
    try:
        result = call()
    except error as e:
        msg = str(e)
        assert msg and len(msg.splitlines()) == 1, f"error message is not one line: {msg!r}"
        TALLY[loader]["rejected"] += 1
        return None, e
    TALLY[loader]["valid"] += 1
    return result, None


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ---------------------------------------------------------------------------------------------
# value strategies
# ---------------------------------------------------------------------------------------------

def _all_choices() -> list[str]:
    out = set()
    for sec in dataclasses.fields(C.Config):
        cls = typing.get_type_hints(C.Config)[sec.name]
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                out.update(f.metadata.get("choices", ()))
    return sorted(out)


NAMED_STRINGS = _all_choices() + ["auto", "off", "hardware", "loihi2", "ideal", "loihi1", "cpu", "cuda",
                                  "cuda:0", "unknown", "", " ", "\u00e9\u00df\u2603", "a\nb", "\x00"]
SPECIAL_NUMBERS = [0, 1, -1, 2, 3, 7, 64, 1000, 2**31, 2**63 - 1, 2**63, -2**63, -2**63 - 1, 10**30, 10**400,
                   0.0, -0.0, 0.5, 1.0, 1e-8, 5e-324, 1e308, -1e308, 1.7976931348623157e308,
                   math.inf, -math.inf, math.nan]

keys = st.one_of(st.text(max_size=8), st.sampled_from(["n_lif", "tau_m", "name", "params", "hw", "x", "é",
                                                       "\u2028", "a.b", "__class__"]))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from(SPECIAL_NUMBERS),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(NAMED_STRINGS),
)
toml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(keys, inner, max_size=3)),
                           max_leaves=8)
# values that often pass a field's schema (so that accepted configs are common enough to check)
plausible = st.one_of(st.integers(0, 20), st.floats(0, 1), st.floats(0, 100), st.sampled_from(_all_choices()),
                      st.booleans(), st.lists(st.integers(0, 5), max_size=3))
# Python-only oddities that from_mapping may also be handed
py_values = st.one_of(toml_values, st.none(), st.tuples(scalars), st.sampled_from([b"\x00", object(), 1j]))


def nested(kind: str, depth: int, leaf):
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"a": leaf}
    return leaf


deep_values = st.builds(nested, st.sampled_from(["list", "dict"]), st.integers(1, 60), scalars)


# ---------------------------------------------------------------------------------------------
# the config schema, independently of config.py's checking code
# ---------------------------------------------------------------------------------------------

SECTIONS = {f.name: typing.get_type_hints(C.Config)[f.name] for f in dataclasses.fields(C.Config)}
FIELDS = {}      # "section.key" -> (hint, metadata)
for _sec, _cls in SECTIONS.items():
    if dataclasses.is_dataclass(_cls):
        _hints = typing.get_type_hints(_cls)
        for _f in dataclasses.fields(_cls):
            FIELDS[f"{_sec}.{_f.name}"] = (_hints[_f.name], _f.metadata)


def in_range(value, rng) -> bool:
    lo, hi, lo_open, hi_open = rng
    return (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)


def schema_ok(dotted: str, value) -> bool | None:
    """Whether ``value`` passes the per-field schema of ``dotted``; None: not a plain field."""
    hint, meta = FIELDS[dotted]
    rng = meta.get("range", (-math.inf, math.inf, False, False))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return (type(value) is int and INT64[0] <= value <= INT64[1] and in_range(value, rng))
    if hint is float:
        if type(value) is int:
            return INT64[0] <= value <= INT64[1] and in_range(value, rng)
        return type(value) is float and math.isfinite(value) and in_range(value, rng)
    if hint is str:
        return isinstance(value, str) and ("choices" not in meta or value in meta["choices"])
    return None


def check_number(value, rng, integer=False) -> None:
    assert not isinstance(value, bool)
    assert isinstance(value, int) if integer else isinstance(value, (int, float)), value
    assert INT64[0] <= value <= INT64[1] if isinstance(value, int) else math.isfinite(value), value
    assert in_range(value, rng), value


def assert_valid_config(cfg: C.Config, scratch: Path) -> None:
    """An accepted config: every field in its declared type and range, the cross-field rules hold,
    and it round-trips through TOML (dumps, then load) and through to_dict / from_mapping."""
    assert isinstance(cfg, C.Config)
    for dotted, (hint, meta) in FIELDS.items():
        sec, key = dotted.split(".")
        value = getattr(getattr(cfg, sec), key)
        rng = meta.get("range", (-math.inf, math.inf, False, False))
        if hint is bool:
            assert isinstance(value, bool), dotted
        elif hint is int:
            check_number(value, rng, integer=True)
        elif hint is float:
            assert type(value) is float, dotted
            check_number(value, rng)
        elif hint is str:
            assert isinstance(value, str), dotted
            if "choices" in meta:
                assert value in meta["choices"], dotted
        elif hint is list:
            assert isinstance(value, list), dotted
        elif hint is dict:
            assert isinstance(value, dict), dotted
    n = cfg.neuron.n_lif + cfg.neuron.n_alif
    assert n >= 1 and cfg.network.grid_h * cfg.network.grid_w >= n
    d = cfg.diffusion
    for r in [d.radius, *d.channel_radius]:
        check_number(r, (1, math.inf, False, False), integer=True)
        assert 2 * r + 1 <= min(cfg.network.grid_h, cfg.network.grid_w)
    for k in d.channel_k:
        check_number(k, (0, 1, False, False))
    for q in d.channel_q:
        check_number(q, (-math.inf, math.inf, False, False))
    if d.kernel == "laplacian":
        assert d.D / d.n_sub <= 0.25
    assert cfg.train.batch_size % cfg.train.micro_batches == 0
    seeds = cfg.train.seeds
    assert seeds and len(set(seeds)) == len(seeds)
    for s in seeds:
        check_number(s, (0, 2**63 - 1, False, False), integer=True)
    assert cfg.train.device == "cpu" or cfg.train.device.startswith("cuda")
    c = cfg.rule.c_reg
    for v in (c.values() if isinstance(c, dict) else [c]):
        check_number(v, (0, math.inf, False, False))
    if isinstance(c, dict):
        assert set(c) <= set(C.RULES) and cfg.c_reg_key() in c
    if cfg.modprop.mu != "auto":
        check_number(cfg.modprop.mu, (0, math.inf, False, False))
    for key, value in cfg.dopamine.items():
        assert not isinstance(value, float) or math.isfinite(value), key
    for key, value in cfg.task.params.items():
        for v in (value if isinstance(value, list) else [value]):
            assert not isinstance(v, float) or math.isfinite(v), key
    # the same config again, by every route
    assert cfg.validate() is cfg
    text = C.dumps(cfg)
    path = scratch / "roundtrip.toml"
    path.write_text(text, encoding="utf-8")
    assert C.load(path) == cfg
    assert C.from_mapping(cfg.to_dict()) == cfg


def _example_dict() -> dict:
    return C.load(C.config_path("cue_accumulation")).to_dict()


def _pattern_dict() -> dict:
    data = tiny()
    data["task"] = {"name": "pattern_generation", "params": {"duration_ms": 60, "n_inputs": 10}}
    return data


def _fixed_dict() -> dict:
    data = tiny()
    data["train"]["backend"] = "fixed"
    data["fixed"] = {"hw": "loihi2", "switches": "hardware"}
    return data


BASES = {"tiny": tiny, "example": _example_dict, "pattern": _pattern_dict, "fixed": _fixed_dict}
BASE_DATA = {}


def base(name: str) -> dict:
    if name not in BASE_DATA:
        BASE_DATA[name] = BASES[name]()
    return copy.deepcopy(BASE_DATA[name])


def leaves(data, prefix=()):
    """Paths of every leaf and every table of a nested dict."""
    out = []
    for k, v in data.items():
        out.append(prefix + (k,))
        if isinstance(v, dict):
            out += leaves(v, prefix + (k,))
    return out


DOPAMINE_KEYS = ["sigma", "sigma_relative", "noise", "trials", "eta0", "s0", "beta_s", "beta_eta",
                 "eta_min", "eta_max", "eta_law", "normalise", "reset_every", "reset_leaf", "rho_target"]
TASK_PARAMS = ["n_cues", "cue_ms", "gap_ms", "delay_ms", "decision_ms", "channel_order", "gap_first",
               "p_favoured", "freqs_hz", "amplitude_range", "style", "duration_ms", "n_inputs", "rate_hz"]
SWITCH_KEYS = ["preset", "trace_bits", "weight_bits", "stoch_round", "t_epoch", "cadence", "dense_delay",
               "tag_leak_grid", "shared_rng"]
KNOWN_PATHS = sorted(FIELDS) + [f"dopamine.{k}" for k in DOPAMINE_KEYS] + \
    [f"task.params.{k}" for k in TASK_PARAMS] + [f"fixed.switches.{k}" for k in SWITCH_KEYS] + \
    ["rule.c_reg.diffusion", "rule.c_reg.eprop", "rule.c_reg.bptt", "rule.c_reg.modprop"]


@st.composite
def mutation(draw, values):
    """One edit of a config dict: (kind, path, value)."""
    kind = draw(st.sampled_from(["field", "field", "field", "leaf", "unknown", "delete", "table_to_scalar",
                                 "deep", "section"]))
    if kind == "field":
        return kind, tuple(draw(st.sampled_from(KNOWN_PATHS)).split(".")), draw(st.one_of(values, plausible))
    if kind == "deep":
        return kind, tuple(draw(st.sampled_from(KNOWN_PATHS)).split(".")), draw(deep_values)
    if kind == "unknown":
        where = draw(st.sampled_from([(), ("train",), ("neuron",), ("task", "params"), ("dopamine",),
                                      ("fixed",), ("fixed", "switches"), ("rule", "c_reg"), ("profile",)]))
        return kind, where + (draw(keys),), draw(values)
    if kind == "section":
        return kind, (draw(st.sampled_from(sorted(SECTIONS))),), draw(st.dictionaries(keys, values, max_size=3))
    return kind, None, draw(values) if kind == "table_to_scalar" else None


def apply(data: dict, edit, rnd) -> dict:
    kind, path, value = edit
    if kind in ("leaf", "delete", "table_to_scalar"):
        paths = leaves(data)
        if kind == "table_to_scalar":
            paths = [p for p in paths if isinstance(get(data, p), dict)] or paths
        path = paths[rnd.randrange(len(paths))]
    if kind == "leaf":
        value = rnd.choice([0, -1, 1e308, math.nan, "x", [], {}, True, 10**30])
    node = data
    for k in path[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    if kind == "delete":
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return data


def get(data, path):
    for k in path:
        data = data[k]
    return data


def toml_representable(value) -> bool:
    try:
        tomli_w.dumps({"x": value})
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------
# config loader
# ---------------------------------------------------------------------------------------------

def load_config_text(scratch: Path, text: str | bytes, overrides=None):
    path = scratch / "cfg.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return attempt("config loader", ConfigError, lambda: C.load(path, overrides))


@sizes(400, 5000)
def test_config_mutations(n, scratch):
    """A valid config with one to three edits (a field set to a value of any type, unknown keys,
    a deleted key or section, a table replaced by a scalar, deep nesting), loaded as a dict, as
    dotted overrides, or from TOML text."""
    import random

    @fuzz(n)
    @given(st.sampled_from(sorted(BASES)), st.lists(mutation(toml_values), min_size=1, max_size=3),
           st.sampled_from(["mapping", "toml", "override"]), st.randoms(use_true_random=False))
    def run(name, edits, route, rnd):
        data = base(name)
        if route == "override":
            # the first edit of a known field becomes an override; the rest edit the data
            overrides = {}
            for kind, path, value in edits:
                if kind == "field" and len(path) == 2:
                    overrides[".".join(path)] = value
                else:
                    apply(data, (kind, path, value), rnd)
            cfg, err = attempt("config loader", ConfigError, lambda: C.from_mapping(data, overrides))
            single = edits if len(edits) == 1 else []
        else:
            for edit in edits:
                apply(data, edit, rnd)
            if route == "toml" and toml_representable(data):
                cfg, err = load_config_text(scratch, tomli_w.dumps(data))
            else:
                cfg, err = attempt("config loader", ConfigError, lambda: C.from_mapping(data))
            single = edits if len(edits) == 1 else []
        if err is None:
            assert_valid_config(cfg, scratch)
        # one plain field set: the schema alone decides whether it can load
        if single and single[0][0] == "field" and ".".join(single[0][1]) in FIELDS:
            _, path, value = single[0]
            dotted = ".".join(path)
            ok = schema_ok(dotted, value)
            if ok is False:
                assert err is not None, f"{dotted} = {value!r} was accepted"
                assert dotted in str(err) or "must be a table" in str(err), str(err)
            elif ok and err is None:
                got = getattr(getattr(cfg, path[0]), path[1])
                want = float(value) if FIELDS[dotted][0] is float else value
                assert got == want and type(got) is type(want), (dotted, got)

    run()


@sizes(150, 3000)
def test_config_python_oddities(n, scratch):
    """from_mapping with values and overrides no TOML file can hold (None, tuples, bytes, objects,
    non-string keys, malformed override names)."""
    @fuzz(n)
    @given(st.sampled_from(sorted(BASES)), st.sampled_from(KNOWN_PATHS + ["train", "neuron", "task.params"]),
           py_values, st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(
               ["train", "train.lr", "nope.x", ".x", "x.", "task.params.n_cues", "neuron.tau_m"]), st.integers()),
               py_values, max_size=2))
    def run(name, dotted, value, overrides):
        data = base(name)
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[last] = value
        if value is None:
            data[42] = {}   # a key no TOML file can have
        cfg, err = attempt("config loader", ConfigError, lambda: C.from_mapping(data, overrides))
        if err is None:
            assert_valid_config(cfg, scratch)

    run()


TOKENS = ["[", "]", "[[", "]]", "=", '"', "'", '"""', "{", "}", ",", ".", " ", "\n", "\t", "#", "\r\n",
          "train", "neuron", "network", "task", "params", "n_lif", "tau_m", "iterations", "seeds", "name",
          "cue_accumulation", "dms", "1", "0", "-1", "64", "1e308", "1e309", "inf", "-inf", "nan", "+nan",
          "true", "false", "0x10", "0o7", "0b1", "1_000", "9223372036854775808", "1979-05-27",
          "10" * 30, "é", "\u2603", "\x00", "\\", "\\u0000", "x"]


@sizes(200, 4000)
def test_config_random_text(n, scratch):
    """Random TOML-like text and random bytes (including deeply nested arrays and tables and
    integers of thousands of digits)."""
    texts = st.one_of(
        st.lists(st.sampled_from(TOKENS), max_size=40).map("".join),
        st.text(max_size=60),
        st.binary(max_size=60),
        st.builds(lambda d, k: "a = " + ("[" * d + "]" * d if k else "{b = " * d + "1" + "}" * d),
                  st.integers(1, 5000), st.booleans()),
        st.builds(lambda d: f"[train]\niterations = 1{'0' * d}\n", st.integers(1, 6000)),
        st.builds(lambda sec, key, tok: f"[{sec}]\n{key} = {tok}\n", st.sampled_from(sorted(SECTIONS)),
                  st.sampled_from(["tau_m", "n_lif", "lr", "iterations", "seeds", "k", "name", "x"]),
                  st.sampled_from(TOKENS[22:] + ["[1, 2]", "{a = 1}", "[]", "'cpu'", '"fixed"'])),
    )

    @fuzz(n)
    @given(texts)
    def run(text):
        cfg, err = load_config_text(scratch, text)
        if err is None:
            assert_valid_config(cfg, scratch)

    run()


def flip_bytes(raw: bytes, data) -> bytes:
    """``raw`` with 1–3 bytes at drawn positions XORed with drawn nonzero values."""
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= data.draw(st.integers(1, 255))
    return bytes(buf)


@sizes(150, 3000)
def test_config_truncated_and_flipped(n, scratch):
    """Valid config files cut at a random offset, or with a few bytes changed."""
    sources = [C.dumps(C.from_mapping(tiny())).encode(), C.config_path("cue_accumulation").read_bytes(),
               C.dumps(C.from_mapping(_fixed_dict())).encode()]

    @fuzz(n)
    @given(st.sampled_from(range(len(sources))), st.booleans(), st.data())
    def run(which, truncate, data):
        raw = sources[which]
        if truncate:
            cut = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:cut]
        else:
            raw = flip_bytes(raw, data)
        cfg, err = load_config_text(scratch, raw)
        if err is None:
            assert_valid_config(cfg, scratch)

    run()


def test_config_edge_values(scratch):
    """Named edge cases: huge values, inf/nan, out-of-range ints, unknown unicode keys."""
    cases = {
        "[neuron]\ntau_m = 1e308\n": True,
        "[neuron]\ntau_m = inf\n": False,
        "[neuron]\ntau_m = -inf\n": False,
        "[neuron]\ntau_m = nan\n": False,
        "[neuron]\ntau_m = 100000000000000000000000000000000\n": False,
        "[neuron]\nn_ref = 1001\n": False,
        "[train]\niterations = 9223372036854775807\n": True,
        "[train]\niterations = 9223372036854775808\n": False,
        "[train]\nseeds = [9223372036854775808]\n": False,
        "[diffusion]\nkernel = 'laplacian'\nn_sub = 100000000000000000000000000000000000000\n": False,
        "[diffusion]\nchannel_radius = ['a']\n": False,
        "[rule]\nc_reg = {diffusion = 1e400}\n": False,
        "[\"n\u00e9uron\"]\nx = 1\n": False,
        "[neuron]\n\"\\u2028\" = 1\n": False,
        "[fixed]\nswitches = {\"a\\nb\" = true}\n": False,
        "[task.params]\n\"a\\u2028b\" = 1\n": False,
        "[dopamine]\ntrials = 1.5\n": False,
        "[dopamine]\neta0 = inf\n": False,
        "[dopamine]\nsigma_relative = 'yes'\n": False,
        "[task]\nname = 'pattern_generation'\nparams = {freqs_hz = ['a']}\n": False,
        "[task]\nname = 'pattern_generation'\nparams = {amplitude_range = [2.0, 1.0]}\n": False,
        "[task]\nname = 'pattern_generation'\nparams = {freqs_hz = [nan]}\n": False,
        "[train]\nbackend = 'fixed'\n[fixed]\nswitches = 5\n": False,
        "[train]\nbackend = 'fixed'\n[fixed]\nswitches = {preset = 5}\n": False,
        "[train]\nbackend = 'fixed'\n[fixed]\nhw = '" + "a" * 5000 + "'\n": False,
        "a = " + "[" * 3000 + "]" * 3000 + "\n": False,
        "a = 1" + "0" * 5000 + "\n": False,
    }
    for text, valid in cases.items():
        cfg, err = load_config_text(scratch, text)
        assert (err is None) == valid, (text[:80], err)
        if valid:
            assert_valid_config(cfg, scratch)


# ---------------------------------------------------------------------------------------------
# hardware-profile loader
# ---------------------------------------------------------------------------------------------

SHIPPED = {name: tomllib.loads((hw.profiles_dir() / f"{name}.toml").read_text()) for name in hw.shipped_profiles()}
SHIPPED_TEXT = {name: (hw.profiles_dir() / f"{name}.toml").read_bytes() for name in hw.shipped_profiles()}


def key_ok(spec: hw.Key, value) -> bool:
    """Whether a profile value fits its schema key, independently of hw._check_value."""
    if isinstance(value, str) and value == hw.UNKNOWN:
        return spec.unknown_ok
    if spec.kind == "bool":
        return isinstance(value, bool)
    if spec.kind == "text":
        return isinstance(value, str)
    if spec.kind == "choice":
        return isinstance(value, str) and value in spec.choices
    if spec.kind == "int_pair":
        return (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
                and spec.lo <= value[0] <= value[1] <= spec.hi)
    if spec.kind == "int":
        return type(value) is int and spec.lo <= value <= spec.hi
    if type(value) is int:
        return spec.lo <= value <= spec.hi
    return type(value) is float and math.isfinite(value) and spec.lo <= value <= spec.hi


def assert_valid_profile(p: hw.Profile, scratch: Path) -> None:
    assert isinstance(p, hw.Profile) and isinstance(p.name, str) and p.name
    assert isinstance(p.description, str)
    if p.ideal:
        assert not p.values
        return
    assert set(p.values) == set(hw.SCHEMA), "a non-ideal profile holds every schema key"
    for name, value in p.values.items():
        spec = hw.SCHEMA[name]
        raw = list(value) if spec.kind == "int_pair" else value
        assert key_ok(spec, raw), (name, value)
        assert isinstance(p.sources[name], str) and p.sources[name].strip()
        assert isinstance(p.verified[name], bool)
    # round trip: written out as a profile file, it loads to the same profile
    data = {"profile": {"name": p.name, "description": p.description},
            "keys": {k: {"value": list(v) if isinstance(v, tuple) else v, "source": p.sources[k],
                         "verified": p.verified[k]} for k, v in p.values.items()}}
    path = scratch / "roundtrip_profile.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    again = hw.load_profile(path)
    assert dataclasses.replace(again, path="") == dataclasses.replace(p, path="")


def load_profile_bytes(scratch: Path, raw: bytes):
    path = scratch / "profile.toml"
    path.write_bytes(raw)
    return attempt("hw profile loader", ProfileError, lambda: hw.load_profile(path))


@st.composite
def profile_edit(draw):
    kind = draw(st.sampled_from(["value", "value", "value", "entry", "unknown_key", "delete_key", "head",
                                 "unknown_table", "keys_scalar", "ideal", "inherits"]))
    if kind == "value":
        plausible_hw = st.one_of(st.integers(-20, 70), st.floats(0, 100), st.sampled_from(["unknown", "wrap", "saturate"]),
                                 st.booleans(), st.lists(st.integers(-20, 20), min_size=2, max_size=2))
        return kind, draw(st.sampled_from(sorted(hw.SCHEMA))), draw(st.one_of(toml_values, plausible_hw))
    if kind == "entry":
        field = draw(st.sampled_from(["source", "verified", "extra", "drop_value", "drop_source", "scalar"]))
        return kind, (draw(st.sampled_from(sorted(hw.SCHEMA))), field), draw(toml_values)
    if kind == "unknown_key":
        return kind, draw(keys), {"value": 1, "source": "x", "verified": True}
    if kind == "delete_key":
        return kind, draw(st.sampled_from(sorted(hw.SCHEMA))), None
    if kind == "head":
        return kind, draw(st.sampled_from(["name", "description", "inherits", "ideal", "extra"])), draw(toml_values)
    if kind == "unknown_table":
        return kind, draw(keys), draw(toml_values)
    if kind == "inherits":
        return kind, draw(st.sampled_from(sorted(SHIPPED) + ["nope", ""])), None
    return kind, None, draw(toml_values)


def apply_profile_edit(data: dict, edit) -> None:
    kind, where, value = edit
    if not isinstance(data.get("profile", {}), dict) and kind in ("head", "ideal", "inherits"):
        return
    keys_table = data.setdefault("keys", {})
    if not isinstance(keys_table, dict) and kind in ("value", "entry", "unknown_key", "delete_key", "inherits"):
        return
    if kind == "value":
        if isinstance(keys_table.get(where), dict):
            keys_table[where]["value"] = value
        else:
            keys_table[where] = {"value": value, "source": "fuzz", "verified": False}
    elif kind == "entry":
        name, field = where
        entry = keys_table.get(name)
        if not isinstance(entry, dict):
            return
        if field == "scalar":
            keys_table[name] = value
        elif field.startswith("drop_"):
            entry.pop(field[5:], None)
        else:
            entry[field] = value
    elif kind == "unknown_key":
        keys_table[where] = value
    elif kind == "delete_key":
        keys_table.pop(where, None)
    elif kind == "head":
        data.setdefault("profile", {})[where] = value
    elif kind == "unknown_table":
        data[where] = value
    elif kind == "keys_scalar":
        data["keys"] = value
    elif kind == "ideal":
        data.setdefault("profile", {})["ideal"] = True
    elif kind == "inherits":
        data.setdefault("profile", {})["inherits"] = where
        for k in list(keys_table)[: len(keys_table) // 2]:
            del keys_table[k]


@sizes(250, 5000)
def test_profile_mutations(n, scratch):
    """Shipped profiles with one to three edits: a key's value of any type, a broken entry, an
    unknown or missing key, a bad [profile] head, an unknown table, ideal, inherits."""
    @fuzz(n)
    @given(st.sampled_from(sorted(SHIPPED)), st.lists(profile_edit(), min_size=1, max_size=3))
    def run(name, edits):
        data = copy.deepcopy(SHIPPED[name])
        for edit in edits:
            apply_profile_edit(data, edit)
        if not toml_representable(data):
            return
        p, err = load_profile_bytes(scratch, tomli_w.dumps(data).encode())
        if err is None:
            assert_valid_profile(p, scratch)
        if len(edits) == 1 and edits[0][0] == "value" and not data["profile"].get("ideal"):
            _, key, value = edits[0]
            assert (err is None) == key_ok(hw.SCHEMA[key], value), (key, value, err)
            if err is None:
                got = p.values[key]
                assert (list(got) if isinstance(got, tuple) else got) == value

    run()


@sizes(150, 3000)
def test_profile_random_text_and_names(n, scratch):
    """Random text, truncated or byte-flipped shipped profiles, and random profile names/paths."""
    @fuzz(n)
    @given(st.sampled_from(["tokens", "truncate", "flip", "name"]), st.sampled_from(sorted(SHIPPED)), st.data())
    def run(how, name, data):
        raw = SHIPPED_TEXT[name]
        if how == "name":
            arg = data.draw(st.one_of(st.text(max_size=20), st.sampled_from(
                ["", ".", "/", "loihi", "LOIHI2", "loihi2 ", "/dev/null", "hw_profiles", "setup.py", "pyproject.toml",
                 "a" * 5000, "x\x00y", "../" * 50])))
            p, err = attempt("hw profile loader", ProfileError, lambda: hw.load_profile(arg))
            if err is None:
                assert arg in hw.shipped_profiles()
                assert_valid_profile(p, scratch)
            return
        if how == "tokens":
            raw = data.draw(st.lists(st.sampled_from(TOKENS + ["[profile]", "[keys]", "value", "source",
                                                               "verified", "ideal = true"]), max_size=40).map("".join)).encode()
        elif how == "truncate":
            raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
        else:
            raw = flip_bytes(raw, data)
        p, err = load_profile_bytes(scratch, raw)
        if err is None:
            assert_valid_profile(p, scratch)
            head = SHIPPED[name]["profile"]
            if how == "truncate" and not head.get("inherits") and not head.get("ideal"):
                # every key is required, so a cut file that still loads lost only comments/blanks
                # (a cut inheriting or ideal profile can lose keys or its description unnoticed:
                # TOML has no end marker)
                assert dataclasses.replace(p, path="") == dataclasses.replace(hw.load_profile(name), path="")

    run()


# ---------------------------------------------------------------------------------------------
# checkpoint loader
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real checkpoint with Adam moments, and the network it belongs to."""
    from lava_diffmod.training.trainer import setup
    exp = setup(C.from_mapping(tiny()))
    params = exp.net.params
    state = exp.optimizer.init(params)
    _, state = exp.optimizer.update(Params(*(torch.full_like(p, 0.01) for p in params)), state, params)
    path = tmp_path_factory.mktemp("ckpt") / "good.safetensors"
    checkpoint.save(path, params, state, 3, {"seeds": [1]})
    tensors = {f"params.{k}": v for k, v in zip(Params._fields, params)}
    tensors.update({f"opt.m.{k}": v for k, v in zip(Params._fields, state.m)})
    tensors.update({f"opt.v.{k}": v for k, v in zip(Params._fields, state.v)})
    return params, state, path.read_bytes(), tensors


def load_ckpt(scratch: Path, raw: bytes, like):
    path = scratch / "ckpt.safetensors"
    path.write_bytes(raw)
    return attempt("checkpoint loader", CheckpointError, lambda: checkpoint.load(path, like))


def assert_same_tensors(loaded, tensors) -> None:
    params, state, _, _ = loaded
    for prefix, group in (("params", params), ("opt.m", state.m), ("opt.v", state.v)):
        if group is None:
            assert not any(k.startswith(prefix + ".") for k in tensors)
            continue
        for name, t in zip(Params._fields, group):
            assert torch.equal(t, tensors[f"{prefix}.{name}"].to(t.dtype)), f"{prefix}.{name}"


def header_of(raw: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n])


@sizes(250, 5000)
def test_checkpoint_truncated_or_flipped(n, saved, scratch):
    """Every strict prefix of a checkpoint is refused. A checkpoint with flipped bytes is refused
    (the stored SHA-256 covers tensor data and metadata), unless the flips leave the parsed
    header and the data unchanged (JSON whitespace): then it loads the original tensors."""
    params, state, raw, tensors = saved
    header_len, header = header_of(raw)
    data_start = 8 + header_len

    @fuzz(n)
    @given(st.booleans(), st.data())
    def run(truncate, data):
        if truncate:
            cut = data.draw(st.one_of(st.integers(0, len(raw) - 1), st.sampled_from(
                [0, 1, 7, 8, 9, data_start - 1, data_start, data_start + 1, len(raw) - 1])))
            loaded, err = load_ckpt(scratch, raw[:cut], params)
            assert err is not None, f"a checkpoint cut at byte {cut} of {len(raw)} loaded"
            return
        buf = bytearray(raw)
        where = data.draw(st.sampled_from(["length", "header", "data", "anywhere"]))
        lo, hi = {"length": (0, 7), "header": (8, data_start - 1), "data": (data_start, len(raw) - 1),
                  "anywhere": (0, len(raw) - 1)}[where]
        flips = sorted({data.draw(st.integers(lo, hi)) for _ in range(data.draw(st.integers(1, 3)))})
        for i in flips:
            buf[i] ^= data.draw(st.integers(1, 255))
        loaded, err = load_ckpt(scratch, bytes(buf), params)
        if err is not None:
            return
        assert all(8 <= i < data_start for i in flips), "changed bytes outside the JSON header loaded"
        assert header_of(bytes(buf))[1] == header, "a changed header loaded"
        p, s, it, _ = loaded
        assert it == 3 and s.step == state.step
        assert_same_tensors(loaded, tensors)

    run()


DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int8,
          torch.uint8, torch.bool]


@st.composite
def tensor_edit(draw):
    kind = draw(st.sampled_from(["dtype", "shape", "rename", "drop", "extra", "nonfinite", "drop_group",
                                 "iteration", "opt_step", "meta", "drop_meta", "none"]))
    names = [f"{p}.{n}" for p in ("params", "opt.m", "opt.v") for n in Params._fields]
    if kind in ("dtype",):
        return kind, draw(st.sampled_from(names)), draw(st.sampled_from(DTYPES))
    if kind == "shape":
        return kind, draw(st.sampled_from(names)), draw(st.lists(st.integers(0, 5), min_size=0, max_size=4))
    if kind == "rename":
        return kind, draw(st.sampled_from(names)), draw(st.one_of(keys, st.sampled_from(names)))
    if kind in ("drop", "nonfinite"):
        return kind, draw(st.sampled_from(names)), draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if kind == "extra":
        return kind, draw(st.one_of(keys, st.sampled_from(["params.w_fb", "opt.m", "__x__"]))), None
    if kind == "drop_group":
        return kind, draw(st.sampled_from(["params", "opt.m", "opt.v"])), None
    if kind in ("iteration", "opt_step"):
        return kind, None, draw(st.one_of(
            st.integers(-5, 2**70).map(str), st.text(max_size=6),
            st.sampled_from(["", " 3", "+3", "1_0", "3.0", "1e3", "-0", "\u0663", "9" * 5000, "nan"])))
    if kind == "meta":
        return kind, None, draw(st.one_of(st.text(max_size=10), st.sampled_from(
            ["{}", "[]", "1", "null", '"x"', '{"seeds": [1]}', "{" * 3000, "[" * 100000, '{"a": NaN}'])))
    if kind == "drop_meta":
        return kind, None, draw(st.sampled_from(["iteration", "opt_step", "meta", "sha256"]))
    return kind, None, None


def expect_checkpoint(tensors: dict, info: dict, like) -> bool:
    """Whether a checkpoint of these tensors and metadata is valid for ``like``, decided
    independently of checkpoint.load."""
    names = Params._fields
    groups = {p: [f"{p}.{n}" for n in names] for p in ("params", "opt.m", "opt.v")}
    if set(tensors) - {k for g in groups.values() for k in g}:
        return False
    present = {p: [k in tensors for k in g] for p, g in groups.items()}
    for p in groups:
        if any(present[p]) and not all(present[p]):
            return False
    if not all(present["params"]) or all(present["opt.m"]) != all(present["opt.v"]):
        return False
    for k, t in tensors.items():
        ref = like[names.index(k.rsplit(".", 1)[1])]
        if t.shape != ref.shape or t.dtype not in (torch.float32, torch.float64):
            return False
        if not bool(torch.isfinite(t).all()):
            return False
    try:
        it, step = int(info["iteration"]), int(info["opt_step"])
        meta = json.loads(info.get("meta", "{}"))
    except (KeyError, ValueError, RecursionError):
        return False
    return it >= 0 and step >= 0 and isinstance(meta, dict) and "sha256" in info


@sizes(250, 5000)
def test_checkpoint_wrong_contents(n, saved, scratch):
    """Well-formed safetensors files with wrong contents: dtypes, shapes, names, missing or extra
    tensors, NaN/inf values, an incomplete optimiser state, bad iteration/opt_step/meta."""
    params, state, raw, tensors0 = saved
    _, header = header_of(raw)
    info0 = header["__metadata__"]

    @fuzz(n)
    @given(st.lists(tensor_edit(), min_size=1, max_size=2))
    def run(edits):
        tensors = {k: v.clone() for k, v in tensors0.items()}
        info = dict(info0)
        for kind, key, value in edits:
            if kind == "dtype" and key in tensors:
                tensors[key] = tensors[key].to(value)
            elif kind == "shape" and key in tensors:
                tensors[key] = torch.zeros(value, dtype=tensors[key].dtype)
            elif kind == "rename" and key in tensors:
                tensors[value] = tensors.pop(key)
            elif kind == "drop":
                tensors.pop(key, None)
            elif kind == "nonfinite" and key in tensors and tensors[key].numel() and tensors[key].is_floating_point():
                tensors[key].view(-1)[0] = value
            elif kind == "extra":
                tensors[key] = torch.zeros(2)
            elif kind == "drop_group":
                tensors = {k: v for k, v in tensors.items() if not k.startswith(key + ".")}
            elif kind in ("iteration", "opt_step"):
                info[kind] = value
            elif kind == "meta":
                info["meta"] = value
            elif kind == "drop_meta":
                info.pop(value, None)
        if not tensors:
            tensors["params.w_in"] = torch.zeros(1)
        if "sha256" in info:   # signed as a writer would sign these contents (drop_meta removes it)
            info["sha256"] = checkpoint.checksum(tensors, info)
        path = scratch / "made.safetensors"
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=info)
        except Exception:   # safetensors itself refuses (e.g. an empty name): nothing to load
            return
        loaded, err = load_ckpt(scratch, path.read_bytes(), params)
        valid = expect_checkpoint(tensors, info, params)
        assert (err is None) == valid, (edits, err)
        if err is None:
            assert_same_tensors(loaded, tensors)
            assert loaded[2] == int(info["iteration"]) and loaded[1].step == int(info["opt_step"])

    run()


@sizes(200, 4000)
def test_checkpoint_random_header(n, saved, scratch):
    """Files with a random JSON header (random names, dtypes, shapes, offsets, metadata) and
    random data, and plain random bytes."""
    params, _, _, _ = saved
    dtypes = st.sampled_from(["F64", "F32", "F16", "BF16", "I64", "I32", "I8", "U8", "BOOL", "U64", "F8_E4M3",
                              "F8_E5M2", "C64", "X", ""])
    entry = st.fixed_dictionaries({"dtype": dtypes, "shape": st.lists(st.integers(0, 40), max_size=4),
                                   "data_offsets": st.lists(st.integers(0, 2000), min_size=0, max_size=3)})
    names = st.sampled_from([f"{p}.{k}" for p in ("params", "opt.m", "opt.v") for k in Params._fields] + ["x"])
    headers = st.dictionaries(st.one_of(names, keys), st.one_of(entry, toml_values), max_size=6).flatmap(
        lambda h: st.fixed_dictionaries({"h": st.just(h), "meta": st.one_of(
            st.none(), st.dictionaries(st.sampled_from(["iteration", "opt_step", "meta", "x"]),
                                       st.one_of(st.text(max_size=5), st.integers(), st.just("3")), max_size=4))}))

    @fuzz(n)
    @given(st.one_of(headers, st.binary(max_size=200)), st.binary(max_size=64), st.booleans(), st.integers(-2, 2))
    def run(header, payload, consistent, skew):
        if isinstance(header, bytes):
            raw = header
        else:
            h = dict(header["h"])
            if header["meta"] is not None:
                h["__metadata__"] = header["meta"]
            if consistent:   # offsets that tile the data exactly, as a writer would
                offset = 0
                for k, v in h.items():
                    if isinstance(v, dict) and "shape" in v:
                        size = {"F64": 8, "I64": 8, "U64": 8, "C64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2
                                }.get(v["dtype"], 1) * math.prod(v["shape"])
                        v = h[k] = dict(v, data_offsets=[offset, offset + size])
                        offset += size
                payload = bytes(offset)
            text = json.dumps(h).encode()
            raw = struct.pack("<Q", max(0, len(text) + skew)) + text + payload
        loaded, err = load_ckpt(scratch, raw, params)
        if err is None:   # then it must be a complete, consistent checkpoint for this network
            p, s, it, meta = loaded
            assert it >= 0 and s.step >= 0 and isinstance(meta, dict)
            for t, ref in zip(p, params):
                assert t.shape == ref.shape and t.dtype == ref.dtype and bool(torch.isfinite(t).all())

    run()


def test_checkpoint_edge_cases(saved, scratch, tmp_path):
    """Named cases: a folder, a long path, an empty file, a header claiming 2^64 - 1 bytes, a
    changed dtype of the same width (F64 read as I64), opt.v missing, a negative iteration, no
    checksum, a weight changed by one ulp under the original checksum."""
    params, state, raw, tensors = saved
    assert load_ckpt(scratch, b"", params)[1] is not None
    assert load_ckpt(scratch, b"\xff" * 8 + raw[8:], params)[1] is not None
    assert load_ckpt(scratch, raw.replace(b'"F64"', b'"I64"', 1), params)[1] is not None
    assert load_ckpt(scratch, raw, params)[1] is None
    for call in (lambda: checkpoint.load(tmp_path, params), lambda: checkpoint.load(tmp_path / ("a" * 5000), params)):
        _, err = attempt("checkpoint loader", CheckpointError, call)
        assert err is not None
    no_v = {k: v for k, v in tensors.items() if not k.startswith("opt.v.")}
    save_file(no_v, str(tmp_path / "no_v.safetensors"), metadata={"iteration": "3", "opt_step": "1"})
    _, err = attempt("checkpoint loader", CheckpointError,
                     lambda: checkpoint.load(tmp_path / "no_v.safetensors", params))
    assert err is not None and "opt.v" in str(err)
    save_file(tensors, str(tmp_path / "neg.safetensors"), metadata={"iteration": "-1", "opt_step": "1"})
    _, err = attempt("checkpoint loader", CheckpointError,
                     lambda: checkpoint.load(tmp_path / "neg.safetensors", params))
    assert err is not None and "iteration" in str(err)
    # a complete, valid checkpoint without its checksum, and one whose weight changed by one bit
    info = {"iteration": "3", "opt_step": "1", "meta": "{}"}
    save_file(tensors, str(tmp_path / "unsigned.safetensors"), metadata=info)
    _, err = attempt("checkpoint loader", CheckpointError,
                     lambda: checkpoint.load(tmp_path / "unsigned.safetensors", params))
    assert err is not None and "checksum" in str(err)
    changed = dict(tensors, **{"params.w_rec": tensors["params.w_rec"].clone()})
    changed["params.w_rec"].view(-1)[0] = torch.nextafter(changed["params.w_rec"].view(-1)[0],
                                                          torch.tensor(1.0, dtype=changed["params.w_rec"].dtype))
    save_file(changed, str(tmp_path / "changed.safetensors"), metadata=dict(info, sha256=checkpoint.checksum(tensors, info)))
    _, err = attempt("checkpoint loader", CheckpointError,
                     lambda: checkpoint.load(tmp_path / "changed.safetensors", params))
    assert err is not None and "checksum" in str(err)
