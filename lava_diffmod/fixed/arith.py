r"""Loihi-2-style integer arithmetic (LOIHI.md §3–§4): the one place it is written down.

Every function works on int64 tensors, elementwise and batched, and gives the same bits on
CPU and CUDA. The batched emulator (:mod:`.emulator`) and the Lava ``fixed_pt`` process models
call these functions, so the two agree by construction.

Notation: tz(x·k/2^n) = sign(x)·⌊|x|·k/2^n⌋ (truncation toward zero); ``>>`` on signed
integers is an arithmetic (floor) shift, as in numpy.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .. import rng


# ---------------------------------------------------------------------------------------------
# basic operations

def tz_scale(x: torch.Tensor, k: torch.Tensor | int, shift: int) -> torch.Tensor:
    """tz(x·k / 2^shift): multiply, then truncate toward zero."""
    return torch.div(x * k, 2 ** shift, rounding_mode="trunc")


def decay(x: torch.Tensor, d: torch.Tensor | int, bits: int = 12) -> torch.Tensor:
    """x·(2^bits − d)/2^bits truncated toward zero (a Loihi compartment decay; d = 0: no leak)."""
    return tz_scale(x, 2 ** bits - d, bits)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap into (−2^(bits−1), 2^(bits−1)]: Lava's LIF wraps u when
    u > 2^23 (u − 2^24) or u ≤ −2^23 (u + 2^24), so 2^23 itself stays and −2^23 becomes 2^23."""
    full = 2 ** bits
    half = full // 2
    return x - full * torch.div(x + (half - 1), full, rounding_mode="floor")


def saturate(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Clip into [lo, hi]."""
    return x.clamp(lo, hi)


def signed_limit(bits: int) -> int:
    """Largest magnitude of a saturating signed state of ``bits`` bits: 2^(bits−1) − 1."""
    return 2 ** (bits - 1) - 1


def shift(x: torch.Tensor, e: int) -> torch.Tensor:
    """x·2^e for e ≥ 0, x >> −e (floor) for e < 0."""
    if e == 0:
        return x
    return x << e if e > 0 else x >> -e


def stochastic_round(x: torch.Tensor, frac_bits: int, rand: torch.Tensor) -> torch.Tensor:
    """⌊(x + r) / 2^frac_bits⌋ with r uniform in [0, 2^frac_bits): E = x / 2^frac_bits, unbiased."""
    return (x + rand) >> frac_bits


# the random streams of one step (stochastic rounding), by number
STREAMS = {"x1_decay": 0, "x1_impulse": 1, "z_decay": 2, "z_impulse": 3, "tag": 4,
           "w_in": 5, "w_rec": 6, "w_out": 7, "tag2": 8}


def step_key(key: int | torch.Tensor, step: int) -> int | torch.Tensor:
    """The random key of one time step (per network if ``key`` is a tensor of network keys)."""
    return rng.derive(key, step)


def random_bits(key: int | torch.Tensor, stream: str, shape: tuple[int, ...], bits: int,
                shared: bool, device=None, index: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform integers in [0, 2^bits) for stochastic rounding: H(step key, stream, index).

    ``key`` is :func:`step_key`; a tensor of per-network keys is a prefix of ``shape``.
    ``shared``: one number per step and network, broadcast to all elements, as Lava's simulator
    draws it; otherwise an independent number per element, at its flat index in ``shape`` or at
    the given ``index`` (of shape ``shape``; a sparse list of a dense block's elements).
    """
    k = rng.hash_counter(key, STREAMS[stream])
    lead = k.dim() if isinstance(k, torch.Tensor) else 0
    if index is not None and not shared:
        k = k.reshape(k.shape + (1,) * (index.dim() - lead)) if lead else k
        return rng.hash_counter(k, index) >> (32 - bits)
    if shared:
        h = rng.hashes(k, tuple(shape[:lead]), device=device)
        h = h.reshape(h.shape + (1,) * (len(shape) - lead))
        return (h >> (32 - bits)).expand(shape)
    return rng.hashes(k, shape, device=device) >> (32 - bits)


def shared_random_table(step_keys: torch.Tensor) -> torch.Tensor:
    """Every stream's shared number for many steps at once: (T, S) step keys → (T, S, streams)
    32-bit hashes; ``shared_stream(table, name, bits)[t, s]`` equals
    ``random_bits(step_keys[t, s], name, ..., bits, shared=True)``."""
    ids = torch.arange(len(STREAMS), device=step_keys.device)
    return rng.hash_counter(rng.hash_counter(step_keys[..., None], ids), 0)


def shared_stream(table: torch.Tensor, stream: str, bits: int) -> torch.Tensor:
    """One stream's shared numbers in [0, 2^bits) from a :func:`shared_random_table` (..., streams)."""
    return table[..., STREAMS[stream]] >> (32 - bits)


# ---------------------------------------------------------------------------------------------
# synaptic input (Dense)

def dense_weights(w: torch.Tensor, weight_bits: int, mixed_lsb_loss: bool) -> torch.Tensor:
    """Lava Dense preprocessing (LOIHI.md §3.2): clip to the sign mode's range, then in MIXED
    mode drop the LSB (W ← (W >> 1)·2, a floor). EXC/INH are decided per network."""
    lim = 2 ** weight_bits - 1
    dims = tuple(range(1, w.dim()))
    exc = (w >= 0).all(dim=dims, keepdim=True)
    inh = (w <= 0).all(dim=dims, keepdim=True)
    mixed = ~(exc | inh)
    lo = torch.where(exc, 0, torch.where(inh, -lim, -lim - 1))
    hi = torch.where(inh, 0, lim)
    w = torch.maximum(torch.minimum(w, hi), lo)
    if mixed_lsb_loss:
        w = torch.where(mixed, (w >> 1) << 1, w)
    return w


def dense_input(pre: torch.Tensor, w: torch.Tensor, weight_exp: torch.Tensor | int) -> torch.Tensor:
    """a = ⌊(Σ_i pre_i W[i, j]) · 2^weight_exp⌋ (a floor shift when negative); pre (S, B, P) 0/1 or
    graded integers, W (S, P, N) integers, ``weight_exp`` an int or per network (S,). The sum
    runs in float64 (CUDA has no integer matrix product) and is exact below 2^53; scaling by a
    power of two is exact too, so the floor is the arithmetic shift."""
    acc = torch.bmm(pre.double(), w.double())
    if isinstance(weight_exp, torch.Tensor):
        scale = torch.exp2(weight_exp.to(device=acc.device, dtype=acc.dtype))
        acc = acc * scale.reshape(scale.shape + (1,) * (acc.dim() - scale.dim()))
    elif weight_exp:
        acc = acc * 2.0 ** weight_exp
    return acc.floor().long()


# ---------------------------------------------------------------------------------------------
# neurons

class FixedNeuron(NamedTuple):
    """Integer constants of an ALIF population (broadcast against (S, B, N))."""
    du: int                      # current decay (4095: u holds only this step's input)
    dv: int                      # voltage decay
    drho: int                    # threshold-offset decay
    vth: torch.Tensor            # threshold mantissa, (S, 1, 1) or int
    beta: torch.Tensor           # threshold increment per spike (v units), (S, 1, N) or (N,)
    bias: torch.Tensor | int     # bias_mant · 2^bias_exp (not multiplied by 2^act_shift)
    n_block: int                 # steps blocked after a spike (0: no refractoriness)
    reset: str                   # "subtract" (ϑ at the next step, MODEL.md) | "zero" (Lava LIF)
    spike_ge: bool = False
    decay_bits: int = 12
    du_offset: int = 1
    act_shift: int = 6
    vth_shift: int = 6
    u_bits: int = 24
    v_bits: int = 24
    b_bits: int = 24
    u_overflow: str = "wrap"
    v_overflow: str = "saturate"


class FixedState(NamedTuple):
    u: torch.Tensor
    v: torch.Tensor
    b: torch.Tensor   # adaptive threshold offset β·a in v units
    z: torch.Tensor   # spikes of the last step (0/1)
    r: torch.Tensor   # refractory counter


def fixed_init(shape: tuple[int, ...], device=None) -> FixedState:
    zero = torch.zeros(shape, dtype=torch.int64, device=device)
    return FixedState(zero, zero, zero, zero, zero)


def overflow(x: torch.Tensor, bits: int, mode: str) -> torch.Tensor:
    """Wrap or saturate a signed state of ``bits`` bits, as the profile says."""
    if mode == "wrap":
        return wrap(x, bits)
    lim = signed_limit(bits)
    return saturate(x, -lim, lim)


class Unclipped(NamedTuple):
    """The states of one neuron step before their wrap or saturation (to count those events)."""
    u: torch.Tensor
    v: torch.Tensor
    b: torch.Tensor
    v_clipped: torch.Tensor   # v after saturation, before a reset to zero


def alif_fixed_update(s: FixedState, a_in: torch.Tensor, q: FixedNeuron) -> tuple[FixedState, Unclipped]:
    """One integer ALIF step (LOIHI.md §3.1, §3.4), in the order of MODEL.md §1:

    u ← tz(u (2^12 − du − offset)/2^12) + a_in·2^act_shift          (wrap or saturate)
    v ← tz(v (2^12 − dv)/2^12) + u + bias − ϑ_v z(t−1)                (reset "subtract")
    b ← tz(b (2^12 − dρ)/2^12) + β z(t−1)
    r ← n_block if z(t−1) else max(0, r − 1)
    z ← [v − (ϑ_v + b) > 0] [r = 0],   ϑ_v = vth·2^vth_shift
    reset "zero" (Lava's LIF): v ← 0 where z, instead of the subtraction.

    Returns the new state and the unclipped u, v, b."""
    z_prev = s.z
    u_raw = decay(s.u, q.du + q.du_offset, q.decay_bits) + (a_in << q.act_shift)
    u = overflow(u_raw, q.u_bits, q.u_overflow)
    thr = q.vth << q.vth_shift
    v_raw = decay(s.v, q.dv, q.decay_bits) + u + q.bias
    if q.reset == "subtract":
        v_raw = v_raw - thr * z_prev
    v = overflow(v_raw, q.v_bits, q.v_overflow)
    b_raw = decay(s.b, q.drho, q.decay_bits) + q.beta * z_prev
    b = overflow(b_raw, q.b_bits, "saturate")
    r = torch.where(z_prev > 0, q.n_block, (s.r - 1).clamp(min=0))
    dist = v - (thr + b)
    z = (((dist >= 0) if q.spike_ge else (dist > 0)) & (r == 0)).long()
    v_clipped = v
    if q.reset == "zero":
        v = torch.where(z > 0, 0, v)
    return FixedState(u, v, b, z, r), Unclipped(u_raw, v_raw, b_raw, v_clipped)


def alif_fixed_step(s: FixedState, a_in: torch.Tensor, q: FixedNeuron) -> FixedState:
    """:func:`alif_fixed_update` without the unclipped states."""
    return alif_fixed_update(s, a_in, q)[0]


def pseudo_derivative_fixed(s: FixedState, q: FixedNeuron, y_max: int) -> torch.Tensor:
    """y1 = [r = 0] ⌊y_max · max(0, ϑ_v − |v − ϑ_v − b|) / ϑ_v⌋: ψ scaled so γ/ϑ ↦ y_max."""
    thr = q.vth << q.vth_shift
    dist = s.v - (thr + s.b)
    y = torch.div((thr - dist.abs()).clamp(min=0) * y_max, thr, rounding_mode="floor")
    return torch.where(s.r == 0, y, 0)


# ---------------------------------------------------------------------------------------------
# traces and the learning engine (LOIHI.md §4.4)

def trace_update(x: torch.Tensor, spikes: torch.Tensor, decay_mant: int, impulse: int, frac_bits: int,
                 rand_decay: torch.Tensor, rand_impulse: torch.Tensor, doubling: bool = False) -> torch.Tensor:
    """SR(x · D / 2^12) + spikes · SR(impulse / 2^frac_bits), before saturation.

    ``decay_mant`` D = round(2^12 e^(−1/τ)); ``impulse`` in units of 2^−frac_bits. With the
    simulator's ``doubling`` quirk the impulse fraction f adds 1 with probability min(1, 2f)
    (its random number has one bit less). rand_decay ∈ [0, 2^12), rand_impulse ∈ [0, 2^frac_bits).
    """
    decayed = (x * decay_mant + rand_decay) >> 12
    whole, frac = impulse >> frac_bits, impulse & (2 ** frac_bits - 1)
    r = rand_impulse >> 1 if doubling else rand_impulse
    return decayed + spikes * ((r < frac) + whole)


def trace_step(x: torch.Tensor, spikes: torch.Tensor, decay_mant: int, impulse: int, trace_bits: int,
               frac_bits: int, rand_decay: torch.Tensor, rand_impulse: torch.Tensor,
               doubling: bool = False) -> torch.Tensor:
    """A pre/post trace step, saturated to [0, 2^trace_bits − 1] (see :func:`trace_update`)."""
    return saturate(trace_update(x, spikes, decay_mant, impulse, frac_bits, rand_decay, rand_impulse, doubling),
                    0, 2 ** trace_bits - 1)


def product_shift(widths: list[int], offset: int, acc_bits: int = 16) -> int:
    """Down-shift of a product of factors of these bit widths: max(0, Σb + offset − (acc_bits − 1)).
    With Loihi 2's 4-bit mantissa, offset 4: x·y → 3, x·y·y → 10, t·y → 5 (LOIHI.md §4.4)."""
    return max(0, sum(widths) + offset - (acc_bits - 1))


def literal_product(factors: torch.Tensor, down: int, mant: int, exp: int, frac_bits: int,
                    acc_bits: int) -> torch.Tensor:
    """One product of a rule, in units of 2^−frac_bits of the synaptic variable:
    p = clip(((Π f) >> down) · m · 2^(e + frac_bits), ±2^(acc_bits−1))."""
    p = factors >> down if down else factors
    p = shift(p * mant if mant != 1 else p, exp + frac_bits)
    lim = 2 ** (acc_bits - 1)
    return saturate(p, -lim, lim)


def write_back(value: torch.Tensor, delta: torch.Tensor, frac_bits: int, rand: torch.Tensor,
               lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """value ← sat(SR((value·2^f + Δ) / 2^f), lo, hi): Δ in units of 2^−f, stochastic rounding.
    Returns the new value and the unclipped one (they differ where it saturated)."""
    raw = stochastic_round((value << frac_bits) + delta, frac_bits, rand)
    return saturate(raw, lo, hi), raw


def saturations(raw: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Saturation events per network (leading dimension): #(raw ≠ new)."""
    return (raw != new).flatten(1).sum(1)


class TagRule(NamedTuple):
    """Constants of the tag rule dt = inc · u0 · x1 · y1 − inc_a · u0 · d · y1 − leak · u0 · t
    (literals m·2^e; the d term only with ALIF's ε^a held in tag_2, else inc_a = 0)."""
    inc_m: int
    inc_e: int
    leak_m: int
    leak_e: int
    down: int          # product down-shift of x1·y1
    frac: int          # fractional bits of the tag under learning
    acc_bits: int
    lo: int
    hi: int
    inc_a_m: int = 0   # literal of d·y1 (subtracted)
    inc_a_e: int = 0
    down_a: int = 0    # product down-shift of d·y1


def tag_increment(prod: torch.Tensor, rule: TagRule, prod_a: torch.Tensor | None = None) -> torch.Tensor:
    """inc·(prod >> down) − inc_a·(prod_a >> down_a) in units of 2^−frac: the e-prop eligibility
    ψ (ε^v − β ε^a) with prod = x1·y1 and prod_a = d·y1 (None: no ε^a)."""
    p = literal_product(prod, rule.down, rule.inc_m, rule.inc_e, rule.frac, rule.acc_bits)
    if prod_a is not None:
        p = p + literal_product(prod_a, rule.down_a, -rule.inc_a_m, rule.inc_a_e, rule.frac, rule.acc_bits)
    return p


def tag_step(tag: torch.Tensor, prod: torch.Tensor, rand: torch.Tensor, rule: TagRule,
             prod_a: torch.Tensor | None = None):
    """t ← sat(SR((t·2^f + p_inc + p_leak) / 2^f)) with p_inc of :func:`tag_increment`, p_leak =
    −leak·t (each a clipped literal product); returns the new tag and the saturations per network."""
    p_leak = literal_product(tag, 0, -rule.leak_m, rule.leak_e, rule.frac, rule.acc_bits)
    new, raw = write_back(tag, tag_increment(prod, rule, prod_a) + p_leak, rule.frac, rand, rule.lo, rule.hi)
    return new, saturations(raw, new)


class EpsARule(NamedTuple):
    """Constants of the tag_2 rule that holds ALIF's ε^a as d = s_d ε^a (unsigned), evaluated
    once per learning epoch: dd = inc · u0 · x1 · y1 − decay · u0 · d − adapt · u0 · d · y1."""
    inc_m: int
    inc_e: int
    decay_m: int
    decay_e: int
    adapt_m: int
    adapt_e: int
    down_xy: int       # product down-shift of x1·y1
    down_dy: int       # of d·y1
    frac: int
    acc_bits: int
    hi: int            # 2^tag2_bits − 1


def eps_a_fixed_step(d: torch.Tensor, prod_xy: torch.Tensor, prod_dy: torch.Tensor, rand: torch.Tensor,
                     rule: EpsARule):
    """ε^a(t+1) = s_a ψ ε^v + (ρ − s_a β ψ) ε^a (MODEL.md §3.2), t_epoch steps as one Euler step,
    in d units: d ← sat(SR((d·2^f + inc·(x1 y1 >> ds) − decay·d − adapt·(d y1 >> ds')) / 2^f), 0, hi).
    ``prod_xy`` = x1·y1, ``prod_dy`` = d·y1 per synapse; returns d and the saturations per network."""
    lit = (rule.frac, rule.acc_bits)
    p = (literal_product(prod_xy, rule.down_xy, rule.inc_m, rule.inc_e, *lit)
         + literal_product(d, 0, -rule.decay_m, rule.decay_e, *lit)
         + literal_product(prod_dy, rule.down_dy, -rule.adapt_m, rule.adapt_e, *lit))
    new, raw = write_back(d, p, rule.frac, rand, 0, rule.hi)
    return new, saturations(raw, new)


def tag_step_outer(tag: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, rand: torch.Tensor, rule: TagRule):
    """:func:`tag_step` with prod = x1_i · y1_j for every synapse i → j (tag (..., P, N))."""
    return tag_step(tag, x1[..., :, None] * y1[..., None, :], rand, rule)


def tag_limits(tag_bits: int) -> tuple[int, int]:
    """Lava clips the tag to [−2^(b−1) − 1, 2^(b−1) − 1] (−257 … 255 for 9 bits, sic)."""
    m = 2 ** (tag_bits - 1)
    return -m - 1, m - 1


def sign_split(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive part, negative part), each clipped to [0, 2^bits − 1] (third factors y2, y3)."""
    lim = 2 ** bits - 1
    return x.clamp(0, lim), (-x).clamp(0, lim)


# ---------------------------------------------------------------------------------------------
# the diffusing neuromodulator field

def box_sum(g: torch.Tensor, radius: int) -> torch.Tensor:
    """Σ over the periodic (2ρ+1)² neighbourhood, on (..., h, w)."""
    rows = g
    for d in range(1, radius + 1):
        rows = rows + torch.roll(g, d, -1) + torch.roll(g, -d, -1)
    box = rows
    for d in range(1, radius + 1):
        box = box + torch.roll(rows, d, -2) + torch.roll(rows, -d, -2)
    return box


def box_diffuse_fixed(g: torch.Tensor, k_mant: int, radius: int, bits: int = 12) -> torch.Tensor:
    """tz((Σ_{(2ρ+1)²} G) · k_mant / 2^bits), periodic, on (..., h, w); k_mant ≈ 2^bits k/(2ρ+1)²."""
    return tz_scale(box_sum(g, radius), k_mant, bits)


def laplacian_diffuse_fixed(g: torch.Tensor, centre: int, neighbour: int, n_sub: int,
                            bits: int = 12) -> torch.Tensor:
    """n_sub times G ← tz((c·G + n·Σ_4 neighbours) / 2^bits), with c ≈ 2^bits k(1 − 4D),
    n ≈ 2^bits k D (per sub-step), periodic 5-point stencil on (..., h, w)."""
    for _ in range(n_sub):
        nb = torch.roll(g, 1, -2) + torch.roll(g, -1, -2) + torch.roll(g, 1, -1) + torch.roll(g, -1, -1)
        g = torch.div(g * centre + nb * neighbour, 2 ** bits, rounding_mode="trunc")
    return g
