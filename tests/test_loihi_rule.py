"""The e-prop rule in Lava's Loihi 3-factor syntax (lava_diffmod/fixed/loihi_rule.py) for the
cue-accumulation network: literals in range, trace parameters by hand, and Lava's own parser."""
import dataclasses
import math
import re

import pytest
import torch

from lava_diffmod import config
from lava_diffmod.fixed.loihi_rule import describe, learning_rules, literal, on_chip
from lava_diffmod.fixed.quantize import literal_value, quantize
from lava_diffmod.fixed.switches import Switches
from lava_diffmod.float.rsnn import Network
from lava_diffmod.hw import load_profile
from lava_diffmod.tasks import make_task
from lava_diffmod.training.trainer import objective_for

SEEDS = [1, 2]
# a scaling literal in a rule string: "2^-7" or "3 * 2^-6"
LIT = re.compile(r"(?:(-?\d+) \* )?2\^(-?\d+)")


@pytest.fixture(scope="module")
def cue():
    cfg = config.load("examples/cue_accumulation.toml")
    task = make_task(cfg.task, cfg.neuron.dt)
    net = Network.from_config(cfg, SEEDS, task.n_in, task.n_out, dtype=torch.float64)
    return cfg, net, objective_for(cfg, task)


def _fp(cue, **options):
    cfg, net, obj = cue
    opts = dataclasses.replace(cfg.fixed, **options) if options else cfg.fixed
    return quantize(net, load_profile("loihi2"), Switches.hardware(), opts, obj, cfg.train.batch_size,
                    cfg.diffusion, SEEDS)


@pytest.fixture(scope="module")
def rules(cue):
    fp = _fp(cue, lr=1.0)
    return fp, {i: learning_rules(fp, cue[1], i) for i in range(len(SEEDS))}


def _literals(rule: str) -> list[tuple[int, int]]:
    return [(int(m) if m else 1, int(e)) for m, e in LIT.findall(rule)]


def test_literal_spelling():
    assert literal(1, -7) == "2^-7"
    assert literal(3, -6) == "3 * 2^-6"
    assert _literals("3 * 2^-6 * u0 * x1 - 2^-4 * u0 * t") == [(3, -6), (1, -4)]


def test_rule_structure_and_every_literal_in_range(rules):
    fp, by_seed = rules
    lo, hi = fp.profile["s_exp_range"]                      # (-7, 8)
    m_lo, m_hi = -2 ** (fp.profile["s_mant_bits"] - 1), 2 ** (fp.profile["s_mant_bits"] - 1) - 1
    for r in by_seed.values():
        assert set(r) == {"input", "recurrent", "readout"}
        for title, rule in r.items():
            strings = [rule["dw"]] + ([rule["dt"]] if "dt" in rule else [])
            for s in strings:
                lits = _literals(s)
                assert lits, s
                for m, e in lits:
                    assert m_lo <= m <= m_hi and lo <= e <= hi, (title, s)
            pre = "x1" if title == "readout" else "t"
            assert re.fullmatch(rf"(.+) \* u0 \* {pre} \* y3 - \1 \* u0 \* {pre} \* y2", rule["dw"]), rule["dw"]
            assert rule["t_epoch"] == 1
        assert "dt" not in r["readout"]
        assert re.fullmatch(r"(.+) \* u0 \* x1 \* y1 - (.+) \* u0 \* t", r["input"]["dt"])
        # the tag literals are the quantiser's
        assert _literals(r["input"]["dt"]) == [fp.tag_inc, fp.tag_leak]


def test_trace_parameters_by_hand(rules):
    fp, by_seed = rules
    r = by_seed[0]
    # tau_m = tau_out = 20 ms, dt = 1: x1_tau = round(-1 / ln(e^(-1/20))) = 20
    assert r["input"]["x1_tau"] == r["recurrent"]["x1_tau"] == r["readout"]["x1_tau"] == 20
    # impulse 15856 / 2^8 = 61.9375 (s_x s_in = 1270 * (1 - e^(-0.05)) = 61.939)
    assert r["input"]["x1_impulse"] == 15856 / 256 == 61.9375
    assert r["readout"]["x1_impulse"] == 61.9375


def test_rate_factor_out_of_range(rules):
    fp, by_seed = rules
    lo = fp.profile["s_exp_range"][0]
    for i, r in by_seed.items():
        for name, title in (("in", "input"), ("rec", "recurrent"), ("out", "readout")):
            want = fp.lr_lit[name][i]
            chip = _literals(r[title]["dw"])[0]
            # the configured rate (lr = 1) is far below 2^-7 on this network: the rule shows the
            # nearest in-range literal, 2^-7, and the factor wanted / shown
            assert want[1] < lo
            assert chip == (1, lo)
            assert r[title]["rate_factor"] == pytest.approx(literal_value(want) / 2.0 ** lo, rel=1e-12)
            assert r[title]["rate_factor"] < 1e-2
    lines = describe(by_seed[0])
    assert sum("outside the on-chip range" in line for line in lines) == 3
    assert any(line.strip().startswith('dt = "') for line in lines)
    assert sum(line.strip().startswith('dw = "') for line in lines) == 3


def test_rates_in_range_keep_their_literal(cue):
    # lr = 2^14 lifts the literals of seed 1 (2^-19, 2^-19, 5 * 2^-21 at lr = 1) into [-7, 8]
    fp = _fp(cue, lr=2.0 ** 14)
    r = learning_rules(fp, cue[1], 0)
    for name, title in (("in", "input"), ("rec", "recurrent"), ("out", "readout")):
        m, e = fp.lr_lit[name][0]
        assert -7 <= e <= 8
        assert _literals(r[title]["dw"])[0] == (m, e)
        assert r[title]["rate_factor"] == 1.0
    assert not any("outside" in line for line in describe(r))
    # on_chip by hand: 2^-9 -> 2^-7 (factor 1/4); 3 * 2^10 -> 7 * 2^8 (factor 3072 / 1792)
    assert on_chip(fp, (1, -9)) == ((1, -7), 0.25)
    (m, e), f = on_chip(fp, (3, 10))
    assert (m, e) == (7, 8) and f == pytest.approx(3072 / 1792)


@pytest.mark.lava
def test_rules_become_lava_rule_objects_lava_accepts(rules, cue):
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule
    from lava_diffmod.lava.rules import loihi3f_rules

    fp, by_seed = rules
    objects = loihi3f_rules(fp, cue[1])
    for title in ("input", "recurrent", "readout"):
        r, lr = by_seed[0][title], objects[title]
        assert isinstance(lr, Loihi3FLearningRule)
        # Lava read the products as written: dependency u, the factors, and m * 2^(s_exp - 7)
        pre = "x1" if title == "readout" else "t"
        (m, e), = set(_literals(r["dw"]))
        got = [(p.dependency, p.s_mantissa * 2.0 ** (p.s_exp - 7), [f.state_var for f in p.factors])
               for p in lr.dw.products]
        assert got == [("u", m * 2.0 ** e, [pre, "y3"]), ("u", -m * 2.0 ** e, [pre, "y2"])]
        if "dt" in r:
            (mi, ei), (ml, el) = _literals(r["dt"])
            got = [(p.dependency, p.s_mantissa * 2.0 ** (p.s_exp - 7), [f.state_var for f in p.factors])
                   for p in lr.dt.products]
            assert got == [("u", mi * 2.0 ** ei, ["x1", "y1"]), ("u", -ml * 2.0 ** el, ["t"])]
        else:
            assert lr.dt is None
        assert lr.x1_tau == r["x1_tau"] and lr.x1_impulse == pytest.approx(r["x1_impulse"])
        assert lr.t_epoch == 1


EPS_A = dataclasses.replace(Switches.hardware(), drop_alif_eps_a=False, eps_a_tag2=True, t_epoch=16)


@pytest.fixture(scope="module")
def eps_a_rules(cue):
    cfg, net, obj = cue
    fp = quantize(net, load_profile("loihi2"), EPS_A, cfg.fixed, obj, cfg.train.batch_size, cfg.diffusion, SEEDS)
    return fp, learning_rules(fp, net, 0)


def test_eps_a_in_tag2_rules_carry_the_quantisers_literals(eps_a_rules):
    fp, r = eps_a_rules
    e = fp.eps_a
    for title in ("input", "recurrent"):
        assert _literals(r[title]["dd"]) == [(e.inc_m, e.inc_e), (e.decay_m, e.decay_e), (e.adapt_m, e.adapt_e)]
        assert re.fullmatch(r"(.+) \* u0 \* x1 \* y1 - (.+) \* u0 \* d - (.+) \* u0 \* d \* y1", r[title]["dd"])
        assert _literals(r[title]["dt_alif"]) == [fp.tag_inc, fp.tag_inc_a, fp.tag_leak]
        assert r[title]["t_epoch"] == 16
    assert "dd" not in r["readout"]
    lines = describe(r)
    assert sum(line.strip().startswith('dd (onto ALIF units) = "') for line in lines) == 2


@pytest.mark.lava
def test_eps_a_in_tag2_rules_parse_in_lava(eps_a_rules):
    """Lava reads dd and the ALIF tag rule as written: u dependency, factors, m·2^e."""
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule

    fp, r = eps_a_rules
    rule = r["recurrent"]
    lr = Loihi3FLearningRule(dw=rule["dw"], dd=rule["dd"], dt=rule["dt_alif"], x1_impulse=rule["x1_impulse"],
                             x1_tau=rule["x1_tau"], t_epoch=16)
    got = [(p.dependency, p.s_mantissa * 2.0 ** (p.s_exp - 7), [f.state_var for f in p.factors])
           for p in lr.dd.products]
    want = [literal_value(x) for x in _literals(rule["dd"])]
    assert got == [("u", want[0], ["x1", "y1"]), ("u", -want[1], ["d"]), ("u", -want[2], ["d", "y1"])]
    got_t = [[f.state_var for f in p.factors] for p in lr.dt.products]
    assert got_t == [["x1", "y1"], ["d", "y1"], ["t"]]
    assert lr.decimate_exponent == 0 and lr.t_epoch == 16      # Lava allows one u_k across dw, dd, dt
