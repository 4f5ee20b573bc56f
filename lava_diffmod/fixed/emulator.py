r"""The batched fixed-point emulator: S networks × B trials, forward and on-chip-style e-prop.

Per step t (each stage in float or in integers, by the switches ``sw``):

1. **input** from x(t − d) and z(t − 1), d = ``dense_delay``: float Σ pre·W, or the integer
   Dense (Σ pre·W_int)·2^weight_exp (``weight_bits``). A Dense hop delivers at t + 1 what it
   received at t; the recurrence z(t − 1) already is that step, the input hop adds d.
2. **neuron and readout**: the float ALIF step, or :func:`arith.alif_fixed_step` and an integer
   leaky readout (``neuron_fixed``).
3. **traces**, every step: pre trace x1 ≈ s_x ε^v, post factor y1 ≈ s_y ψ, readout trace
   z̄ ≈ s_z z̄ (``trace_bits``: 7 bits, stochastic decay), ε^a of ALIF units unless
   ``drop_alif_eps_a``.
4. **learning rule**, every ``t_epoch`` steps: the tag t ≈ s_t ē ← t + inc·(x1 y1 >> ds) − leak·t;
   in the window the host turns y into err, err → err_int, the feedback gives the learning signal
   L = B err (through the modulator field, integer with ``diffusion_fixed``), L → y2/y3, and the
   products −t·L (two products truncated apart with ``sign_split_L``) and −z̄·err are summed.
5. **write-back**: on chip every evaluation (``cadence`` step/epoch: a literal per product,
   stochastic rounding of the fractional bits), or by the host at the end of the batch
   (``cadence`` batch: Δw = λ·Σ products − lr·g_reg, stochastic rounding to integers).

With ``Switches.off()`` every stage is the float maths and one batch changes the weights by
−lr · (the e-prop gradient of MODEL.md §3.4): the float reference's SGD step (tested to 1e-9).
Saturation and wrap-around events are counted per variable (``Result.events``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import rng
from ..float.neurons import alif_init, alif_step
from ..float.readout import Objective, output_error, rate_regulariser, readout_step, task_loss
from ..float.rsnn import Network, Params
from ..rules.eprop import (LearningSignal, eligibility_init, eligibility_step, eps_a_step,
                           regulariser_coefficient, window_target)
from ..rules.modulator import Modulator, diffuse as float_diffuse, modulator_step
from . import arith
from .quantize import FixedParams, literal_value

F64 = torch.float64


class Weights(NamedTuple):
    """The learned weights: int64 hardware integers (``weight_bits``) or float64."""
    w_in: torch.Tensor
    w_rec: torch.Tensor
    w_out: torch.Tensor


class Result(NamedTuple):
    weights: Weights
    task_loss: torch.Tensor       # (S,)
    reg_loss: torch.Tensor        # (S,)
    y_window: torch.Tensor        # (W, S, B, n_out)
    rate: torch.Tensor            # (S,) mean firing rate, spikes per step
    events: dict                  # variable → (S,) saturation / wrap events
    record: dict | None           # per-step traces, if asked for


class Events:
    """Counts, per network, how often each variable saturated or wrapped."""

    def __init__(self, s: int, device):
        self.counts: dict[str, torch.Tensor] = {}
        self.s, self.device = s, device

    def add(self, name: str, before: torch.Tensor, after: torch.Tensor) -> None:
        hits = (before != after).flatten(1).sum(1)
        zero = torch.zeros(self.s, dtype=torch.int64, device=self.device)
        self.counts[name] = self.counts.get(name, zero) + hits


def per_net(v: torch.Tensor, dim: int) -> torch.Tensor:
    """A per-network (S,) tensor shaped to broadcast against a tensor of ``dim`` dims."""
    return v.reshape(-1, *[1] * (dim - 1))


def tz_div(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """tz(x / 2^shift) with a per-network shift (S,)."""
    return torch.div(x, per_net(2 ** shift, x.dim()), rounding_mode="trunc")


def psi_of_fixed(s: arith.FixedState, q: arith.FixedNeuron, gamma: float, thr: float) -> torch.Tensor:
    """ψ in float units from an integer neuron state: [r = 0] (γ/ϑ) max(0, 1 − |v − A| / ϑ_v)."""
    thr_v = q.vth << q.vth_shift
    dist = (s.v - thr_v - s.b).to(F64)
    psi = (gamma / thr) * (1 - dist.abs() / thr_v.to(F64)).clamp(min=0)
    return torch.where(s.r == 0, psi, 0.0)


@dataclass
class Emulator:
    """Fixed-point simulation and learning of the S networks of ``net``."""
    net: Network
    fp: FixedParams
    obj: Objective
    modulator: Modulator | None
    seeds: list[int]
    compile: bool = True          # fuse the per-synapse tag step with torch.compile on CUDA

    def __post_init__(self):
        sw = self.fp.switches
        mod = self.modulator
        if mod is not None and sw.diffusion_fixed and (mod.n_channels != 1 or not bool((mod.q == 1).all())):
            raise ValueError("fixed.switches.diffusion_fixed: the integer field has one channel with q = 1")
        if mod is not None and sw.diffusion_hop_delay and (mod.kernel != "box" or mod.shuffle != "none"):
            raise ValueError("fixed.switches.diffusion_hop_delay: modelled for the box kernel without shuffling")
        if sw.cadence in ("step", "epoch"):
            lo, hi = self.fp.profile["s_exp_range"]
            for name, lits in self.fp.lr_lit.items():
                for m, e in lits:
                    if m and not lo <= e <= hi:
                        raise ValueError(
                            f"fixed.lr: the learning-rate literal of W_{name} is {m}*2^{e}, outside the on-chip "
                            f"exponent range [{lo}, {hi}]; use cadence = batch (host write-back) or change fixed.lr")
        self.key = torch.tensor([rng.name_key(s, "fixed_rounding") for s in self.seeds], dtype=torch.int64,
                                device=self.net.device)
        fp = self.fp
        self.tag_rule = arith.TagRule(fp.tag_inc[0], fp.tag_inc[1], fp.tag_leak[0], fp.tag_leak[1], fp.ds_xy,
                                      fp.frac_bits, fp.acc_bits, *arith.tag_limits(fp.profile["tag_bits"]))
        self.tag_outer = arith.tag_step_outer
        if self.compile and self.net.device.type == "cuda":   # one fused kernel per step, same bits
            self.tag_outer = torch.compile(arith.tag_step_outer, dynamic=False, fullgraph=True)

    # ------------------------------------------------------------------------------ weights
    def initial_weights(self) -> Weights:
        if self.fp.switches.weight_bits:
            return Weights(self.fp.w_in, self.fp.w_rec, self.fp.w_out)
        return Weights(*(w.to(F64) for w in self.net.params))

    def float_weights(self, w: Weights) -> Params:
        """The float weights the (integer) weights represent."""
        if not self.fp.switches.weight_bits:
            return Params(*w)
        s = self.fp.s_w
        return Params(*(m.to(F64) / per_net(s[k], 3) for m, k in zip(w, ("in", "rec", "out"))))

    def weights_from_float(self, params: Params) -> Weights:
        """Weights for float parameters (a resumed or explicit network)."""
        if not self.fp.switches.weight_bits:
            return Weights(*(w.to(F64) for w in params))
        s = self.fp.s_w
        return Weights(*((w.to(F64) * per_net(s[k], 3)).round().long() for w, k in zip(params, ("in", "rec", "out"))))

    def _dense(self, w: torch.Tensor) -> torch.Tensor:
        sw = self.fp.switches
        return arith.dense_weights(w, self.fp.profile["weight_bits"], sw.mixed_sign_lsb_loss)

    def _rand(self, t, stream, shape, bits):
        """Random bits for stochastic rounding at step t; without stochastic rounding 0, so the
        on-chip roundings truncate (floor), as the datapath does without the random fraction.
        Shared numbers come from the batch's precomputed table."""
        sw = self.fp.switches
        if not sw.stoch_round:
            return torch.zeros(shape, dtype=torch.int64, device=self.net.device)
        if sw.shared_rng:
            h = self._table[t, :, arith.STREAMS[stream]] >> (32 - bits)
            return h.reshape(-1, *[1] * (len(shape) - 1)).expand(shape)
        return arith.random_bits(self._keys[t], stream, shape, bits, False, device=self.net.device)

    # ------------------------------------------------------------------------------ one batch
    def run(self, weights: Weights, x: torch.Tensor, target: torch.Tensor, trial_keys: torch.Tensor,
            iteration: int, learn: bool = True, record: bool = False) -> Result:
        """One batch: x (T, S, B, n_in) spikes; labels (S, B) or y* (T, S, B|1, n_out)."""
        net, fp, obj = self.net, self.fp, self.obj
        sw, q, p = fp.switches, fp.neuron, net.neuron._replace(beta=net.neuron.beta.to(F64))
        dev = net.device
        t_steps, s, b, n_in = x.shape
        n, n_out = net.n_rec, net.n_out
        n_pre = n_in + n
        t0 = t_steps - obj.window
        tgt = window_target(target, obj.kind, t0)
        ev = Events(s, dev)
        key = rng.derive(self.key, iteration)
        self._keys = arith.step_key(key[None, :], torch.arange(t_steps + 1, device=dev)[:, None])   # (T+1, S)
        self._table = arith.shared_random_table(self._keys) if sw.shared_rng and sw.stoch_round else None
        x = x.to(F64)
        y_max, frac = fp.y_max, fp.frac_bits
        tb = fp.profile["trace_bits"]
        ifrac = fp.profile["trace_impulse_frac_bits"]
        keep_alif = net.has_alif and not sw.drop_alif_eps_a

        # what the network computes with: integer Dense weights, or the float weights
        fw = self.float_weights(weights)
        if sw.weight_bits:
            dense = [self._dense(w) for w in weights]
            fb_int = self._dense(fp.feedback)
            fb = fb_int.to(F64) / per_net(fp.s_fb, 3)
        elif net.tracking_feedback and not sw.random_feedback:
            fb_int, fb = None, fw.w_out * net.m_out
        else:
            fb_int, fb = None, fp.feedback_float.to(F64)
        float_net = dataclasses.replace(net.with_params(fw), feedback=fb, tracking_feedback=False)
        signal = LearningSignal(float_net, self.modulator, trial_keys)
        field_fn = self._field_fn()
        signal_diffuse = field_fn if not sw.diffusion_fixed else None

        # state
        neuron = arith.fixed_init((s, b, n), dev) if sw.neuron_fixed else alif_init((s, b, n), x)
        y, y_int = x.new_zeros((s, b, n_out)), torch.zeros((s, b, n_out), dtype=torch.int64, device=dev)
        z_prev = x.new_zeros((s, b, n))
        x_hist = [x.new_zeros((s, b, n_in))] * sw.dense_delay
        if sw.trace_bits:
            eps_a = x.new_zeros((s, b, n_pre, n)) if keep_alif else None    # no hardware state holds ε^a
            psi_prev = x.new_zeros((s, b, n))
            x1 = torch.zeros((s, b, n_pre), dtype=torch.int64, device=dev)
            zt = torch.zeros((s, b, n), dtype=torch.int64, device=dev)
            tag = torch.zeros((s, b, n_pre, n), dtype=torch.int32, device=dev)   # 9 bits; int32 halves traffic
            e_sum = torch.zeros_like(tag) if keep_alif else None
            x1_seen, y1_seen = [], []      # for the regulariser's Σ_t x1 ⊗ y1
            acc = torch.zeros((s, n_pre, n), dtype=torch.int64, device=dev)
            acc_out = torch.zeros((s, n, n_out), dtype=torch.int64, device=dev)
        else:
            tr = eligibility_init(s, b, n_pre, n, keep_alif, x)          # float traces (ε^v, ε^a, ē)
            zbar = x.new_zeros((s, b, n))
            e_sum = x.new_zeros((s, b, n_pre, n))
            acc, acc_out = x.new_zeros((s, n_pre, n)), x.new_zeros((s, n, n_out))
        field = None
        z_count = x.new_zeros((s, b, n))
        ys = []
        rec = {"z": [], "v": [], "tag": [], "psi": []} if record else None

        for t in range(t_steps):
            x_hist.append(x[t])
            pre_x, pre_z = x_hist.pop(0), z_prev
            pre = torch.cat([pre_x, pre_z], dim=-1)
            # 1-2: input, neuron, readout
            if sw.weight_bits:
                a_in = arith.dense_input(pre_x.long(), dense[0], fp.wexp["in"]) + \
                    arith.dense_input(pre_z.long(), dense[1], fp.wexp["rec"])
                current = a_in.to(F64) * per_net(2.0 ** q.act_shift / (fp.s_v * p.input_scale), 3)
            else:
                current = torch.bmm(pre_x, fw.w_in) + torch.bmm(pre_z, fw.w_rec)
                a_in = (current * per_net(fp.s_v * p.input_scale / 2.0 ** q.act_shift, 3)).round().long()
            if sw.neuron_fixed:
                new = arith.alif_fixed_step(neuron, a_in, q)
                self._count_neuron(ev, neuron, a_in, new)
                neuron = new
                z = neuron.z.to(F64)
                psi = psi_of_fixed(neuron, q, p.gamma, p.thr)
                y1 = arith.pseudo_derivative_fixed(neuron, q, y_max)
                if sw.weight_bits:
                    a_out = arith.dense_input(neuron.z, dense[2], fp.wexp["out"])
                else:
                    a_out = (torch.bmm(z, fw.w_out) * per_net(fp.s_o * (1 - net.kappa) / 2.0 ** q.act_shift, 3)
                             ).round().long()
                y_raw = arith.decay(y_int, fp.dkappa, q.decay_bits) + (a_out << q.act_shift)
                y_int = arith.overflow(y_raw, q.v_bits, "saturate")
                ev.add("readout y", y_raw, y_int)
                y = y_int.to(F64) / per_net(fp.s_o, 3)
            else:
                neuron, psi = alif_step(neuron, current, p)
                z = neuron.z
                y1 = (psi * fp.s_y).floor().clamp(0, y_max).long()
                y = readout_step(y, z, fw.w_out, net.kappa)
            if sw.trace_bits:
                psi = y1.to(F64) / fp.s_y
            z_prev = z
            z_count = z_count + z
            # 3: traces (ε^a uses ε^v and ψ of the previous step, before they update)
            if sw.trace_bits:
                if keep_alif:
                    eps_a = eps_a_step(eps_a, x1.to(F64) / fp.s_x, psi_prev, p)
                    psi_prev = psi
                raw = arith.trace_update(x1, pre.long(), fp.x_decay, fp.x_impulse, ifrac,
                                         self._rand(t, "x1_decay", (s, b, n_pre), 12),
                                         self._rand(t, "x1_impulse", (s, b, n_pre), ifrac),
                                         fp.profile["impulse_frac_doubling"])
                x1 = arith.saturate(raw, 0, y_max)
                ev.add("pre trace x1", raw, x1)
                zt = arith.trace_step(zt, neuron.z.long() if sw.neuron_fixed else z.long(), fp.z_decay,
                                      fp.z_impulse, tb, ifrac, self._rand(t, "z_decay", (s, b, n), 12),
                                      self._rand(t, "z_impulse", (s, b, n), ifrac),
                                      fp.profile["impulse_frac_doubling"])
            else:
                tr, e = eligibility_step(tr, pre, psi, p, 1 - fp.leak, keep_alif)
                zbar = torch.lerp(z, zbar, net.kappa)
            if record:
                rec["z"].append(z)
                rec["v"].append(neuron.v.to(F64) / per_net(fp.s_v, 3) if sw.neuron_fixed else neuron.v)
                rec["psi"].append(psi)
            in_window = t >= t0
            if in_window:
                err = output_error(y, tgt if obj.kind == "classification" else tgt[t - t0], obj.kind)
                ys.append(y)
            if not (learn and (t + 1) % sw.t_epoch == 0):
                continue
            # 4: the learning rule
            if sw.trace_bits:
                if keep_alif:   # e = ψ (ε^v − β ε^a) in float, into product units
                    e_f = psi[:, :, None, :] * (x1.to(F64)[..., None] / fp.s_x - p.beta * eps_a)
                    prod = (e_f * (fp.s_x * fp.s_y / 2 ** fp.ds_xy)).round().int()
                    tag = self._tag_step(tag, prod, 0, t, ev)
                    e_sum = e_sum + prod
                else:
                    tag = self._tag_step(tag, None, fp.ds_xy, t, ev, x1.int(), y1.int())
                    x1_seen.append(x1)
                    y1_seen.append(y1)
            else:
                e_sum = e_sum + e
            if record:   # integers as they are (trace_bits), else the float ē
                rec["tag"].append(tag if sw.trace_bits else tr.ebar)
            if not in_window:
                continue
            learning, field = self._learning_signal(signal, field, field_fn, signal_diffuse, err, fb_int, t,
                                                    trial_keys, ev)
            if sw.trace_bits:
                err_int = (err * fp.s_e).round().clamp(-y_max, y_max).long()
                step_w = self._product(tag, learning.int(), fp.ds_ty, 2).long()   # (S, B, P, N)
                step_o = self._product(zt[..., None], err_int[:, :, None, :], fp.ds_zz, 3)
            else:
                step_w = -learning[:, :, None, :] * tr.ebar
                step_o = -zbar[..., None] * err[:, :, None, :]
            if sw.cadence == "batch":
                acc = acc + step_w.sum(1)
                acc_out = acc_out + step_o.sum(1)
            else:
                weights = self._write_back_on_chip(weights, step_w, step_o, t, ev)
                dense = [self._dense(w) for w in weights]
                fw = self.float_weights(weights)

        y_w = torch.stack(ys)
        if learn:
            reg = regulariser_coefficient(z_count, t_steps, obj)
            if sw.trace_bits and not keep_alif:   # host side: Σ_t x1 ⊗ y1 >> ds, exact in float64
                e_sum = torch.einsum("tsbp,tsbn->sbpn", torch.stack(x1_seen).to(F64),
                                     torch.stack(y1_seen).to(F64)).long() >> fp.ds_xy
            e_sum_f = e_sum.to(F64) * (2.0 ** fp.ds_xy / (fp.s_x * fp.s_y)) if sw.trace_bits else e_sum
            g_reg = obj.batch_scale(b) * sw.t_epoch * torch.einsum("sbj,sbij->sij", reg, e_sum_f)
            weights = self._write_back_batch(weights, acc, acc_out, g_reg, t_steps, ev)
        if record:
            rec = {k: torch.stack(v) for k, v in rec.items() if v}
        return Result(weights, task_loss(y_w, tgt, obj), rate_regulariser(z_count / t_steps, obj), y_w,
                      z_count.mean((1, 2)) / t_steps, ev.counts, rec)

    # ------------------------------------------------------------------------------ pieces
    def _count_neuron(self, ev: Events, old: arith.FixedState, a_in, new: arith.FixedState) -> None:
        """Count u wraps and v, b saturations of one step from the unclipped values."""
        q = self.fp.neuron
        u_raw = arith.decay(old.u, q.du + q.du_offset, q.decay_bits) + (a_in << q.act_shift)
        ev.add("neuron u", u_raw, new.u)
        v_raw = arith.decay(old.v, q.dv, q.decay_bits) + new.u + q.bias - (q.vth << q.vth_shift) * old.z
        ev.add("neuron v", v_raw, arith.overflow(v_raw, q.v_bits, q.v_overflow))
        b_raw = arith.decay(old.b, q.drho, q.decay_bits) + q.beta * old.z
        ev.add("neuron b", b_raw, new.b)

    def _tag_step(self, tag, prod, ds, t, ev: Events, x1=None, y1=None):
        """t ← sat(SR(t + inc·(prod >> ds) − leak·t)) with 7 fractional bits (Lava's write-back);
        with ``x1``, ``y1`` the product is their outer product (the compiled fast path on CUDA)."""
        fp, frac = self.fp, self.fp.frac_bits
        rand = self._rand(t, "tag", tuple(tag.shape), frac).int()
        if fp.switches.tag_leak_grid == "exact":      # the float leak (1 − κ), not a literal
            prod = x1[..., :, None] * y1[..., None, :] if prod is None else prod
            p_inc = arith.literal_product(prod, ds, fp.tag_inc[0], fp.tag_inc[1], frac, fp.acc_bits)
            p_leak = -(tag.to(F64) * fp.leak * 2 ** frac).round().int()
            raw = arith.stochastic_round((tag << frac) + p_inc + p_leak, frac, rand)
            new = raw.clamp(self.tag_rule.lo, self.tag_rule.hi)
            hits = (raw != new).flatten(1).sum(1)
        elif prod is None:
            new, hits = self.tag_outer(tag, x1, y1, rand, self.tag_rule._replace(down=ds))
        else:
            new, hits = arith.tag_step(tag, prod, rand, self.tag_rule._replace(down=ds))
        ev.counts["tag"] = ev.counts.get("tag", 0) + hits
        return new

    def _product(self, a, third, ds, dim) -> torch.Tensor:
        """−a·third, as Loihi evaluates it: two products a·y3 and a·y2 truncated apart
        (``sign_split_L``) or one signed product, each >> ds."""
        third = third.unsqueeze(dim) if third.dim() < a.dim() else third
        if self.fp.switches.sign_split_L:
            pos, neg = arith.sign_split(third, self.fp.profile["trace_bits"])
            return ((a * neg) >> ds) - ((a * pos) >> ds)
        return -((a * third) >> ds)

    def _field_fn(self):
        """The diffusion of one step with ``diffusion_hop_delay``: neighbours arrive d steps late,
        G̃ = K ⊛ G(t−1−d) + c (G(t−1) − G(t−1−d)), c the kernel's centre weight; integer with
        ``diffusion_fixed``. None: the float diffusion as the float reference does it."""
        mod, fp, sw = self.modulator, self.fp, self.fp.switches
        if mod is None or (not sw.diffusion_fixed and not sw.diffusion_hop_delay):
            return None
        history: list[torch.Tensor] = []
        d = sw.diffusion_hop_delay

        def diffuse(g: torch.Tensor) -> torch.Tensor:
            history.append(g)
            old = history.pop(0) if len(history) > d else torch.zeros_like(g)
            h, w = mod.grid
            if sw.diffusion_fixed:
                grid, old_grid = g.reshape(*g.shape[:-1], h, w), old.reshape(*g.shape[:-1], h, w)
                if mod.kernel == "box":
                    out = arith.tz_scale(arith.box_sum(old_grid, mod.radius[0]) + grid - old_grid, fp.k_mant,
                                         fp.neuron.decay_bits)
                else:
                    out = arith.laplacian_diffuse_fixed(grid, fp.k_mant, fp.k_neighbour, mod.n_sub,
                                                        fp.neuron.decay_bits)
                return out.reshape(g.shape)
            centre = mod.k[0] / (2 * mod.radius[0] + 1) ** 2
            return float_diffuse(old, mod) + centre * (g - old)
        return diffuse

    def _learning_signal(self, signal: LearningSignal, field, field_fn, signal_diffuse, err, fb_int, t,
                         trial_keys, ev: Events):
        """L (S, B, N): float, or integers in learning-signal units with ``trace_bits``."""
        fp, sw, mod = self.fp, self.fp.switches, self.modulator
        y_max = fp.y_max
        integer_release = sw.weight_bits and sw.trace_bits
        if integer_release:   # error units → 8-bit feedback Dense: release in units s_B s_e
            err_int = (err * fp.s_e).round().clamp(-y_max, y_max).long()
            rel = torch.einsum("sbm,sjm->sbj", err_int.to(F64), fb_int.to(F64)).round().long()
        if mod is not None and sw.diffusion_fixed:
            if integer_release:
                release = tz_div(rel << fp.field_frac_bits, fp.f_shift)
            else:
                l_dir = torch.einsum("sbm,sjm->sbj", err, signal.routed[:, 0])
                release = (l_dir * per_net(fp.s_G, 3)).round().long()
            if field is None:
                h, w = mod.grid
                field = torch.zeros((*release.shape[:2], 1, h * w), dtype=torch.int64, device=release.device)
            field, local = modulator_step(field, release[:, :, None, :], mod, trial_keys, t, diffuse_fn=field_fn)
            lim = arith.signed_limit(fp.field_bits)
            clipped = field.clamp(-lim, lim)
            ev.add("modulator field", field, clipped)
            field = clipped
            local = field.gather(-1, mod.cells[:, None, None, :].expand(local.shape))[:, :, 0]
            l_int = torch.div(local, 2 ** fp.field_frac_bits, rounding_mode="trunc")
        elif integer_release and mod is None:
            l_int = tz_div(rel, fp.f_shift)
        else:
            signal.diffuse_fn = signal_diffuse
            learning = signal.step(err, t)
            if not sw.trace_bits:
                return learning, field
            l_int = (learning * per_net(fp.s_L, 3)).round().long()
        l_clip = l_int.clamp(-y_max, y_max)
        ev.add("learning signal", l_int, l_clip)
        return (l_clip if sw.trace_bits else l_clip.to(F64) / per_net(fp.s_L, 3)), field

    def _write_back_on_chip(self, weights: Weights, step_w, step_o, t, ev: Events) -> Weights:
        """Cadence step/epoch: each trial's product times the rate literal (clipped to the
        learning accumulator), summed over the batch, then w ← sat(SR(w + Δ))."""
        fp, n_in, frac = self.fp, self.net.n_in, self.fp.frac_bits
        lim = fp.weight_limit
        out = []
        for name, w, prod in (("in", weights.w_in, step_w[:, :, :n_in]), ("rec", weights.w_rec, step_w[:, :, n_in:]),
                              ("out", weights.w_out, step_o)):
            delta = torch.stack([arith.literal_product(prod[i], 0, m, e, frac, fp.acc_bits).sum(0)
                                 for i, (m, e) in enumerate(fp.lr_lit[name])])
            raw = arith.stochastic_round((w << frac) + delta, frac, self._rand(t, f"w_{name}", tuple(w.shape), frac))
            new = raw.clamp(-lim - 1, lim)
            ev.add(f"weight W_{name}", raw, new)
            out.append(new * self._mask(name).long())
        return Weights(*out)

    def _mask(self, name):
        return {"in": self.net.m_in, "rec": self.net.m_rec, "out": self.net.m_out}[name]

    def _write_back_batch(self, weights: Weights, acc, acc_out, g_reg, t_steps, ev: Events) -> Weights:
        """Host write-back at the end of the batch: Δw = λ·acc − lr·g_reg; integers by
        stochastic rounding (24 random bits) or to nearest, saturated to the weight range."""
        fp, sw, n_in = self.fp, self.fp.switches, self.net.n_in
        parts = (("in", weights.w_in, acc[:, :n_in], g_reg[:, :n_in]),
                 ("rec", weights.w_rec, acc[:, n_in:], g_reg[:, n_in:]),
                 ("out", weights.w_out, acc_out, None))
        out = []
        for name, w, a, reg in parts:
            if sw.weight_bits and sw.trace_bits:
                lam = torch.tensor([literal_value(lit) for lit in fp.lr_lit[name]], dtype=F64, device=w.device)
            else:
                lam = fp.lr_exact[name] * (fp.s_w[name] if sw.weight_bits else 1.0)
            delta = a.to(F64) * per_net(lam, 3)
            if reg is not None:
                delta = delta - fp.lr * reg * (per_net(fp.s_w[name], 3) if sw.weight_bits else 1.0)
            delta = delta * self._mask(name).to(F64)
            if not sw.weight_bits:
                out.append(w + delta)
                continue
            lim_acc = 2.0 ** (fp.host_acc_bits - 1 - 16)
            clipped = delta.clamp(-lim_acc, lim_acc)
            ev.add(f"host accumulator W_{name}", delta, clipped)
            if sw.stoch_round:   # the host draws independently for every synapse (no shared_rng)
                u = arith.random_bits(self._keys[t_steps], f"w_{name}", tuple(w.shape), 24,
                                      shared=False, device=w.device).to(F64) / 2 ** 24
                step = torch.floor(clipped + u).long()
            else:
                step = torch.floor(clipped + 0.5).long()
            raw = w + step
            lim = fp.weight_limit
            new = raw.clamp(-lim - 1, lim)
            ev.add(f"weight W_{name}", raw, new)
            out.append(new)
        return Weights(*out)
