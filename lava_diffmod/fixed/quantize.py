r"""Quantiser: a float network → the integer parameters of a hardware profile (LOIHI.md §3.3, §5.2).

Units (per network s; every integer quantity q_int ≈ scale · q_float):

* voltage  v_int = s_v v,  s_v = 2^vth_shift · vth / ϑ (the threshold mantissa vth is chosen as
  large as the weight exponents allow); decays d = round(2^12 (1 − α)) etc.
* weights  W_int = round(s_w W),  s_w = s_v s_in / 2^(act_shift + weight_exp), one exponent per
  matrix, chosen so that the initial max |W| fills ``weight_headroom`` of the 8-bit range
  (``readout_headroom`` for W_out, whose entries grow most in training).
* readout  y_int = s_o y; feedback B_int = s_B B; error err_int = round(s_e err), s_e = 127/err_range.
* learning signal  L_int = s_L L, release = Σ_m B_int err_int >> f_shift (so s_L = s_B s_e / 2^f_shift).
* pre trace  x1 = s_x ε^v, s_x = 127 / trace_rate_max; impulse s_x s_in; post trace y1 = s_y ψ,
  s_y = 127 ϑ/γ; readout trace z̄_int = s_z z̄.
* tag  t = s_t ē with t ← t + inc·(x1 y1 >> ds) − leak·t; s_t = inc s_x s_y / (leak · 2^ds).
* ALIF ε^a in tag_2 (``eps_a_tag2``): d = s_d ε^a, s_d ≤ (2^tag2_bits − 1) / eps_a_max, chosen so
  that the increment of d is an on-chip literal; the tag then subtracts inc_a·(d y1 >> ds').
* learning rates: Δw_int = λ · Σ (products), λ = η g s_w 2^ds' t_epoch / (s_t s_L), a scaling
  literal m·2^e (4-bit mantissa).

:func:`report` lists each parameter's float value, its quantised value and the error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import DiffusionConfig, FixedConfig
from ..float.readout import Objective
from ..float.rsnn import Network
from .. import rng
from ..hw import Profile, load_profile
from . import arith
from .switches import Switches


def to_literal(x: float, mant_bits: int = 4, exp_range: tuple[int, int] | None = None) -> tuple[int, int]:
    """The scaling literal m·2^e nearest to x ≥ 0, with 1 ≤ m ≤ 2^(mant_bits−1) − 1; ``exp_range``
    limits e (on-chip rules), None leaves it free (host-side rates). x = 0 gives (0, 0)."""
    if x <= 0:
        return 0, 0
    m_max = 2 ** (mant_bits - 1) - 1
    best = None
    for m in range(1, m_max + 1):
        # the two exponents around x/m (the nearest in relative error may be either one, also
        # when the range clips them)
        low = math.floor(math.log2(x / m))
        for e in (low, low + 1):
            if exp_range is not None:
                e = min(max(e, exp_range[0]), exp_range[1])
            err = abs(m * 2.0 ** e - x) / x
            if best is None or err < best[0]:
                best = (err, m, e)
    return best[1], best[2]


def to_pow2(x: float, exp_range: tuple[int, int] | None = None) -> tuple[int, int]:
    """1·2^e nearest to x (in log) as a literal."""
    e = round(math.log2(x))
    if exp_range is not None:
        e = min(max(e, exp_range[0]), exp_range[1])
    return 1, e


def literal_floor(x: float, mant_bits: int, exp_range: tuple[int, int]) -> tuple[int, int] | None:
    """The largest scaling literal m·2^e ≤ x within the ranges; None if even 1·2^e_min > x."""
    best = None
    for m in range(1, 2 ** (mant_bits - 1)):
        for e in range(exp_range[0], exp_range[1] + 1):
            v = m * 2.0 ** e
            if v <= x and (best is None or v > literal_value(best)):
                best = (m, e)
    return best


def literal_value(lit: tuple[int, int]) -> float:
    return lit[0] * 2.0 ** lit[1]


@dataclass(frozen=True)
class FixedParams:
    """Integer parameters of S networks for one profile and one set of switches."""
    profile: Profile                   # the widths in use (loihi2's for the ideal profile, unused there)
    profile_name: str
    switches: Switches
    neuron: arith.FixedNeuron          # vth (S,1,1), beta (S,1,N) in v units
    s_v: torch.Tensor                  # (S,) v units per float voltage
    w_in: torch.Tensor                 # (S, n_in, N) int
    w_rec: torch.Tensor
    w_out: torch.Tensor
    feedback: torch.Tensor             # (S, N, n_out) int
    feedback_float: torch.Tensor       # (S, N, n_out) the float feedback it represents (random_feedback: drawn)
    wexp: dict                         # name → (S,) int weight exponent
    s_w: dict                          # name → (S,) integer units per float weight
    s_fb: torch.Tensor                 # (S,)
    dkappa: int                        # readout decay
    s_o: torch.Tensor                  # (S,) readout units per float
    s_e: float                         # error units per float
    f_shift: torch.Tensor              # (S,) release down-shift to the learning-signal units
    s_L: torch.Tensor                  # (S,) learning-signal units per float
    x_decay: int                       # pre trace decay mantissa (12 bit)
    x_impulse: int                     # in units of 2^-trace_impulse_frac_bits
    s_x: float
    z_decay: int                       # readout trace (κ)
    z_impulse: int
    s_z: float
    s_y: float                         # ψ → y1
    y_max: int                         # 2^trace_bits − 1
    tag_inc: tuple[int, int]           # literal of the x1·y1 product into the tag
    tag_leak: tuple[int, int]          # literal of the tag leak (or exact, see leak)
    leak: float                        # the leak fraction the float path uses (1 − κ', exact or grid)
    s_t: float                         # tag units per float ē
    ds_xy: int                         # product down-shifts
    ds_ty: int
    ds_zz: int
    eps_a: arith.EpsARule | None       # ALIF ε^a in tag_2 (switches.eps_a_tag2), else None
    s_d: float                         # d units per float ε^a
    tag_inc_a: tuple[int, int]         # literal of d·y1 out of the tag (eps_a_tag2)
    ds_dy: int
    lr: float                          # SGD learning rate (float units)
    lr_exact: dict                     # name → (S,) Δw per unit of accumulated products (float weights)
    lr_lit: dict                       # name → per-seed literals (m, e) of lr_exact · s_w (integer weights)
    lr_lit_value: dict                 # name → (S,) float64 values m·2^e of lr_lit, on the device
    k_mant: int                        # field stencil (box) or centre multiplier (Laplacian)
    k_neighbour: int
    s_G: torch.Tensor                  # (S,) field units per float
    field_bits: int
    field_frac_bits: int
    frac_bits: int                     # fractional bits of synaptic variables under learning
    acc_bits: int                      # learning product width (profile)
    host_acc_bits: int                 # the batch accumulator (fixed.acc_bits)

    @property
    def weight_limit(self) -> int:
        return 2 ** self.profile["weight_bits"] - 1


def _max_abs(w: torch.Tensor) -> torch.Tensor:
    return w.abs().flatten(1).max(1).values.double().clamp(min=1e-30)


def random_feedback(net: Network, seeds: list[int]) -> torch.Tensor:
    """Random feedback with the sparsity pattern and RMS of ``net``'s feedback (switch
    ``random_feedback``): B' = ξ ⊙ [B ≠ 0] · rms(B)/rms(ξ ⊙ [B ≠ 0]), ξ ~ N(0, 1) per seed."""
    out = []
    for i, seed in enumerate(seeds):
        b = net.feedback[i].double().cpu()
        mask = (b != 0).double()
        xi = rng.normal(rng.name_key(seed, "fixed_random_feedback"), tuple(b.shape)) * mask
        scale = b.pow(2).sum().sqrt() / xi.pow(2).sum().sqrt().clamp(min=1e-30)
        out.append(xi * scale)
    return torch.stack(out).to(net.device)


def quantize(net: Network, profile: Profile, switches: Switches, options: FixedConfig,
             obj: Objective, batch_size: int, diffusion: DiffusionConfig | None,
             seeds: list[int]) -> FixedParams:
    """Integer parameters for the S networks of ``net`` (see the module docstring for units).

    The ``ideal`` profile (no quantisation) runs with every switch off, so no integer parameter
    is ever used; they are computed with the loihi2 widths only to fill the record."""
    if profile.ideal and switches != Switches.off():
        raise ValueError(f"the ideal profile means no quantisation; switches on: {', '.join(switches.names())}")
    pr = load_profile("loihi2") if profile.ideal else profile
    p = net.neuron
    dev = net.device
    D = pr["decay_bits"]
    thr, s_in, s_a = p.thr, p.input_scale, p.adapt_scale
    w_lim = 2 ** pr["weight_bits"] - 1
    target = options.weight_headroom * w_lim
    e_lo, e_hi = pr["weight_exp_range"]
    act, vshift = pr["act_shift"], pr["vth_shift"]
    # threshold mantissa and weight exponents of the two matrices that drive v
    ratio = {name: target * thr / (s_in * _max_abs(w)) for name, w in
             (("in", net.params.w_in), ("rec", net.params.w_rec))}
    vth_max = 2 ** pr["vth_bits"] - 1
    vth = torch.minimum(ratio["in"], ratio["rec"]) * 2.0 ** e_hi
    vth = vth.floor().clamp(1, vth_max)
    s_v = 2.0 ** vshift * vth / thr
    wexp, s_w, ints = {}, {}, {}
    for name, w in (("in", net.params.w_in), ("rec", net.params.w_rec)):
        e = torch.ceil(torch.log2(vth / ratio[name]) - 1e-9).clamp(e_lo, e_hi)
        wexp[name] = e.long()
        s_w[name] = s_v * s_in / 2.0 ** (act + e)
        ints[name] = (w.double() * s_w[name][:, None, None]).round().long()
    # readout: its own scale, exponent at the top of the range that keeps y in 24 bits
    mx_out = _max_abs(net.params.w_out)
    wexp["out"] = torch.zeros_like(wexp["in"]).clamp(e_lo, e_hi)
    s_w["out"] = options.readout_headroom * w_lim / mx_out
    ints["out"] = (net.params.w_out.double() * s_w["out"][:, None, None]).round().long()
    s_o = s_w["out"] * 2.0 ** (act + wexp["out"]) / (1 - net.kappa)
    fb = (random_feedback(net, seeds) if switches.random_feedback else net.feedback).double()
    s_fb = target / _max_abs(fb)
    fb_int = (fb * s_fb[:, None, None]).round().long()
    s_e = (2 ** pr["trace_bits"] - 1) / options.err_range
    y_max = 2 ** pr["trace_bits"] - 1
    l_max = fb.abs().sum(-1).flatten(1).max(1).values.clamp(min=1e-30) * options.err_range
    rel_max = s_fb * s_e * l_max
    f_shift = torch.ceil(torch.log2(rel_max / y_max) - 1e-9).clamp(min=0).long()
    s_L = s_fb * s_e / 2.0 ** f_shift
    # neuron constants; du = 2^D - 1: with Lava's du_offset 1 the current keeps nothing of the last
    # step (4096 - (du + 1) = 0), as the float neuron has no synaptic current (LOIHI.md §3.3)
    beta_fx = (s_v[:, None] * p.beta.double()[None, :] * s_a).round().long()
    neuron = arith.FixedNeuron(
        du=2 ** D - 1, dv=round(2 ** D * (1 - p.alpha)), drho=round(2 ** D * (1 - p.rho)),
        vth=vth.long().to(dev)[:, None, None], beta=beta_fx.to(dev)[:, None, :], bias=0, n_block=p.n_block,
        reset="subtract", spike_ge=p.spike_ge, decay_bits=D, du_offset=pr["du_offset"], act_shift=act,
        vth_shift=vshift, u_bits=pr["state_bits_u"], v_bits=pr["state_bits_v"], b_bits=pr["state_bits_adapt"],
        u_overflow=pr["u_overflow"], v_overflow=pr["v_overflow"])
    # traces
    frac = pr["trace_impulse_frac_bits"]
    s_x = y_max / options.trace_rate_max
    s_z = y_max / options.trace_rate_max
    s_y = y_max * thr / p.gamma
    # tag
    t_ep = switches.t_epoch
    kappa_e = net.kappa ** t_ep
    leak_exact = 1 - kappa_e
    exp_range = pr["s_exp_range"]
    mant = pr["s_mant_bits"]
    if switches.tag_leak_grid == "pow2":
        tag_leak = to_pow2(leak_exact, exp_range)
    else:
        tag_leak = to_literal(leak_exact, mant, exp_range)
    leak = leak_exact if switches.tag_leak_grid == "exact" else literal_value(tag_leak)
    offset, lacc = pr["learn_overflow_offset"], pr["learn_acc_bits"]
    tb, tgb = pr["trace_bits"], pr["tag_bits"]
    ds_xy = arith.product_shift([tb, tb], offset, lacc) if switches.product_downshift else 0
    ds_ty = arith.product_shift([tgb, tb], offset, lacc) if switches.product_downshift else 0
    ds_zz = arith.product_shift([tb, tb], offset, lacc) if switches.product_downshift else 0
    tag_max = 2 ** (tgb - 1) - 1
    inc_target = tag_max * leak / (options.tag_fill * (y_max * y_max >> ds_xy))
    tag_inc = to_literal(inc_target, mant, exp_range)
    s_t = literal_value(tag_inc) * s_x * s_y / (leak * 2.0 ** ds_xy)
    eps_a, s_d, tag_inc_a, ds_dy = None, 0.0, (0, 0), 0
    if switches.eps_a_tag2 and net.has_alif:
        eps_a, s_d, tag_inc_a, ds_dy = eps_a_rule(p, pr, options.eps_a_max, s_x, s_y, ds_xy, tag_inc,
                                                   switches)
    # learning rates: Δw = λ · (accumulated products), the products in float (−L ē, −z̄ err) or
    # in integer units (trace_bits: −t·L >> ds, −z̄·err >> ds); λ includes t_epoch and the reductions
    b_scale = obj.batch_scale(batch_size)
    unit = {"in": 2.0 ** ds_ty / (s_t * s_L), "rec": 2.0 ** ds_ty / (s_t * s_L),
            "out": 2.0 ** ds_zz / (s_z * s_e) * torch.ones_like(s_L)}
    lr_exact, lr_lit = {}, {}
    for name in ("in", "rec", "out"):
        time_scale = obj.time_scale() if name == "out" else obj.grad_time_scale()
        lam = options.lr * b_scale * time_scale * t_ep * torch.ones_like(s_L)
        if switches.trace_bits:
            lam = lam * unit[name]
        lr_exact[name] = lam.to(dev)
        lr_lit[name] = [to_literal(float(v), mant) for v in lam * s_w[name]]
    # modulator field
    dcfg = diffusion or DiffusionConfig()
    if dcfg.kernel == "box":
        k_mant = round(2 ** D * dcfg.k / (2 * dcfg.radius + 1) ** 2)
        k_nb = 0
    else:
        k_sub, d_sub = dcfg.k ** (1 / dcfg.n_sub), dcfg.D / dcfg.n_sub
        k_mant, k_nb = round(2 ** D * k_sub * (1 - 4 * d_sub)), round(2 ** D * k_sub * d_sub)
    as_dev = {k: v.to(dev) for k, v in ints.items()}
    return FixedParams(
        profile=pr, profile_name=profile.name, switches=switches, neuron=neuron, s_v=s_v.to(dev), w_in=as_dev["in"],
        w_rec=as_dev["rec"], w_out=as_dev["out"], feedback=fb_int.to(dev), feedback_float=fb.to(dev),
        wexp={k: v.to(dev) for k, v in wexp.items()}, s_w={k: v.to(dev) for k, v in s_w.items()},
        s_fb=s_fb.to(dev), dkappa=round(2 ** D * (1 - net.kappa)), s_o=s_o.to(dev), s_e=s_e,
        f_shift=f_shift.to(dev), s_L=s_L.to(dev),
        x_decay=round(2 ** 12 * p.alpha), x_impulse=round(2 ** frac * s_x * s_in), s_x=s_x,
        z_decay=round(2 ** 12 * net.kappa), z_impulse=round(2 ** frac * s_z * (1 - net.kappa)), s_z=s_z,
        s_y=s_y, y_max=y_max, tag_inc=tag_inc, tag_leak=tag_leak, leak=leak, s_t=s_t,
        ds_xy=ds_xy, ds_ty=ds_ty, ds_zz=ds_zz, eps_a=eps_a, s_d=s_d, tag_inc_a=tag_inc_a, ds_dy=ds_dy,
        lr=options.lr, lr_exact=lr_exact, lr_lit=lr_lit,
        lr_lit_value={k: torch.tensor([literal_value(x) for x in v], dtype=torch.float64, device=dev)
                      for k, v in lr_lit.items()},
        k_mant=k_mant, k_neighbour=k_nb,
        s_G=(s_L * 2.0 ** options.field_frac_bits).to(dev), field_bits=options.field_bits,
        field_frac_bits=options.field_frac_bits, frac_bits=pr["learn_frac_bits"], acc_bits=lacc,
        host_acc_bits=options.acc_bits)


def eps_a_rule(p, pr: Profile, eps_a_max: float, s_x: float, s_y: float, ds_xy: int, tag_inc: tuple[int, int],
               switches: Switches) -> tuple[arith.EpsARule, float, tuple[int, int], int]:
    """ALIF's ε^a on chip, in the unsigned tag_2 d = s_d ε^a (LOIHI.md §5.2), one Euler step per
    learning epoch of n = t_epoch steps (Lava evaluates dd, dt and dw on one cadence):

        Δd = n s_a s_d 2^ds/(s_x s_y) · (x1 y1 >> ds) − n (1 − ρ) · d − n s_a β 2^ds'/s_y · (d y1 >> ds')

    s_d is the largest scale ≤ (2^tag2_bits − 1)/eps_a_max that makes the first coefficient a
    literal exactly. Every coefficient must reach the smallest literal 1·2^e_min, else a clear
    error says how long an epoch it needs. Returns the rule, s_d, the literal of (d y1 >> ds') in
    the tag (β s_x/s_d of the x1·y1 literal) and ds'."""
    betas = torch.unique(p.beta[p.beta != 0])
    if len(betas) != 1 or float(betas[0]) < 0:
        raise ValueError(f"fixed.switches.eps_a_tag2: one rule for all ALIF units needs one β > 0 (neuron.beta); "
                         f"got {betas.tolist()}")
    beta, s_a, n = float(betas[0]), p.adapt_scale, switches.t_epoch
    mant, exp_range = pr["s_mant_bits"], pr["s_exp_range"]
    smallest = 2.0 ** exp_range[0]
    offset, lacc = pr["learn_overflow_offset"], pr["learn_acc_bits"]
    ds_dy = arith.product_shift([pr["tag_bits"], pr["trace_bits"]], offset, lacc) if switches.product_downshift else 0
    s_d_max = (2 ** pr["tag2_bits"] - 1) / eps_a_max
    per_s_d = n * s_a * 2.0 ** ds_xy / (s_x * s_y)        # the x1·y1 coefficient per unit of s_d
    want = {"the ε^a increment (x1·y1)": per_s_d * s_d_max, "the ε^a decay (1 - rho)": n * (1 - p.rho),
            "the ε^a adaptation (d·y1)": n * s_a * beta * 2.0 ** ds_dy / s_y}
    for name, value in want.items():
        if value < smallest:
            need = math.ceil(n * smallest / value)
            other = (f" or fixed.eps_a_max <= {eps_a_max * value / smallest:.3g} (now {eps_a_max})"
                     if "increment" in name else "")
            raise ValueError(f"fixed.switches.eps_a_tag2: {name} per learning epoch is {value:.3g}, below the "
                             f"smallest on-chip literal 2^{exp_range[0]}; needs fixed.switches.t_epoch >= {need} "
                             f"(now {n}){other}")
    inc = literal_floor(want["the ε^a increment (x1·y1)"], mant, exp_range)
    s_d = literal_value(inc) / per_s_d
    decay = to_literal(want["the ε^a decay (1 - rho)"], mant, exp_range)
    adapt = to_literal(want["the ε^a adaptation (d·y1)"], mant, exp_range)
    rule = arith.EpsARule(*inc, *decay, *adapt, ds_xy, ds_dy, pr["learn_frac_bits"], lacc, 2 ** pr["tag2_bits"] - 1)
    tag_inc_a = to_literal(literal_value(tag_inc) * beta * s_x * 2.0 ** (ds_dy - ds_xy) / s_d, mant, exp_range)
    return rule, s_d, tag_inc_a, ds_dy


def report(fp: FixedParams, net: Network, diffusion: DiffusionConfig | None = None) -> list[dict]:
    """Quantisation error of every parameter: float value, what the integers represent, errors."""
    p, D = net.neuron, fp.neuron.decay_bits
    rows = []

    def row(name, exact, quant, note=""):
        exact, quant = float(exact), float(quant)
        rel = abs(quant - exact) / abs(exact) if exact else abs(quant)
        rows.append({"parameter": name, "float": exact, "quantised": quant, "abs_error": abs(quant - exact),
                     "rel_error": rel, "note": note})

    row("alpha (membrane decay)", p.alpha, 1 - fp.neuron.dv / 2 ** D, f"dv = {fp.neuron.dv}")
    row("rho (adaptation decay)", p.rho, 1 - fp.neuron.drho / 2 ** D, f"drho = {fp.neuron.drho}")
    row("kappa (readout decay)", net.kappa, 1 - fp.dkappa / 2 ** D, f"dkappa = {fp.dkappa}")
    vth = fp.neuron.vth.reshape(-1).double().cpu()
    s_v = fp.s_v.cpu()
    row("threshold", p.thr, float((vth * 2 ** fp.neuron.vth_shift / s_v)[0]), f"vth = {int(vth[0])} (seed 0)")
    for name, key, w_int, w in (("W_in", "in", fp.w_in, net.params.w_in), ("W_rec", "rec", fp.w_rec, net.params.w_rec),
                                ("W_out", "out", fp.w_out, net.params.w_out),
                                ("feedback B", None, fp.feedback, net.feedback)):
        scale = fp.s_fb if key is None else fp.s_w[key]
        deq = w_int.double() / scale.reshape(-1, 1, 1)
        mask = w != 0
        diff = (deq - w.double())[mask]
        exp = f"weight_exp = {int(fp.wexp[key][0])} (seed 0); " if key else ""
        rows.append({"parameter": f"{name} (RMS over synapses)", "float": float(w.double()[mask].abs().mean()),
                     "quantised": float(deq[mask].abs().mean()), "abs_error": float(diff.abs().mean()),
                     "rel_error": float(diff.pow(2).mean().sqrt() / w.double()[mask].pow(2).mean().sqrt()),
                     "note": f"{exp}max |W_int| = {int(w_int.abs().max())}"})
    if bool(p.beta.any()):
        j = int(torch.nonzero(p.beta)[0])
        row("beta x (1 - rho) (threshold step)", float(p.beta[j]) * p.adapt_scale,
            float(fp.neuron.beta.reshape(fp.neuron.beta.shape[0], -1)[0, j]) / float(s_v[0]), "seed 0")
    frac = fp.profile["trace_impulse_frac_bits"]
    row("pre-trace impulse (x1 units)", fp.s_x * p.input_scale, fp.x_impulse / 2 ** frac)
    row("pre-trace decay", p.alpha, fp.x_decay / 2 ** 12)
    row("readout-trace impulse", fp.s_z * (1 - net.kappa), fp.z_impulse / 2 ** frac)
    row("tag leak (1 - kappa)", 1 - net.kappa ** fp.switches.t_epoch, literal_value(fp.tag_leak),
        f"literal {fp.tag_leak[0]}*2^{fp.tag_leak[1]}")
    if fp.eps_a is not None:
        r, n, s_a = fp.eps_a, fp.switches.t_epoch, p.adapt_scale
        beta = float(p.beta.max())
        row("eps^a decay per epoch (1 - rho) t_epoch", (1 - p.rho) * n, literal_value((r.decay_m, r.decay_e)),
            f"literal {r.decay_m}*2^{r.decay_e}, tag_2 d = {fp.s_d:.4g} eps^a")
        row("eps^a adaptation per epoch (d y1 >> ds)", n * s_a * beta * 2.0 ** r.down_dy / fp.s_y,
            literal_value((r.adapt_m, r.adapt_e)), f"literal {r.adapt_m}*2^{r.adapt_e}")
        row("tag: beta eps^a term (d y1 >> ds)",
            literal_value(fp.tag_inc) * beta * fp.s_x * 2.0 ** (fp.ds_dy - fp.ds_xy) / fp.s_d,
            literal_value(fp.tag_inc_a), f"literal {fp.tag_inc_a[0]}*2^{fp.tag_inc_a[1]}")
    for name, lits in fp.lr_lit.items():
        m, e = lits[0]
        rows.append({"parameter": f"learning rate literal W_{name}", "float": float("nan"),
                     "quantised": literal_value((m, e)), "abs_error": float("nan"), "rel_error": float("nan"),
                     "note": f"{m}*2^{e} (seed 0; host write-back)"})
    if diffusion is not None:
        if diffusion.kernel == "box":
            row("diffusion k/(2r+1)^2", diffusion.k / (2 * diffusion.radius + 1) ** 2, fp.k_mant / 2 ** D,
                f"k_mant = {fp.k_mant}")
    return rows
