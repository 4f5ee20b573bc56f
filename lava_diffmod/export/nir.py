r"""NIR export of a trained network (Neuromorphic Intermediate Representation, package ``nir``).

The graph of one network of the population (node names; an edge carries a signal)::

    input ─▶ w_in ─▶ lif ─▶ w_out ─▶ readout ─▶ output
                     ▲  │
                     └──┴─ w_rec        (lif ─▶ w_rec ─▶ lif)

``w_in``, ``w_rec`` and ``w_out`` are ``nir.Affine`` with zero bias in NIR's (out, in) weight
layout, i.e. our (pre, post) matrices transposed; an absent synapse (mask 0) is a zero weight.
``lif`` holds all N recurrent units, ``readout`` is a ``nir.LI``. Time is in seconds (NIR's
convention: τ and ``metadata["dt"]``), voltages in our units (threshold ϑ = ``thr``).

Mapping. Our step (MODEL.md §1; s_in = 1 − α by default, or 1):

.. math::

    v_j(t) &= \alpha v_j(t-1) + s_\mathrm{in} I_j(t) - \vartheta z_j(t-1), \qquad
    z_j(t) = H(v_j(t) - \vartheta) \\
    y_m(t) &= \kappa y_m(t-1) + (1-\kappa) \textstyle\sum_j W_\mathrm{out}[j,m] z_j(t)

NIR's LIF is τ v̇ = (v_leak − v) + R I with a spike when v > v_threshold, after which
v ← v_reset = 0; its LI is the same ODE without spikes. One forward-Euler step of length dt is
v(t) = (1 − dt/τ) v(t−1) + (dt/τ) R I(t), so with

    τ = dt / (1 − α),  R = s_in / (1 − α),  v_leak = 0,  v_threshold = ϑ;
    readout: τ = dt / (1 − κ),  R = 1,  v_leak = 0

it is our step. **Exact** under forward Euler at dt (up to rounding in the weights' dtype): the
weights and masks, the input scaling, the subthreshold membrane, the threshold and the test
v > ϑ, the one-step recurrent lag (the cycle lif → w_rec → lif carries z(t−1), the input edge
x(t)), and the leaky readout of same-step spikes.

**Approximate or missing in NIR**, recorded in the metadata of node ``lif``:

* τ is the Euler time constant: an exact-exponential integrator of NIR's ODE would decay by
  exp(−(1 − α)) per step instead of α (τ = 20.50 ms for τ_m = 20 ms); τ_m is ``tau_m``.
* Reset: ours subtracts ϑ one step after the spike (``reset``); NIR resets v to 0.
* Refractory period: none in NIR (``refractory_steps``: a spike at t blocks t+1 … t+n).
* The spike test ``>=`` of other codes' convention (``spike_condition``).
* ALIF adaptation, A_j = ϑ + β_j a_j with a_j(t) = ρ a_j(t−1) + s_a z_j(t−1): NIR has no
  adaptive-threshold neuron, so ``is_alif``, ``beta`` (per unit), ``tau_a``, ``rho`` and
  ``adapt_scale`` are metadata and NIR loaders simulate the ALIF units as LIF with threshold ϑ
  (a :class:`NIRExportWarning` says so).

Training-only state (feedback weights, ψ, grid placement, the modulator field) is not exported.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .. import config as config_mod
from ..config import ConfigError

if TYPE_CHECKING:   # numpy and nir load on use: the CLI imports this module
    import nir
    import numpy as np

    from ..config import Config
    from ..float.neurons import ALIFParameters
    from ..float.rsnn import Network

DEFAULT_NAME = "network.nir"
SECONDS_PER_MS = 1e-3
EDGES = (("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
         ("lif", "w_out"), ("w_out", "readout"), ("readout", "output"))


class NIRExportWarning(UserWarning):
    """Part of the network that NIR loaders will not simulate as trained."""


def euler_tau(decay: float, dt: float) -> float:
    """The time constant whose forward-Euler step of length dt decays by ``decay``:
    1 − dt/τ = decay ⇔ τ = dt / (1 − decay), in the unit of dt."""
    return dt / (1.0 - decay)


def affine_params(w: np.ndarray) -> dict:
    """``nir.Affine`` fields of a (pre, post) weight matrix: weight (post, pre), zero bias."""
    import numpy as np
    weight = np.ascontiguousarray(w.T)
    return {"weight": weight, "bias": np.zeros(weight.shape[0], dtype=weight.dtype)}


def lif_params(p: ALIFParameters, beta: np.ndarray, dt: float, dtype) -> dict:
    """``nir.LIF`` fields of the recurrent units (dt in s) and the metadata of what NIR's LIF
    lacks: reset by subtraction, refractory steps, spike test and ALIF adaptation (β per unit)."""
    import numpy as np
    n = beta.shape[0]
    is_alif = beta != 0
    metadata = {
        "dt": dt, "tau_m": -dt / math.log(p.alpha), "alpha": p.alpha, "input_scale": p.input_scale,
        "reset": "subtract_adaptive_threshold" if p.reset_adaptive else "subtract_threshold",
        "refractory_steps": p.n_block, "spike_condition": ">=" if p.spike_ge else ">",
        "adaptation": "metadata" if is_alif.any() else "none", "is_alif": is_alif, "beta": beta,
        "tau_a": -dt / math.log(p.rho), "rho": p.rho, "adapt_scale": p.adapt_scale,
    }
    return {"tau": np.full(n, euler_tau(p.alpha, dt), dtype=dtype),
            "r": np.full(n, p.input_scale / (1.0 - p.alpha), dtype=dtype),
            "v_leak": np.zeros(n, dtype=dtype), "v_threshold": np.full(n, p.thr, dtype=dtype),
            "metadata": metadata}


def readout_params(kappa: float, n_out: int, dt: float, dtype) -> dict:
    """``nir.LI`` fields of the leaky readout y(t) = κ y(t−1) + (1 − κ) W_out z(t) (dt in s)."""
    import numpy as np
    return {"tau": np.full(n_out, euler_tau(kappa, dt), dtype=dtype), "r": np.ones(n_out, dtype=dtype),
            "v_leak": np.zeros(n_out, dtype=dtype),
            "metadata": {"tau_out": -dt / math.log(kappa), "kappa": kappa}}


def unit_beta(beta, seed_index: int, n: int) -> np.ndarray:
    """β per unit (N,) of population member ``seed_index``; β is (N,) or (S, 1, N)."""
    rows = beta.detach().reshape(-1, n)
    return rows[seed_index if rows.shape[0] > 1 else 0].cpu().double().numpy()


def network_graph(net: Network, seed_index: int = 0, dt: float = 1.0,
                  metadata: dict | None = None) -> nir.NIRGraph:
    """The NIR graph of network ``seed_index`` of ``net``, whose step is ``dt`` ms.

    ``metadata`` is added to the graph's metadata. Warns (:class:`NIRExportWarning`) when the
    network has ALIF units, whose adaptation NIR cannot express.
    """
    import nir
    import numpy as np
    if not 0 <= seed_index < net.n_seeds:
        raise ConfigError(f"seed_index = {seed_index}: must be in 0 … {net.n_seeds - 1} "
                          f"(the network population has {net.n_seeds})")
    dt_s = dt * SECONDS_PER_MS
    w_in, w_rec, w_out = (w[seed_index].detach().cpu().numpy() for w in net.params)
    lif = lif_params(net.neuron, unit_beta(net.neuron.beta, seed_index, net.n_rec), dt_s, w_in.dtype)
    n_alif = int(lif["metadata"]["is_alif"].sum())
    if n_alif:
        warnings.warn(
            f"NIR export: {n_alif} of {net.n_rec} recurrent units are ALIF; NIR has no adaptive "
            f"threshold, so their adaptation (beta, tau_a, rho) is only metadata of node 'lif' and "
            f"NIR loaders will simulate them as plain LIF with threshold {net.neuron.thr:g}",
            NIRExportWarning, stacklevel=2)
    graph_meta = {"source": "lava_diffmod", "time_unit": "s", "dt": dt_s, "integration": "forward_euler",
                  "weight_layout": "(post, pre); zero = no synapse", "recurrent_delay_steps": 1,
                  "alif": lif["metadata"]["adaptation"], **(metadata or {})}
    nodes = {
        "input": nir.Input(input_type={"input": np.array([net.n_in])}),
        "w_in": nir.Affine(**affine_params(w_in)),
        "lif": nir.LIF(**lif),
        "w_rec": nir.Affine(**affine_params(w_rec)),
        "w_out": nir.Affine(**affine_params(w_out)),
        "readout": nir.LI(**readout_params(net.kappa, net.n_out, dt_s, w_in.dtype)),
        "output": nir.Output(output_type={"output": np.array([net.n_out])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=list(EDGES), metadata=graph_meta)


def trained_network(run_dir: Path, cfg: Config) -> tuple[Network, int]:
    """The run's trained float networks (all seeds) and the checkpoint's iteration. A fixed-backend
    checkpoint holds integer weights: they become the float weights they represent."""
    from ..float.rsnn import Params
    from ..training import checkpoint
    from ..training.trainer import CHECKPOINT, setup
    exp = setup(cfg)
    emu = exp.emulator
    like = exp.net.params if emu is None else emu.initial_weights()
    weights, _, iteration, _ = checkpoint.load(Path(run_dir) / CHECKPOINT, like)
    params = weights if emu is None else emu.float_weights(weights)
    return exp.net.with_params(Params(*params)), iteration


def export_run(run_dir: str | Path, out: str | Path | None = None, seed: int | None = None) -> dict:
    """Write the NIR graph of one seed of a training run (default: its first seed) to ``out``
    (default ``<run_dir>/network.nir``). Returns path, seed, iteration, nodes, edges and the
    ALIF handling ("metadata" or "none")."""
    import nir

    from ..training.checkpoint import atomic_write
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r}: not found")
    cfg = config_mod.load(run_dir / "config.toml", {"train.device": "cpu"})
    seeds = list(cfg.train.seeds)
    seed = seeds[0] if seed is None else seed
    if seed not in seeds:
        raise ConfigError(f"--seed {seed}: not a seed of this run; allowed: {', '.join(map(str, seeds))}")
    path = Path(out) if out is not None else run_dir / DEFAULT_NAME
    if not path.parent.is_dir():
        raise ConfigError(f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist")
    net, iteration = trained_network(run_dir, cfg)
    graph = network_graph(net, seeds.index(seed), cfg.neuron.dt, {
        "task": cfg.task.name, "rule": cfg.rule.name, "backend": cfg.train.backend, "seed": seed,
        "iteration": iteration})
    atomic_write(path, lambda p: nir.write(p, graph))
    return {"path": str(path), "seed": seed, "iteration": iteration, "nodes": len(graph.nodes),
            "edges": len(graph.edges), "alif": graph.metadata["alif"]}


def cmd_export_nir(args) -> int:
    info = export_run(args.run_dir, args.out, args.seed)
    alif = "metadata only (NIR loaders simulate LIF)" if info["alif"] == "metadata" else "none"
    print(f"{info['path']}: NIR graph of seed {info['seed']} at iteration {info['iteration']}, "
          f"{info['nodes']} nodes, {info['edges']} edges; ALIF adaptation: {alif}")
    return 0


def add_cli(sub) -> None:
    """Register ``export-nir`` on an argparse subparsers object."""
    p = sub.add_parser("export-nir", help="write a trained run's network as a NIR graph (Neuromorphic "
                                          "Intermediate Representation, docs/nir.md)")
    p.add_argument("run_dir")
    p.add_argument("--out", help=f"output file (default <run_dir>/{DEFAULT_NAME})")
    p.add_argument("--seed", type=int, help="which of the run's seeds (default: the first)")
    p.set_defaults(fn=cmd_export_nir)
