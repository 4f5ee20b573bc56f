"""The integer kernels of lava_diffmod/fixed/arith.py against cases worked out by hand
(LOIHI.md §3 for LIF/Dense, §4.4 for the learning engine). Every expected number is computed
in a comment, never by calling the function under test a second way."""
import math

import pytest
import torch

from lava_diffmod.fixed import arith

I64 = torch.int64


def t(*values):
    return torch.tensor(values, dtype=I64)


def state(u=0, v=0, b=0, z=0, r=0):
    """A FixedState of one neuron (S = B = N = 1)."""
    def one(x):
        return torch.tensor([[[x]]], dtype=I64)
    return arith.FixedState(one(u), one(v), one(b), one(z), one(r))


def scalars(s: arith.FixedState) -> tuple[int, ...]:
    return tuple(int(x.reshape(-1)[0]) for x in s)


# ---------------------------------------------------------------------------------------------
# truncation toward zero, decays


def test_tz_scale_truncates_toward_zero():
    # -5 * 2048 / 4096 = -2.5 -> -2 (a floor would give -3); 5 * 2048 / 4096 = 2.5 -> 2
    assert arith.tz_scale(t(-5, 5), 2048, 12).tolist() == [-2, 2]
    # -7 * 3 / 4 = -5.25 -> -5; 7 * 3 / 4 = 5.25 -> 5; -1 * 1 / 2 = -0.5 -> 0
    assert arith.tz_scale(t(-7, 7, -1), 3, 2).tolist() == [-5, 5, 0]
    # elementwise k: 10 * 1/16 -> 0, -10 * 9/16 = -5.625 -> -5
    assert arith.tz_scale(t(10, -10), t(1, 9), 4).tolist() == [0, -5]


def test_decay_matches_loihi_lif_decay():
    # decay(x, d) = tz(x (4096 - d) / 4096)
    assert arith.decay(t(-5), 2048).tolist() == [-2]          # -2.5 -> -2, not -3
    assert arith.decay(t(5), 2048).tolist() == [2]            # 2.5 -> 2
    assert arith.decay(t(-1), 1).tolist() == [0]              # -4095/4096 -> 0 (floor: -1)
    assert arith.decay(t(-100), 410).tolist() == [-89]        # -100 * 3686 / 4096 = -89.99 -> -89
    assert arith.decay(t(100), 410).tolist() == [89]
    # LOIHI.md §3.1: du = 4095 with the +1 offset: (4096 - 4096)/4096 = 0, u keeps nothing
    assert arith.decay(t(123456, -123456), 4095 + 1).tolist() == [0, 0]
    # other widths: 8 bits, -9 * (256 - 128) / 256 = -4.5 -> -4
    assert arith.decay(t(-9), 128, bits=8).tolist() == [-4]


def test_decay_zero_is_identity():
    x = t(-2**23 + 1, -12345, -1, 0, 1, 77, 2**23 - 1)
    assert torch.equal(arith.decay(x, 0), x)


# ---------------------------------------------------------------------------------------------
# wrap and saturation of 24-bit states


def test_wrap_lava_quirk_at_the_boundary():
    h = 2**23
    x = t(h, h + 1, -h, -h + 1, -h - 1, 0, h - 1)
    # Lava: u > 2^23 -> u - 2^24; u <= -2^23 -> u + 2^24. 2^23 stays; -2^23 becomes +2^23.
    assert arith.wrap(x, 24).tolist() == [h, -h + 1, h, -h + 1, h - 1, 0, h - 1]


def test_wrap_multiple_periods():
    h, f = 2**23, 2**24
    x = t(h + 1 + f, 3 * f + 5, -f - 3, 2 * f, -3 * f - h)
    # 2^23+1+2^24 -> -2^23+1;  3*2^24+5 -> 5;  -2^24-3 -> -3;  2^25 -> 0;  -3*2^24-2^23 -> 2^23
    assert arith.wrap(x, 24).tolist() == [-h + 1, 5, -3, 0, h]
    # a small width: 4 bits wraps into (-8, 8]: 9 -> -7, -8 -> 8, 8 -> 8, 25 -> -7
    assert arith.wrap(t(9, -8, 8, 25), 4).tolist() == [-7, 8, 8, -7]


def test_saturate_and_overflow_modes():
    lim = 2**23 - 1
    x = t(2**23, 2**23 - 1, -2**23, -2**23 + 1, 5 * 2**24, -5)
    assert arith.signed_limit(24) == lim
    assert arith.overflow(x, 24, "saturate").tolist() == [lim, lim, -lim, -lim, lim, -5]
    assert arith.saturate(t(-300, 12, 300), -256, 255).tolist() == [-256, 12, 255]
    # mode "wrap" is the wrap above: 2^23 + 1 -> -2^23 + 1
    assert arith.overflow(t(2**23 + 1), 24, "wrap").tolist() == [-2**23 + 1]


# ---------------------------------------------------------------------------------------------
# Dense


def test_dense_weights_mixed_lsb_loss_is_a_floor():
    w = t(-3, 3, 5, -1, 1, 2, -300, 300, 254, -256).reshape(1, 2, 5)
    out = arith.dense_weights(w, 8, mixed_lsb_loss=True).reshape(-1).tolist()
    # clip to [-256, 255], then (W >> 1) * 2: -3 -> -4, 3 -> 2, 5 -> 4, -1 -> -2, 1 -> 0, 2 -> 2,
    # -300 -> -256, 300 -> 255 -> 254, 254 -> 254, -256 -> -256
    assert out == [-4, 2, 4, -2, 0, 2, -256, 254, 254, -256]
    # without the LSB loss only the clip: odd values stay
    out = arith.dense_weights(w, 8, mixed_lsb_loss=False).reshape(-1).tolist()
    assert out == [-3, 3, 5, -1, 1, 2, -256, 255, 254, -256]


def test_dense_weights_exc_and_inh_keep_odd_values_and_their_ranges():
    exc = t(0, 3, 5, 255, 256, 1000).reshape(1, 2, 3)
    inh = t(0, -3, -5, -255, -256, -1000).reshape(1, 2, 3)
    # EXC [0, 255]: 256, 1000 -> 255; odd values kept
    assert arith.dense_weights(exc, 8, True).reshape(-1).tolist() == [0, 3, 5, 255, 255, 255]
    # INH [-255, 0] (not -256): -256, -1000 -> -255
    assert arith.dense_weights(inh, 8, True).reshape(-1).tolist() == [0, -3, -5, -255, -255, -255]


def test_dense_weights_sign_mode_is_per_network():
    # (S, P, N) = (3, 2, 2): network 0 EXC, network 1 INH, network 2 MIXED
    w = torch.stack([t(1, 3, 5, 300).reshape(2, 2), t(-1, -3, -5, -300).reshape(2, 2),
                     t(1, -3, 5, 300).reshape(2, 2)])
    out = arith.dense_weights(w, 8, mixed_lsb_loss=True)
    assert out[0].reshape(-1).tolist() == [1, 3, 5, 255]
    assert out[1].reshape(-1).tolist() == [-1, -3, -5, -255]
    assert out[2].reshape(-1).tolist() == [0, -4, 4, 254]      # 1 -> 0, -3 -> -4, 5 -> 4, 300 -> 255 -> 254
    # other weight widths: 4 bits, MIXED [-16, 15] then LSB floor: 17 -> 15 -> 14, -17 -> -16
    assert arith.dense_weights(t(17, -17, 3).reshape(1, 1, 3), 4, True).reshape(-1).tolist() == [14, -16, 2]


def test_dense_input_is_the_integer_product_with_weight_exponent():
    # network 0: binary spikes [1, 0, 1]; network 1: graded [2, 1, 0]
    pre = torch.tensor([[[1, 0, 1]], [[2, 1, 0]]], dtype=I64)                  # (S=2, B=1, P=3)
    w = torch.tensor([[[3, -5], [7, 7], [-1, 2]],
                      [[1, -1], [4, 0], [9, 9]]], dtype=I64)                  # (S, P, N=2)
    # network 0: [3 + (-1), -5 + 2] = [2, -3]; network 1: [2*1 + 1*4, 2*(-1) + 0] = [6, -2]
    assert arith.dense_input(pre, w, 0).tolist() == [[[2, -3]], [[6, -2]]]
    # exponents per network: -1 (floor shift: 2 >> 1 = 1, -3 >> 1 = -2) and +2 (x4: 24, -8)
    out = arith.dense_input(pre, w, t(-1, 2))
    assert out.dtype == I64
    assert out.tolist() == [[[1, -2]], [[24, -8]]]
    # exponent -2 for both: 2 >> 2 = 0, -3 >> 2 = -1, 6 >> 2 = 1, -2 >> 2 = -1
    assert arith.dense_input(pre, w, -2).tolist() == [[[0, -1]], [[1, -1]]]


def test_shift_is_a_floor_for_negative_exponents():
    assert arith.shift(t(-3, 3, -4, 5), -1).tolist() == [-2, 1, -2, 2]
    assert arith.shift(t(-3, 3), 2).tolist() == [-12, 12]


# ---------------------------------------------------------------------------------------------
# the integer ALIF neuron


def _neuron(**kw):
    base = dict(du=4095, dv=1024, drho=2048, vth=1, beta=32, bias=0, n_block=2, reset="subtract")
    base.update(kw)
    return arith.FixedNeuron(**base)


def test_alif_step_by_hand_subtractive_reset_refractory_adaptation():
    # du = 4095 (+1 offset): u holds only 64 * a_in; dv = 1024: v decays by 3/4; drho = 2048: b halves;
    # vth = 1 -> threshold 64; beta = 32; n_block = 2; z = [v - (64 + b) > 0] [r = 0]
    q = _neuron()
    s = arith.fixed_init((1, 1, 1))
    steps = []
    for a in (2, 1, 3, 0, 0, -2, 0):
        s = arith.alif_fixed_step(s, torch.tensor([[[a]]], dtype=I64), q)
        steps.append(scalars(s))
    # (u, v, b, z, r)
    assert steps == [
        # 1: u = 128; v = 128; b = 0; r = 0; 128 - 64 = 64 > 0 -> spike
        (128, 128, 0, 1, 0),
        # 2: u = 64; v = tz(128*3/4) + 64 - 64 (reset by subtraction) = 96; b = 0 + 32; r = 2
        #    (96 - 96 = 0 would not spike anyway: strict)
        (64, 96, 32, 0, 2),
        # 3: u = 192; v = 72 + 192 = 264; b = 16; r = 1; 264 - 80 > 0 but refractory -> no spike
        (192, 264, 16, 0, 1),
        # 4: u = 0; v = tz(264*3/4) = 198; b = 8; r = 0; 198 - 72 = 126 > 0 -> spike
        (0, 198, 8, 1, 0),
        # 5: u = 0; v = tz(148.5) - 64 = 84; b = 4 + 32 = 36; r = 2
        (0, 84, 36, 0, 2),
        # 6: u = -128; v = 63 - 128 = -65; b = 18; r = 1
        (-128, -65, 18, 0, 1),
        # 7: u = 0 (the -128 is not carried); v = tz(-65*3/4 = -48.75) = -48 (floor: -49); b = 9; r = 0
        (0, -48, 9, 0, 0),
    ]


def test_alif_current_holds_only_this_steps_input():
    # du = 4095 with du_offset 1: even a large u is not carried into the next step
    q = _neuron()
    s = arith.alif_fixed_step(state(u=6400 * 3), t(100).reshape(1, 1, 1), q)
    assert scalars(s)[0] == 6400                       # 100 * 64, nothing of the old 19200
    s = arith.alif_fixed_step(s, t(0).reshape(1, 1, 1), q)
    assert scalars(s)[0] == 0
    # du = 4094 (one less) keeps tz(6400 / 4096) = 1
    s = arith.alif_fixed_step(state(u=6400), t(0).reshape(1, 1, 1), _neuron(du=4094))
    assert scalars(s)[0] == 1


def test_alif_spike_test_is_strict_unless_spike_ge():
    # zero state, a_in = 1, no leak: v = 64 = threshold exactly
    q = _neuron(dv=0)
    s = arith.alif_fixed_step(arith.fixed_init((1, 1, 1)), t(1).reshape(1, 1, 1), q)
    assert scalars(s)[1] == 64 and scalars(s)[3] == 0
    s = arith.alif_fixed_step(arith.fixed_init((1, 1, 1)), t(1).reshape(1, 1, 1), q._replace(spike_ge=True))
    assert scalars(s)[3] == 1
    # the threshold includes b: v = 64 + 70 = 134 against 64 + 70 -> no spike; one more unit -> spike
    s = arith.alif_fixed_step(state(v=70, b=70), t(1).reshape(1, 1, 1), _neuron(dv=0, drho=0, bias=0))
    assert scalars(s)[1:4] == (134, 70, 0)
    s = arith.alif_fixed_step(state(v=71, b=70), t(1).reshape(1, 1, 1), _neuron(dv=0, drho=0, bias=0))
    assert scalars(s)[1:4] == (135, 70, 1)


def test_alif_zero_reset_reproduces_lava_lif_order():
    # LOIHI.md §3.1: u <- tz(u (4096 - (du + 1))/4096) + 64 a; v <- tz(v (4096 - dv)/4096) + u + bias;
    # s = v > 64 vth; v <- 0 where s. du = 2047: u halves; dv = 1024; vth = 2 (128); bias = 3;
    # no adaptation, no refractoriness.
    q = _neuron(du=2047, dv=1024, drho=0, vth=2, beta=0, bias=3, n_block=0, reset="zero")
    s = arith.fixed_init((1, 1, 1))
    steps = []
    for a in (1, 1, 3, -1, -2, 0):
        s = arith.alif_fixed_step(s, torch.tensor([[[a]]], dtype=I64), q)
        steps.append(scalars(s)[:4])
    assert steps == [
        (64, 67, 0, 0),       # u = 64; v = 64 + 3 = 67 <= 128
        (96, 0, 0, 1),        # u = 32 + 64; v = tz(50.25) + 96 + 3 = 149 > 128 -> spike, v <- 0
        (240, 0, 0, 1),       # u = 48 + 192; v = 0 + 240 + 3 = 243 -> spikes again at once, v <- 0
        (56, 59, 0, 0),       # u = 120 - 64; v = 0 + 56 + 3 (no subtraction of the threshold)
        (-100, -53, 0, 0),    # u = 28 - 128; v = tz(44.25) - 100 + 3 = 44 - 97
        (-50, -86, 0, 0),     # u = tz(-50.0); v = tz(-39.75) = -39 (floor: -40); -39 - 50 + 3
    ]


def test_alif_voltage_saturates_and_current_wraps():
    q = _neuron(dv=0, vth=2**16, beta=0, drho=0, n_block=0)
    lim = 2**23 - 1
    # v: 2^23 - 10 + 64 saturates at 2^23 - 1 (no spike: threshold 2^17 * 64 = 2^23 > 2^23 - 1)
    s = arith.alif_fixed_step(state(v=2**23 - 10), t(1).reshape(1, 1, 1), q._replace(vth=2**17))
    assert scalars(s)[1] == lim
    # u: 64 * 131073 = 2^23 + 64 > 2^23 -> wraps to -2^23 + 64
    s = arith.alif_fixed_step(arith.fixed_init((1, 1, 1)), t(131073).reshape(1, 1, 1), q)
    assert scalars(s)[0] == -2**23 + 64


def test_alif_update_returns_the_states_before_wrap_and_saturation():
    # the same two steps as above: v 2^23 - 10 + 64 before saturation, u 2^23 + 64 before the wrap
    q = _neuron(dv=0, vth=2**17, beta=0, drho=0, n_block=0)
    s, raw = arith.alif_fixed_update(state(v=2**23 - 10), t(1).reshape(1, 1, 1), q)
    assert (int(raw.u), int(raw.v), int(raw.v_clipped), int(raw.b)) == (64, 2**23 + 54, 2**23 - 1, 0)
    assert scalars(s)[:2] == (64, 2**23 - 1)
    s, raw = arith.alif_fixed_update(arith.fixed_init((1, 1, 1)), t(131073).reshape(1, 1, 1), q._replace(vth=2**16))
    assert (int(raw.u), scalars(s)[0]) == (2**23 + 64, -2**23 + 64)
    # reset "zero": v_clipped is the voltage before the reset; v = 149 > 128 spikes, then v <- 0
    q0 = _neuron(du=2047, dv=1024, drho=0, vth=2, beta=0, bias=3, n_block=0, reset="zero")
    s, raw = arith.alif_fixed_update(state(u=64, v=67), t(1).reshape(1, 1, 1), q0)
    assert (int(raw.v), int(raw.v_clipped), scalars(s)[1], scalars(s)[3]) == (149, 149, 0, 1)


def test_pseudo_derivative_fixed_at_a_few_distances():
    # vth = 1 -> threshold 64, y_max = 127: y = floor(127 * max(0, 64 - |v - 64 - b|) / 64)
    q = _neuron()
    v = t(64, 96, 32, 0, -10, 65, 80, 64).reshape(1, 1, 8)
    b = t(0, 0, 0, 0, 0, 0, 16, 0).reshape(1, 1, 8)
    r = t(0, 0, 0, 0, 0, 0, 0, 1).reshape(1, 1, 8)
    zero = torch.zeros_like(v)
    y = arith.pseudo_derivative_fixed(arith.FixedState(zero, v, b, zero, r), q, 127)
    # dist 0 -> 127; +-32 -> 63.5 -> 63; -64 -> 0; beyond -> 0; dist 1 -> 127*63/64 = 125.02 -> 125;
    # v = 80 with b = 16: dist 0 -> 127; refractory -> 0
    assert y.reshape(-1).tolist() == [127, 63, 63, 0, 0, 125, 127, 0]


# ---------------------------------------------------------------------------------------------
# learning-engine products (LOIHI.md §4.4 table)


def test_product_shift_loihi2_table():
    # Σb + 4 - 15, at least 0: x1: 7 + 4 - 15 < 0 -> 0; x1 y1: 14 + 4 - 15 = 3;
    # x1 y1 y2: 21 + 4 - 15 = 10; t y: 9 + 7 + 4 - 15 = 5
    assert arith.product_shift([7], 4, 16) == 0
    assert arith.product_shift([7, 7], 4, 16) == 3
    assert arith.product_shift([7, 7, 7], 4, 16) == 10
    assert arith.product_shift([9, 7], 4, 16) == 5


def test_product_shift_loihi1_offset_is_one_less():
    assert arith.product_shift([7], 3, 16) == 0
    assert arith.product_shift([7, 7], 3, 16) == 2
    assert arith.product_shift([7, 7, 7], 3, 16) == 9
    assert arith.product_shift([9, 7], 3, 16) == 4


@pytest.mark.parametrize("rule, factors, widths, mant, exp, dw", [
    # 2^-2 * u0 * x1: 20 >> 0 = 20; 20 * 2^(-2+7) = 640 -> 640 / 128 = 5.0
    ("2^-2 * u0 * x1", [20], [7], 1, -2, 5.0),
    # 2^-2 * u0 * x1 * y1: 400 >> 3 = 50; 50 * 2^5 = 1600 -> 12.5
    ("2^-2 * u0 * x1 * y1", [20, 20], [7, 7], 1, -2, 12.5),
    # 2^-2 * y0 * x1 * y2: 200 >> 3 = 25; 25 * 2^5 = 800 -> 6.25
    ("2^-2 * y0 * x1 * y2", [20, 10], [7, 7], 1, -2, 6.25),
    # 2^0 * u0 * x1 * y1 * y2: 4000 >> 10 = 3 (3.906 truncated); 3 * 2^7 = 384 -> 3.0
    ("2^0 * u0 * x1 * y1 * y2", [20, 20, 10], [7, 7, 7], 1, 0, 3.0),
])
def test_literal_product_reproduces_the_lava_table(rule, factors, widths, mant, exp, dw):
    down = arith.product_shift(widths, 4, 16)
    prod = torch.tensor([math.prod(factors)], dtype=I64)
    p = arith.literal_product(prod, down, mant, exp, frac_bits=7, acc_bits=16)
    assert float(p[0]) / 2**7 == dw, rule


def test_literal_product_clips_at_2_pow_15():
    # 127 * 127 = 16129 >> 3 = 2016; * 7 * 2^(8+7) is far beyond 2^15 -> clipped to +-32768
    prod = t(127 * 127)
    assert arith.literal_product(prod, 3, 7, 8, 7, 16).tolist() == [2**15]
    assert arith.literal_product(prod, 3, -8, 8, 7, 16).tolist() == [-2**15]
    # 63 * 2^(2+7) = 32256 stays; 65 * 2^9 = 33280 is clipped
    assert arith.literal_product(t(63), 0, 1, 2, 7, 16).tolist() == [32256]
    assert arith.literal_product(t(65), 0, 1, 2, 7, 16).tolist() == [2**15]     # 33280 -> 32768


def test_tag_limits_and_sign_split():
    assert arith.tag_limits(9) == (-257, 255)
    assert arith.tag_limits(5) == (-17, 15)
    pos, neg = arith.sign_split(t(-200, -5, 0, 5, 200), 7)
    assert pos.tolist() == [0, 0, 0, 5, 127]
    assert neg.tolist() == [127, 5, 0, 0, 0]


def test_tag_increment_subtracts_the_eps_a_product_by_hand():
    # inc 1*2^-2 on x1*y1 = 800 >> 3 = 100 -> 100 * 2^5 = 3200; inc_a 5*2^-2 on d*y1 = 400 >> 5 = 12
    # -> -12 * 5 * 2^5 = -1920; together 1280 in units of 2^-7, i.e. +10 tag units
    rule = arith.TagRule(1, -2, 1, -3, 3, 7, 16, -257, 255, 5, -2, 5)
    assert arith.tag_increment(t(800), rule).tolist() == [3200]
    assert arith.tag_increment(t(800), rule, t(400)).tolist() == [1280]
    new, hits = arith.tag_step(t(0)[None], t(800)[None], t(0)[None], rule, t(400)[None])
    assert new.tolist() == [[10]] and hits.tolist() == [0]


EPS_A_RULE = arith.EpsARule(inc_m=1, inc_e=-7, decay_m=1, decay_e=-7, adapt_m=5, adapt_e=-7, down_xy=3,
                            down_dy=5, frac=7, acc_bits=16, hi=63)


def test_eps_a_fixed_step_by_hand():
    # d = 10: + (800 >> 3) * 1 = 100, - 10 * 1 = -10, - (400 >> 5 = 12) * 5 = -60 -> +30 / 128 of a unit
    d, xy, dy = t(10)[None], t(800)[None], t(400)[None]
    low, _ = arith.eps_a_fixed_step(d, xy, dy, t(0)[None], EPS_A_RULE)        # (1280 + 30) >> 7 = 10
    high, _ = arith.eps_a_fixed_step(d, xy, dy, t(97)[None], EPS_A_RULE)      # (1310 + 97) >> 7 = 10
    top, _ = arith.eps_a_fixed_step(d, xy, dy, t(98)[None], EPS_A_RULE)       # 1408 >> 7 = 11
    assert (low.tolist(), high.tolist(), top.tolist()) == ([[10]], [[10]], [[11]])
    # the expected step over every random value is exactly 30 / 128 (stochastic rounding is unbiased)
    r = torch.arange(128, dtype=I64)[None]
    mean, _ = arith.eps_a_fixed_step(d.expand(1, 128), xy.expand(1, 128), dy.expand(1, 128), r, EPS_A_RULE)
    assert float(mean.double().mean()) == 10 + 30 / 128


def test_eps_a_fixed_step_saturates_unsigned_and_counts():
    d = t(63, 0)[None]
    new, hits = arith.eps_a_fixed_step(d, t(127 * 127, 127 * 127)[None], t(0, 0)[None], t(0, 0)[None], EPS_A_RULE)
    assert new.tolist() == [[63, 15]] and hits.tolist() == [1]      # 16129 >> 3 = 2016 -> +15.75 -> 15
    # a decay and adaptation below zero stop at zero
    new, hits = arith.eps_a_fixed_step(t(1)[None], t(0)[None], t(127 * 128)[None], t(0)[None], EPS_A_RULE)
    assert new.tolist() == [[0]] and hits.tolist() == [1]


# ---------------------------------------------------------------------------------------------
# stochastic rounding and the random streams


def _draws(n: int, bits: int, stream: str = "w_in", key: int = 12345, step: int = 7) -> torch.Tensor:
    return arith.random_bits(arith.step_key(key, step), stream, (n,), bits, shared=False)


def test_stochastic_round_is_exactly_unbiased_over_all_random_values():
    # Σ_{r=0}^{127} floor((x + r) / 128) = x (Hermite's identity), so the mean over every r is x / 128
    r = torch.arange(128, dtype=I64)
    for x in (-1000, -300, -129, -128, -1, 0, 1, 77, 127, 200, 1000):
        out = arith.stochastic_round(torch.full((128,), x, dtype=I64), 7, r)
        assert int(out.sum()) == x
        # and it only ever rounds to one of the two neighbours: floor(x/128) and floor(x/128) + 1
        assert set(out.tolist()) <= {x // 128, x // 128 + 1}


@pytest.mark.parametrize("x", [-1000, -300, -129, -1, 1, 77, 200, 1000])
def test_stochastic_round_unbiased_with_hashed_random_bits(x):
    n = 20000
    r = _draws(n, 7)
    out = arith.stochastic_round(torch.full((n,), x, dtype=I64), 7, r).double()
    p = x / 128 - math.floor(x / 128)                 # probability of rounding up
    se = math.sqrt(p * (1 - p) / n)
    assert abs(float(out.mean()) - x / 128) <= 4 * se + 1e-12


def test_stochastic_round_with_half_is_round_to_nearest():
    # r = 2^(f-1) = 64: floor((x + 64) / 128), nearest with halves up
    x = t(191, 192, 63, 64, -64, -65, -191, -192, -193)
    # 1.492 -> 1, 1.5 -> 2, 0.49 -> 0, 0.5 -> 1, -0.5 -> 0, -0.508 -> -1, -1.492 -> -1, -1.5 -> -1, -1.508 -> -2
    assert arith.stochastic_round(x, 7, torch.full_like(x, 64)).tolist() == [1, 2, 0, 1, 0, -1, -1, -1, -2]


def test_write_back_rounds_unbiased_reproducibly_and_saturates():
    n = 20000
    value = torch.full((n,), 10, dtype=I64)
    delta = torch.full((n,), -80, dtype=I64)                 # -80 / 128 = -0.625 of a weight unit
    r = _draws(n, 7, "w_rec")
    out = arith.write_back(value, delta, 7, r, -256, 255)[0]
    assert set(out.tolist()) == {9, 10}                      # 10 - 0.625 -> 9 or 10
    se = math.sqrt(0.375 * 0.625 / n)                        # P(10) = 0.375
    assert abs(float(out.double().mean()) - 9.375) <= 4 * se
    # same key, step and stream -> the same bits and the same result
    again = arith.write_back(value, delta, 7, _draws(n, 7, "w_rec"), -256, 255)[0]
    assert torch.equal(out, again)
    # r = 64: round to nearest, 10 - 0.625 = 9.375 -> 9; 10 + 0.5 -> 11
    half = torch.full((2,), 64, dtype=I64)
    assert arith.write_back(t(10, 10), t(-80, 64), 7, half, -256, 255)[0].tolist() == [9, 11]
    # saturation after rounding: 254 + 3 -> 255; -255 - 3 -> -256 (MIXED range)
    zero = torch.zeros(2, dtype=I64)
    new, raw = arith.write_back(t(254, -255), t(3 * 128, -3 * 128), 7, zero, -256, 255)
    assert new.tolist() == [255, -256] and raw.tolist() == [257, -258]
    assert arith.saturations(raw[None], new[None]).tolist() == [2]


def test_random_bits_range_and_uniformity():
    for bits in (1, 7, 12):
        r = _draws(50000, bits)
        assert int(r.min()) >= 0 and int(r.max()) < 2**bits
        assert int(r.min()) == 0 and int(r.max()) == 2**bits - 1   # the whole range occurs
        mean, sd = (2**bits - 1) / 2, math.sqrt((4**bits - 1) / 12)
        assert abs(float(r.double().mean()) - mean) <= 4 * sd / math.sqrt(50000)


def test_random_bits_shared_is_one_value_per_network_and_step():
    keys = torch.tensor([11, 22, 33], dtype=I64)               # three networks
    shape = (3, 4, 5)
    r = arith.random_bits(arith.step_key(keys, 0), "w_in", shape, 16, shared=True)
    assert r.shape == shape
    for s in range(3):
        assert (r[s] == r[s, 0, 0]).all()                       # broadcast to all elements
    assert len({int(r[s, 0, 0]) for s in range(3)}) == 3        # networks differ
    # a plain int key: one value for the whole tensor
    r1 = arith.random_bits(arith.step_key(11, 0), "w_in", (4, 5), 16, shared=True)
    assert r1.shape == (4, 5) and (r1 == r1[0, 0]).all()


def test_random_bits_unshared_differs_per_element():
    keys = torch.tensor([11, 22], dtype=I64)
    r = arith.random_bits(arith.step_key(keys, 0), "w_in", (2, 8, 8), 16, shared=False)
    for s in range(2):
        assert len(set(r[s].reshape(-1).tolist())) > 50          # 64 elements, 16 bits: nearly all distinct
    assert not torch.equal(r[0], r[1])


def test_random_bits_streams_and_steps_differ_and_are_reproducible():
    key = torch.tensor([5, 6], dtype=I64)
    a = arith.random_bits(arith.step_key(key, 3), "w_in", (2, 100), 16, shared=False)
    assert torch.equal(a, arith.random_bits(arith.step_key(key, 3), "w_in", (2, 100), 16, shared=False))
    other_stream = arith.random_bits(arith.step_key(key, 3), "w_rec", (2, 100), 16, shared=False)
    other_step = arith.random_bits(arith.step_key(key, 4), "w_in", (2, 100), 16, shared=False)
    assert (a != other_stream).float().mean() > 0.9
    assert (a != other_step).float().mean() > 0.9
    # shared draws, over many steps, also vary from step to step
    shared = [int(arith.random_bits(arith.step_key(key, k), "tag", (2, 3), 16, shared=True)[0, 0])
              for k in range(20)]
    assert len(set(shared)) == 20


# ---------------------------------------------------------------------------------------------
# traces


def test_trace_decay_with_stochastic_rounding_is_unbiased():
    # D = round(4096 e^(-1/20)) = round(3896.24) = 3896; 100 * 3896 / 4096 = 95.117...
    x, D = 100, 3896
    n0 = torch.zeros(4096, dtype=I64)
    r = torch.arange(4096, dtype=I64)
    out = arith.trace_update(torch.full((4096,), x, dtype=I64), n0, D, 0, 8, r, torch.zeros_like(r))
    assert int(out.sum()) == x * D                            # exact over every random value
    assert set(out.tolist()) == {95, 96}
    n = 20000
    rd = _draws(n, 12, "x1_decay")
    out = arith.trace_update(torch.full((n,), x, dtype=I64), torch.zeros(n, dtype=I64), D, 0, 8, rd,
                             torch.zeros(n, dtype=I64)).double()
    p = x * D / 4096 - 95
    assert abs(float(out.mean()) - x * D / 4096) <= 4 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("impulse, doubling, mean", [
    (16.25, False, 16.25),   # fraction 64/256 adds 1 with probability 0.25
    (16.25, True, 16.5),     # doubled: probability min(1, 2 * 0.25) = 0.5
    (16.5, False, 16.5),
    (16.5, True, 17.0),      # min(1, 1.0): always 17
    (16.75, True, 17.0),     # min(1, 1.5): always 17
    (16.75, False, 16.75),
    (16.0, True, 16.0),
])
def test_trace_impulse_fraction_and_the_doubling_quirk(impulse, doubling, mean):
    frac_bits = 8
    imp = round(impulse * 2**frac_bits)                  # 16.25 -> 4160
    r = torch.arange(2**frac_bits, dtype=I64)            # every random value once
    x0 = torch.zeros_like(r)
    out = arith.trace_update(x0, torch.ones_like(r), 4096, imp, frac_bits, torch.zeros_like(r), r, doubling)
    assert float(out.double().mean()) == mean
    assert set(out.tolist()) <= {16, 17}
    if mean == 17.0:
        assert (out == 17).all()
    # no spike, no impulse
    out = arith.trace_update(x0, x0, 4096, imp, frac_bits, torch.zeros_like(r), r, doubling)
    assert (out == 0).all()


def test_trace_impulse_mean_with_hashed_random_bits():
    n = 20000
    r = _draws(n, 8, "x1_impulse")
    x0 = torch.zeros(n, dtype=I64)
    out = arith.trace_update(x0, torch.ones_like(x0), 4096, 4160, 8, x0, r).double()
    assert abs(float(out.mean()) - 16.25) <= 4 * math.sqrt(0.25 * 0.75 / n)
    out = arith.trace_update(x0, torch.ones_like(x0), 4096, 4160, 8, x0, r, doubling=True).double()
    assert abs(float(out.mean()) - 16.5) <= 4 * math.sqrt(0.25 / n)
    # Loihi 1: 7 fractional bits, 16.25 -> 2080, r in [0, 128)
    out = arith.trace_update(x0, torch.ones_like(x0), 4096, 2080, 7, x0, r >> 1).double()
    assert abs(float(out.mean()) - 16.25) <= 4 * math.sqrt(0.25 * 0.75 / n)


def test_trace_step_saturates_at_127():
    zero = t(0, 0, 0)
    # D = 4096 keeps x; 120 + 16 -> 127; 100 + 16 = 116 stays; 0 without spike stays 0
    out = arith.trace_step(t(120, 100, 0), t(1, 1, 0), 4096, 16 * 256, 7, 8, zero, zero)
    assert out.tolist() == [127, 116, 0]
    # already at 127 with no spike and D = 3896: 127 * 3896 / 4096 = 120.8 -> 120 (r = 0)
    assert arith.trace_step(t(127), t(0), 3896, 0, 7, 8, t(0), t(0)).tolist() == [120]


# ---------------------------------------------------------------------------------------------
# the modulator field


def test_box_diffuse_fixed_by_hand():
    # 4x4 torus, radius 1, k_mant = round(4096 / 9) = 455 (k = 1)
    g = torch.zeros(4, 4, dtype=I64)
    g[0, 0], g[0, 1] = 100, -40
    out = arith.box_diffuse_fixed(g, 455, 1)
    # box sums: rows 3, 0, 1 see row 0; cols: (0) {3,0,1} -> 100 - 40 = 60; (1) {0,1,2} -> 60;
    # (2) {1,2,3} -> -40; (3) {2,3,0} -> 100. tz(60 * 455 / 4096 = 6.67) = 6;
    # tz(-40 * 455 / 4096 = -4.44) = -4 (floor: -5); tz(100 * 455 / 4096 = 11.11) = 11
    row = [6, 6, -4, 11]
    assert out.tolist() == [row, row, [0, 0, 0, 0], row]
    # batched (..., h, w): the same on every leading index, negated field -> negated result
    both = arith.box_diffuse_fixed(torch.stack([g, -g]), 455, 1)
    assert torch.equal(both[0], out) and torch.equal(both[1], -out)


def test_box_diffuse_fixed_mass_shrinks_only_by_truncation():
    g = torch.randint(0, 1000, (3, 6, 7), generator=torch.Generator().manual_seed(0), dtype=I64)
    out = arith.box_diffuse_fixed(g, 455, 1)
    # exact: each cell receives Σ_box g * 455 / 4096, Σ over cells = 9 * 455 / 4096 Σ g = 4095/4096 Σ g;
    # truncation removes less than 1 per cell
    for s in range(3):
        exact = 4095 / 4096 * int(g[s].sum())
        mass = int(out[s].sum())
        assert exact - 42 < mass <= exact


def test_laplacian_diffuse_fixed_by_hand():
    # D = 0.1, k = 1: centre c = round(4096 * 0.6) = 2458, neighbour n = round(409.6) = 410
    g = torch.zeros(4, 4, dtype=I64)
    g[1, 1] = 1000
    one = arith.laplacian_diffuse_fixed(g, 2458, 410, 1)
    # centre 1000 * 2458 / 4096 = 600.1 -> 600; its four neighbours 410000 / 4096 = 100.1 -> 100
    assert one.tolist() == [[0, 100, 0, 0], [100, 600, 100, 0], [0, 100, 0, 0], [0, 0, 0, 0]]
    # negative: truncation toward zero, -600.1 -> -600 and -100.1 -> -100 (floor: -601, -101)
    assert torch.equal(arith.laplacian_diffuse_fixed(-g, 2458, 410, 1), -one)
    two = arith.laplacian_diffuse_fixed(g, 2458, 410, 2)
    # centre: (2458 * 600 + 410 * 400) / 4096 = 400.1 -> 400; the 4 neighbours: (2458*100 + 410*600)/4096
    # = 120.07 -> 120; diagonals: 410 * 200 / 4096 = 20.02 -> 20; (3, 1) and (1, 3) also have two
    # neighbours at 100 on the 4x4 torus -> 20
    assert two.tolist() == [[20, 120, 20, 0], [120, 400, 120, 20], [20, 120, 20, 0], [0, 20, 0, 0]]


def test_shared_random_table_equals_random_bits():
    keys = arith.step_key(torch.tensor([[5, 9]]), torch.arange(4)[:, None])      # (T, S)
    table = arith.shared_random_table(keys)
    for t in range(4):
        for name, sid in arith.STREAMS.items():
            one = arith.random_bits(keys[t], name, (2, 3, 4), 12, shared=True)
            assert torch.equal(one[:, 0, 0], table[t, :, sid] >> 20)
