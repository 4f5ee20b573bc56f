r"""The batched fixed-point emulator: S networks × B trials, forward and on-chip-style e-prop.

Per step t (each stage in float or in integers, by the switches ``sw``):

1. **input** from x(t − d) and z(t − 1), d = ``dense_delay``: float Σ pre·W, or the integer
   Dense (Σ pre·W_int)·2^weight_exp (``weight_bits``). A Dense hop delivers at t + 1 what it
   received at t; the recurrence z(t − 1) already is that step, the input hop adds d.
2. **neuron and readout**: the float ALIF step, or :func:`arith.alif_fixed_step` and an integer
   leaky readout (``neuron_fixed``).
3. **traces**, every step: pre trace x1 ≈ s_x ε^v, post factor y1 ≈ s_y ψ, readout trace
   z̄ ≈ s_z z̄ (``trace_bits``: 7 bits, stochastic decay), ε^a of ALIF units in float unless
   ``drop_alif_eps_a`` or ``eps_a_tag2``.
4. **learning rule**, every ``t_epoch`` steps (the modulator field and the error units run every
   step; with ``epoch_mean`` the rule sees ψ, L and err averaged over the epoch): the tag t ≈ s_t ē ← t + inc·(x1 y1 >> ds) − leak·t
   (with ``eps_a_tag2`` also − inc_a·(d y1 >> ds'), and d ≈ s_d ε^a takes its own step,
   :func:`arith.eps_a_fixed_step`);
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
from ..graphs import Graphed
from ..float.neurons import alif_init, alif_step
from ..float.readout import Objective, output_error, rate_regulariser, readout_step, task_loss
from ..float.rsnn import Network, Params
from ..rules.eprop import (LearningSignal, eligibility_init, eligibility_step, eps_a_step, synapse_layout,
                           window_target)
from ..rules.modulator import Modulator
from ..rules.synapses import DenseSynapses
from . import arith
from .quantize import FixedParams, literal_value
from .steps import (Events, check_on_chip_rates, clip_signal, dense_of, direct_signal, error_int, feedback_release, field_diffusion,
                    field_release, fixed_field_step, host_write_back, on_chip_write_back, per_net,
                    readout_fixed_step, regulariser_gradient, StepRandom,
                    third_factor_product)

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


def psi_of_fixed(s: arith.FixedState, q: arith.FixedNeuron, gamma: float, thr: float) -> torch.Tensor:
    """ψ in float units from an integer neuron state: [r = 0] (γ/ϑ) max(0, 1 − |v − A| / ϑ_v)."""
    thr_v = q.vth << q.vth_shift
    dist = (s.v - thr_v - s.b).to(F64)
    psi = (gamma / thr) * (1 - dist.abs() / thr_v.to(F64)).clamp(min=0)
    return torch.where(s.r == 0, psi, 0.0)


def mean_int(total: torch.Tensor, n: int) -> torch.Tensor:
    """round(total / n) of integers, halves away from zero (a floor would bias L by −½ LSB)."""
    q = total.abs() * 2 + n
    return torch.sign(total) * torch.div(q, 2 * n, rounding_mode="floor")


def outer_sum(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> torch.Tensor:
    """Σ_t x_i(t) y_j(t) (S, B, P, N) of integer traces x (S, B, P), y (S, B, N); exact (float64,
    exact below 2^53)."""
    return torch.einsum("tsbp,tsbn->sbpn", torch.stack(xs).to(F64), torch.stack(ys).to(F64)).long()


@dataclass
class Emulator:
    """Fixed-point simulation and learning of the S networks of ``net``."""
    net: Network
    fp: FixedParams
    obj: Objective
    modulator: Modulator | None
    seeds: list[int]
    compile: bool = True          # fuse the per-synapse tag step with torch.compile on CUDA
    storage: str = "auto"         # per-synapse state (tags, traces): auto | dense | sparse (rules.synapses)
    graphs: bool = True           # batch() replays a CUDA graph of run() on CUDA (same bits)

    def __post_init__(self):
        sw = self.fp.switches
        if self.storage == "sparse" and sw.cadence != "batch":
            raise ValueError(f"rule.storage = 'sparse': the fixed backend keeps per-synapse state sparse only "
                             f"with fixed.switches.cadence = 'batch' (now {sw.cadence!r})")
        self.syn = synapse_layout(self.net, self.storage if sw.cadence == "batch" else "dense")
        mod = self.modulator
        if mod is not None and sw.diffusion_fixed and (mod.n_channels != 1 or not bool((mod.q == 1).all())):
            raise ValueError("fixed.switches.diffusion_fixed: the integer field has one channel with q = 1")
        if mod is not None and sw.diffusion_hop_delay and (mod.kernel != "box" or mod.shuffle != "none"):
            raise ValueError("fixed.switches.diffusion_hop_delay: modelled for the box kernel without shuffling")
        check_on_chip_rates(self.fp)
        self.key = torch.tensor([rng.name_key(s, "fixed_rounding") for s in self.seeds], dtype=torch.int64,
                                device=self.net.device)
        fp = self.fp
        self.tag_rule = arith.TagRule(fp.tag_inc[0], fp.tag_inc[1], fp.tag_leak[0], fp.tag_leak[1], fp.ds_xy,
                                      fp.frac_bits, fp.acc_bits, *arith.tag_limits(fp.profile["tag_bits"]),
                                      *fp.tag_inc_a, fp.ds_dy)
        # the ε^a term of the tag in units of its x1·y1 products (the regulariser's Σ_t e)
        self._a_ratio = literal_value(fp.tag_inc_a) / literal_value(fp.tag_inc)
        self.tag_outer = arith.tag_step_outer
        if self.compile and self.net.device.type == "cuda":   # one fused kernel per step, same bits
            self.tag_outer = torch.compile(arith.tag_step_outer, dynamic=False, fullgraph=True)
        # the weight exponents, as Python ints where every network shares one (no scaling at 0)
        self.wexp = {k: int(e[0]) if bool((e == e[0]).all()) else e for k, e in fp.wexp.items()}
        self._graphed: dict = {}

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
        return dense_of(w, self.fp)

    def _rand(self, t, stream, shape, bits, index=None, dtype=torch.int64):
        """Random bits for stochastic rounding at step t (:class:`.steps.StepRandom`); with
        ``shared_rng`` from the batch's table (T+1, S, streams), each stream shifted (and cast)
        once per batch; ``index``: sparse synapses' dense indices."""
        if self._shared is None:
            r = StepRandom(self._keys[t], self.fp)(stream, shape, bits, device=self.net.device, index=index)
            return r.to(dtype)
        key = (stream, bits, dtype, len(shape))
        col = self._shared.get(key)
        if col is None:
            col = arith.shared_stream(self._table, stream, bits).to(dtype)
            col = self._shared[key] = col.reshape(*col.shape, *[1] * (len(shape) - 1))
        return col[t].expand(shape)

    # ------------------------------------------------------------------------------ one batch
    def batch(self, weights: Weights, x: torch.Tensor, target: torch.Tensor, trial_keys: torch.Tensor,
              iteration: int, learn: bool = True) -> Result:
        """:meth:`run` without a record, as training and evaluation call it. On CUDA (``graphs``)
        the replay of a CUDA graph of :meth:`run`, captured once per input shape: the same
        kernels, so the same bits (tested on the GPU)."""
        if not (self.graphs and x.is_cuda):
            return self.run(weights, x, target, trial_keys, iteration, learn)
        inputs = (*weights, x, target, trial_keys, torch.full((), iteration, dtype=torch.int64, device=x.device))
        key = (learn, *((tuple(t.shape), t.dtype) for t in inputs))
        if key not in self._graphed:
            self._graphed[key] = Graphed(lambda w_in, w_rec, w_out, x_, target_, keys_, it: self.run(
                Weights(w_in, w_rec, w_out), x_, target_, keys_, it, learn), inputs)
        return self._graphed[key](*inputs)

    def run(self, weights: Weights, x: torch.Tensor, target: torch.Tensor, trial_keys: torch.Tensor,
            iteration: int | torch.Tensor, learn: bool = True, record: bool = False) -> Result:
        """One batch: x (T, S, B, n_in) spikes; labels (S, B) or y* (T, S, B|1, n_out). The
        readable reference; it reads no tensor value on the host, so a CUDA graph can capture it
        (``iteration`` may then be a device scalar)."""
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
        self._shared = {} if self._table is not None else None
        x = x.to(F64)
        y_max = fp.y_max
        tb = fp.profile["trace_bits"]
        ifrac = fp.profile["trace_impulse_frac_bits"]
        keep_alif = net.has_alif and not sw.drop_alif_eps_a
        eps_a_int = keep_alif and sw.eps_a_tag2       # ε^a in tag_2 d, integer (needs trace_bits)
        syn = self.syn
        per_element = sw.stoch_round and not sw.shared_rng      # else the index is never read
        self._syn_index = syn.element_index(b) if per_element else None   # sparse state's random streams

        # unit conversions between the integer datapath and float currents, per network
        current_per_input = per_net(2.0 ** q.act_shift / (fp.s_v * p.input_scale), 3)
        input_per_current = per_net(fp.s_v * p.input_scale / 2.0 ** q.act_shift, 3)
        readout_per_output = per_net(fp.s_o * (1 - net.kappa) / 2.0 ** q.act_shift, 3)
        s_o = per_net(fp.s_o, 3)
        wexp = self.wexp
        # what the network computes with: integer Dense weights, or the float weights
        fw = self.float_weights(weights)
        if sw.weight_bits:
            dense = [self._dense(w).double() for w in weights]   # the Dense matmul runs in float64
            fb_int = self._dense(fp.feedback)
            fb = fb_int.to(F64) / per_net(fp.s_fb, 3)
        elif net.tracking_feedback and not sw.random_feedback:
            fb_int, fb = None, fw.w_out * net.m_out
        else:
            fb_int, fb = None, fp.feedback_float.to(F64)
        float_net = dataclasses.replace(net.with_params(fw), feedback=fb, tracking_feedback=False)
        signal = LearningSignal(float_net, self.modulator, trial_keys)
        field_fn = field_diffusion(self.modulator, fp)
        signal_diffuse = field_fn if not sw.diffusion_fixed else None

        # state
        neuron = arith.fixed_init((s, b, n), dev) if sw.neuron_fixed else alif_init((s, b, n), x)
        y, y_int = x.new_zeros((s, b, n_out)), torch.zeros((s, b, n_out), dtype=torch.int64, device=dev)
        z_prev = x.new_zeros((s, b, n))
        x_hist = [x.new_zeros((s, b, n_in))] * sw.dense_delay
        if sw.trace_bits:
            eps_a = syn.zeros(s, b, x) if keep_alif and not eps_a_int else None   # float ε^a: no chip state
            d = syn.zeros(s, b, torch.zeros(1, dtype=torch.int32, device=dev)) if eps_a_int else None
            alif_post = syn.post(net.is_alif.to(torch.int32)[None, None, :]) if eps_a_int else None
            psi_prev = x.new_zeros((s, b, n))
            x1 = torch.zeros((s, b, n_pre), dtype=torch.int64, device=dev)
            zt = torch.zeros((s, b, n), dtype=torch.int64, device=dev)
            tag = syn.zeros(s, b, x1.to(torch.int32))        # 9 bits; int32 halves traffic
            # Σ_t of the tag's products, for the regulariser: summed per synapse as they come, or,
            # for dense tags without ε^a (the fused tag step never forms the products), Σ_t x1 ⊗ y1
            # from the traces seen, at the end of the batch
            dense_tags = isinstance(syn, DenseSynapses)
            if keep_alif:
                e_sum = torch.zeros_like(tag)
            else:
                e_sum = None if dense_tags else syn.zeros(s, b, x1)
            x1_seen, y1_seen = [], []
            acc = torch.zeros_like(tag[:, 0], dtype=torch.int64)
            acc_out = torch.zeros((s, n, n_out), dtype=torch.int64, device=dev)
        else:
            tr = eligibility_init(s, b, n_pre, n, keep_alif, x, syn)     # float traces (ε^v, ε^a, ē)
            zbar = x.new_zeros((s, b, n))
            e_sum = torch.zeros_like(tr.ebar)
            acc, acc_out = torch.zeros_like(tr.ebar[:, 0]), x.new_zeros((s, n, n_out))
        field = None
        # epoch means (epoch_mean): Σ y1 over the epoch; Σ L, Σ err and their count in the window
        y1_sum = torch.zeros((s, b, n), dtype=torch.int64, device=dev) if sw.trace_bits else None
        l_sum, err_sum, n_sum = 0, 0, 0
        e_ep = 0                  # float path: Σ e over the epoch (epoch_mean)
        z_count = x.new_zeros((s, b, n))
        ys = []
        rec = {"z": [], "v": [], "tag": [], "psi": [], "x1": [], "d": [], "L": []} if record else None

        for t in range(t_steps):
            epoch_end = (t + 1) % sw.t_epoch == 0
            x_hist.append(x[t])
            pre_x, pre_z = x_hist.pop(0), z_prev
            pre = torch.cat([pre_x, pre_z], dim=-1)
            # 1-2: input, neuron, readout
            if sw.weight_bits:
                a_in = arith.dense_input(pre_x, dense[0], wexp["in"]) + arith.dense_input(pre_z, dense[1], wexp["rec"])
                current = None if sw.neuron_fixed else a_in.to(F64) * current_per_input
            else:
                current = torch.bmm(pre_x, fw.w_in) + torch.bmm(pre_z, fw.w_rec)
                a_in = (current * input_per_current).round().long() if sw.neuron_fixed else None
            if sw.neuron_fixed:
                neuron, raw = arith.alif_fixed_update(neuron, a_in, q)
                ev.add("neuron u", raw.u, neuron.u)
                ev.add("neuron v", raw.v, raw.v_clipped)
                ev.add("neuron b", raw.b, neuron.b)
                z = neuron.z.to(F64)
                y1 = arith.pseudo_derivative_fixed(neuron, q, y_max)
                psi = None if sw.trace_bits else psi_of_fixed(neuron, q, p.gamma, p.thr)   # else from y1 below
                if sw.weight_bits:
                    a_out = arith.dense_input(z, dense[2], wexp["out"])
                else:
                    a_out = (torch.bmm(z, fw.w_out) * readout_per_output).round().long()
                y_int = readout_fixed_step(y_int, a_out, fp, ev)
                y = y_int.to(F64) / s_o
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
                if keep_alif and not eps_a_int:
                    eps_a = eps_a_step(eps_a, x1.to(F64) / fp.s_x, psi_prev, p, syn)
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
                tr_new, e = eligibility_step(tr, pre, psi, p, 1 - fp.leak, keep_alif, syn)
                if sw.t_epoch > 1:   # the traces step every step, the tag ē once per learning epoch
                    e_ep = e_ep + e if sw.epoch_mean else 0
                    if epoch_end:
                        e, e_ep = (e_ep / sw.t_epoch if sw.epoch_mean else e), 0
                    tr_new = tr_new._replace(ebar=torch.lerp(e, tr.ebar, 1 - fp.leak) if epoch_end else tr.ebar)
                tr = tr_new
                zbar = torch.lerp(z, zbar, net.kappa)
            if record:
                rec["z"].append(z)
                rec["v"].append(neuron.v.to(F64) / per_net(fp.s_v, 3) if sw.neuron_fixed else neuron.v)
                rec["psi"].append(psi)
                if sw.trace_bits:
                    rec["x1"].append(x1)
            in_window = t >= t0
            if in_window:
                err = output_error(y, tgt if obj.kind == "classification" else tgt[t - t0], obj.kind)
                ys.append(y)
                if learn:   # the error units and the modulator field run every step
                    learning, field = self._learning_signal(signal, field, field_fn, signal_diffuse, err, fb_int, t,
                                                            trial_keys, ev)
                    if sw.epoch_mean:
                        l_sum, err_sum, n_sum = l_sum + learning, err_sum + err, n_sum + 1
            if sw.epoch_mean and sw.trace_bits:
                y1_sum = y1_sum + y1
            if not (learn and epoch_end):
                continue
            # 4: the learning rule
            if sw.epoch_mean and sw.trace_bits:   # the neuron sends round(Σ y1 / t_epoch); ψ to match
                y1, y1_sum = mean_int(y1_sum, sw.t_epoch), torch.zeros_like(y1_sum)
                psi = y1.to(F64) / fp.s_y
            if sw.trace_bits:
                if eps_a_int:   # e = ψ (ε^v − β ε^a) from x1·y1 and d·y1; then d's own step
                    prod = syn.pre(x1.int()) * syn.post(y1.int())
                    prod_a = d * syn.post(y1.int()) * alif_post
                    tag = self._tag_step(tag, prod, fp.ds_xy, t, ev, prod_a=prod_a)
                    d, hits = arith.eps_a_fixed_step(d, prod * alif_post, prod_a,
                                                     self._rand(t, "tag2", tuple(d.shape), fp.frac_bits,
                                                                self._syn_index, torch.int32), fp.eps_a)
                    ev.add_counts("tag_2 d (eps^a)", hits)
                    e_sum = e_sum + (prod >> fp.ds_xy) - ((prod_a >> fp.ds_dy) * self._a_ratio).round().int()
                    if record:
                        rec["d"].append(d)
                elif keep_alif:   # e = ψ (ε^v − β ε^a) in float, into product units
                    e_f = syn.post(psi) * (syn.pre(x1.to(F64)) / fp.s_x - syn.post(p.beta) * eps_a)
                    prod = (e_f * (fp.s_x * fp.s_y / 2 ** fp.ds_xy)).round().int()
                    tag = self._tag_step(tag, prod, 0, t, ev)
                    e_sum = e_sum + prod
                elif dense_tags:
                    tag = self._tag_step(tag, None, fp.ds_xy, t, ev, x1.int(), y1.int())
                    x1_seen.append(x1)
                    y1_seen.append(y1)
                else:
                    prod = syn.pre(x1.int()) * syn.post(y1.int())
                    tag = self._tag_step(tag, prod, fp.ds_xy, t, ev)
                    e_sum += prod
            else:
                e_sum = e_sum + e
            if record:   # integers as they are (trace_bits), else the float ē
                rec["tag"].append(tag if sw.trace_bits else tr.ebar)
            if not in_window:
                continue
            if sw.epoch_mean:   # means over the epoch's steps in the window (integers: rounded)
                learning = mean_int(l_sum, n_sum) if sw.trace_bits else l_sum / n_sum
                err, l_sum, err_sum, n_sum = err_sum / n_sum, 0, 0, 0
            if record:   # the learning signal the rule uses at this evaluation
                rec["L"].append(learning)
            if sw.trace_bits:
                step_w = third_factor_product(tag, syn.post(learning.int()), fp.ds_ty, fp).long()  # per synapse
                step_o = third_factor_product(zt[..., None], error_int(err, fp)[:, :, None, :], fp.ds_zz, fp)
            else:
                step_w = -syn.post(learning) * tr.ebar
                step_o = -zbar[..., None] * err[:, :, None, :]
            if sw.cadence == "batch":
                acc = acc + step_w.sum(1)
                acc_out = acc_out + step_o.sum(1)
            else:
                weights = self._write_back_on_chip(weights, step_w, step_o, t, ev)
                dense = [self._dense(w).double() for w in weights]
                fw = self.float_weights(weights)

        y_w = torch.stack(ys)
        if learn:
            if sw.trace_bits and not keep_alif:   # host side: Σ_t x1 ⊗ y1 >> ds, exact
                e_sum = (outer_sum(x1_seen, y1_seen) if dense_tags else e_sum) >> fp.ds_xy
            g_reg = regulariser_gradient(z_count, e_sum, t_steps, obj, fp, b, syn)
            weights = self._write_back_batch(weights, syn.to_dense(acc), acc_out, g_reg, t_steps, ev)
        if record:
            rec = {k: torch.stack(v) for k, v in rec.items() if v}
        return Result(weights, task_loss(y_w, tgt, obj), rate_regulariser(z_count / t_steps, obj), y_w,
                      z_count.mean((1, 2)) / t_steps, ev.counts, rec)

    # ------------------------------------------------------------------------------ pieces
    def _tag_step(self, tag, prod, ds, t, ev: Events, x1=None, y1=None, prod_a=None):
        """t ← sat(SR(t + inc·(prod >> ds) − leak·t)) with 7 fractional bits (Lava's write-back);
        ``prod`` None: the outer product of ``x1``, ``y1`` (dense tags; one fused kernel on CUDA);
        ``prod_a``: d·y1, the ε^a term (``eps_a_tag2``)."""
        fp, frac = self.fp, self.fp.frac_bits
        rand = self._rand(t, "tag", tuple(tag.shape), frac, self._syn_index, torch.int32)
        if prod is None and fp.switches.tag_leak_grid == "exact":
            prod = self.syn.pre(x1) * self.syn.post(y1)
        if fp.switches.tag_leak_grid == "exact":      # the float leak (1 − κ), not a literal
            p_inc = arith.tag_increment(prod, self.tag_rule._replace(down=ds), prod_a)
            p_leak = -(tag.to(F64) * fp.leak * 2 ** frac).round().int()
            new, raw = arith.write_back(tag, p_inc + p_leak, frac, rand, self.tag_rule.lo, self.tag_rule.hi)
            hits = arith.saturations(raw, new)
        elif prod is None:
            new, hits = self.tag_outer(tag, x1, y1, rand, self.tag_rule._replace(down=ds))
        else:
            new, hits = arith.tag_step(tag, prod, rand, self.tag_rule._replace(down=ds), prod_a)
        ev.add_counts("tag", hits)
        return new

    def _learning_signal(self, signal: LearningSignal, field, field_fn, signal_diffuse, err, fb_int, t,
                         trial_keys, ev: Events):
        """L (S, B, N): float, or integers in learning-signal units with ``trace_bits``."""
        fp, sw, mod = self.fp, self.fp.switches, self.modulator
        integer_release = sw.weight_bits and sw.trace_bits
        if integer_release:   # error units → 8-bit feedback Dense: release in units s_B s_e
            rel = feedback_release(error_int(err, fp), fb_int)
        if mod is not None and sw.diffusion_fixed:
            if integer_release:
                release = field_release(rel, fp)
            else:
                l_dir = torch.einsum("sbm,sjm->sbj", err, signal.routed[:, 0])
                release = (l_dir * per_net(fp.s_G, 3)).round().long()
            field, l_int = fixed_field_step(field, release, mod, fp, field_fn, trial_keys, t, ev)
        elif integer_release and mod is None:
            l_int = direct_signal(rel, fp)
        else:
            signal.diffuse_fn = signal_diffuse
            learning = signal.step(err, t)
            if not sw.trace_bits:
                return learning, field
            l_int = (learning * per_net(fp.s_L, 3)).round().long()
        l_clip = clip_signal(l_int, fp, ev)
        return (l_clip if sw.trace_bits else l_clip.to(F64) / per_net(fp.s_L, 3)), field

    def _write_back_on_chip(self, weights: Weights, step_w, step_o, t, ev: Events) -> Weights:
        """Cadence step/epoch: each matrix by :func:`.steps.on_chip_write_back`."""
        n_in = self.net.n_in
        parts = (("in", weights.w_in, step_w[:, :, :n_in]), ("rec", weights.w_rec, step_w[:, :, n_in:]),
                 ("out", weights.w_out, step_o))
        return Weights(*(on_chip_write_back(w, prod, self.fp.lr_lit[name],
                                            self._rand(t, f"w_{name}", tuple(w.shape), self.fp.frac_bits),
                                            self.fp, self._mask(name), ev, name)
                         for name, w, prod in parts))

    def _mask(self, name):
        return {"in": self.net.m_in, "rec": self.net.m_rec, "out": self.net.m_out}[name]

    def _write_back_batch(self, weights: Weights, acc, acc_out, g_reg, t_steps, ev: Events) -> Weights:
        """Host write-back at the end of the batch (:func:`.steps.host_write_back`)."""
        n_in = self.net.n_in
        parts = (("in", weights.w_in, acc[:, :n_in], g_reg[:, :n_in]),
                 ("rec", weights.w_rec, acc[:, n_in:], g_reg[:, n_in:]),
                 ("out", weights.w_out, acc_out, None))
        return Weights(*(host_write_back(w, a, reg, name, self.fp, self._keys[t_steps], self._mask(name), ev)
                         for name, w, a, reg in parts))
