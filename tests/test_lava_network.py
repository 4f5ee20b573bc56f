"""The Lava network: fixed_pt equals the emulator bit for bit and floating_pt the float reference
(float64), learning on, over more than 500 steps; the CUBA LIF mode equals Lava's LIF; processes
are always stopped."""
import sys

import numpy as np
import psutil
import pytest
import torch

import lava_diffmod  # noqa: F401  (the Python 3.11 import fix)
from lava_diffmod import config as C
from lava_diffmod.fixed.emulator import Emulator, Weights
from lava_diffmod.float.rsnn import forward
from lava_diffmod import parity
from lava_diffmod.lava import network as LN
from lava_diffmod.rules import eprop_factorised
from lava_diffmod.tasks import make_task

from helpers import TINY

pytestmark = [pytest.mark.lava,
              pytest.mark.skipif(sys.version_info >= (3, 12), reason="lava-nc 0.10 needs Python < 3.12")]

TRIALS = 4    # of 130 steps: 520 steps per run


def grid_cfg(rule="diffusion", lr=100.0, **fixed):
    """A 6×6 grid, 18 LIF + 18 ALIF, diffusion, a sparse readout, on-chip write-back every step."""
    data = {k: dict(v) for k, v in TINY.items()}
    data["rule"] = {"name": rule, "c_reg": 0.05}
    data["network"] = dict(data["network"], gain_in=3.0, out_density=0.5, grid_h=6, grid_w=6)
    data["neuron"] = {"n_lif": 18, "n_alif": 18}
    data["fixed"] = {"hw": "lava_sim_0_10", "lr": lr,
                     "switches": {"preset": "hardware", "cadence": "step", **fixed}}
    return C.from_mapping(data, {})


def trials(cfg, seed):
    task = make_task(cfg.task, cfg.neuron.dt)
    batch = task.batch([seed], "train", 0, range(TRIALS), "cpu", torch.float64)
    return task, batch


def one_trial(task, batch, i):
    return parity.one_trial(batch, task.kind, i)


def run_lava(cfg, seed, backend):
    task, batch = trials(cfg, seed)
    t_steps = batch.x.shape[0]
    spec = LN.network_spec(cfg, seed, backend, t_steps, learn=True)
    x, target = LN.task_arrays(batch.x, batch.target, task.kind, task.n_out)
    return spec, task, batch, LN.run(LN.build(spec, x, target, backend), TRIALS, backend)


def lava_weights(end) -> Weights:
    return Weights(*(torch.from_numpy(end[k]).T[None] for k in ("W_in", "W_rec", "W_out")))


@pytest.mark.parametrize("seed", [3, 11])
def test_fixed_pt_network_equals_the_emulator_bit_for_bit(seed):
    spec, task, batch, rec = run_lava(grid_cfg(), seed, "fixed")
    t_steps = batch.x.shape[0]
    assert TRIALS * t_steps >= 500
    em = Emulator(spec.net, spec.fp, spec.obj, spec.modulator, [seed], compile=False)
    w = Weights(*LN.initial_weights(spec, "fixed"))
    w0 = w
    n_in = spec.net.n_in
    for i in range(TRIALS):
        res = em.run(w, *one_trial(task, batch, i), i, learn=True, record=True)
        w, steps, end = res.weights, slice(i * t_steps, (i + 1) * t_steps), rec.trial_ends[i]
        assert np.array_equal(res.record["z"][:, 0, 0].numpy(), rec.z[steps])
        v = torch.from_numpy(rec.v[steps]).double() / spec.fp.s_v
        assert torch.equal(v, res.record["v"][:, 0, 0])
        y = torch.from_numpy(rec.y[steps][-spec.obj.window:]).double() / spec.fp.s_o
        assert torch.equal(y, res.y_window[:, 0, 0])
        x1 = res.record["x1"][-1, 0, 0].numpy()
        assert np.array_equal(x1[:n_in], end["x1_in"]) and np.array_equal(x1[n_in:], end["x1_rec"])
        tag = res.record["tag"][-1, 0, 0].numpy()
        assert np.array_equal(tag[:n_in].T, end["tag_in"]) and np.array_equal(tag[n_in:].T, end["tag_rec"])
        for ours, theirs in zip(w, lava_weights(end)):
            assert torch.equal(ours, theirs)
    assert rec.z.sum() > 0 and np.abs(rec.trial_ends[-1]["tag_rec"]).sum() > 0
    assert all(not torch.equal(a, b) for a, b in zip(w, w0))    # learning moved every matrix


@pytest.mark.parametrize("rule", ["diffusion", "eprop"])
def test_floating_pt_network_equals_the_float_reference(rule):
    seed = 5
    spec, task, batch, rec = run_lava(grid_cfg(rule), seed, "float")
    t_steps = batch.x.shape[0]
    net, lr = spec.net, spec.fp.lr
    for i in range(TRIALS):
        x, target, keys = one_trial(task, batch, i)
        ref = forward(net, x, keep_state=True)
        steps = slice(i * t_steps, (i + 1) * t_steps)
        assert float(ref.z.sum()) > 0
        assert np.array_equal(ref.z[:, 0, 0].numpy(), rec.z[steps])
        np.testing.assert_allclose(rec.v[steps], ref.v[:, 0, 0].numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(rec.y[steps], ref.y[:, 0, 0].numpy(), rtol=0, atol=1e-9)
        grads = eprop_factorised(net, x, target, spec.obj, spec.modulator, keys).grads
        assert float(grads.w_rec.abs().max()) > 0
        new = [w - lr * g for w, g in zip(net.params, grads)]
        for ours, theirs in zip(new, lava_weights(rec.trial_ends[i])):
            torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-9)
        net = net.with_params(new)


@pytest.mark.parametrize("case", range(4))
def test_cuba_mode_equals_lavas_lif_bit_for_bit(case):
    """Random du, dv, vth, bias and integer input; 1000 steps; current, voltage and spikes."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor
    from lava_diffmod.processes.alif.process import ALIF
    gen = np.random.default_rng(case)
    n, steps = 8, 1000
    cuba = dict(du=int(gen.integers(0, 4096)), dv=int(gen.integers(0, 4096)), vth=int(gen.integers(1, 400)),
                bias_mant=gen.integers(-4096, 4096, n), bias_exp=gen.integers(0, 8, n) if case % 2 else np.zeros(n, int))
    # Lava's LIF receives a_in as int16 and shifts it by 6 in int16: inputs stay below 2^9 in magnitude
    data = gen.integers(-511, 512, (n, steps)) * (gen.random((n, steps)) < 0.5)
    lif = LIF(shape=(n,), du=cuba["du"], dv=cuba["dv"], vth=cuba["vth"], bias_mant=cuba["bias_mant"],
              bias_exp=cuba["bias_exp"])
    ours = ALIF(shape=(n,), cuba=cuba)
    src = RingBuffer(data=data)
    src.s_out.connect(lif.a_in)
    src.s_out.connect(ours.a_in)
    mons = []
    for var in (lif.u, lif.v, ours.u, ours.v):
        mons.append(Monitor())
        mons[-1].probe(var, steps)
    spikes = [Monitor(), Monitor()]
    spikes[0].probe(lif.s_out, steps)
    spikes[1].probe(ours.s_out, steps)
    try:
        lif.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got = [np.asarray(m.get_data()[p.name][v]) for m, (p, v) in
               zip(mons + spikes, [(lif, "u"), (lif, "v"), (ours, "u"), (ours, "v"), (lif, "s_out"), (ours, "s_out")])]
    finally:
        lif.stop()
    u_lif, v_lif, u_ours, v_ours, s_lif, s_ours = got
    assert np.array_equal(u_lif, u_ours) and np.array_equal(v_lif, v_ours)
    assert np.array_equal(s_lif, s_ours)
    assert s_lif.sum() > 0 and np.abs(v_lif).max() > 0


def _workers() -> set:
    """Child processes, without Python's own resource tracker (one per interpreter, not Lava's)."""
    return {p.pid for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())}


@pytest.mark.parametrize("failure", ["model error", "interrupt"])
def test_processes_are_stopped_when_a_run_fails(failure, monkeypatch):
    from lava_diffmod.processes.readout import models as readout_models
    cfg = grid_cfg()
    task, batch = trials(cfg, 3)
    spec = LN.network_spec(cfg, 3, "fixed", batch.x.shape[0], learn=True)
    x, target = LN.task_arrays(batch.x, batch.target, task.kind, task.n_out)
    lnet = LN.build(spec, x, target, "fixed")
    before = _workers()
    if failure == "model error":      # the forked workers inherit the patched model
        def broken(self, trial, t, z, target):
            raise FloatingPointError("injected failure")
        monkeypatch.setattr(readout_models.PyReadoutModelFixed, "step", broken)
        expected = Exception
    else:                             # Ctrl-C after the first trial
        def interrupt():
            raise KeyboardInterrupt
        monkeypatch.setattr(lnet.conn_in.weights, "get", interrupt)
        expected = KeyboardInterrupt
    with pytest.raises(expected):
        LN.run(lnet, 2, "fixed")
    assert _workers() - before == set()


def test_every_process_has_one_model_per_tag():
    """Lava finds our models by the exact process class (LOIHI.md §2.2): one per tag, each."""
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
    cfg = grid_cfg()
    task, batch = trials(cfg, 3)
    spec = LN.network_spec(cfg, 3, "fixed", batch.x.shape[0], learn=True)
    x, target = LN.task_arrays(batch.x, batch.target, task.kind, task.n_out)
    lnet = LN.build(spec, x, target, "fixed")
    for proc in lnet.processes():
        models = ProcGroupDiGraphs._find_proc_models(proc)
        tags = sorted(t for m in models for t in m.tags)
        assert tags == ["fixed_pt", "floating_pt"], (type(proc).__name__, tags)


def test_unsupported_switches_and_rules_are_clear_errors():
    with pytest.raises(ValueError, match="trace_bits"):
        LN.network_spec(grid_cfg(trace_bits=False, product_downshift=False, sign_split_L=False, shared_rng=False),
                        1, "fixed", 130, learn=True)
    with pytest.raises(ValueError, match="drop_alif_eps_a = true, eps_a_tag2 = false"):
        LN.network_spec(grid_cfg(drop_alif_eps_a=False, eps_a_tag2=True, t_epoch=16), 1, "fixed", 130, learn=True)
    with pytest.raises(ValueError, match="backend"):
        LN.network_spec(grid_cfg(), 1, "loihi", 130, learn=True)
    with pytest.raises(ValueError, match="outside the on-chip exponent range"):
        LN.network_spec(grid_cfg(lr=20.0), 1, "fixed", 130, learn=True)
    with pytest.raises(ValueError, match="bptt"):
        LN.network_spec(grid_cfg("bptt"), 1, "float", 130, learn=True)


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    """A tiny float training run made with the CLI (e-prop with diffusion, 2 iterations)."""
    from lava_diffmod import cli
    from helpers import tiny
    import tomli_w
    tmp = tmp_path_factory.mktemp("lava_run")
    data = tiny(iterations=2, eval_every=2, checkpoint_every=2)
    data["rule"] = {"name": "diffusion"}
    data["network"] = dict(data["network"], gain_in=3.0)
    (tmp / "cfg.toml").write_text(tomli_w.dumps(data))
    assert cli.main(["train", "--config", str(tmp / "cfg.toml"), "--out", str(tmp / "run"), "--seeds", "4",
                     "--no-progress"]) == 0
    return tmp / "run"


@pytest.mark.parametrize("backend", ["fixed", "float"])
def test_lava_run_reports_lava_next_to_float_and_emulator(float_run, backend, capsys):
    from lava_diffmod import cli
    assert cli.main(["lava-run", str(float_run), "--backend", backend, "--trials", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "3 evaluation trials" in lines[0] and "accuracy" in lines[1]
    acc = {line.rsplit(None, 1)[0].strip(): float(line.split()[-1]) for line in lines[3:]}
    lava = acc.pop(f"lava {'fixed_pt' if backend == 'fixed' else 'floating_pt'} (Loihi2SimCfg)")
    same_bits = acc["fixed emulator (loihi2)"] if backend == "fixed" else acc["float reference (torch)"]
    assert lava == same_bits                      # the parity contract, seen in the task metric
    assert len(acc) == (2 if backend == "fixed" else 1)


def test_lava_run_learning_and_missing_hardware(float_run, capsys):
    from lava_diffmod import cli
    assert cli.main(["lava-run", str(float_run), "--learn", "--trials", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 training trials" in out and "weights changed" in out
    changed = int(out.strip().splitlines()[-1].split()[-1])
    assert changed > 0
    assert cli.main(["lava-run", str(float_run), "--hw", "loihi2", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "lava-loihi" in err and "\n" == err[-1] and err.count("\n") == 1
