"""NIR export (lava_diffmod/export/nir.py, docs/nir.md): structure and parameters survive a
round trip through ``nir.write``/``nir.read``, the mapping's forward-Euler semantics equal our
forward pass, ALIF handling and its warning, fixed-backend runs, errors and the CLI."""
from __future__ import annotations

import argparse
import math
import shutil
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from lava_diffmod import config as C
from lava_diffmod.config import ConfigError
from lava_diffmod.export.nir import NIRExportWarning, add_cli, export_run, network_graph
from lava_diffmod.float.rsnn import Network, forward
from lava_diffmod.training import checkpoint, trainer
from lava_diffmod.training.checkpoint import CheckpointError

from helpers import tiny

SEEDS = [1, 2]
TYPES = {"input": nir.Input, "w_in": nir.Affine, "lif": nir.LIF, "w_rec": nir.Affine,
         "w_out": nir.Affine, "readout": nir.LI, "output": nir.Output}
EDGES = {("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "w_out"),
         ("w_out", "readout"), ("readout", "output")}


def train_run(root: Path, name: str, **overrides) -> Path:
    cfg = C.from_mapping(tiny(iterations=2, eval_every=2, checkpoint_every=2, seeds=SEEDS),
                         {"network.gain_in": 3.0, **overrides})
    trainer.train(cfg, root / name)
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three short runs: LIF + ALIF (the tiny default), pure LIF, and the fixed backend."""
    root = tmp_path_factory.mktemp("nir_runs")
    return {"alif": train_run(root, "alif"),
            "lif": train_run(root, "lif", **{"neuron.n_lif": 16, "neuron.n_alif": 0}),
            "fixed": train_run(root, "fixed", **{"train.backend": "fixed"})}


def exported(run: Path, tmp_path: Path, seed: int | None = None) -> tuple[dict, nir.NIRGraph]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRExportWarning)
        info = export_run(run, tmp_path / "net.nir", seed)
    return info, nir.read(info["path"])


def trained(run: Path):
    """(config, experiment, float weights) of a run, read independently of the exporter."""
    cfg = C.load(run / "config.toml")
    exp = trainer.setup(cfg)
    emu = exp.emulator
    w, _, _, _ = checkpoint.load(run / trainer.CHECKPOINT, exp.net.params if emu is None else emu.initial_weights())
    return cfg, exp, w if emu is None else emu.float_weights(w)


# ---------------------------------------------------------------------------------------------
# round trip: structure and parameters
# ---------------------------------------------------------------------------------------------

def test_structure_round_trips(runs, tmp_path):
    info, g = exported(runs["alif"], tmp_path)
    assert {k: type(v) for k, v in g.nodes.items()} == TYPES
    assert set(g.edges) == EDGES and len(g.edges) == len(EDGES)
    assert info == {"path": str(tmp_path / "net.nir"), "seed": 1, "iteration": 2, "nodes": 7, "edges": 7,
                    "alif": "metadata"}
    meta = g.metadata
    assert (meta["source"], meta["time_unit"], meta["dt"], meta["integration"]) == \
        ("lava_diffmod", "s", 1e-3, "forward_euler")
    assert (meta["task"], meta["rule"], meta["backend"], meta["seed"], meta["iteration"]) == \
        ("cue_accumulation", "diffusion", "float", 1, 2)
    assert g.nodes["input"].input_type["input"].tolist() == [40]
    assert g.nodes["output"].output_type["output"].tolist() == [2]


def test_default_path_is_in_the_run_directory(runs, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(runs["lif"], run)
    info = export_run(run)
    assert info["path"] == str(run / "network.nir") and (run / "network.nir").is_file()


@pytest.mark.parametrize("seed", SEEDS)
def test_weights_are_the_checkpoint_transposed(runs, tmp_path, seed):
    _, g = exported(runs["alif"], tmp_path, seed)
    _, _, w = trained(runs["alif"])
    i = SEEDS.index(seed)
    for name, mat in zip(("w_in", "w_rec", "w_out"), w):
        node = g.nodes[name]
        assert node.weight.dtype == np.float64
        assert np.array_equal(node.weight, mat[i].numpy().T), name
        assert np.array_equal(node.bias, np.zeros(node.weight.shape[0]))
    assert not np.array_equal(g.nodes["w_rec"].weight, w.w_rec[1 - i].numpy().T)   # the chosen seed


def test_neuron_and_readout_parameters(runs, tmp_path):
    _, g = exported(runs["alif"], tmp_path)
    cfg = C.load(runs["alif"] / "config.toml")
    nc, dt = cfg.neuron, cfg.neuron.dt * 1e-3
    alpha, kappa = math.exp(-nc.dt / nc.tau_m), math.exp(-nc.dt / nc.tau_out)
    lif, li = g.nodes["lif"], g.nodes["readout"]
    n = cfg.n_rec
    assert np.array_equal(lif.tau, np.full(n, dt / (1 - alpha)))         # 20.50 ms: Euler decay = α
    assert np.array_equal(lif.r, np.ones(n))                             # s_in = 1 − α = dt/τ
    assert np.array_equal(lif.v_leak, np.zeros(n))
    assert np.array_equal(lif.v_threshold, np.full(n, nc.thr))
    assert np.array_equal(lif.v_reset, np.zeros(n))
    np.testing.assert_allclose(1 - dt / lif.tau, alpha, rtol=0, atol=1e-15)
    assert np.array_equal(li.tau, np.full(2, dt / (1 - kappa))) and np.array_equal(li.r, np.ones(2))
    assert np.array_equal(li.v_leak, np.zeros(2))
    assert li.metadata["tau_out"] == pytest.approx(nc.tau_out * 1e-3, rel=1e-12)
    assert lif.metadata["tau_m"] == pytest.approx(nc.tau_m * 1e-3, rel=1e-12)


def test_unit_input_scaling_sets_r(tmp_path):
    """s_in = 1 (other codes' convention): R = 1/(1 − α), so the Euler input gain R dt/τ is 1."""
    rng = np.random.default_rng(0)
    net = Network.from_arrays(w_in=rng.normal(size=(3, 4)), w_rec=np.zeros((4, 4)), w_out=rng.normal(size=(4, 2)),
                              neuron=C.NeuronConfig(input_scaling="1", n_ref=2), tau_m=30.0)
    g = network_graph(net, dt=1.0)
    lif = g.nodes["lif"]
    alpha = math.exp(-1 / 30)
    assert np.array_equal(lif.r, np.full(4, 1 / (1 - alpha)))
    np.testing.assert_allclose(lif.r * 1e-3 / lif.tau, 1.0, rtol=1e-12)
    assert lif.metadata["input_scale"] == 1.0 and lif.metadata["refractory_steps"] == 2


def test_alif_parameters_are_metadata(runs, tmp_path):
    _, g = exported(runs["alif"], tmp_path)
    cfg = C.load(runs["alif"] / "config.toml")
    meta = g.nodes["lif"].metadata
    is_alif = np.arange(cfg.n_rec) >= cfg.neuron.n_lif
    assert np.array_equal(meta["is_alif"], is_alif)
    assert np.array_equal(meta["beta"], np.where(is_alif, cfg.neuron.beta, 0.0))
    assert meta["tau_a"] == pytest.approx(cfg.neuron.tau_a * 1e-3, rel=1e-12)
    assert meta["rho"] == math.exp(-cfg.neuron.dt / cfg.neuron.tau_a)
    assert meta["adapt_scale"] == 1 - meta["rho"]
    assert (meta["adaptation"], meta["reset"], meta["spike_condition"], meta["refractory_steps"]) == \
        ("metadata", "subtract_threshold", ">", cfg.neuron.n_ref)


# ---------------------------------------------------------------------------------------------
# the ALIF warning
# ---------------------------------------------------------------------------------------------

def test_alif_network_warns(runs, tmp_path):
    with pytest.warns(NIRExportWarning, match=r"8 of 16 recurrent units are ALIF.*metadata.*plain LIF"):
        export_run(runs["alif"], tmp_path / "a.nir")


def lif_by_beta_zero() -> Network:
    cfg = C.from_mapping(tiny(), {"neuron.beta": 0.0})
    return Network.from_config(cfg, [1], n_in=5, n_out=2, dtype=torch.float64)


def test_pure_lif_networks_do_not_warn(runs, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NIRExportWarning)
        info = export_run(runs["lif"], tmp_path / "l.nir")
        g = network_graph(lif_by_beta_zero())
    assert info["alif"] == "none" and g.metadata["alif"] == "none"
    assert not g.nodes["lif"].metadata["is_alif"].any()


# ---------------------------------------------------------------------------------------------
# semantics: a forward-Euler simulation of the graph against our forward pass
# ---------------------------------------------------------------------------------------------

def affine(node, s: np.ndarray) -> np.ndarray:
    return s @ node.weight.T + node.bias


def euler_run(g: nir.NIRGraph, x: np.ndarray, extended: bool):
    """The graph's NIR semantics by forward Euler at its dt, on inputs x (T, B, n_in):
    I = W_in x(t) + W_rec z(t−1); v += dt/τ (v_leak − v + R I); z = [v > v_thr], then v ← v_reset;
    y += dt/τ_y (v_leak − y + R_y W_out z(t)). With ``extended`` the metadata of node ``lif``
    replaces what NIR lacks: reset by subtraction one step later, refractory steps, the ALIF
    threshold. Returns z, v (before a NIR reset) and y, each (T, B, ·)."""
    nodes, dt = g.nodes, g.metadata["dt"]
    lif, li, meta = nodes["lif"], nodes["readout"], nodes["lif"].metadata
    b, n = x.shape[1], lif.tau.shape[0]
    v, z, a, y = np.zeros((b, n)), np.zeros((b, n)), np.zeros((b, n)), np.zeros((b, li.tau.shape[0]))
    refr = np.zeros((b, n), dtype=int)
    out = []
    for xt in x:
        v = v + dt / lif.tau * (lif.v_leak - v + lif.r * (affine(nodes["w_in"], xt) + affine(nodes["w_rec"], z)))
        thr, free = lif.v_threshold, True
        if extended:
            refr = np.where(z > 0, meta["refractory_steps"], np.maximum(refr - 1, 0))
            a = meta["rho"] * a + meta["adapt_scale"] * z
            v = v - lif.v_threshold * z
            thr, free = lif.v_threshold + meta["beta"] * a, refr == 0
        z = ((v > thr) & free).astype(float)
        out.append((z, v))
        if not extended:
            v = np.where(z > 0, lif.v_reset, v)
        y = y + dt / li.tau * (li.v_leak - y + li.r * affine(nodes["w_out"], z))
        out[-1] += (y,)
    return tuple(np.stack(s) for s in zip(*out))


def reference(run: Path, trials: int = 4):
    """Inputs (T, B, n_in) and our forward pass (z, v, y) of the run's first seed."""
    cfg, exp, w = trained(run)
    net = exp.net.with_params(w).select([0])
    x = exp.task.batch([cfg.train.seeds[0]], "eval", 0, range(trials), "cpu", torch.float64).x
    rec = forward(net, x, keep_state=True)
    return x[:, 0].numpy(), rec.z[:, 0].numpy(), rec.v[:, 0].numpy(), rec.y[:, 0].numpy()


def test_nir_semantics_equal_ours_until_the_first_reset(runs, tmp_path):
    """Plain NIR (reset to 0, no refractory period) equals our pure-LIF network up to and including
    the first spike of each trial, and one step later on every unit that did not spike: those
    receive the recurrent input z(t0) W_rec through the cycle lif → w_rec → lif."""
    _, g = exported(runs["lif"], tmp_path)
    x, z, v, y = reference(runs["lif"])
    zn, vn, yn = euler_run(g, x, extended=False)
    fired = z.any(-1)                                         # (T, B)
    assert fired.any(0).all(), "every trial should spike for a meaningful check"
    recurrent_seen = False
    for b in range(x.shape[1]):
        t0 = int(fired[:, b].argmax())
        assert np.array_equal(zn[:t0 + 1, b], z[:t0 + 1, b])
        np.testing.assert_allclose(vn[:t0 + 1, b], v[:t0 + 1, b], rtol=0, atol=1e-13)
        np.testing.assert_allclose(yn[:t0 + 1, b], y[:t0 + 1, b], rtol=0, atol=1e-13)
        quiet = z[t0, b] == 0
        np.testing.assert_allclose(vn[t0 + 1, b, quiet], v[t0 + 1, b, quiet], rtol=0, atol=1e-13)
        recurrent_seen |= bool((affine(g.nodes["w_rec"], z[t0, b])[quiet] != 0).any())
    assert recurrent_seen


@pytest.mark.parametrize("kind", ["lif", "alif"])
def test_metadata_completes_the_semantics(runs, tmp_path, kind):
    """NIR's Euler step plus the metadata (reset by subtraction, refractory steps, adaptation)
    reproduces our forward pass over whole trials: spikes exactly, v and y to rounding."""
    _, g = exported(runs[kind], tmp_path)
    x, z, v, y = reference(runs[kind])
    zn, vn, yn = euler_run(g, x, extended=True)
    assert z.sum() > 0
    assert np.array_equal(zn, z)
    np.testing.assert_allclose(vn, v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(yn, y, rtol=0, atol=1e-12)
    if kind == "alif":   # the adaptation changes spikes of this network: the check covers β
        g.nodes["lif"].metadata["beta"] = np.zeros_like(g.nodes["lif"].metadata["beta"])
        assert not np.array_equal(euler_run(g, x, extended=True)[0], z)


# ---------------------------------------------------------------------------------------------
# fixed backend, errors, command line
# ---------------------------------------------------------------------------------------------

def test_fixed_backend_exports_its_float_weights(runs, tmp_path):
    _, g = exported(runs["fixed"], tmp_path)
    cfg, exp, w = trained(runs["fixed"])
    ints, _, _, _ = checkpoint.load(runs["fixed"] / trainer.CHECKPOINT, exp.emulator.initial_weights())
    assert not ints.w_rec.is_floating_point()                  # the checkpoint holds hardware integers
    for name, mat in zip(("w_in", "w_rec", "w_out"), w):
        assert np.array_equal(g.nodes[name].weight, mat[0].numpy().T), name
    assert g.metadata["backend"] == "fixed"


def test_missing_run_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"run directory .*nowhere'?: not found"):
        export_run(tmp_path / "nowhere")


def test_missing_checkpoint(runs, tmp_path):
    (tmp_path / "run").mkdir()
    shutil.copy(runs["lif"] / "config.toml", tmp_path / "run" / "config.toml")
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint.safetensors'?: not found"):
        export_run(tmp_path / "run")


def test_unknown_seed(runs):
    with pytest.raises(ConfigError, match=r"^--seed 7: not a seed of this run; allowed: 1, 2$"):
        export_run(runs["lif"], seed=7)


def test_missing_output_folder(runs, tmp_path):
    with pytest.raises(ConfigError, match=r"^--out .*: folder .* does not exist$"):
        export_run(runs["lif"], tmp_path / "no" / "net.nir")


def test_cli_subcommand(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="lava-diffmod")
    add_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "seed2.nir"
    args = parser.parse_args(["export-nir", str(runs["lif"]), "--seed", "2", "--out", str(out)])
    assert args.fn(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"{out}: NIR graph of seed 2 at iteration 2, 7 nodes, 7 edges; ALIF adaptation: none"]
    _, _, w = trained(runs["lif"])
    assert np.array_equal(nir.read(out).nodes["w_rec"].weight, w.w_rec[1].numpy().T)
