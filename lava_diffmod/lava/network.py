"""Build and run the whole spatial network as a Lava process graph (fixed_pt or floating_pt).

    TaskSource ─x→ LearningConnection(in) ─┐
                                           ├→ ALIF ─z→ LearningConnection(rec) ─→ ALIF (next step)
                                           │     └─z→ Readout ─release→ Modulator ─L→ ALIF ─y2,y3→ connections
    TaskSource ─target→ Readout

Trial i of a run is the emulator's batch ``first_iteration + i`` with one trial: the fixed_pt
network equals :class:`~lava_diffmod.fixed.emulator.Emulator` bit for bit, the floating_pt network
equals the float reference (SGD with ``fixed.lr`` at the end of every trial when learning).
Lava is imported here only, and only when a function runs.
"""
from __future__ import annotations

import multiprocessing
import threading
from typing import NamedTuple

import numpy as np
import torch

from . import require_lava
from .spec import NetworkSpec
from ..config import ONCHIP_RULES, Config
from ..fixed.quantize import quantize
from ..fixed.steps import check_on_chip_rates
from ..fixed.switches import Switches
from ..float.rsnn import Network
from ..hw import load_profile

BACKENDS = ("fixed", "float")


class LavaNetwork(NamedTuple):
    spec: NetworkSpec
    source: object
    conn_in: object
    conn_rec: object
    neurons: object
    readout: object
    modulator: object | None

    def processes(self) -> list:
        return [p for p in self[1:] if p is not None]


def check_supported(spec: NetworkSpec, backend: str) -> None:
    """The Lava models cover the float maths (floating_pt) and the on-chip-style fixed point with
    integer weights, traces, neurons and field (fixed_pt); anything else is a clear error."""
    sw, mod = spec.fp.switches, spec.modulator
    if backend == "float" and sw != Switches.off():
        raise ValueError(f"lava floating_pt: the float maths has every switch off; on: {', '.join(sw.names())}")
    if backend == "fixed":
        need = {"weight_bits": True, "trace_bits": True, "neuron_fixed": True, "drop_alif_eps_a": True,
                "eps_a_tag2": False, "epoch_mean": False}
        if mod is not None:
            need["diffusion_fixed"] = True
        check_on_chip_rates(spec.fp)
        missing = [f"{k} = {str(v).lower()}" for k, v in need.items() if getattr(sw, k) != v]
        if missing or sw.tag_leak_grid == "exact":
            raise ValueError("lava fixed_pt: needs fixed.switches " + ", ".join(missing + (
                ["tag_leak_grid = pow2 or literal"] if sw.tag_leak_grid == "exact" else [])))
    if mod is not None and (mod.n_channels != 1 or mod.shuffle != "none"):
        raise ValueError("lava: the Modulator process has one channel and no shuffling "
                         f"(diffusion.channels, diffusion.shuffle); got {mod.n_channels} channels, "
                         f"shuffle = {mod.shuffle!r}")


def network_spec(cfg: Config, seed: int, backend: str, trial_steps: int, learn: bool,
                 first_iteration: int = 0, params=None, check: bool = True) -> NetworkSpec:
    """The spec of network ``seed`` of ``cfg``: fixed_pt with the config's profile and switches,
    floating_pt with the ideal profile and every switch off. ``params``: trained float weights
    (S = 1) to quantise instead of the initial ones. ``check``: fail now if the Lava models do
    not support the spec (off for emulator-only use)."""
    from ..training.trainer import objective_for
    from ..rules import Rule
    from ..tasks import make_task
    if backend not in BACKENDS:
        raise ValueError(f"backend = {backend!r}: must be fixed or float")
    task = make_task(cfg.task, cfg.neuron.dt)
    net = Network.from_config(cfg, [seed], task.n_in, task.n_out, dtype=torch.float64)
    if params is not None:
        net = net.with_params(params)
    obj = objective_for(cfg, task)
    if cfg.rule.name not in ONCHIP_RULES:
        raise ValueError(f"rule.name = {cfg.rule.name!r}: the Lava network learns with e-prop (eprop or diffusion)")
    rule = Rule(cfg.rule.name, obj, cfg.rule.mode, cfg.diffusion)
    mod = rule.modulator(net)
    if backend == "fixed":
        profile, switches = cfg.fixed_setup()
    else:
        profile, switches = load_profile("ideal"), Switches.off()
    fp = quantize(net, profile, switches, cfg.fixed, obj, 1, cfg.diffusion if mod is not None else None, [seed])
    spec = NetworkSpec(net, fp, obj, mod, seed, trial_steps, learn, first_iteration)
    if check:
        check_supported(spec, backend)
    return spec


def initial_weights(spec: NetworkSpec, backend: str):
    """(W_in, W_rec, W_out) as (1, pre, post) tensors: the quantised integers or the floats."""
    if backend == "fixed":
        return spec.fp.w_in, spec.fp.w_rec, spec.fp.w_out
    return spec.net.params


def build(spec: NetworkSpec, x: np.ndarray, target: np.ndarray, backend: str, weights=None) -> LavaNetwork:
    """The process graph for inputs x (steps, n_in) and targets (steps, n_out) (classification:
    the label one-hot), learning as ``spec.learn`` says; ``weights`` default to :func:`initial_weights`."""
    require_lava()
    from . import compat  # noqa: F401  (the Python 3.11 import fix, before any lava import)
    from ..processes.alif.process import ALIF
    from ..processes.learning_connection.process import LearningConnection
    from ..processes.modulator.process import Modulator
    from ..processes.readout.process import Readout
    from ..processes.task_source.process import TaskSource
    w_in, w_rec, w_out = (np.ascontiguousarray(w[0].T.cpu().numpy()) for w in (weights or initial_weights(spec, backend)))
    net, sw = spec.net, spec.fp.switches
    n = net.n_rec
    delay_in = sw.dense_delay if backend == "fixed" else 0
    source = TaskSource(x=x, target=target, name="source")
    conn_in = LearningConnection(weights=w_in, spec=spec, part="in", pre_offset=0, delay=delay_in, name="W_in")
    conn_rec = LearningConnection(weights=w_rec, spec=spec, part="rec", pre_offset=net.n_in, delay=1, name="W_rec")
    neurons = ALIF(shape=(n,), spec=spec, name="alif")
    readout = Readout(weights=w_out, spec=spec, name="readout")
    modulator = Modulator(n_neurons=n, spec=spec, name="modulator") if spec.modulator is not None else None
    source.s_out.connect(conn_in.s_in)
    source.target_out.connect(readout.target_in)
    for conn in (conn_in, conn_rec):
        conn.a_out.connect(neurons.a_in)
        neurons.s_out.connect(conn.s_in_bap)
        neurons.s_out_y1.connect(conn.s_in_y1)
        neurons.s_out_y2.connect(conn.s_in_y2)
        neurons.s_out_y3.connect(conn.s_in_y3)
    neurons.s_out.connect(conn_rec.s_in)
    neurons.s_out.connect(readout.s_in)
    if modulator is not None:
        readout.release_out.connect(modulator.release_in)
        modulator.a_out.connect(neurons.a_third_factor_in)
    else:
        readout.release_out.connect(neurons.a_third_factor_in)
    return LavaNetwork(spec, source, conn_in, conn_rec, neurons, readout, modulator)


def task_arrays(x: torch.Tensor, target: torch.Tensor, kind: str, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """One network's trials back to back: x (T, 1, B, n_in) → (B·T, n_in); targets as y*(t) or
    the label one-hot at every step."""
    t_steps, _, b, _ = x.shape
    xs = x[:, 0].permute(1, 0, 2).reshape(b * t_steps, -1).double().cpu().numpy()
    if kind == "classification":
        onehot = torch.nn.functional.one_hot(target[0].long().cpu(), n_out).double()
        ys = onehot[:, None, :].expand(b, t_steps, n_out).reshape(b * t_steps, n_out)
    else:
        ys = target[:, 0].expand(t_steps, b, n_out).permute(1, 0, 2).reshape(b * t_steps, n_out).double().cpu()
    return np.ascontiguousarray(xs), np.ascontiguousarray(ys.numpy())


def run_config(backend: str, hw: str | None = None):
    """Lava's run configuration: the CPU simulator with our fixed_pt or floating_pt models, or
    Loihi2HwCfg (``hw = "loihi2"``) when lava-loihi is installed."""
    require_lava()
    from . import compat  # noqa: F401
    if hw is not None:
        if hw != "loihi2":
            raise ValueError(f"--hw {hw!r}: the Lava hardware target is loihi2")
        import importlib.util
        if importlib.util.find_spec("lava.magma.compiler.subcompilers.nc") is None and \
                importlib.util.find_spec("lava_loihi") is None:
            raise RuntimeError("Loihi 2 hardware needs the lava-loihi extension (Intel INRC members only; "
                               "not on PyPI), and our ALIF and modulator processes need NC models written with "
                               "it; it is not installed here. Run without --hw for Lava's CPU simulator.")
        from lava.magma.core.run_configs import Loihi2HwCfg
        return Loihi2HwCfg()
    from lava.magma.core.run_configs import Loihi2SimCfg
    return Loihi2SimCfg(select_tag="fixed_pt" if backend == "fixed" else "floating_pt")


class Session:
    """Runs a Lava graph and always tears it down: :meth:`close` stops it cleanly when it is idle,
    and otherwise (an error in a model, an interrupt during a run) terminates its worker
    processes and Lava's shared-memory manager, so nothing is left behind.

    Lava 0.10 hangs when a process model raises: its runtime waits for the other workers, which
    wait for the failed one forever. So each run goes on in a thread while the caller watches the
    workers; a dead worker makes :meth:`run_steps` raise with the worker's traceback."""

    GRACE_S = 2.0

    def __init__(self, proc):
        self.proc = proc
        self.clean = True

    def _actors(self) -> list:
        runtime = self.proc.runtime
        return [] if runtime is None else list(runtime._messaging_infrastructure.actors)

    @staticmethod
    def _alive(actor) -> bool:
        try:
            return actor.is_alive()
        except ValueError:     # already joined and closed by Lava
            return False

    def _terminate(self) -> None:
        for actor in self._actors():
            if self._alive(actor):
                actor.terminate()

    def _failure(self) -> str:
        """The traceback of a worker that died, if Lava sent it back."""
        for actor in self._actors():
            try:
                exc = actor.exception
            except (ValueError, OSError):
                continue
            if exc:
                return exc[1]
        return "(no traceback came back)"

    def run_steps(self, steps: int, cfg) -> None:
        """``proc.run(RunSteps(steps))`` in a thread, watched: a dead worker raises here."""
        from lava.magma.core.run_conditions import RunSteps
        outcome = {}

        def target():
            try:
                self.proc.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
            except BaseException as e:   # handed to the caller
                outcome["error"] = e
        self.clean = False
        thread = threading.Thread(target=target, name="lava-run", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            actors = self._actors()
            if thread.is_alive() and actors and not all(self._alive(a) for a in actors):
                thread.join(self.GRACE_S)
                if thread.is_alive():
                    raise RuntimeError("a Lava process model failed; the run was stopped. Its traceback:\n"
                                       + self._failure())
        if "error" in outcome:
            raise outcome["error"]
        self.clean = all(self._alive(a) for a in self._actors())

    def close(self) -> None:
        runtime = self.proc.runtime
        if runtime is None:
            return
        if self.clean:
            self.proc.stop()
            return
        self._terminate()
        for actor in self._actors():
            try:
                multiprocessing.Process.join(actor, timeout=10)    # Lava's join takes no timeout
            except (ValueError, AssertionError):
                pass
        smm = runtime._messaging_infrastructure.smm
        if smm is not None:
            smm.shutdown()


class Recording(NamedTuple):
    z: np.ndarray        # (steps, N) spikes
    v: np.ndarray        # (steps, N) voltages (fixed: integers)
    y: np.ndarray        # (steps, n_out) readout (fixed: integers)
    trial_ends: list     # per trial: {"W_in", "W_rec", "W_out", "x1_in", "x1_rec", "tag_in", "tag_rec"}


def run(lnet: LavaNetwork, n_trials: int, backend: str, hw: str | None = None, record_ends: bool = True,
        progress: bool = False) -> Recording:
    """Run ``n_trials`` trials, one ``RunSteps`` per trial, and record z, v, y at every step and the
    learning state at every trial end. The processes are stopped in every case (error,
    KeyboardInterrupt), so no worker process is left behind."""
    from lava.proc.monitor.process import Monitor
    torch.set_num_threads(1)   # the models run in forked workers: no thread pool to inherit
    steps = lnet.spec.trial_steps
    total = n_trials * steps
    monitors = {}
    for name, var in (("z", lnet.neurons.z), ("v", lnet.neurons.v), ("y", lnet.readout.y)):
        monitors[name] = Monitor()
        monitors[name].probe(var, total)
    cfg = run_config(backend, hw)
    ends = []
    session = Session(lnet.neurons)
    try:
        from tqdm.auto import tqdm
        for _ in tqdm(range(n_trials), desc="lava trials", disable=not progress):
            session.run_steps(steps, cfg)
            if record_ends:
                ends.append({"W_in": lnet.conn_in.weights.get().copy(), "W_rec": lnet.conn_rec.weights.get().copy(),
                             "W_out": lnet.readout.weights.get().copy(), "x1_in": lnet.conn_in.x1.get().copy(),
                             "x1_rec": lnet.conn_rec.x1.get().copy(), "tag_in": lnet.conn_in.tag.get().copy(),
                             "tag_rec": lnet.conn_rec.tag.get().copy()})
        data = {name: m.get_data() for name, m in monitors.items()}
    finally:
        session.close()
    out = {}
    for name, proc, var in (("z", lnet.neurons, "z"), ("v", lnet.neurons, "v"), ("y", lnet.readout, "y")):
        out[name] = np.asarray(data[name][proc.name][var])
    return Recording(out["z"], out["v"], out["y"], ends)

