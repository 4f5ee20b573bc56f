"""The quantiser (lava_diffmod/fixed/quantize.py) on the paper's cue-accumulation network, the
switches (fixed/switches.py), and the errors of the fixed backend's configuration."""
import dataclasses
import math

import pytest
import torch

from helpers import tiny
from lava_diffmod import config
from lava_diffmod.config import ConfigError
from lava_diffmod.fixed.quantize import literal_floor, literal_value, quantize, report, to_literal
from lava_diffmod.fixed.switches import Switches
from lava_diffmod.float.rsnn import Network
from lava_diffmod.hw import load_profile
from lava_diffmod.tasks import make_task
from lava_diffmod.training.trainer import objective_for, setup

SEEDS = [1, 2]
CUE = "examples/cue_accumulation.toml"


@pytest.fixture(scope="module")
def cue():
    cfg = config.load(CUE)
    task = make_task(cfg.task, cfg.neuron.dt)
    net = Network.from_config(cfg, SEEDS, task.n_in, task.n_out, dtype=torch.float64)
    return cfg, net, objective_for(cfg, task)


def _quantize(cue, profile="loihi2", switches=None, **options):
    cfg, net, obj = cue
    opts = dataclasses.replace(cfg.fixed, **options) if options else cfg.fixed
    return quantize(net, load_profile(profile), switches or Switches.hardware(), opts, obj,
                    cfg.train.batch_size, cfg.diffusion, SEEDS)


@pytest.fixture(scope="module")
def fp2(cue):
    return _quantize(cue, "loihi2")


@pytest.fixture(scope="module")
def fp1(cue):
    return _quantize(cue, "loihi1")


def _alpha(cfg, tau):
    return math.exp(-cfg.neuron.dt / tau)


# ---------------------------------------------------------------------------------------------
# integer weights and neuron constants


def test_weights_fit_the_profile_and_fill_the_headroom(cue, fp2):
    cfg, net, _ = cue
    lim = 2 ** 8 - 1                                          # loihi2 weight_bits = 8
    target = cfg.fixed.weight_headroom * lim                  # 0.5 * 255 = 127.5
    for w in (fp2.w_in, fp2.w_rec, fp2.w_out, fp2.feedback):
        assert w.dtype == torch.int64
        assert int(w.abs().max()) <= lim
    for s in range(len(SEEDS)):
        m_in, m_rec = int(fp2.w_in[s].abs().max()), int(fp2.w_rec[s].abs().max())
        # the matrix that sets the threshold mantissa fills the headroom; the other lies within a
        # factor 2 below it (its exponent is a power of two)
        assert abs(max(m_in, m_rec) - target) <= 1
        assert target / 2 - 1 <= min(m_in, m_rec) <= target + 1
        assert abs(int(fp2.w_out[s].abs().max()) - cfg.fixed.readout_headroom * lim) <= 1
        assert abs(int(fp2.feedback[s].abs().max()) - target) <= 1


def test_readout_headroom_scales_only_w_out(cue):
    cfg = cue[0]
    fp_small = _quantize(cue, readout_headroom=1 / 32)
    fp_base = _quantize(cue)
    assert torch.equal(fp_small.w_in, fp_base.w_in) and torch.equal(fp_small.w_rec, fp_base.w_rec)
    assert torch.equal(fp_small.feedback, fp_base.feedback)
    for s in range(len(SEEDS)):
        assert abs(int(fp_small.w_out[s].abs().max()) - 255 / 32) <= 1
    ratio = fp_small.s_w["out"] / fp_base.s_w["out"]
    assert torch.allclose(ratio, torch.full_like(ratio, (1 / 32) / cfg.fixed.readout_headroom))


def test_weight_exponents_lie_in_the_profile_range(fp1, fp2):
    for fp in (fp1, fp2):
        lo, hi = fp.profile["weight_exp_range"]
        assert (lo, hi) == (-7, 0)
        for name in ("in", "rec", "out"):
            e = fp.wexp[name]
            assert e.shape == (len(SEEDS),)
            assert bool(((e >= lo) & (e <= hi)).all()), name


def test_threshold_mantissa_fits_vth_bits(fp2):
    vth = fp2.neuron.vth.reshape(-1)
    assert vth.shape == (len(SEEDS),)
    assert bool((vth >= 1).all()) and bool((vth <= 2 ** 17 - 1).all())
    # s_v = 2^vth_shift vth / thr: the threshold is exact in v units
    assert torch.allclose(fp2.s_v, 64 * vth.double() / 0.03)


def test_decays_by_hand(cue, fp2):
    cfg, _, _ = cue
    q = fp2.neuron
    # tau_m = 20 ms, dt = 1 ms: 4096 (1 - e^(-0.05)) = 4096 * 0.0487706 = 199.76 -> 200
    assert q.dv == round(4096 * (1 - _alpha(cfg, cfg.neuron.tau_m))) == 200
    # tau_a = 2000 ms: 4096 (1 - e^(-0.0005)) = 2.047 -> 2
    assert q.drho == round(4096 * (1 - _alpha(cfg, cfg.neuron.tau_a))) == 2
    # tau_out = 20 ms: the same as dv
    assert fp2.dkappa == 200
    # traces: D = round(4096 e^(-0.05)) = round(3896.24) = 3896
    assert fp2.x_decay == fp2.z_decay == 3896
    # the float neuron has no synaptic current: u must hold only this step's input, i.e. the
    # current decay multiplier 4096 - (du + du_offset) is 0 (du = 4095 with Lava's +1 offset)
    assert q.du_offset == 1
    assert q.du == 4095
    assert q.du + q.du_offset == 4096


def test_integer_current_is_not_carried_between_steps(fp2):
    from lava_diffmod.fixed import arith
    q = fp2.neuron
    shape = (len(SEEDS), 1, fp2.neuron.beta.shape[-1])
    s = arith.fixed_init(shape)._replace(u=torch.full(shape, 100 * 64, dtype=torch.int64))
    s = arith.alif_fixed_step(s, torch.zeros(shape, dtype=torch.int64), q)
    assert (s.u == 0).all()


def test_dequantised_weights_within_half_an_lsb(cue, fp2):
    _, net, _ = cue
    lim = fp2.weight_limit
    for name, w_int, w in (("in", fp2.w_in, net.params.w_in), ("rec", fp2.w_rec, net.params.w_rec),
                           ("out", fp2.w_out, net.params.w_out)):
        s_w = fp2.s_w[name].reshape(-1, 1, 1)
        unclipped = w_int.abs() < lim
        err = (w_int.double() / s_w - w.double()).abs()
        assert bool((err[unclipped] <= 0.5 / s_w.expand_as(err)[unclipped] * (1 + 1e-9)).all()), name
        assert bool((w_int[w == 0] == 0).all()), name           # structural zeros stay zero
    err = (fp2.feedback.double() / fp2.s_fb.reshape(-1, 1, 1) - net.feedback.double()).abs()
    assert bool((err <= 0.5 / fp2.s_fb.reshape(-1, 1, 1) * (1 + 1e-9)).all())


# ---------------------------------------------------------------------------------------------
# scaling literals


@pytest.mark.parametrize("x, exp_range, lit", [
    # 3 * 2^-6 = 0.046875 (3.9 %); 2^-4 = 0.0625 (28 %); 5 * 2^-7 = 0.039 (20 %); 7 * 2^-7 = 0.0547 (12 %)
    (0.0488, (-7, 8), (3, -6)),
    (0.0312, (-7, 8), (1, -5)),           # 2^-5 = 0.03125 (2 * 2^-6 ties; the smaller mantissa wins)
    (1.0, (-7, 8), (1, 0)),
    (5.1, None, (5, 0)),
    (0.7, None, (3, -2)),                 # 0.75 (7.1 %); 5 * 2^-3 = 0.625 (10.7 %); 7 * 2^-3 = 0.875
    (1e-4, (-7, 8), (1, -7)),             # below the range: the smallest literal
    (1e-4, None, (7, -16)),               # 7 * 2^-16 = 1.068e-4 (6.8 %); 3 * 2^-15 = 9.16e-5 (8.4 %)
    (1e6, (-7, 8), (7, 8)),               # above the range: the largest literal 7 * 256
    # 2^-7 = 0.0078 (30.9 %) beats 2^-6 = 0.0156 (38.3 %) and 3 * 2^-7 = 0.0234 (107 %)
    (0.0113, (-7, 8), (1, -7)),
    (0.0, (-7, 8), (0, 0)),
])
def test_to_literal_hand_cases(x, exp_range, lit):
    assert to_literal(x, 4, exp_range) == lit


def test_to_literal_is_the_nearest_in_range():
    gen = torch.Generator().manual_seed(3)
    xs = (2.0 ** (torch.rand(3000, generator=gen, dtype=torch.float64) * 26 - 13)).tolist()
    for exp_range, es in (((-7, 8), range(-7, 9)), (None, range(-40, 40))):
        for x in xs:
            m, e = to_literal(x, 4, exp_range)
            assert 1 <= m <= 7
            if exp_range is not None:
                assert exp_range[0] <= e <= exp_range[1]
            best = min(abs(mm * 2.0 ** ee - x) / x for mm in range(1, 8) for ee in es)
            assert abs(m * 2.0 ** e - x) / x <= best + 1e-12, (x, exp_range, (m, e))


# ---------------------------------------------------------------------------------------------
# the report


def test_report_lists_every_parameter_with_hand_errors(cue, fp2):
    cfg, net, _ = cue
    rows = {r["parameter"]: r for r in report(fp2, net, cfg.diffusion)}
    expected = {"alpha (membrane decay)", "rho (adaptation decay)", "kappa (readout decay)", "threshold",
                "W_in (RMS over synapses)", "W_rec (RMS over synapses)", "W_out (RMS over synapses)",
                "feedback B (RMS over synapses)", "beta x (1 - rho) (threshold step)",
                "pre-trace impulse (x1 units)", "pre-trace decay", "readout-trace impulse",
                "tag leak (1 - kappa)", "learning rate literal W_in", "learning rate literal W_rec",
                "learning rate literal W_out", "diffusion k/(2r+1)^2"}
    assert set(rows) == expected
    for name, r in rows.items():
        if not name.startswith("learning rate literal"):
            assert math.isfinite(r["rel_error"]) and r["rel_error"] >= 0, name
    alpha = math.exp(-1 / 20)                   # 0.951229424500714
    rho = math.exp(-1 / 2000)                   # 0.999500124979169
    # alpha: 1 - 200/4096 = 0.951171875 -> |0.951171875 - 0.9512294| / 0.9512294 = 6.05e-5
    assert rows["alpha (membrane decay)"]["quantised"] == 0.951171875
    assert rows["alpha (membrane decay)"]["rel_error"] == pytest.approx(abs(0.951171875 - alpha) / alpha, rel=1e-9)
    assert rows["alpha (membrane decay)"]["rel_error"] == pytest.approx(6.05e-5, rel=1e-3)
    # rho: 1 - 2/4096 = 0.99951171875 -> 1.16e-5
    assert rows["rho (adaptation decay)"]["quantised"] == 0.99951171875
    assert rows["rho (adaptation decay)"]["rel_error"] == pytest.approx(1.160e-5, rel=1e-3)
    assert rows["kappa (readout decay)"]["rel_error"] == pytest.approx(6.05e-5, rel=1e-3)
    # the threshold is exact by construction (s_v is defined from the mantissa)
    assert rows["threshold"]["rel_error"] < 1e-12
    # hardware switches: the tag leak on the pow2 grid, 1 - e^(-0.05) = 0.04877 -> 2^-4 = 0.0625: 28.2 %
    assert rows["tag leak (1 - kappa)"]["quantised"] == 0.0625
    assert rows["tag leak (1 - kappa)"]["rel_error"] == pytest.approx((0.0625 - (1 - alpha)) / (1 - alpha))
    # box stencil: k/9 = 0.75/9 = 1/12; k_mant = round(4096/12) = 341; 341 * 12 / 4096 = 1 - 1/1024
    assert rows["diffusion k/(2r+1)^2"]["quantised"] == 341 / 4096
    assert rows["diffusion k/(2r+1)^2"]["rel_error"] == pytest.approx(1 / 1024)
    # the weights: relative RMS error well below one LSB of a 127-level scale
    for name in ("W_in", "W_rec", "W_out", "feedback B"):
        assert 0 < rows[f"{name} (RMS over synapses)"]["rel_error"] < 0.02


# ---------------------------------------------------------------------------------------------
# switches that change the quantiser


def test_random_feedback_keeps_pattern_and_rms(cue):
    _, net, _ = cue
    fp = _quantize(cue, switches=Switches(random_feedback=True))
    b, b_new = net.feedback.double(), fp.feedback_float.double()
    assert torch.equal(b != 0, b_new != 0)
    for s in range(len(SEEDS)):
        assert float(b_new[s].pow(2).sum()) == pytest.approx(float(b[s].pow(2).sum()), rel=1e-12)
        assert not torch.allclose(b_new[s], b[s])
        # new signs too, not a rescaled copy
        nz = b[s] != 0
        assert bool(((b_new[s][nz] > 0) != (b[s][nz] > 0)).any())
    # deterministic, and the integer feedback represents the drawn one
    again = _quantize(cue, switches=Switches(random_feedback=True))
    assert torch.equal(again.feedback_float, fp.feedback_float)
    assert bool((fp.feedback[b_new == 0] == 0).all())
    # without the switch the feedback is the network's own
    assert torch.equal(_quantize(cue, switches=Switches()).feedback_float, b)


def test_ideal_profile_with_switches_on_raises_naming_them(cue):
    with pytest.raises(ValueError, match=r"ideal.*trace_bits.*weight_bits"):
        _quantize(cue, "ideal", Switches.hardware())
    with pytest.raises(ValueError, match="random_feedback"):
        _quantize(cue, "ideal", Switches(random_feedback=True))
    fp = _quantize(cue, "ideal", Switches.off())                 # allowed: no quantisation
    assert fp.profile_name == "ideal"


def test_loihi1_and_loihi2_differ_where_their_profiles_differ(fp1, fp2, cue):
    # learn_overflow_offset 3 vs 4: x1*y1 down-shift 14 + 3 - 15 = 2 vs 3; t*y1 16 + 3 - 15 = 4 vs 5
    assert (fp1.ds_xy, fp2.ds_xy) == (2, 3)
    assert (fp1.ds_ty, fp2.ds_ty) == (4, 5)
    # impulse fraction 7 vs 8 bits: s_x * s_in = 1270 * (1 - e^(-0.05)) = 61.939 ->
    # round(61.939 * 128) = 7928, round(61.939 * 256) = 15856
    assert (fp1.x_impulse, fp2.x_impulse) == (7928, 15856)
    # the tag increment targets x1*y1 >> ds: one bit less down-shift, half the literal
    assert literal_value(fp1.tag_inc) == literal_value(fp2.tag_inc) / 2
    # the weight widths agree: the same integer weights
    for a, b in ((fp1.w_in, fp2.w_in), (fp1.w_rec, fp2.w_rec), (fp1.w_out, fp2.w_out)):
        assert torch.equal(a, b)
    # without product_downshift there is no down-shift on either profile
    off = Switches(trace_bits=True)
    assert _quantize(cue, "loihi1", off).ds_xy == _quantize(cue, "loihi2", off).ds_xy == 0


# ---------------------------------------------------------------------------------------------
# errors


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("kwargs, words", [
    (dict(product_downshift=True), ["product_downshift", "trace_bits"]),
    (dict(sign_split_L=True), ["sign_split_L", "trace_bits"]),
    (dict(mixed_sign_lsb_loss=True), ["mixed_sign_lsb_loss", "weight_bits"]),
    (dict(shared_rng=True, weight_bits=True), ["shared_rng", "stoch_round"]),
    (dict(cadence="weekly"), ["cadence", "weekly"]),
    (dict(cadence="step"), ["cadence", "weight_bits", "trace_bits"]),
    (dict(t_epoch=0), ["t_epoch", "0"]),
    (dict(tag_leak_grid="log"), ["tag_leak_grid", "log"]),
    (dict(dense_delay=9), ["dense_delay", "9"]),
    (dict(eps_a_tag2=True), ["eps_a_tag2", "trace_bits"]),
    (dict(eps_a_tag2=True, trace_bits=True, drop_alif_eps_a=True), ["eps_a_tag2", "drop_alif_eps_a = false"]),
])
def test_switches_reject_bad_combinations(kwargs, words):
    with pytest.raises(ConfigError) as e:
        Switches(**kwargs)
    msg = _one_line(e)
    for w in words:
        assert w in msg


@pytest.mark.parametrize("spec, words", [
    ({"preset": "hardware", "bogus": True}, ["fixed.switches.bogus", "unknown switch"]),
    ({"trace_bits": 1}, ["fixed.switches.trace_bits", "bool"]),
    ({"t_epoch": 2.0}, ["fixed.switches.t_epoch", "int"]),
    ({"preset": "hardware", "t_epoch": 0}, ["t_epoch", "0"]),
    ({"preset": "hardware", "cadence": "sometimes"}, ["cadence", "sometimes"]),
    ({"preset": "hardware", "trace_bits": False}, ["product_downshift", "trace_bits"]),
    ("everything", ["fixed.switches", "everything"]),
])
def test_switches_from_spec_errors(spec, words):
    with pytest.raises(ConfigError) as e:
        Switches.from_spec(spec)
    msg = _one_line(e)
    for w in words:
        assert w in msg


def test_switches_from_spec_good():
    assert Switches.from_spec("off") == Switches()
    sw = Switches.from_spec({"preset": "hardware", "cadence": "epoch", "t_epoch": 4})
    assert sw == dataclasses.replace(Switches.hardware(), cadence="epoch", t_epoch=4)
    assert Switches.from_spec({"trace_bits": True}).names() == ["trace_bits"]


def test_config_fixed_backend_rejects_bptt():
    with pytest.raises(ConfigError) as e:
        config.from_mapping(tiny(backend="fixed"), {"rule.name": "bptt"})
    msg = _one_line(e)
    assert "bptt" in msg and "fixed" in msg
    config.from_mapping(tiny(backend="float"), {"rule.name": "bptt"})      # the float backend is fine


def test_config_ideal_profile_with_hardware_switches():
    with pytest.raises(ConfigError) as e:
        config.from_mapping(tiny(backend="fixed"), {"fixed.hw": "ideal", "fixed.switches": "hardware"})
    msg = _one_line(e)
    assert "fixed.switches" in msg and "ideal" in msg
    cfg = config.from_mapping(tiny(backend="fixed"), {"fixed.hw": "ideal", "fixed.switches": "off"})
    assert cfg.fixed.hw == "ideal"


def test_config_missing_profile_file_fails_at_load(tmp_path):
    missing = tmp_path / "nowhere" / "chip.toml"
    with pytest.raises(ConfigError) as e:
        config.from_mapping(tiny(backend="fixed"), {"fixed.hw": str(missing)})
    msg = _one_line(e)
    assert str(missing) in msg and "not found" in msg


def test_config_bad_switch_fails_at_load():
    with pytest.raises(ConfigError, match="fixed.switches.bogus"):
        config.from_mapping(tiny(backend="fixed"), {"fixed.switches": {"bogus": True}})


def test_epoch_cadence_with_a_learning_rate_below_the_on_chip_range():
    data = tiny(backend="fixed")
    sw = {"preset": "hardware", "cadence": "epoch"}
    cfg = config.from_mapping(data, {"fixed.switches": sw, "fixed.lr": 1e-6})
    with pytest.raises(ConfigError) as e:
        setup(cfg)
    msg = _one_line(e)
    assert msg.startswith("fixed.lr") and "-7" in msg
    # host write-back applies any rate: no error
    exp = setup(config.from_mapping(data, {"fixed.switches": {**sw, "cadence": "batch"}, "fixed.lr": 1e-6}))
    assert exp.emulator is not None
    # a rate whose literal lies in range is accepted on chip too
    exp = setup(config.from_mapping(data, {"fixed.switches": sw, "fixed.lr": 2.0 ** 20}))
    lo, hi = exp.emulator.fp.profile["s_exp_range"]
    for lits in exp.emulator.fp.lr_lit.values():
        assert all(lo <= e <= hi for _, e in lits)


# ---------------------------------------------------------------------------------------------
# ALIF's ε^a in tag_2 (switches.eps_a_tag2)

EPS_A = dataclasses.replace(Switches.hardware(), drop_alif_eps_a=False, eps_a_tag2=True, t_epoch=16)


def test_literal_floor_is_the_largest_literal_not_above():
    assert literal_floor(0.0100, 4, (-7, 8)) == (1, -7)          # 2^-7 = 0.0078; 3 * 2^-8 is out of range
    assert literal_floor(0.0234375, 4, (-7, 8)) == (3, -7)       # exactly 3 * 2^-7
    assert literal_value(literal_floor(0.02343, 4, (-7, 8))) == 2 ** -6       # just below 3 * 2^-7
    assert literal_floor(0.005, 4, (-7, 8)) is None


def test_eps_a_in_tag2_scales_and_literals(cue):
    """d = s_d ε^a: s_d fills tag_2 at no more than eps_a_max and makes the x1·y1 increment an
    exact literal; the decay literal is (1 − ρ)·t_epoch to the literal grid."""
    cfg, net, _ = cue
    fp = _quantize(cue, switches=EPS_A)
    p, r, n = net.neuron, fp.eps_a, 16
    assert r.hi == 2 ** 6 - 1 and (r.down_xy, r.down_dy) == (3, 5)        # loihi2: 6-bit d; x·y >> 3, d·y >> 5
    assert fp.s_d <= r.hi / cfg.fixed.eps_a_max
    inc = n * p.adapt_scale * fp.s_d * 2.0 ** r.down_xy / (fp.s_x * fp.s_y)
    assert inc == pytest.approx(literal_value((r.inc_m, r.inc_e)), rel=1e-12)
    assert literal_value((r.decay_m, r.decay_e)) == pytest.approx(n * (1 - p.rho), rel=0.05)
    beta = float(p.beta.max())
    assert literal_value((r.adapt_m, r.adapt_e)) == pytest.approx(n * p.adapt_scale * beta * 32 / fp.s_y, rel=0.1)
    want_a = literal_value(fp.tag_inc) * beta * fp.s_x * 2.0 ** (5 - 3) / fp.s_d
    assert literal_value(fp.tag_inc_a) == pytest.approx(want_a, rel=0.1)
    rows = {row["parameter"]: row for row in report(fp, net)}
    assert rows["eps^a decay per epoch (1 - rho) t_epoch"]["rel_error"] < 0.05
    assert _quantize(cue).eps_a is None                                   # hardware preset: ε^a dropped


def test_eps_a_in_tag2_names_the_epoch_it_needs(cue):
    """τ_a = 2 s: the decay 1 − ρ = 5e-4 per step is below the smallest literal 2^-7 unless an
    epoch is ≥ 16 steps; the error says so, and the epoch it names works."""
    with pytest.raises(ValueError) as e:
        _quantize(cue, switches=dataclasses.replace(EPS_A, t_epoch=4))
    msg = _one_line(e)
    assert "eps_a_tag2" in msg and "t_epoch >= 16" in msg and "(now 4)" in msg
    _quantize(cue, switches=dataclasses.replace(EPS_A, t_epoch=16))


def test_eps_a_in_tag2_needs_one_positive_beta(cue):
    cfg, net, obj = cue
    beta = net.neuron.beta.clone()
    beta[-1] = 2 * beta[-1]
    two = dataclasses.replace(net, neuron=net.neuron._replace(beta=beta))
    with pytest.raises(ValueError, match="one β > 0"):
        quantize(two, load_profile("loihi2"), EPS_A, cfg.fixed, obj, cfg.train.batch_size, cfg.diffusion, SEEDS)
