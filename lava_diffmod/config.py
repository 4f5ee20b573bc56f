"""Typed, validated configuration; TOML in and out.

A config is a tree of frozen dataclasses. Every field declares its allowed values in its
metadata; :func:`from_dict` checks types, ranges, choices and unknown keys, and
:meth:`Config.validate` checks the cross-field rules. Any problem raises :class:`ConfigError`
with one line naming the field and the allowed values, before any work starts.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10
    import tomli as tomllib

RULES = ("bptt", "eprop", "diffusion", "modprop", "dopamine")
ONCHIP_RULES = ("eprop", "diffusion")          # the rules the fixed backend and Lava learn with
TASKS = ("cue_accumulation", "dms", "pattern_generation",
         "cue_accumulation_bellec", "pattern_generation_bellec")


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the field."""


def _range(lo=-math.inf, hi=math.inf, lo_open=False, hi_open=False) -> dict:
    return {"range": (lo, hi, lo_open, hi_open)}


def _choices(*values) -> dict:
    return {"choices": values}


def _f(default, **meta):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class NeuronConfig:
    """LIF/ALIF constants (MODEL.md §1) and the conventions of other e-prop codes."""
    thr: float = _f(0.03, **_range(0, lo_open=True))
    tau_m: float = _f(20.0, **_range(0, lo_open=True))          # ms
    tau_out: float = _f(20.0, **_range(0, lo_open=True))        # ms
    tau_a: float = _f(2000.0, **_range(0, lo_open=True))        # ms
    beta: float = _f(1.8, **_range(0))
    gamma: float = _f(0.3, **_range(0))
    n_ref: int = _f(5, **_range(0, 1000))                       # steps
    n_lif: int = _f(50, **_range(0))
    n_alif: int = _f(50, **_range(0))
    dt: float = _f(1.0, **_range(0, lo_open=True))              # ms
    spike_condition: str = _f(">", **_choices(">", ">="))
    adapt_increment: str = _f("1-rho", **_choices("1-rho", "1"))
    input_scaling: str = _f("1-alpha", **_choices("1-alpha", "1"))
    refractory: str = _f("after_spike", **_choices("after_spike", "including_spike"))
    reset: str = _f("base", **_choices("base", "adaptive"))


@dataclass(frozen=True)
class NetworkConfig:
    """Grid, connectivity, masks, initialisation and feedback (MODEL.md §2, §3.3, §8)."""
    grid_h: int = _f(10, **_range(1))
    grid_w: int = _f(10, **_range(1))
    connectivity: str = _f("local", **_choices("local", "sparse", "full", "nearest_neighbours"))
    sigma: float = _f(0.012, **_range(0, lo_open=True))
    max_coord_norm: bool = _f(True)
    rec_density: float = _f(0.1, **_range(0, 1, lo_open=True))
    in_density: float = _f(0.1, **_range(0, 1, lo_open=True))
    out_density: float = _f(0.1, **_range(0, 1, lo_open=True))
    readout_mode: str = _f("per_synapse", **_choices("per_synapse", "per_neuron"))
    init: str = _f("he", **_choices("he", "gaussian"))
    gain_in: float = _f(1.0, **_range(0))
    gain_rec: float = _f(1.0, **_range(0))
    gain_out: float = _f(1.0, **_range(0))
    gain_fb: float = _f(1.0, **_range(0))
    feedback: str = _f("symmetric_init", **_choices(
        "symmetric_init", "random_dense", "random_sparse", "symmetric_tracking"))
    feedback_density: float = _f(0.1, **_range(0, 1, lo_open=True))


@dataclass(frozen=True)
class DiffusionConfig:
    """The neuromodulator field that carries the learning signal (MODEL.md §4, §8)."""
    kernel: str = _f("box", **_choices("box", "laplacian"))
    k: float = _f(0.75, **_range(0, 1))
    radius: int = _f(1, **_range(1))
    D: float = _f(1 / 9, **_range(0))
    n_sub: int = _f(1, **_range(1))
    shuffle: str = _f("none", **_choices("none", "fixed", "per_step", "legacy"))
    channels: str = _f("single", **_choices("single", "per_output", "cell_type"))
    channel_k: list = _f([])          # per-channel retention; [] = k for every channel
    channel_radius: list = _f([])     # per-channel radius; [] = radius
    channel_q: list = _f([])          # per-channel readout weight q_c; [] = 1


@dataclass(frozen=True)
class RuleConfig:
    """Learning rule and its regulariser (MODEL.md §3, §3.5)."""
    name: str = _f("diffusion", **_choices(*RULES))
    mode: str = _f("factorised", **_choices("factorised", "online"))
    storage: str = _f("auto", **_choices("auto", "dense", "sparse"))   # online traces: dense or per synapse
    bptt_mode: str = _f("adjoint", **_choices("adjoint", "autograd"))  # BPTT: hand-written scan or autodiff (same gradient)
    c_reg: Any = _f(0.005)            # float, or a table {bptt = .., eprop = .., diffusion = ..}
    f0: float = _f(0.01, **_range(0))  # spikes / ms


@dataclass(frozen=True)
class ModPropConfig:
    """ModProp (RULES.md A.10): e-prop plus non-local credit through type-averaged recurrent
    weights with the constant derivative μ (units of ψ); ``truncation = "mdgl"`` keeps one hop."""
    mu: Any = _f("auto")              # a number >= 0, or "auto": mu_scale · ⟨ψ⟩ of the initial network
    mu_scale: float = _f(0.5, **_range(0, lo_open=True))
    truncation: str = _f("none", **_choices("none", "mdgl"))
    form: str = _f("backward", **_choices("backward", "online"))
    keep_diagonal: bool = _f(False)   # the surrogate keeps its diagonal (form 3 is then exact)
    hop_weights: str = _f("type", **_choices("type", "cell"))     # hops cross the block means or the exact W
    remedy: str = _f("clip_mu", **_choices("clip_mu", "raise"))   # when ρ(A) ≥ 1 − margin
    margin: float = _f(0.01, **_range(0, 1, lo_open=True, hi_open=True))


@dataclass(frozen=True)
class LossConfig:
    """Reductions of the loss and of the e-prop task gradient (other codes' conventions)."""
    time_reduction: str = _f("mean", **_choices("mean", "sum"))
    batch_reduction: str = _f("mean", **_choices("mean", "sum"))
    grad_time_reduction: str = _f("mean", **_choices("mean", "sum"))


@dataclass(frozen=True)
class FixedConfig:
    """The fixed-point backend (lava_diffmod/fixed/): hardware profile, switches, quantiser."""
    hw: str = _f("loihi2")                 # shipped profile name or a profile file's path
    switches: Any = _f("hardware")         # "off", "hardware" or a table (fixed/switches.py)
    lr: float = _f(100.0, **_range(0, lo_open=True))        # SGD learning rate (no Adam on chip), float units
    weight_headroom: float = _f(0.5, **_range(0, 1, lo_open=True))  # initial max |W_in|, |W_rec|, |B| ↦ this share of the range
    readout_headroom: float = _f(0.5, **_range(0, 1, lo_open=True))  # initial max |W_out| ↦ this share (room to grow)
    trace_rate_max: float = _f(0.1, **_range(0, 1, lo_open=True))   # ε^v that fills a 7-bit trace
    err_range: float = _f(1.0, **_range(0, lo_open=True))   # |err| that fills the third factor
    tag_fill: float = _f(0.25, **_range(0, 1, lo_open=True))  # share of the largest x1·y1 that fills the tag
    eps_a_max: float = _f(0.03, **_range(0, 1, lo_open=True))  # ε^a that fills tag_2 d (switches.eps_a_tag2)
    field_bits: int = _f(16, **_range(4, 62))               # modulator field width (signed)
    field_frac_bits: int = _f(4, **_range(0, 30))           # extra fractional bits of the field
    acc_bits: int = _f(40, **_range(8, 62))                 # host accumulator of the batch's updates


@dataclass(frozen=True)
class TaskConfig:
    name: str = _f("cue_accumulation", **_choices(*TASKS))
    params: dict = _f({})             # overrides of the task's own parameters (tasks/)


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = _f(2000, **_range(1))
    batch_size: int = _f(64, **_range(1))
    micro_batches: int = _f(8, **_range(1))
    lr: float = _f(0.005, **_range(0, lo_open=True))
    optimizer: str = _f("adam", **_choices("adam", "sgd"))
    adam_eps_mode: str = _f("pytorch", **_choices("pytorch", "tf1"))
    beta1: float = _f(0.9, **_range(0, 1, hi_open=True))
    beta2: float = _f(0.999, **_range(0, 1, hi_open=True))
    eps: float = _f(1e-8, **_range(0))
    eval_every: int = _f(25, **_range(1))
    eval_trials: int = _f(512, **_range(1))
    eval_batch: int = _f(128, **_range(1))
    checkpoint_every: int = _f(25, **_range(1))
    seeds: list = _f([1])
    device: str = _f("cpu")
    dtype: str = _f("float32", **_choices("float32", "float64"))
    out_dir: str = _f("runs")
    stop_error: float = _f(0.0, **_range(0, 1))  # stop once eval error < this (0 = never)
    progress: bool = _f(True)
    backend: str = _f("float", **_choices("float", "fixed"))
    cuda_graphs: bool = _f(True)  # replay CUDA graphs of each iteration on a GPU (same results)
    align_every: int = _f(0, **_range(0))  # log the update's cosine with BPTT's gradient every n iterations (0 = never)


@dataclass(frozen=True)
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fixed: FixedConfig = field(default_factory=FixedConfig)
    modprop: ModPropConfig = field(default_factory=ModPropConfig)
    dopamine: dict = _f({})           # rules/dopamine.py DopamineConfig fields (RULES.md B)

    @property
    def n_rec(self) -> int:
        return self.neuron.n_lif + self.neuron.n_alif

    def c_reg(self) -> float:
        """c_reg of the selected rule (modprop and dopamine fall back to the eprop entry)."""
        c = self.rule.c_reg
        return float(c[self.c_reg_key()]) if isinstance(c, dict) else float(c)

    def c_reg_key(self) -> str:
        c, name = self.rule.c_reg, self.rule.name
        return "eprop" if isinstance(c, dict) and name not in c and name in ("modprop", "dopamine") else name

    def n_channels(self, n_out: int) -> int:
        return {"single": 1, "per_output": n_out, "cell_type": 2}[self.diffusion.channels]

    def validate(self) -> "Config":
        """Cross-field checks; returns self."""
        n, net, d = self.n_rec, self.network, self.diffusion
        if n < 1:
            raise ConfigError(f"neuron.n_lif + neuron.n_alif = {n}: must be at least 1")
        if net.grid_h * net.grid_w < n:
            raise ConfigError(f"network.grid_h * network.grid_w = {net.grid_h * net.grid_w}: "
                              f"the grid must have at least n_lif + n_alif = {n} cells")
        c = self.rule.c_reg
        if isinstance(c, dict):
            for key, value in c.items():
                if key not in RULES:
                    raise ConfigError(f"rule.c_reg.{key_name(key)}: unknown rule; allowed: {', '.join(RULES)}")
                _check_number(f"rule.c_reg.{key}", value, float, (0, math.inf, False, False))
            if self.c_reg_key() not in c:
                raise ConfigError(f"rule.c_reg has no entry for rule '{self.rule.name}'; "
                                  f"give one or a single number")
        else:
            _check_number("rule.c_reg", c, float, (0, math.inf, False, False))
        for i, k in enumerate(d.channel_k):
            _check_number(f"diffusion.channel_k[{i}]", k, float, (0, 1, False, False))
        for i, r in enumerate(d.channel_radius):
            _check_number(f"diffusion.channel_radius[{i}]", r, int, (1, math.inf, False, False))
        for i, q in enumerate(d.channel_q):
            _check_number(f"diffusion.channel_q[{i}]", q, float, (-math.inf, math.inf, False, False))
        for r in [d.radius, *d.channel_radius]:
            if 2 * r + 1 > min(net.grid_h, net.grid_w):
                raise ConfigError(f"diffusion.radius = {r}: need 2*radius+1 <= min(grid_h, grid_w) "
                                  f"= {min(net.grid_h, net.grid_w)}")
        if d.kernel == "laplacian" and d.D / d.n_sub > 0.25:
            raise ConfigError(f"diffusion.D / diffusion.n_sub = {d.D / d.n_sub:g}: must be in [0, 0.25] "
                              f"(stability of the 5-point Laplacian); raise n_sub")
        if self.train.batch_size % self.train.micro_batches:
            raise ConfigError(f"train.micro_batches = {self.train.micro_batches}: must divide "
                              f"train.batch_size = {self.train.batch_size}")
        seeds = self.train.seeds
        if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < 2**63 for s in seeds):
            raise ConfigError(f"train.seeds = {short_repr(seeds)}: must be a non-empty list of integers "
                              f"in [0, 2^63 - 1]")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"train.seeds = {seeds!r}: seeds must be distinct")
        if not (self.train.device == "cpu" or self.train.device.startswith("cuda")):
            raise ConfigError(f"train.device = {self.train.device!r}: must be 'cpu', 'cuda' or 'cuda:N'")
        from .tasks import REGISTRY, make_task  # validates task.params against the task's own fields
        defaults = {f.name: f.default for f in dataclasses.fields(REGISTRY[self.task.name][0])}
        for key, value in self.task.params.items():   # list parameters: make_task checks no entries
            if key not in defaults or key == "dt":
                raise ConfigError(f"task.params.{key_name(key)}: unknown parameter of task {self.task.name}; "
                                  f"allowed: {', '.join(k for k in defaults if k != 'dt')}")
            default = defaults.get(key)
            if not (isinstance(default, tuple) and default and isinstance(value, list)):
                continue
            for i, v in enumerate(value):
                if isinstance(default[0], str):
                    if not isinstance(v, str):
                        raise ConfigError(f"task.params.{key}[{i}] = {short_repr(v)}: must be a string")
                else:
                    _check_number(f"task.params.{key}[{i}]", v, float, (0, math.inf, False, False))
            if not isinstance(default[0], str) and not value:
                raise ConfigError(f"task.params.{key} = []: must hold at least one number")
            if key.endswith("_range") and not (len(value) == 2 and value[0] <= value[1]):
                raise ConfigError(f"task.params.{key} = {short_repr(value)}: must be [lo, hi] with lo <= hi")
        try:
            task = make_task(self.task, self.neuron.dt)
        except (TypeError, OverflowError) as e:
            raise ConfigError(f"task.params = {short_repr(self.task.params)}: not valid for task "
                              f"{self.task.name} ({e})") from None
        if task.frozen and self.train.batch_size > task.n_frozen:
            raise ConfigError(f"train.batch_size = {self.train.batch_size}: task {self.task.name} has only "
                              f"{task.n_frozen} frozen trials (task.params.n_frozen)")
        mu = self.modprop.mu
        if mu != "auto":
            _check_number("modprop.mu", mu, float, (0, math.inf, False, False))
        if self.modprop.form == "online" and self.modprop.truncation == "mdgl":
            raise ConfigError("modprop.form = 'online' with modprop.truncation = 'mdgl': the online form "
                              "(form 3) keeps every hop; use form = 'backward' for MDGL")
        if self.modprop.form == "online" and self.modprop.hop_weights == "cell":
            raise ConfigError("modprop.form = 'online' with modprop.hop_weights = 'cell': every cell its own "
                              "type needs N² filter state per presynaptic neuron; use form = 'backward'")
        self.dopamine_setup()
        if self.train.backend == "fixed":
            self.fixed_setup()
        else:   # unused by the float backend, but a bad table stops here, not at --backend fixed
            self.switches_setup()
        return self

    def dopamine_setup(self):
        """The validated DopamineConfig of the ``[dopamine]`` table."""
        from .rules.dopamine import DopamineConfig
        fields = {f.name for f in dataclasses.fields(DopamineConfig)}
        hints = typing.get_type_hints(DopamineConfig)
        for key, value in self.dopamine.items():
            if key not in fields:
                raise ConfigError(f"dopamine.{key_name(key)}: unknown key; allowed: {', '.join(sorted(fields))}")
            hint = hints[key]
            if hint is bool and not isinstance(value, bool):
                raise ConfigError(f"dopamine.{key} = {short_repr(value)}: must be true or false")
            if hint is str and not isinstance(value, str):
                raise ConfigError(f"dopamine.{key} = {short_repr(value)}: must be a string")
            if hint in (int, float) or hint == (float | None):   # TOML has no null: s0 is left out
                _check_number(f"dopamine.{key}", value, int if hint is int else float,
                              (-math.inf, math.inf, False, False))
        try:
            return DopamineConfig(**self.dopamine)
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from None

    def switches_setup(self):
        """The validated Switches of ``fixed.switches``."""
        from .fixed.switches import Switches
        return Switches.from_spec(self.fixed.switches)

    def fixed_setup(self):
        """(profile, switches) of the fixed backend, validated."""
        from .fixed.switches import Switches
        from .hw import load_profile
        profile = load_profile(self.fixed.hw)
        switches = self.switches_setup()
        if profile.ideal and switches != Switches.off():
            raise ConfigError(f"fixed.switches: the ideal profile means no quantisation; use "
                              f"switches = \"off\" (on now: {', '.join(switches.names())})")
        if self.rule.name not in (*ONCHIP_RULES, "dopamine"):
            raise ConfigError(f"rule.name = {self.rule.name!r} with train.backend = 'fixed': the fixed "
                              f"backend trains eprop, diffusion and dopamine")
        return profile, switches

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def short_repr(value, limit: int = 60) -> str:
    """repr of a value for an error message, cut to ``limit`` characters."""
    text = repr(value)
    if len(text) > limit and isinstance(value, int) and not isinstance(value, bool):
        return f"{text[:12]}...({len(text)} digits)"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def key_name(key) -> str:
    """A key for an error message: as written if printable, else its repr (one line)."""
    return key if isinstance(key, str) and key.isprintable() and key else short_repr(key)


def _check_number(path: str, value, kind, rng) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{path} = {value!r}: must be {'an integer' if kind is int else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path} = {value!r}: must be finite")
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        raise ConfigError(f"{path} = {short_repr(value)}: out of range; TOML integers are 64-bit "
                          f"(allowed: [-2^63, 2^63 - 1])")
    lo, hi, lo_open, hi_open = rng
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = value >= hi if hi_open else value > hi
    if bad_lo or bad_hi:
        left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise ConfigError(f"{path} = {value!r}: must be in {left}{lo:g}, {hi:g}{right}")


def check_field(path: str, f: dataclasses.Field, value, hint) -> Any:
    """Type-, range- and choice-check one value for dataclass field ``f``; returns it."""
    meta = f.metadata
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} = {value!r}: must be true or false")
    elif hint in (int, float):
        _check_number(path, value, hint, meta.get("range", (-math.inf, math.inf, False, False)))
        value = float(value) if hint is float else value
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} = {value!r}: must be a string")
    elif hint is list and not isinstance(value, list):
        raise ConfigError(f"{path} = {value!r}: must be a list")
    elif hint is dict and not isinstance(value, dict):
        raise ConfigError(f"{path} = {value!r}: must be a table")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{path} = {value!r}: must be one of {', '.join(map(str, meta['choices']))}")
    return value


def from_dict(cls, data: dict, path: str = ""):
    """Build dataclass ``cls`` from a nested dict, checking every key and value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{key_name(unknown[0])}: "
                          f"unknown key; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, sub)
        else:
            kwargs[name] = check_field(sub, fields[name], value, hint)
    return cls(**kwargs)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def config_path(name_or_path: str | Path) -> Path:
    """A config file's path, or for a task name the paper's config ``examples/<task>.toml``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in TASKS and (EXAMPLES / f"{name_or_path}.toml").is_file():
        return EXAMPLES / f"{name_or_path}.toml"
    if path.suffix == ".toml" or len(path.parts) > 1:
        raise ConfigError(f"config file {str(name_or_path)!r}: not found")
    raise ConfigError(f"--config {name_or_path}: no such file, and not a task name ({', '.join(TASKS)})")


def read_toml(path: Path, what: str, error: type = ConfigError, missing: str = "") -> dict:
    """The table of a TOML file, or one ``error`` line naming ``what`` and the path (unreadable,
    not found — then ``missing`` is appended — or not valid TOML)."""
    try:
        text = path.read_bytes() if path.is_file() else None
    except OSError as e:
        raise error(f"{what} {short_repr(str(path), 200)}: cannot be read ({e.strerror})") from None
    if text is None:
        raise error(f"{what} {str(path)!r}: not found{missing}")
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as e:   # TOMLDecodeError, bad UTF-8, an int of > 4300 digits
        detail = "nested too deeply" if isinstance(e, RecursionError) else (str(e).splitlines() or [type(e).__name__])[0]
        raise error(f"{what} {str(path)!r}: not valid TOML ({detail})") from None


def load(path: str | Path, overrides: dict | None = None) -> Config:
    """Read a TOML config, apply ``{"section.key": value}`` overrides, validate."""
    return from_mapping(read_toml(Path(path), "config file"), overrides)


def from_mapping(data: dict, overrides: dict | None = None) -> Config:
    """Config from a nested dict plus dotted overrides, validated."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: must be a table, got {type(data).__name__}")
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, value in (overrides or {}).items():
        if not isinstance(dotted, str) or "." not in dotted:
            raise ConfigError(f"override {short_repr(dotted)}: must be 'section.key'")
        section, key = dotted.split(".", 1)
        if not isinstance(data.setdefault(section, {}), dict):
            raise ConfigError(f"{section} = {short_repr(data[section])}: must be a table (override {dotted})")
        data[section][key] = value
    return from_dict(Config, data).validate()


def dumps(cfg: Config) -> str:
    """TOML text of a config (round-trips through :func:`load`)."""
    import tomli_w
    return tomli_w.dumps(cfg.to_dict())
