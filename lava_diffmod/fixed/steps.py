r"""Per-population steps of the fixed-point network, shared by the batched emulator and the Lava
``fixed_pt`` models (ARCHITECTURE.md principle 1: one function serves both places).

Tensors carry leading (S, B) axes (networks, trials); the Lava models call these functions with
S = B = 1. Units are those of :mod:`.quantize`; the integer kernels themselves are in :mod:`.arith`.
"""
from __future__ import annotations

import functools

import torch

from ..rules.modulator import Modulator, diffuse as float_diffuse, modulator_step
from ..rules.synapses import DenseSynapses
from . import arith
from .quantize import FixedParams

F64 = torch.float64


class Events:
    """Counts, per network, how often each variable saturated or wrapped. A step adds its hits
    element by element; the per-network sums are formed when :attr:`counts` is read."""

    def __init__(self, s: int, device):
        self._hits: dict[str, torch.Tensor] = {}      # name → hits per element, (S, ...)
        self._sums: dict[str, torch.Tensor] = {}      # name → hits per network, (S,)
        self.s, self.device = s, device

    def add(self, name: str, before: torch.Tensor, after: torch.Tensor) -> None:
        hit = before != after
        acc = self._hits.get(name)
        if acc is not None and acc.shape == hit.shape:
            acc += hit
            return
        if acc is not None:
            self.add_counts(name, acc.flatten(1).sum(1))
        self._hits[name] = hit.to(torch.int32)

    def add_counts(self, name: str, hits: torch.Tensor) -> None:
        """Add per-network counts (S,)."""
        zero = torch.zeros(self.s, dtype=torch.int64, device=self.device)
        self._sums[name] = self._sums.get(name, zero) + hits

    @property
    def counts(self) -> dict[str, torch.Tensor]:
        """name → (S,) int64 events."""
        out = dict(self._sums)
        for name, acc in self._hits.items():
            c = acc.flatten(1).sum(1).long()
            out[name] = out[name] + c if name in out else c
        return out


def per_net(v: torch.Tensor, dim: int) -> torch.Tensor:
    """A per-network (S,) tensor shaped to broadcast against a tensor of ``dim`` dims."""
    return v.reshape(-1, *[1] * (dim - 1))


def tz_div(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """tz(x / 2^shift) with a per-network shift (S,)."""
    return torch.div(x, per_net(2 ** shift, x.dim()), rounding_mode="trunc")


def dense_of(w: torch.Tensor, fp: FixedParams) -> torch.Tensor:
    """The integer weights as the Dense datapath holds them (sign-mode clip, MIXED LSB loss)."""
    return arith.dense_weights(w, fp.profile["weight_bits"], fp.switches.mixed_sign_lsb_loss)


def readout_fixed_step(y_int: torch.Tensor, a_out: torch.Tensor, fp: FixedParams, ev: Events | None = None):
    """y ← sat(tz(y (2^12 − dκ)/2^12) + a_out·2^act_shift): the integer leaky readout (units s_o)."""
    q = fp.neuron
    raw = arith.decay(y_int, fp.dkappa, q.decay_bits) + (a_out << q.act_shift)
    new = arith.overflow(raw, q.v_bits, "saturate")
    if ev is not None:
        ev.add("readout y", raw, new)
    return new


def error_int(err: torch.Tensor, fp: FixedParams) -> torch.Tensor:
    """err_int = clip(round(s_e err), ±y_max): the error in 7-bit third-factor units."""
    return (err * fp.s_e).round().clamp(-fp.y_max, fp.y_max).long()


def feedback_release(err_int: torch.Tensor, fb_int: torch.Tensor) -> torch.Tensor:
    """Σ_m B_int[j, m] err_int[m] (S, B, N): the 8-bit feedback Dense, in units s_B s_e (exact in float64)."""
    return torch.einsum("sbm,sjm->sbj", err_int.to(F64), fb_int.to(F64)).round().long()


def field_release(rel: torch.Tensor, fp: FixedParams) -> torch.Tensor:
    """The release into the integer field: tz(rel · 2^field_frac / 2^f_shift) (units s_G)."""
    return tz_div(rel << fp.field_frac_bits, fp.f_shift)


def direct_signal(rel: torch.Tensor, fp: FixedParams) -> torch.Tensor:
    """The learning signal without a modulator: tz(rel / 2^f_shift) (units s_L, not yet clipped)."""
    return tz_div(rel, fp.f_shift)


def field_diffusion(mod: Modulator | None, fp: FixedParams):
    """The diffusion of one step with ``diffusion_hop_delay`` d: neighbours arrive d steps late,
    G̃ = K ⊛ G(t−1−d) + c (G(t−1) − G(t−1−d)), c the kernel's centre weight; integer with
    ``diffusion_fixed``. None: the float diffusion as the float reference does it. The returned
    function keeps the field history of one trial."""
    sw = fp.switches
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


def fixed_field_step(field: torch.Tensor | None, release: torch.Tensor, mod: Modulator, fp: FixedParams,
                     diffuse_fn, trial_keys, t: int, ev: Events | None = None):
    """One step of the integer field (S, B, 1, h·w): diffuse and decay, release (S, B, N) at the own
    cells, saturate to ``field_bits``; returns the field and L = tz(local / 2^field_frac) (S, B, N)."""
    if field is None:
        h, w = mod.grid
        field = torch.zeros((*release.shape[:2], 1, h * w), dtype=torch.int64, device=release.device)
    raw, _ = modulator_step(field, release[:, :, None, :], mod, trial_keys, t, diffuse_fn=diffuse_fn)
    lim = arith.signed_limit(fp.field_bits)
    field = raw.clamp(-lim, lim)
    if ev is not None:
        ev.add("modulator field", raw, field)
    local = field.gather(-1, mod.cells[:, None, None, :].expand(release[:, :, None, :].shape))[:, :, 0]
    return field, torch.div(local, 2 ** fp.field_frac_bits, rounding_mode="trunc")


def clip_signal(l_int: torch.Tensor, fp: FixedParams, ev: Events | None = None) -> torch.Tensor:
    """The learning signal clipped to the third factor's 7 bits, ±y_max."""
    clipped = l_int.clamp(-fp.y_max, fp.y_max)
    if ev is not None:
        ev.add("learning signal", l_int, clipped)
    return clipped


def third_factor_product(a: torch.Tensor, third: torch.Tensor, ds: int, fp: FixedParams) -> torch.Tensor:
    """−a·third as Loihi evaluates it: the products a·y3 and a·y2 of the sign-split third factor
    (y2 = third⁺, y3 = third⁻), each >> ds, apart (``sign_split_L``), or one signed product >> ds."""
    if fp.switches.sign_split_L:
        pos, neg = arith.sign_split(third, fp.profile["trace_bits"])
        return ((a * neg) >> ds) - ((a * pos) >> ds)
    return -((a * third) >> ds)


def regulariser_gradient(z_count: torch.Tensor, e_sum: torch.Tensor, t_steps: int, obj, fp: FixedParams,
                         batch: int, syn=None) -> torch.Tensor:
    """The host's g_reg (S, P, N) = red_b t_epoch Σ_b (c_reg/T)(r_bj − f0) Σ_t e_bij(t), from the
    post spike counts (S, B, N) and Σ_t e per synapse (layout ``syn``): float, or with
    ``trace_bits`` the integer Σ_t x1 y1 >> ds in tag-product units (then converted to float)."""
    from ..rules.eprop import regulariser_coefficient
    if fp.switches.trace_bits:
        e_sum = e_sum.to(F64) * (2.0 ** fp.ds_xy / (fp.s_x * fp.s_y))
    reg = regulariser_coefficient(z_count, t_steps, obj)
    syn = syn or DenseSynapses(*e_sum.shape[-2:])
    return syn.to_dense(obj.batch_scale(batch) * fp.switches.t_epoch * syn.contract_post(reg, e_sum))


def check_on_chip_rates(fp: FixedParams) -> None:
    """On-chip write-back (cadence step/epoch) needs every learning-rate literal in the profile's
    exponent range; a clear error otherwise."""
    if fp.switches.cadence not in ("step", "epoch"):
        return
    lo, hi = fp.profile["s_exp_range"]
    for name, lits in fp.lr_lit.items():
        for m, e in lits:
            if m and not lo <= e <= hi:
                raise ValueError(
                    f"fixed.lr: the learning-rate literal of W_{name} is {m}*2^{e}, outside the on-chip "
                    f"exponent range [{lo}, {hi}]; use cadence = batch (host write-back) or change fixed.lr")


def on_chip_write_back(w: torch.Tensor, prod: torch.Tensor, lits, rand: torch.Tensor, fp: FixedParams,
                       mask: torch.Tensor, ev: Events | None = None, name: str = "") -> torch.Tensor:
    """Cadence step/epoch: w ← sat(SR(w + Σ_b clip(m·2^e·prod))) ⊙ mask, for w (S, P, N) and the
    products of every trial prod (S, B, P, N); ``lits`` the per-network rate literals (m, e)."""
    frac = fp.frac_bits
    delta = torch.stack([arith.literal_product(prod[i], 0, m, e, frac, fp.acc_bits).sum(0)
                         for i, (m, e) in enumerate(lits)])
    new, raw = arith.write_back(w, delta, frac, rand, -fp.weight_limit - 1, fp.weight_limit)
    if ev is not None:
        ev.add(f"weight W_{name}", raw, new)
    return new * mask.long()


def host_write_back(w: torch.Tensor, acc: torch.Tensor, reg: torch.Tensor | None, name: str, fp: FixedParams,
                    step_key: torch.Tensor, mask: torch.Tensor, ev: Events | None = None) -> torch.Tensor:
    """The host's update at the end of a batch: Δw = λ·acc − lr·g_reg (masked). Float weights
    (no ``weight_bits``) add Δw; integer weights add it stochastically rounded (24 random bits of
    H(step_key, w_name, index), independent per synapse) or rounded to nearest, clipped to the
    host accumulator and saturated to the weight range. ``step_key`` (S,) is the key after the
    last step."""
    sw = fp.switches
    if sw.weight_bits and sw.trace_bits:
        lam = fp.lr_lit_value[name]
    else:
        lam = fp.lr_exact[name] * (fp.s_w[name] if sw.weight_bits else 1.0)
    delta = acc.to(F64) * per_net(lam, 3)
    if reg is not None:
        delta = delta - fp.lr * reg * (per_net(fp.s_w[name], 3) if sw.weight_bits else 1.0)
    delta = delta * mask.to(F64)
    if not sw.weight_bits:
        return w + delta
    lim_acc = 2.0 ** (fp.host_acc_bits - 1 - 16)
    clipped = delta.clamp(-lim_acc, lim_acc)
    if sw.stoch_round:
        u = arith.random_bits(step_key, f"w_{name}", tuple(w.shape), 24, shared=False,
                              device=w.device).to(F64) / 2 ** 24
        step = torch.floor(clipped + u).long()
    else:
        step = torch.floor(clipped + 0.5).long()
    raw = w + step
    new = raw.clamp(-fp.weight_limit - 1, fp.weight_limit)
    if ev is not None:
        ev.add(f"host accumulator W_{name}", delta, clipped)
        ev.add(f"weight W_{name}", raw, new)
    return new


@functools.lru_cache(maxsize=64)
def rounding_key(seed: int, iteration: int) -> torch.Tensor:
    """The (1,) key of one network's stochastic rounding in batch (trial) ``iteration``; the key of
    step t is ``arith.step_key(key, t)``. Cached: do not modify the returned tensor."""
    from .. import rng
    return rng.derive(torch.tensor([rng.name_key(seed, "fixed_rounding")], dtype=torch.int64), iteration)


class StepRandom:
    """The random bits of one step for stochastic rounding, by stream: 0 without ``stoch_round``
    (the on-chip roundings then truncate), one number per step and network with ``shared_rng``
    (all streams hashed at once), else one per element (index over the requested shape).
    ``step_key`` (S,)."""

    def __init__(self, step_key: torch.Tensor, fp: FixedParams):
        sw = fp.switches
        self.key, self.on, self.shared = step_key, sw.stoch_round, sw.stoch_round and sw.shared_rng
        self.table = arith.shared_random_table(step_key[None])[0] if self.shared else None

    def __call__(self, stream: str, shape: tuple[int, ...], bits: int, device=None,
                 index: torch.Tensor | None = None) -> torch.Tensor:
        """``index``: the elements' flat indices in a dense block (sparse per-synapse state)."""
        if not self.on:
            return torch.zeros(shape, dtype=torch.int64, device=device)
        if self.shared:
            return per_net(arith.shared_stream(self.table, stream, bits), len(shape)).expand(shape)
        return arith.random_bits(self.key, stream, shape, bits, False, device=device, index=index)
