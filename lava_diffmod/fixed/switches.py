"""Every way the fixed path departs from the float maths is one switch (LOIHI.md §5.3).

With :meth:`Switches.off` the emulator computes the float maths (and equals the float
reference); :meth:`Switches.hardware` is the Loihi-2-faithful setting. Any single switch can be
turned on alone, so its accuracy cost can be measured alone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import ConfigError, key_name, short_repr


@dataclass(frozen=True)
class Switches:
    """LOIHI.md §5.3 rank in brackets."""
    trace_bits: bool = False          # [1] 7-bit pre trace x1, ψ (y1), error and learning signal; 9-bit tag
    product_downshift: bool = False   # [1] each product >> max(0, Σb + offset − 15); needs trace_bits
    sign_split_L: bool = False        # [2] learning signal as y2 − y3, each product truncated apart; needs trace_bits
    tag_leak_grid: str = "exact"      # [3] κ leak of the tag: "exact" | "literal" (m·2^e) | "pow2"
    drop_alif_eps_a: bool = False     # [4] LIF-style eligibility (ε^a dropped) for ALIF units
    eps_a_tag2: bool = False          # [4] ε^a kept on chip in the unsigned tag_2 d (rule dd, every t_epoch)
    random_feedback: bool = False     # [5] random feedback of the same sparsity instead of symmetric
    weight_bits: bool = False         # [6] 8-bit weights + exponent, integer synaptic input, 8-bit feedback
    stoch_round: bool = False         # [6] stochastic rounding at write-back and trace decay (else nearest)
    neuron_fixed: bool = False        # [7] integer neuron and readout state: 12-bit decays, tz, wrap/saturate
    dense_delay: int = 0              # [8] extra steps per Dense hop (input, recurrent)
    diffusion_hop_delay: int = 0      # [8] extra steps per hop between modulator cells
    mixed_sign_lsb_loss: bool = False  # [9] MIXED-sign weights keep even integers; needs weight_bits
    shared_rng: bool = False          # [10] one random number per step for all synapses; needs stoch_round
    t_epoch: int = 1                  # [11] the learning rule is evaluated every t_epoch steps
    epoch_mean: bool = False          # [11] ψ (y1), L and err reach the rule as epoch means, not last values
    cadence: str = "batch"            # [11] weight write-back: "step" | "epoch" | "batch" (host, end of batch)
    diffusion_fixed: bool = False     # [12] integer field: stencil, field width, 7-bit clip at readout

    def __post_init__(self):
        needs = {"product_downshift": "trace_bits", "sign_split_L": "trace_bits", "eps_a_tag2": "trace_bits",
                 "mixed_sign_lsb_loss": "weight_bits", "shared_rng": "stoch_round"}
        for name, base in needs.items():
            if getattr(self, name) and not getattr(self, base):
                raise ConfigError(f"fixed.switches.{name}: needs fixed.switches.{base} = true")
        if self.eps_a_tag2 and self.drop_alif_eps_a:
            raise ConfigError("fixed.switches.eps_a_tag2: keeps ε^a, so it needs fixed.switches.drop_alif_eps_a = false")
        if self.tag_leak_grid not in ("exact", "literal", "pow2"):
            raise ConfigError(f"fixed.switches.tag_leak_grid = {self.tag_leak_grid!r}: must be exact, literal or pow2")
        if self.cadence not in ("step", "epoch", "batch"):
            raise ConfigError(f"fixed.switches.cadence = {self.cadence!r}: must be step, epoch or batch")
        for name in ("dense_delay", "diffusion_hop_delay"):
            if not 0 <= getattr(self, name) <= 8:
                raise ConfigError(f"fixed.switches.{name} = {getattr(self, name)}: must be in [0, 8]")
        if not 1 <= self.t_epoch <= 4096:
            raise ConfigError(f"fixed.switches.t_epoch = {self.t_epoch}: must be in [1, 4096]")
        if self.cadence in ("step", "epoch") and not (self.weight_bits and self.trace_bits):
            raise ConfigError(f"fixed.switches.cadence = {self.cadence!r}: on-chip write-back needs "
                              f"weight_bits and trace_bits")

    @classmethod
    def off(cls) -> "Switches":
        """The float maths: the emulator equals the float reference."""
        return cls()

    @classmethod
    def hardware(cls) -> "Switches":
        """Loihi-2-faithful: every approximation on (write-back at the end of the batch)."""
        return cls(trace_bits=True, product_downshift=True, sign_split_L=True, tag_leak_grid="pow2",
                   drop_alif_eps_a=True, weight_bits=True, stoch_round=True, neuron_fixed=True,
                   dense_delay=1, diffusion_hop_delay=1, mixed_sign_lsb_loss=True, shared_rng=True,
                   diffusion_fixed=True)

    @classmethod
    def only(cls, name: str) -> "Switches":
        """One approximation alone, with the switches it cannot work without (stochastic rounding
        for integer weights: without it updates below one LSB vanish; ε^a in d: a learning epoch
        long enough that the decay (1 − ρ)·t_epoch of τ_a = 2 s is an on-chip literal, the
        product down-shift that lets d's increment be one, and stochastic rounding, without
        which its sub-LSB steps vanish)."""
        values = dict(REQUIRES.get(name, {}))
        values[name] = ALONE.get(name, True)
        return cls(**values)

    @classmethod
    def from_spec(cls, spec) -> "Switches":
        """``"off"``, ``"hardware"``, or a table ``{preset = "hardware", trace_bits = false, ...}``."""
        if isinstance(spec, str):
            if spec not in ("off", "hardware"):
                raise ConfigError(f"fixed.switches = {short_repr(spec)}: must be off, hardware or a table")
            return getattr(cls, spec)()
        if not isinstance(spec, dict) or not isinstance(spec.get("preset", "off"), str):
            raise ConfigError(f"fixed.switches = {short_repr(spec)}: must be \"off\", \"hardware\" or a table "
                              f"{{preset = \"off\"|\"hardware\", <switch> = ...}}")
        spec = dict(spec)
        preset = spec.pop("preset", "off")
        base = cls.from_spec(preset)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in spec.items():
            if key not in fields:
                raise ConfigError(f"fixed.switches.{key_name(key)}: unknown switch; allowed: preset, {', '.join(fields)}")
            kind = type(getattr(base, key))
            if type(value) is not kind:
                raise ConfigError(f"fixed.switches.{key} = {short_repr(value)}: must be a {kind.__name__}")
        return dataclasses.replace(base, **spec)

    def names(self) -> list[str]:
        """The approximations that differ from off."""
        off = Switches()
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(off, f.name)]


APPROXIMATIONS = ["trace_bits", "product_downshift", "sign_split_L", "tag_leak_grid", "drop_alif_eps_a", "eps_a_tag2",
                  "random_feedback", "weight_bits", "stoch_round", "neuron_fixed", "dense_delay",
                  "diffusion_hop_delay", "mixed_sign_lsb_loss", "shared_rng", "diffusion_fixed", "t_epoch"]

# the value a switch takes when measured alone (booleans: True)
ALONE = {"tag_leak_grid": "pow2", "dense_delay": 1, "diffusion_hop_delay": 1, "t_epoch": 4}

# what a switch measured alone brings with it (Switches.only)
REQUIRES = {"product_downshift": {"trace_bits": True}, "sign_split_L": {"trace_bits": True},
            "eps_a_tag2": {"trace_bits": True, "product_downshift": True, "stoch_round": True, "t_epoch": 16},
            "weight_bits": {"stoch_round": True}, "stoch_round": {"weight_bits": True},
            "mixed_sign_lsb_loss": {"weight_bits": True, "stoch_round": True},
            "shared_rng": {"trace_bits": True, "stoch_round": True}}
