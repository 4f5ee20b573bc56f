"""The e-prop learning rule in Lava's Loihi 3-factor syntax (LOIHI.md §4.2, §5.2).

Input and recurrent synapses (LearningDense, pre trace x1 ≈ s_x ε^v, post factor y1 ≈ s_y ψ from
the ALIF neuron, learning signal sign-split into y2 = L⁺ and y3 = L⁻):

    dt = inc · u0 · x1 · y1 − leak · u0 · t          (the tag t is the filtered eligibility ē)
    dw = λ · u0 · t · y3 − λ · u0 · t · y2            (Δw = −η L ē)

With ALIF's ε^a in the unsigned tag_2 d ≈ s_d ε^a (``eps_a_tag2``; a separate LearningDense for
the synapses onto ALIF units, as the rule differs):

    dd = a · u0 · x1 · y1 − r · u0 · d − b · u0 · d · y1     (ε^a ← s_a ψ ε^v + (ρ − s_a β ψ) ε^a)
    dt = inc · u0 · x1 · y1 − inc_a · u0 · d · y1 − leak · u0 · t     (e = ψ (ε^v − β ε^a))

Readout synapses (pre trace x1 = z̄ with τ_out, third factor the error, split the same way):

    dw = λ_out · u0 · x1 · y3 − λ_out · u0 · x1 · y2

Each scaling literal is m·2^e within the profile's mantissa and exponent ranges. When the rate
the configuration asks for lies outside that range, the rule shows the nearest literal in range
and the factor by which it differs; the emulator's host write-back (``cadence = "batch"``)
applies the exact rate instead.
"""
from __future__ import annotations

import math

from .quantize import FixedParams, literal_value, to_literal


def literal(m: int, e: int) -> str:
    """Lava's spelling of the scaling literal m·2^e (``2^-7``, ``3 * 2^-6``)."""
    return f"2^{e}" if m == 1 else f"{m} * 2^{e}"


def on_chip(fp: FixedParams, lit: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """The literal in the on-chip range nearest to ``lit``, and wanted / on-chip (1 if in range)."""
    want = literal_value(lit)
    chip = to_literal(want, fp.profile["s_mant_bits"], fp.profile["s_exp_range"])
    return chip, (want / literal_value(chip) if want else 1.0)


def learning_rules(fp: FixedParams, net, seed_index: int = 0) -> dict:
    """The rules of network ``seed_index``: rule strings with in-range literals, trace parameters,
    and for each learning rate the factor by which the configured rate differs from the literal."""
    inc, leak = fp.tag_inc, fp.tag_leak
    ifrac = fp.profile["trace_impulse_frac_bits"]
    rules = {}
    for name, title in (("in", "input"), ("rec", "recurrent"), ("out", "readout")):
        (m, e), factor = on_chip(fp, fp.lr_lit[name][seed_index])
        pre = "x1" if name == "out" else "t"
        rule = {"dw": f"{literal(m, e)} * u0 * {pre} * y3 - {literal(m, e)} * u0 * {pre} * y2",
                "rate_factor": factor, "t_epoch": fp.switches.t_epoch}
        if name == "out":
            rule.update(x1_impulse=fp.z_impulse / 2 ** ifrac, x1_tau=round(-1 / math.log(net.kappa)))
        else:
            rule.update(dt=f"{literal(*inc)} * u0 * x1 * y1 - {literal(*leak)} * u0 * t",
                        x1_impulse=fp.x_impulse / 2 ** ifrac, x1_tau=round(-1 / math.log(net.neuron.alpha)))
            if fp.eps_a is not None:
                r = fp.eps_a
                rule.update(dt_alif=f"{literal(*inc)} * u0 * x1 * y1 - {literal(*fp.tag_inc_a)} * u0 * d * y1 - "
                                    f"{literal(*leak)} * u0 * t",
                            dd=f"{literal(r.inc_m, r.inc_e)} * u0 * x1 * y1 - {literal(r.decay_m, r.decay_e)} * u0 * d"
                               f" - {literal(r.adapt_m, r.adapt_e)} * u0 * d * y1")
        rules[title] = rule
    return rules


def describe(rules: dict) -> list[str]:
    """Printable lines of :func:`learning_rules`."""
    out = []
    for name, r in rules.items():
        out.append(f"  {name} synapses:")
        for key, label in (("dt", "dt"), ("dt_alif", "dt (onto ALIF units)"), ("dd", "dd (onto ALIF units)"),
                           ("dw", "dw")):
            if key in r:
                out.append(f"    {label} = \"{r[key]}\"")
        out.append(f"    x1_impulse = {r['x1_impulse']:.4g}, x1_tau = {r['x1_tau']}, t_epoch = {r['t_epoch']}")
        if abs(r["rate_factor"] - 1) > 0.01:
            out.append(f"    the configured learning rate is {r['rate_factor']:.3g} x this literal, outside the "
                       f"on-chip range; the emulator's host write-back (cadence = \"batch\") applies the configured rate")
    return out
