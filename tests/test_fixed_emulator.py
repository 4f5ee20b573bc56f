"""The batched fixed-point emulator: the ideal control equals the float reference, each switch
changes what it should and nothing else, events are counted, and a seeded run is pinned."""
import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lava_diffmod import config as C
from lava_diffmod.fixed.emulator import Emulator
from lava_diffmod.fixed.quantize import quantize
from lava_diffmod.fixed.steps import Events
from lava_diffmod.fixed.switches import APPROXIMATIONS, Switches
from lava_diffmod.float.rsnn import Network, forward
from lava_diffmod.hw import load_profile
from lava_diffmod.rules import eprop_factorised
from lava_diffmod.rules.eprop import eps_a_step
from lava_diffmod.training import checkpoint, trainer

from helpers import TINY

SEEDS = [1, 2]


def tiny_cfg(rule="diffusion", **over):
    data = {k: dict(v) for k, v in TINY.items()}
    data["rule"] = {"name": rule, "c_reg": 0.05}
    data["network"] = dict(data["network"], gain_in=3.0, out_density=0.5)
    data["train"] = dict(data["train"], seeds=SEEDS, batch_size=4, micro_batches=1)
    return C.from_mapping(data, over)


def emulator(cfg, switches, profile="loihi2", lr=0.5):
    exp = trainer.setup(cfg)
    net = Network.from_config(cfg, SEEDS, exp.task.n_in, exp.task.n_out, dtype=torch.float64)
    fixed = dataclasses.replace(cfg.fixed, lr=lr)
    fp = quantize(net, load_profile(profile), switches, fixed, exp.rule.objective, cfg.train.batch_size,
                  cfg.diffusion if cfg.rule.name == "diffusion" else None, SEEDS)
    return Emulator(net, fp, exp.rule.objective, exp.rule.modulator(net), SEEDS), exp


def one_batch(em, exp, record=False, iteration=1):
    batch = exp.task.batch(SEEDS, "train", iteration, range(4), "cpu", torch.float64)
    w0 = em.initial_weights()
    return w0, em.run(w0, batch.x, batch.target, batch.keys, iteration, record=record), batch


# ---------------------------------------------------------------------------------------------
# the ideal control: no quantisation, every switch off == the float reference (float64)

@pytest.mark.parametrize("rule", ["diffusion", "eprop"])
@pytest.mark.parametrize("feedback", ["symmetric_init", "symmetric_tracking"])
def test_ideal_profile_equals_the_float_reference(rule, feedback):
    cfg = tiny_cfg(rule, **{"network.feedback": feedback})
    em, exp = emulator(cfg, Switches.off(), profile="ideal", lr=0.5)
    w0, res, batch = one_batch(em, exp)
    net = em.net
    ref = eprop_factorised(net, batch.x, batch.target, exp.rule.objective, exp.rule.modulator(net), batch.keys)
    assert float(ref.grads.w_rec.abs().max()) > 0
    for new, old, g in zip(res.weights, w0, ref.grads):
        torch.testing.assert_close(new, old - 0.5 * g, rtol=0, atol=1e-9)
    torch.testing.assert_close(res.y_window, forward(net, batch.x).y[-exp.task.window:], rtol=0, atol=1e-12)
    torch.testing.assert_close(res.task_loss, ref.task_loss, rtol=1e-12, atol=0)


def test_ideal_fixed_training_equals_float_sgd_training(tmp_path):
    """Three iterations through the trainer: --backend fixed --hw ideal --switches off against
    the float backend with plain SGD at the same rate."""
    common = {"train.iterations": 3, "train.eval_every": 2, "train.batch_size": 4, "train.micro_batches": 2}
    float_cfg = tiny_cfg(**common, **{"train.optimizer": "sgd", "train.lr": 0.3})
    fixed_cfg = tiny_cfg(**common, **{"train.backend": "fixed", "fixed.hw": "ideal", "fixed.switches": "off",
                                      "fixed.lr": 0.3})
    trainer.train(float_cfg, tmp_path / "float")
    trainer.train(fixed_cfg, tmp_path / "fixed")
    like = trainer.setup(float_cfg).net.params
    a = checkpoint.load(tmp_path / "float" / trainer.CHECKPOINT, like)[0]
    b = checkpoint.load(tmp_path / "fixed" / trainer.CHECKPOINT, like)[0]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-9)
    assert not torch.equal(a.w_rec, like.w_rec)


# ---------------------------------------------------------------------------------------------
# each switch alone changes what it should, and nothing else

# switches that leave the forward pass (spikes, readout) exactly as the float maths has it
FORWARD_EXACT = {"trace_bits", "product_downshift", "sign_split_L", "tag_leak_grid", "drop_alif_eps_a", "eps_a_tag2",
                 "random_feedback", "diffusion_fixed", "diffusion_hop_delay", "t_epoch", "stoch_round",
                 "shared_rng"}
# switches that leave the readout's weight update exactly as the float maths has it
READOUT_EXACT = {"tag_leak_grid", "drop_alif_eps_a", "random_feedback", "diffusion_fixed",
                 "diffusion_hop_delay"}


@pytest.fixture(scope="module")
def off_run():
    em, exp = emulator(tiny_cfg(), Switches.off())
    return one_batch(em, exp)


@pytest.mark.parametrize("name", APPROXIMATIONS)
def test_each_switch_changes_what_it_should(name, off_run):
    _, off, _ = off_run
    sw = Switches.only(name)
    em, exp = emulator(tiny_cfg(), sw)
    w0, res, _ = one_batch(em, exp)
    dw_off = [a - b for a, b in zip(off.weights, em.float_weights(em.initial_weights()))]
    dw = [a - b for a, b in zip(em.float_weights(res.weights), em.float_weights(w0))]
    if name in FORWARD_EXACT and "weight_bits" not in sw.names():
        torch.testing.assert_close(res.y_window, off.y_window, rtol=0, atol=0)
    else:
        assert not torch.equal(res.y_window, off.y_window)
    if name in READOUT_EXACT:
        torch.testing.assert_close(dw[2], dw_off[2], rtol=1e-12, atol=1e-15)
    changed = [not torch.allclose(a, b, rtol=1e-9, atol=1e-15) for a, b in zip(dw, dw_off)]
    assert any(changed), f"{name} changed nothing"
    # integer weights exactly when the weights are quantised
    assert (res.weights.w_rec.dtype == torch.int64) == sw.weight_bits


def test_stochastic_rounding_alone_changes_nothing(off_run):
    """Without integer state there is nothing to round: stoch_round alone is the float maths."""
    _, off, _ = off_run
    em, exp = emulator(tiny_cfg(), Switches(stoch_round=True))
    _, res, _ = one_batch(em, exp)
    for a, b in zip(res.weights, off.weights):
        assert torch.equal(a, b)


def test_dense_delay_is_the_input_hop_of_lava_dense():
    """A Dense hop delivers at t + 1: with d = 1 the network sees x(t − 1) and, as without the
    switch, z(t − 1); so it equals the undelayed network on the input shifted by one step."""
    cfg = tiny_cfg()
    em_off, exp = emulator(cfg, Switches.off())
    em_on, _ = emulator(cfg, Switches(dense_delay=1))
    batch = exp.task.batch(SEEDS, "train", 1, range(4), "cpu", torch.float64)
    shifted = torch.cat([torch.zeros_like(batch.x[:1]), batch.x[:-1]])
    w0 = em_off.initial_weights()
    on = em_on.run(w0, batch.x, batch.target, batch.keys, 1, learn=False, record=True)
    off = em_off.run(w0, shifted, batch.target, batch.keys, 1, learn=False, record=True)
    assert float(on.record["z"].sum()) > 0
    assert torch.equal(on.record["z"], off.record["z"])
    torch.testing.assert_close(on.record["v"], off.record["v"], rtol=0, atol=0)


def test_mixed_sign_weights_are_even():
    em, exp = emulator(tiny_cfg(), Switches(weight_bits=True, mixed_sign_lsb_loss=True, stoch_round=True))
    for w in em.initial_weights():
        dense = em._dense(w)
        assert bool((dense % 2 == 0).all())
        assert not bool((w % 2 == 0).all())


def test_shared_rounding_correlates_the_trace_decays():
    base = Switches(trace_bits=True, stoch_round=True, weight_bits=True)
    em_ind, exp = emulator(tiny_cfg(), base)
    em_sh, _ = emulator(tiny_cfg(), dataclasses.replace(base, shared_rng=True))
    _, ind, _ = one_batch(em_ind, exp, record=True)
    _, sh, _ = one_batch(em_sh, exp, record=True)
    assert torch.equal(ind.y_window, sh.y_window)          # the forward pass does not round
    assert not torch.equal(ind.record["tag"], sh.record["tag"])


def test_on_chip_cadence_changes_weights_during_the_batch():
    sw = dataclasses.replace(Switches.hardware(), cadence="epoch", t_epoch=2)
    em, exp = emulator(tiny_cfg(), sw, lr=2000.0)
    w0, res, _ = one_batch(em, exp)
    assert any(not torch.equal(a, b) for a, b in zip(res.weights, w0))


def test_hardware_switches_give_integer_weights_and_learn_in_the_float_direction():
    em_off, exp = emulator(tiny_cfg(), Switches.off())
    em_hw, _ = emulator(tiny_cfg(), Switches.hardware())
    w_off, off, _ = one_batch(em_off, exp)
    w_hw, hw, _ = one_batch(em_hw, exp)
    assert all(w.dtype == torch.int64 for w in hw.weights)
    lim = em_hw.fp.weight_limit
    assert all(int(w.abs().max()) <= lim + 1 for w in hw.weights)
    d_off = off.weights.w_out - w_off.w_out
    d_hw = em_hw.float_weights(hw.weights).w_out - em_hw.float_weights(w_hw).w_out
    cos = torch.nn.functional.cosine_similarity(d_off.flatten(), d_hw.flatten(), dim=0)
    assert float(cos) > 0.5


# ---------------------------------------------------------------------------------------------
# a CUDA graph can capture run(): no tensor value is read on the host

class HostReads(TorchDispatchMode):
    """Records the ops that read tensor values on the host or copy host data into a tensor."""
    FORBIDDEN = {"_local_scalar_dense", "lift_fresh", "nonzero", "masked_select", "unique", "_unique2"}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.FORBIDDEN:
            self.seen.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("switches, over", [
    (Switches.hardware(), {}),
    (Switches.hardware(), {"rule.storage": "dense"}),
    (Switches.off(), {}),
    (dataclasses.replace(Switches.hardware(), cadence="epoch", t_epoch=2), {}),
    (dataclasses.replace(Switches.hardware(), shared_rng=False, drop_alif_eps_a=False), {}),
])
def test_run_reads_no_tensor_value_on_the_host(switches, over):
    em, exp = emulator(tiny_cfg(**over), switches, lr=2000.0 if switches.cadence != "batch" else 0.5)
    batch = exp.task.batch(SEEDS, "train", 3, range(4), "cpu", torch.float64)
    w0, it = em.initial_weights(), torch.tensor(3)
    with HostReads() as mode:
        res = em.run(w0, batch.x, batch.target, batch.keys, it)
    assert mode.seen == []
    ref = em.run(w0, batch.x, batch.target, batch.keys, 3)       # a device-scalar iteration = the int
    for a, b in zip(res.weights, ref.weights):
        assert torch.equal(a, b)
    assert em.batch(w0, batch.x, batch.target, batch.keys, 3).weights.w_rec.equal(ref.weights.w_rec)  # CPU: run()


# ---------------------------------------------------------------------------------------------
# events: counted per variable, wrap only where the profile wraps

def test_saturation_events_are_counted_per_variable(tmp_path):
    em, exp = emulator(tiny_cfg(**{"fixed.field_bits": 4}), Switches.hardware())
    _, res, _ = one_batch(em, exp)
    assert int(res.events["modulator field"].sum()) > 0
    assert res.events["modulator field"].shape == (2,)
    assert int(res.events["neuron u"].sum()) == 0


def test_events_add_elementwise_hits_per_network():
    ev = Events(2, "cpu")
    a = torch.tensor([[1, 5, 9], [0, 0, 7]])
    ev.add("x", a, a.clamp(max=6))                    # hits per network: 1 (the 9), 1 (the 7)
    ev.add("x", a, a.clamp(max=4))                    # 2 (5, 9), 1 (7)
    ev.add("x", a[:, :2], a[:, :2].clamp(max=0))      # another shape: 2 (1, 5), 0
    ev.add_counts("x", torch.tensor([10, 20]))
    ev.add("y", a, a)
    assert {k: v.tolist() for k, v in ev.counts.items()} == {"x": [15, 22], "y": [0, 0]}


def test_wrap_happens_only_where_the_profile_says(tmp_path):
    """u wraps (Lava's LIF) and v saturates; a profile that saturates u clips it instead."""
    text = (load_profile("loihi2").path and open(load_profile("loihi2").path).read())
    path = tmp_path / "tight.toml"
    path.write_text(text.replace('name = "loihi2"', 'name = "tight"')
                    .replace("state_bits_u = { value = 24", "state_bits_u = { value = 12"))
    em, exp = emulator(tiny_cfg(), Switches(neuron_fixed=True), profile=str(path))
    _, res, _ = one_batch(em, exp)
    assert int(res.events["neuron u"].sum()) > 0          # 12-bit u wraps
    saturating = tmp_path / "tight_sat.toml"
    saturating.write_text(path.read_text().replace('u_overflow = { value = "wrap"', 'u_overflow = { value = "saturate"'))
    em2, _ = emulator(tiny_cfg(), Switches(neuron_fixed=True), profile=str(saturating))
    _, res2, _ = one_batch(em2, exp, record=True)
    assert int(res2.events["neuron u"].sum()) > 0
    assert not torch.equal(res.y_window, res2.y_window)   # wrapping and clipping differ


# ---------------------------------------------------------------------------------------------
# frozen reference: a short seeded fixed-point training run, integer weights pinned

PINNED = [[273, 3229, 100], [682, 3260, 59], [323, 1863, 0], [976, 1544, 0], [-301, 1613, 366],
          [-247, 1795, 270]]


def test_fixed_point_training_is_pinned(tmp_path):
    cfg = tiny_cfg(**{"train.iterations": 3, "train.eval_every": 3, "train.backend": "fixed",
                      "fixed.lr": 50.0})
    summary = trainer.train(cfg, tmp_path)
    w0 = trainer.setup(cfg).emulator.initial_weights()
    w, _, n, _ = checkpoint.load(tmp_path / trainer.CHECKPOINT, w0)
    assert n == 3
    assert all(not torch.equal(a, b) for a, b in zip(w, w0))   # training moved every matrix
    got = [[int(m[i].sum()), int(m[i].abs().sum()), int(m[i].flatten()[:6].abs().sum())] for m in w for i in range(2)]
    assert got == PINNED, got
    assert summary["backend"]["hw"] == "loihi2" and "trace_bits" in summary["backend"]["switches"]


def test_eps_a_in_tag2_tracks_the_float_eps_a_of_the_same_traces():
    """ALIF's ε^a held in the 6-bit tag_2 (d ≈ s_d ε^a, one Euler step per 16-step epoch,
    stochastic rounding) follows ε^a(t+1) = s_a ψ ε^v + (ρ − s_a β ψ) ε^a computed in float
    from the same run's recorded traces x1 = s_x ε^v and ψ: unbiased in the mean over synapses
    (within 10 %) and correlated synapse by synapse (r > 0.9; measured r = 0.95, mean +2 %)."""
    sw = Switches(trace_bits=True, product_downshift=True, stoch_round=True, eps_a_tag2=True, t_epoch=16)
    cfg = C.load("examples/cue_accumulation.toml", {"train.seeds": [1], "train.batch_size": 2, "train.micro_batches": 1,
                                                    "train.dtype": "float64"})
    exp = trainer.setup(cfg)
    fp = quantize(exp.net, load_profile("loihi2"), sw, cfg.fixed, exp.rule.objective, 2, cfg.diffusion, [1])
    em = Emulator(exp.net, fp, exp.rule.objective, exp.rule.modulator(exp.net), [1], storage="dense")
    batch = exp.task.batch([1], "train", 1, range(2), "cpu", torch.float64)
    rec = em.run(em.initial_weights(), batch.x, batch.target, batch.keys, 1, record=True).record
    p = exp.net.neuron._replace(beta=exp.net.neuron.beta.double())
    x_prev, psi_prev, ref = torch.zeros_like(rec["x1"][0]).double(), torch.zeros_like(rec["psi"][0]), []
    eps = torch.zeros(rec["d"].shape[1:], dtype=torch.float64)
    for t in range(len(rec["x1"])):
        eps = eps_a_step(eps, x_prev / fp.s_x, psi_prev, p)
        x_prev, psi_prev = rec["x1"][t].double(), rec["psi"][t]
        if (t + 1) % 16 == 0:
            ref.append(eps_a_step(eps, x_prev / fp.s_x, psi_prev, p))       # ε^a(t + 1)
    alif = exp.net.is_alif
    est, ref = (rec["d"].double() / fp.s_d)[..., alif], torch.stack(ref)[..., alif]
    late = slice(len(ref) // 2, None)
    assert float(ref[late].mean()) > 1e-4 and int(rec["d"].max()) > 3
    assert float(est[late].mean()) == pytest.approx(float(ref[late].mean()), rel=0.1)
    r = torch.corrcoef(torch.stack([est[late].flatten(), ref[late].flatten()]))[0, 1]
    assert float(r) > 0.9


@pytest.mark.parametrize("mean", [False, True])
def test_learning_epoch_sees_the_field_of_every_step(mean):
    """With t_epoch = 4 the modulator field still runs every step: the rule's L at each
    evaluation is the every-step run's L at that step, or (epoch_mean) its mean over the epoch's
    steps in the window; t_epoch = 1 with epoch_mean changes nothing."""
    cfg = tiny_cfg()
    em1, exp = emulator(cfg, Switches.off())
    em4, _ = emulator(cfg, Switches(t_epoch=4, epoch_mean=mean))
    _, r1, _ = one_batch(em1, exp, record=True)
    _, r4, _ = one_batch(em4, exp, record=True)
    l1, l4 = r1.record["L"], r4.record["L"]
    t0 = len(r1.record["z"]) - exp.task.window          # first step of the window
    ends = [t for t in range(t0, len(r1.record["z"])) if (t + 1) % 4 == 0]
    assert len(l4) == len(ends) and float(l1.abs().max()) > 0
    for k, t in enumerate(ends):
        first = max(t0, t - 3)
        want = l1[first - t0:t - t0 + 1].mean(0) if mean else l1[t - t0]
        torch.testing.assert_close(l4[k], want, rtol=1e-12, atol=1e-15)
    _, same, _ = one_batch(emulator(cfg, Switches(epoch_mean=True))[0], exp)
    for a, b in zip(same.weights, r1.weights):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mean", [False, True])
def test_float_tag_takes_one_step_per_learning_epoch(mean):
    """Float path, t_epoch = 4: the traces step every step and ē once per epoch,
    ē_k = κ⁴ ē_(k−1) + (1 − κ⁴) e(t_k), or with epoch_mean the epoch's mean of e; e(t) comes from
    the t_epoch = 1 run's ē(t) = κ ē(t−1) + (1 − κ) e(t) (the forward pass is the same)."""
    cfg = tiny_cfg()
    em1, exp = emulator(cfg, Switches.off())
    em4, _ = emulator(cfg, Switches(t_epoch=4, epoch_mean=mean))
    r1 = one_batch(em1, exp, record=True)[1].record["tag"]
    r4 = one_batch(em4, exp, record=True)[1].record["tag"]
    kappa = em1.net.kappa
    prev = torch.cat([torch.zeros_like(r1[:1]), r1[:-1]])
    e = (r1 - kappa * prev) / (1 - kappa)
    assert len(r4) == len(r1) // 4 and float(r4.abs().max()) > 0
    ebar = torch.zeros_like(r1[0])
    for k in range(len(r4)):
        t = 4 * k + 3
        e_k = e[t - 3:t + 1].mean(0) if mean else e[t]
        ebar = kappa ** 4 * ebar + (1 - kappa ** 4) * e_k
        torch.testing.assert_close(r4[k], ebar, rtol=1e-9, atol=1e-12)


def test_mean_int_rounds_halves_away_from_zero_without_bias():
    from lava_diffmod.fixed.emulator import mean_int
    t = torch.tensor([-25, -24, -9, -8, -7, 0, 7, 8, 9, 24, 25])
    assert mean_int(t, 16).tolist() == [-2, -2, -1, -1, 0, 0, 0, 1, 1, 2, 2]
    # symmetric: the mean over a symmetric range of totals is exactly zero (a floor gives -1/2)
    r = torch.arange(-160, 161)
    assert int(mean_int(r, 16).sum()) == 0
