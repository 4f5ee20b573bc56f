"""Hardware profiles: load, validate, and report whether a network fits (LOIHI.md §8).

A profile is a TOML file in ``hw_profiles/`` (shipped: ``loihi2``, ``loihi1``, ``lava_sim_0_10``,
``ideal``) or a user's own file. Every number carries its source and whether it was verified:

    [profile]
    name = "loihi2"
    description = "..."
    inherits = ""            # optional: start from the keys of a shipped profile

    [keys]
    weight_bits = { value = 8, source = "L: lava-nc 0.10.0 lava/proc/dense/models.py", verified = true }

Values that no source states are the string ``"unknown"`` (allowed where the schema says so).
The ``ideal`` profile (``ideal = true`` in ``[profile]``) has no keys: it means no quantisation.
Any unknown key, wrong type or out-of-range value stops with one line naming the key.

:func:`resource_report` maps one network of a config onto a profile's cores (fits? cores,
synapse memory, fan-in / fan-out, chips; why not); :func:`energy_per_trial` prices operation
counts with the profile's energy figures, flagging every unverified one; the spike counts come
from a float forward pass of the initial network (:func:`trial_spike_counts`).
"""
from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError, key_name, read_toml, short_repr

if TYPE_CHECKING:
    from .config import Config

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Key:
    """Schema of one profile key: kind is int | float | bool | choice | int_pair | text."""
    kind: str
    lo: float = -math.inf
    hi: float = math.inf
    choices: tuple = ()
    unknown_ok: bool = False
    doc: str = ""


def _int(lo, hi, doc, unknown_ok=False):
    return Key("int", lo, hi, unknown_ok=unknown_ok, doc=doc)


def _float(lo, hi, doc, unknown_ok=False):
    return Key("float", lo, hi, unknown_ok=unknown_ok, doc=doc)


def _pair(lo, hi, doc):
    return Key("int_pair", lo, hi, doc=doc)


OVERFLOW = ("wrap", "saturate")

SCHEMA: dict[str, Key] = {
    # chip and core resources
    "cores_per_chip": _int(1, 2**20, "neuro cores per chip"),
    "neurons_per_core": _int(1, 2**20, "compartments (neurons) per core"),
    "syn_mem_bits_per_core": _int(1, 2**40, "synapse memory per core in bits", unknown_ok=True),
    "fanin_axons": _int(1, 2**24, "input axons per core", unknown_ok=True),
    "fanout_axons": _int(1, 2**24, "output axons per core", unknown_ok=True),
    "synapses_per_chip": _int(1, 2**40, "synapses per chip", unknown_ok=True),
    # weights and synaptic input
    "weight_bits": _int(1, 16, "weight magnitude bits (sign extra)"),
    "weight_exp_range": _pair(-16, 16, "weight exponent range [lo, hi]"),
    "mixed_sign_lsb_loss": Key("bool", doc="MIXED-sign weights lose their LSB (even integers only)"),
    "syn_acc_bits": _int(1, 64, "synaptic input accumulator bits"),
    "dense_delay_steps": _int(0, 16, "extra steps per Dense hop"),
    # neuron state
    "state_bits_u": _int(2, 62, "current u bits (signed)"),
    "state_bits_v": _int(2, 62, "voltage v bits (signed)"),
    "state_bits_adapt": _int(2, 62, "ALIF threshold offset b bits (ours)"),
    "u_overflow": Key("choice", choices=OVERFLOW, doc="u on overflow"),
    "v_overflow": Key("choice", choices=OVERFLOW, doc="v on overflow"),
    "decay_bits": _int(1, 30, "decay constant bits (du, dv, ...)"),
    "du_offset": _int(0, 1, "offset added to du in the current decay"),
    "act_shift": _int(0, 16, "left shift of synaptic input into u (x 2^act_shift)"),
    "vth_bits": _int(1, 32, "threshold mantissa bits"),
    "vth_shift": _int(0, 16, "left shift of the threshold mantissa"),
    "bias_mant_bits": _int(1, 32, "bias mantissa bits (signed)"),
    "bias_exp_range": _pair(-16, 16, "bias exponent range [lo, hi]"),
    "refractory_max_steps": _int(0, 2**16, "largest refractory period in steps", unknown_ok=True),
    "graded_spike_bits": _int(0, 32, "graded spike payload bits (0: binary)", unknown_ok=True),
    # learning engine
    "trace_bits": _int(1, 16, "pre/post trace bits (unsigned)"),
    "trace_impulse_frac_bits": _int(0, 16, "fractional bits of a trace impulse"),
    "impulse_frac_doubling": Key("bool", doc="simulator quirk: impulse fraction compared with [0, 128)"),
    "n_x_traces": _int(0, 8, "presynaptic traces per synapse group"),
    "n_y_traces": _int(0, 8, "postsynaptic traces / third factors"),
    "tag_bits": _int(1, 32, "tag t bits, sign included (Lava: 8 + sign = 9; also its width in the product down-shift)"),
    "tag2_bits": _int(1, 32, "second tag d bits (unsigned)"),
    "learn_acc_bits": _int(1, 64, "learning accumulator bits (sign included)"),
    "learn_frac_bits": _int(0, 32, "fractional bits of a synaptic variable under learning"),
    "learn_overflow_offset": _int(0, 16, "product down-shift = max(0, sum of widths + offset - 15)"),
    "s_mant_bits": _int(1, 16, "scaling-literal mantissa bits (signed)"),
    "s_exp_range": _pair(-32, 32, "scaling-literal exponent range [lo, hi]"),
    "epoch_time_bits": _int(0, 16, "bits of the time within a learning epoch (t_epoch < 2^bits)"),
    "third_factor_bits": _int(1, 16, "third-factor bits"),
    "third_factor_signed": Key("bool", doc="third factor signed (else sign split over y2/y3)"),
    "shared_rounding_rng": Key("bool", unknown_ok=True, doc="one random number per step for all synapses"),
    "enforces_limits": Key("bool", doc="resource limits and declared widths are enforced (false: a simulator "
                                       "that runs any size; limits are reported for the chip it models)"),
    # energy (placeholders unless verified)
    "e_synop_pJ": _float(0, 1e6, "energy per synaptic operation", unknown_ok=True),
    "e_synupdate_pJ": _float(0, 1e6, "energy per synaptic update (learning)", unknown_ok=True),
    "e_neuron_update_pJ": _float(0, 1e6, "energy per neuron update", unknown_ok=True),
    # descriptive facts (not used by the emulator)
    "process_node": Key("text", doc="process node"),
    "die_mm2": _float(0, 1e5, "die area", unknown_ok=True),
    "transistors": Key("text", doc="transistor count"),
    "x86_cores_per_chip": _int(0, 1024, "embedded x86 cores per chip", unknown_ok=True),
    "systems": Key("text", doc="systems built from the chip"),
}


class ProfileError(ConfigError):
    """A bad hardware profile; one line naming the file and the key."""


@dataclass(frozen=True)
class Profile:
    """A validated hardware profile: ``profile[key]`` is the value (``"unknown"`` if unstated)."""
    name: str
    description: str = ""
    ideal: bool = False
    values: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    verified: dict = field(default_factory=dict)
    path: str = ""

    def __getitem__(self, key: str) -> Any:
        if self.ideal:
            raise KeyError(f"the ideal profile has no hardware key {key!r}")
        return self.values[key]

    def known(self, key: str) -> bool:
        return not self.ideal and self.values.get(key, UNKNOWN) != UNKNOWN


def profiles_dir() -> Path:
    """The shipped profiles: installed as lava_diffmod.hw_profiles, or hw_profiles/ of a source
    checkout used without installing (e.g. PYTHONPATH=. on a GPU machine)."""
    try:
        return Path(str(importlib.resources.files("lava_diffmod.hw_profiles")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "hw_profiles"


def shipped_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in profiles_dir().iterdir() if p.name.endswith(".toml"))


def _check_value(where: str, name: str, spec: Key, value) -> Any:
    if value == UNKNOWN:
        if spec.unknown_ok:
            return value
        raise ProfileError(f"{where}: keys.{name} = 'unknown' is not allowed; give a value")
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ProfileError(f"{where}: keys.{name} = {value!r}: must be true or false")
        return value
    if spec.kind == "text":
        if not isinstance(value, str):
            raise ProfileError(f"{where}: keys.{name} = {value!r}: must be a string")
        return value
    if spec.kind == "choice":
        if value not in spec.choices:
            raise ProfileError(f"{where}: keys.{name} = {value!r}: must be one of {', '.join(spec.choices)}")
        return value
    if spec.kind == "int_pair":
        if (not isinstance(value, list) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
            raise ProfileError(f"{where}: keys.{name} = {value!r}: must be a pair of integers [lo, hi]")
        if not (spec.lo <= value[0] <= value[1] <= spec.hi):
            raise ProfileError(f"{where}: keys.{name} = {value!r}: need {spec.lo:g} <= lo <= hi <= {spec.hi:g}")
        return tuple(value)
    number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.kind == "int" and not (number_ok and isinstance(value, int)):
        raise ProfileError(f"{where}: keys.{name} = {short_repr(value)}: must be an integer")
    if spec.kind == "float" and not (number_ok and (isinstance(value, int) or math.isfinite(value))):
        raise ProfileError(f"{where}: keys.{name} = {short_repr(value)}: must be a finite number")
    if not spec.lo <= value <= spec.hi:
        raise ProfileError(f"{where}: keys.{name} = {short_repr(value)}: must be in [{spec.lo:g}, {spec.hi:g}]")
    return value


def _read(path: Path) -> dict:
    return read_toml(path, "hw profile", ProfileError, f"; shipped profiles: {', '.join(shipped_profiles())}")


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (``loihi2``) or a user's TOML file by path; validated."""
    text = str(name_or_path)
    if text in shipped_profiles():
        path = profiles_dir() / f"{text}.toml"
    else:
        path = Path(text)
    data = _read(path)
    where = path.name
    unknown_tables = sorted(set(data) - {"profile", "keys"})
    if unknown_tables:
        raise ProfileError(f"{where}: [{key_name(unknown_tables[0])}]: unknown table; allowed: [profile], [keys]")
    head = data.get("profile")
    if not isinstance(head, dict) or not isinstance(head.get("name"), str) or not head["name"]:
        raise ProfileError(f"{where}: [profile] needs name = \"...\"")
    bad = sorted(set(head) - {"name", "description", "inherits", "ideal"})
    if bad:
        raise ProfileError(f"{where}: profile.{key_name(bad[0])}: unknown key; allowed: name, description, inherits, ideal")
    ideal = head.get("ideal", False)
    if not isinstance(ideal, bool):
        raise ProfileError(f"{where}: profile.ideal = {short_repr(ideal)}: must be true or false")
    for key in ("description", "inherits"):
        if not isinstance(head.get(key, ""), str):
            raise ProfileError(f"{where}: profile.{key} = {short_repr(head[key])}: must be a string")
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        raise ProfileError(f"{where}: [keys] must be a table")
    if ideal:
        if keys:
            raise ProfileError(f"{where}: an ideal profile (no quantisation) takes no [keys]")
        return Profile(head["name"], head.get("description", ""), True, path=str(path))
    base = Profile(head["name"])
    if head.get("inherits"):
        if head["inherits"] not in shipped_profiles():
            raise ProfileError(f"{where}: profile.inherits = {head['inherits']!r}: must be one of "
                               f"{', '.join(shipped_profiles())}")
        base = load_profile(head["inherits"])
    values, sources, verified = dict(base.values), dict(base.sources), dict(base.verified)
    for name, entry in keys.items():
        if name not in SCHEMA:
            raise ProfileError(f"{where}: keys.{key_name(name)}: unknown key; see lava_diffmod.hw.SCHEMA for the allowed keys")
        if not isinstance(entry, dict) or set(entry) - {"value", "source", "verified"} or "value" not in entry:
            raise ProfileError(f"{where}: keys.{name}: must be {{ value = ..., source = \"...\", verified = true|false }}")
        if not isinstance(entry.get("source"), str) or not entry["source"].strip():
            raise ProfileError(f"{where}: keys.{name}: needs a non-empty source")
        if not isinstance(entry.get("verified"), bool):
            raise ProfileError(f"{where}: keys.{name}.verified: must be true or false")
        values[name] = _check_value(where, name, SCHEMA[name], entry["value"])
        sources[name] = entry["source"]
        verified[name] = entry["verified"]
    missing = sorted(set(SCHEMA) - set(values))
    if missing:
        raise ProfileError(f"{where}: keys.{missing[0]}: missing ({len(missing)} keys missing); "
                           f"every schema key needs a value or 'unknown'")
    return Profile(head["name"], head.get("description", base.description), False, values, sources,
                   verified, str(path))


# ---------------------------------------------------------------------------------------------
# Resource report: does one network of a config fit on the chip of a profile?
# ---------------------------------------------------------------------------------------------
#
# The mapping (a first-order model, [inference] in LOIHI.md's sense; no vendor compiler is used):
#
#   on-chip compartments   N recurrent neurons; n_out readout neurons; 2·n_out error units (the
#                          error's positive and negative parts, LOIHI.md §5.2); for rule
#                          "diffusion" C·h·w modulator grid compartments (C channels).
#   external axons         n_in input spike sources and n_out target sources (from the host):
#                          they use fan-in axons of the cores they reach, no compartments.
#   synapses (pre → post)  input m_in, recurrent m_rec, readout m_out (learning: weight + tag);
#                          feedback: each nonzero B_jm is two synapses, from error units m+ and
#                          m− (into neuron j for e-prop, into grid cell p_j for diffusion);
#                          diffusion stencil (2r+1)² per grid cell (box) or 5 (Laplacian);
#                          grid → neuron third factor (C per neuron); readout → error and
#                          target → error (2 per error pair). All but the first three are fixed.
#   bits per synapse       fixed: weight_bits + 1 (sign); learning: + tag_bits (sign included);
#                          weight and tag bits only, no index or axon-configuration overhead, so
#                          the synapse memory is a lower bound.
#   packing                compartments in index order, one kind per core (a core runs one
#                          neuron program), greedily: a new core when the next compartment
#                          would break neurons_per_core, syn_mem_bits_per_core (synapses into
#                          the core's compartments × their bits) or fanin_axons (distinct
#                          presynaptic sources into the core). A compartment that breaks a
#                          limit alone gets a core of its own, which is then reported.
#   fan-out                a source's destination cores; a core's output axons are the sum over
#                          its compartments (checked against fanout_axons, which is per core).
#
# Limits whose value is "unknown" are reported as unknown and not enforced; a profile with
# enforces_limits = false (a simulator) reports the limits it breaks but fits. Rule "bptt" has no
# on-chip learning: it is mapped for inference only (no error units, feedback or tags).

KINDS = ("recurrent", "readout", "error", "grid")


@dataclass
class _Net:
    """One network's on-chip graph: for every compartment its sources and synapse bits."""
    kinds: list            # kind of every compartment (on-chip), in packing order
    ids: list              # global id of every compartment
    srcs: list             # np.ndarray of distinct global source ids per compartment
    n_syn: list            # synapses into each compartment
    mem: list              # synapse memory bits of each compartment
    n_sources: int         # size of the global id space
    synapses: dict         # synapse count per class
    plastic: int           # learning synapses
    components: dict       # compartment / axon counts
    outdeg_in: Any         # (n_in,) out-degree of each input axon
    outdeg_rec: Any        # (N,) out-degree of each recurrent neuron (recurrent + readout)
    notes: list


def _stencil(h: int, w: int, q: int, kernel: str, radius: int) -> list[int]:
    r, c = divmod(q, w)
    if kernel == "laplacian":
        offs = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    else:
        offs = [(a, b) for a in range(-radius, radius + 1) for b in range(-radius, radius + 1)]
    return sorted({((r + a) % h) * w + (c + b) % w for a, b in offs})


def _routing(channels: str, n: int, n_lif: int, n_out: int):
    """R (C, N, n_out) 0/1, as lava_diffmod.rules.modulator.routing_matrix."""
    import numpy as np
    if channels == "single":
        return np.ones((1, n, n_out), dtype=bool)
    if channels == "per_output":
        r = np.zeros((n_out, n, n_out), dtype=bool)
        for m in range(n_out):
            r[m, :, m] = True
        return r
    alif = np.arange(n) >= n_lif
    return np.stack([np.repeat(~alif[:, None], n_out, 1), np.repeat(alif[:, None], n_out, 1)])


def _network_graph(cfg: Config, profile: Profile, n_in: int, n_out: int, seed: int) -> _Net:
    import numpy as np
    from .network.structure import build_structure

    st = build_structure(cfg, n_in, n_out, seed)
    m_in = st.m_in.numpy() != 0
    m_rec = st.m_rec.numpy() != 0
    m_out = st.m_out.numpy() != 0
    fb = st.feedback.numpy() != 0
    cells = st.cells.numpy()
    n = cfg.n_rec
    h, w = cfg.network.grid_h, cfg.network.grid_w
    rule = cfg.rule.name
    learning = rule != "bptt"
    diffusion = rule == "diffusion"
    d = cfg.diffusion
    n_ch = cfg.n_channels(n_out) if diffusion else 0
    n_err = 2 * n_out if learning else 0
    n_grid = n_ch * h * w
    notes = []
    if not learning:
        notes.append("rule bptt has no on-chip form: mapped for inference (no error units, feedback or tags)")

    if profile.ideal:
        fixed_bits = learn_bits = 0
    else:
        fixed_bits = profile["weight_bits"] + 1
        learn_bits = fixed_bits + (profile["tag_bits"] if learning else 0)

    # global ids: inputs, targets, recurrent, readout, error (m+ = 2m, m- = 2m+1), grid (c, cell)
    o_tgt = n_in
    o_rec = o_tgt + (n_out if learning else 0)
    o_out = o_rec + n
    o_err = o_out + n_out
    o_grid = o_err + n_err
    n_sources = o_grid + n_grid

    kinds, ids, srcs, n_syn, mem = [], [], [], [], []
    syn = dict.fromkeys(("input", "recurrent", "readout", "feedback", "third_factor", "error",
                         "diffusion"), 0)

    def add(kind, gid, learn_src, fixed_src):
        learn_src = np.asarray(learn_src, dtype=np.int64)
        fixed_src = np.asarray(fixed_src, dtype=np.int64)
        kinds.append(kind)
        ids.append(gid)
        srcs.append(np.unique(np.concatenate([learn_src, fixed_src])))
        n_syn.append(learn_src.size + fixed_src.size)
        mem.append(learn_src.size * learn_bits + fixed_src.size * fixed_bits)

    routing = _routing(d.channels, n, cfg.neuron.n_lif, n_out) if diffusion else None
    radii = list(d.channel_radius) or [d.radius] * n_ch
    m_in_t, m_rec_t = m_in.T, m_rec.T
    for j in range(n):
        pre_in = np.flatnonzero(m_in_t[j])
        pre_rec = o_rec + np.flatnonzero(m_rec_t[j])
        syn["input"] += pre_in.size
        syn["recurrent"] += pre_rec.size
        third = []
        if rule == "eprop":
            ms = np.flatnonzero(fb[j])
            third = np.concatenate([o_err + 2 * ms, o_err + 2 * ms + 1])
            syn["feedback"] += len(third)
        elif diffusion:
            third = [o_grid + c * h * w + int(cells[j]) for c in range(n_ch)]
            syn["third_factor"] += len(third)
        learn = np.concatenate([pre_in, pre_rec])
        if learning:
            add("recurrent", o_rec + j, learn, third)
        else:
            add("recurrent", o_rec + j, [], learn)
    for m in range(n_out):
        pre = o_rec + np.flatnonzero(m_out[:, m])
        syn["readout"] += pre.size
        add("readout", o_out + m, pre if learning else [], [] if learning else pre)
    for m in range(n_err // 2):
        for sign in (0, 1):
            add("error", o_err + 2 * m + sign, [], [o_out + m, o_tgt + m])
            syn["error"] += 2
    if diffusion:
        neuron_at = {int(q): j for j, q in enumerate(cells)}
        for c in range(n_ch):
            for q in range(h * w):
                sten = [o_grid + c * h * w + p for p in _stencil(h, w, q, d.kernel, radii[c])]
                syn["diffusion"] += len(sten)
                release = []
                j = neuron_at.get(q)
                if j is not None:
                    ms = np.flatnonzero(fb[j] & routing[c, j])
                    release = np.concatenate([o_err + 2 * ms, o_err + 2 * ms + 1])
                    syn["feedback"] += len(release)
                add("grid", o_grid + c * h * w + q, [], np.concatenate([sten, release]).astype(np.int64))
        if d.kernel == "laplacian" and d.n_sub > 1:
            notes.append(f"Laplacian with n_sub = {d.n_sub}: one stencil per step counted "
                         f"(sub-steps need n_sub passes or hops per step)")
    syn = {k: v for k, v in syn.items() if v or k in ("input", "recurrent", "readout")}
    plastic = syn["input"] + syn["recurrent"] + syn["readout"] if learning else 0
    components = {"recurrent": n, "readout": n_out, "error": n_err, "grid": n_grid,
                  "input_axons": n_in, "target_axons": n_out if learning else 0,
                  "channels": n_ch}
    outdeg_in = m_in.sum(1)
    outdeg_rec = m_rec.sum(1) + m_out.sum(1)
    return _Net(kinds, ids, srcs, n_syn, mem, n_sources, syn, plastic, components,
                outdeg_in, outdeg_rec, notes)


def _limit(profile: Profile, key: str):
    """(value or "unknown", verified) of a limit key."""
    if profile.ideal:
        return UNKNOWN, False
    return profile[key], profile.verified.get(key, False)


def _pack(net: _Net, profile: Profile) -> list[dict]:
    """Greedy packing, one kind per core; returns the cores (members, kind, mem, fan-in, synapses)."""
    import numpy as np
    lim_n, _ = _limit(profile, "neurons_per_core")
    lim_mem, _ = _limit(profile, "syn_mem_bits_per_core")
    lim_fanin, _ = _limit(profile, "fanin_axons")
    lim_n = math.inf if lim_n == UNKNOWN else lim_n
    lim_mem = math.inf if lim_mem == UNKNOWN else lim_mem
    lim_fanin = math.inf if lim_fanin == UNKNOWN else lim_fanin
    seen = np.zeros(net.n_sources, dtype=bool)
    cores: list[dict] = []
    cur = None
    for i, kind in enumerate(net.kinds):
        src = net.srcs[i]
        new_src = src[~seen[src]]
        if cur is not None and cur["kind"] == kind and (
                len(cur["members"]) + 1 <= lim_n and cur["mem"] + net.mem[i] <= lim_mem
                and cur["fanin"] + new_src.size <= lim_fanin):
            pass
        else:
            if cur is not None:
                seen[np.concatenate(cur["sources"])] = False
            cur = {"kind": kind, "members": [], "mem": 0, "fanin": 0, "synapses": 0, "sources": []}
            cores.append(cur)
            new_src = src
        seen[new_src] = True
        cur["members"].append(i)
        cur["mem"] += net.mem[i]
        cur["synapses"] += net.n_syn[i]
        cur["fanin"] += new_src.size
        cur["sources"].append(new_src)
    for core in cores:
        del core["sources"]
    return cores


def _row(name: str, used, limit, verified: bool, enforced: bool, detail: str = "") -> dict:
    if limit == UNKNOWN:
        status = "unknown"
    else:
        status = "OK" if used <= limit else "EXCEEDED"
    return {"name": name, "used": used, "limit": limit, "status": status,
            "verified": verified, "enforced": enforced and limit != UNKNOWN, "detail": detail}


def resource_report(cfg: Config, profile: Profile, n_in: int, n_out: int, seed: int,
                    spike_counts: dict | None = None) -> dict:
    """Map network ``seed`` of ``cfg`` onto the cores of ``profile``; say whether it fits and why not.

    Returns a dict: ``components``, ``synapses`` (per class and total), ``plastic_synapses``,
    ``bits_per_synapse``, ``cores`` (total and per kind), ``chips``, ``limits`` (one row per
    limit: name, used, limit, status OK | EXCEEDED | unknown, verified, enforced, detail),
    ``fits``, ``reasons`` (one line per broken limit), ``notes``, ``core_table``. With
    ``spike_counts`` ({"input": (n_in,), "recurrent": (N,) spikes per trial, "steps": T}, e.g.
    from :func:`trial_spike_counts`) also ``counts`` and ``energy`` (:func:`energy_per_trial`).
    The mapping is described in the comment above :data:`KINDS`.
    """
    import numpy as np
    net = _network_graph(cfg, profile, n_in, n_out, seed)
    notes = list(net.notes)
    report: dict[str, Any] = {
        "profile": profile.name, "ideal": profile.ideal, "rule": cfg.rule.name, "seed": seed,
        "components": net.components,
        "synapses": {**net.synapses, "total": sum(net.synapses.values())},
        "plastic_synapses": net.plastic,
    }
    if spike_counts is not None:
        report["counts"] = trial_counts(net, spike_counts)
        report["energy"] = energy_per_trial(profile, report["counts"])
    if profile.ideal:
        notes.append("ideal profile: no quantisation and no hardware limits; nothing is mapped")
        report.update(bits_per_synapse={}, cores={}, chips=None, limits=[], fits=True, enforced=False,
                      reasons=[], notes=notes, core_table=[])
        return report

    learning = cfg.rule.name != "bptt"
    fixed_bits = profile["weight_bits"] + 1
    report["bits_per_synapse"] = {"fixed": fixed_bits,
                                  "learning": fixed_bits + (profile["tag_bits"] if learning else 0)}
    cores = _pack(net, profile)
    n_cores = len(cores)
    core_of = np.full(net.n_sources, -1, dtype=np.int64)
    for k, core in enumerate(cores):
        core_of[[net.ids[i] for i in core["members"]]] = k
    # fan-out: distinct destination cores of every source
    pairs = np.unique(np.concatenate([src * n_cores + core_of[net.ids[i]]
                                      for i, src in enumerate(net.srcs) if src.size]))
    fanout = np.bincount(pairs // n_cores, minlength=net.n_sources)
    on_chip = np.array(net.ids, dtype=np.int64)
    out_axons = [int(fanout[[net.ids[i] for i in core["members"]]].sum()) for core in cores]
    per_chip = profile["cores_per_chip"]
    chips = -(-n_cores // per_chip)
    syn_per_chip = [sum(c["synapses"] for c in cores[k * per_chip:(k + 1) * per_chip]) for k in range(chips)]

    enforced = profile["enforces_limits"]
    lim = {k: _limit(profile, k) for k in ("neurons_per_core", "syn_mem_bits_per_core", "fanin_axons",
                                           "fanout_axons", "synapses_per_chip")}
    sizes = [len(c["members"]) for c in cores]
    rows = [
        _row("neurons per core", max(sizes), *lim["neurons_per_core"], enforced,
             f"mean {sum(sizes) / n_cores:.1f}"),
        _row("synapse memory per core (bits)", max(c["mem"] for c in cores),
             *lim["syn_mem_bits_per_core"], enforced,
             f"mean {sum(c['mem'] for c in cores) / n_cores:.0f}"),
        _row("fan-in axons per core", max(c["fanin"] for c in cores), *lim["fanin_axons"], enforced,
             f"mean {sum(c['fanin'] for c in cores) / n_cores:.1f}"),
        _row("output axons per core", max(out_axons), *lim["fanout_axons"], enforced,
             f"mean {sum(out_axons) / n_cores:.1f}"),
        _row("fan-out per neuron (destination cores)", int(fanout[on_chip].max()),
             *lim["fanout_axons"], enforced,
             f"mean {fanout[on_chip].mean():.2f}; input axons max {int(fanout[:net.components['input_axons']].max(initial=0))}"),
        _row("synapses per chip", max(syn_per_chip), *lim["synapses_per_chip"], enforced),
    ]
    reasons = []
    keys = (("neurons", "neurons_per_core", "neurons"),
            ("mem", "syn_mem_bits_per_core", "bits of synapse memory"),
            ("fanin", "fanin_axons", "fan-in axons"),
            ("out", "fanout_axons", "output axons"))
    for k, core in enumerate(cores):
        used = {"neurons": len(core["members"]), "mem": core["mem"], "fanin": core["fanin"],
                "out": out_axons[k]}
        for name, key, what in keys:
            limit = lim[key][0]
            if limit != UNKNOWN and used[name] > limit:
                alone = " (one compartment alone)" if len(core["members"]) == 1 else ""
                reasons.append(f"core {k} ({core['kind']}) needs {used[name]} {what} > {limit}{alone}")
    for c, n_syn in enumerate(syn_per_chip):
        limit = lim["synapses_per_chip"][0]
        if limit != UNKNOWN and n_syn > limit:
            reasons.append(f"chip {c} holds {n_syn} synapses > {limit}")
    chip_fits = not reasons
    unknown = [r["name"] for r in rows if r["status"] == "unknown"]
    if unknown:
        notes.append(f"not enforced, limit unknown for {profile.name}: {', '.join(unknown)}")
    unverified = [r["name"] for r in rows if r["limit"] != UNKNOWN and not r["verified"]]
    if unverified:
        notes.append(f"limits marked unverified in the profile: {', '.join(unverified)}")
    graded = [k for k in ("feedback", "third_factor", "error", "diffusion") if k in net.synapses]
    if graded and profile["graded_spike_bits"] == 0:
        notes.append(f"{profile.name} has binary spikes only (graded_spike_bits = 0): the {', '.join(graded)} "
                     f"paths carry graded values and would need rate coding or the embedded x86 cores; "
                     f"mapped as if graded")
    if not enforced:
        notes.append(f"{profile.name} is a simulator: it runs any size; the limits are the chip's, "
                     f"reported but not enforced")
    notes.append("packing: greedy in index order, one kind of compartment per core (a first-order "
                 "estimate, not a vendor compiler)")
    by_kind = {kind: sum(1 for c in cores if c["kind"] == kind) for kind in KINDS}
    report.update(
        cores={"total": n_cores, **{k: v for k, v in by_kind.items() if v}},
        chips=chips, limits=rows, fits=chip_fits or not enforced, chip_fits=chip_fits,
        enforced=enforced, reasons=reasons, notes=notes,
        core_table=[{"core": k, "kind": c["kind"], "neurons": len(c["members"]), "synapses": c["synapses"],
                     "mem_bits": c["mem"], "fanin": c["fanin"], "out_axons": out_axons[k]}
                    for k, c in enumerate(cores)])
    return report


def trial_counts(net: _Net, spike_counts: dict) -> dict:
    """Operation counts of one trial from its spike counts (see :func:`resource_report`).

    synops = Σ input spikes × input out-degree + Σ recurrent spikes × (recurrent + readout
    out-degree); synupdates = plastic synapses × T (learning every step, t_epoch = 1);
    neuron_updates = on-chip compartments × T; graded_synops = fixed graded synapses (feedback,
    error, diffusion stencil, third factor) × T, an upper bound (a message on every step)."""
    import numpy as np
    t = int(spike_counts["steps"])
    s_in = np.asarray(spike_counts["input"], dtype=np.float64).reshape(-1)
    s_rec = np.asarray(spike_counts["recurrent"], dtype=np.float64).reshape(-1)
    if s_in.size != net.outdeg_in.size or s_rec.size != net.outdeg_rec.size:
        raise ValueError(f"spike_counts: input has {s_in.size} entries, recurrent {s_rec.size}; "
                         f"the network has {net.outdeg_in.size} inputs and {net.outdeg_rec.size} neurons")
    c = net.components
    graded = sum(v for k, v in net.synapses.items() if k in ("feedback", "third_factor", "error", "diffusion"))
    return {
        "steps": t,
        "synops": float(s_in @ net.outdeg_in + s_rec @ net.outdeg_rec),
        "synupdates": float(net.plastic * t),
        "neuron_updates": float((c["recurrent"] + c["readout"] + c["error"] + c["grid"]) * t),
        "graded_synops": float(graded * t),
        "input_spikes": float(s_in.sum()),
        "recurrent_spikes": float(s_rec.sum()),
    }


# count name → (profile figure, what it prices)
ENERGY_TERMS = {
    "synops": ("e_synop_pJ", "binary spikes × synapses reached"),
    "synupdates": ("e_synupdate_pJ", "learning updates of plastic synapses"),
    "neuron_updates": ("e_neuron_update_pJ", "compartment updates"),
    "graded_synops": ("e_synop_pJ", "graded messages, priced as binary synops [inference]"),
}


def energy_per_trial(profile: Profile, counts: dict) -> dict:
    """Energy estimate from operation counts: each term = count × the profile's pJ figure.

    ``counts`` holds any of ``synops``, ``synupdates``, ``neuron_updates``, ``graded_synops``.
    A term whose figure is unknown has energy ``"unknown"``; the total sums the known terms
    (``"unknown"`` if none is known, ``partial`` True if some are missing). Every figure whose
    ``verified`` is false is flagged ``"unverified"`` (all shipped energy figures are)."""
    terms = []
    total, known, unverified = 0.0, 0, []
    for name, (key, what) in ENERGY_TERMS.items():
        if name not in counts:
            continue
        count = counts[name]
        figure = UNKNOWN if profile.ideal else profile.values.get(key, UNKNOWN)
        verified = False if profile.ideal else profile.verified.get(key, False)
        flags = [] if verified or profile.ideal else ["unverified"]
        if name == "graded_synops":
            flags.append("assumed")
        if figure == UNKNOWN:
            energy = UNKNOWN
        else:
            energy = count * figure
            total += energy
            known += 1
        if not verified and not profile.ideal and key not in unverified:
            unverified.append(key)
        terms.append({"term": name, "count": count, "figure": key, "pJ_each": figure, "energy_pJ": energy,
                      "verified": verified, "flags": flags, "what": what,
                      "source": "ideal profile: no energy figures" if profile.ideal
                      else profile.sources.get(key, "")})
    return {"profile": profile.name, "terms": terms, "total_pJ": total if known else UNKNOWN,
            "partial": known < len(terms), "unverified": unverified}


def trial_spike_counts(cfg: Config, seed: int, trials: int = 1) -> dict:
    """Spikes per trial of the initial float network ``seed`` on ``trials`` evaluation trials of
    its task: {"input": (n_in,), "recurrent": (N,), "steps": T, "trials": trials} (CPU)."""
    import torch
    from .float.rsnn import Network, forward
    from .tasks import make_task
    task = make_task(cfg.task, cfg.neuron.dt)
    if getattr(task, "frozen", False):
        trials = min(trials, task.n_frozen)
    net = Network.from_config(cfg, [seed], task.n_in, task.n_out, "cpu", torch.float32)
    batch = task.batch([seed], "eval", 0, range(trials), torch.device("cpu"), torch.float32)
    with torch.no_grad():
        rec = forward(net, batch.x)
    return {"input": (batch.x.sum((0, 2))[0] / trials).numpy(),
            "recurrent": (rec.z.sum((0, 2))[0] / trials).numpy(),
            "steps": int(batch.x.shape[0]), "trials": trials}
