"""Mathematical identities of the float reference (MODEL.md §3.7), in float64.

0. BPTT's adjoint scan equals autodiff, for every neuron convention and stop-gradient.
1. W_rec = 0: e-prop equals BPTT with the reset not differentiated (input weights).
2. e-prop equals autodiff with a stop-gradient on z(t−1) in the recurrent input and the reset.
3. online equals factorised, for every feedback variant and modulator.
4. (see test_modulator.py) k = 0 is plain e-prop; mass and release order.
5. S seeds batched equal S sequential runs.
"""
import dataclasses

import pytest
import torch

from lava_diffmod.config import Config, DiffusionConfig, NeuronConfig, from_mapping
from lava_diffmod.float.neurons import alif_init, alif_step
from lava_diffmod.float.readout import Objective
from lava_diffmod.float.rsnn import Network, Params, forward
from lava_diffmod.rules import Rule, bptt, bptt_adjoint, eprop_factorised, eprop_online
from lava_diffmod.rules.modulator import modulator_from_config

DT = torch.float64
S, B, T, N_IN, N, N_OUT = 2, 3, 80, 6, 10, 2


def explicit_network(recurrent=True, neuron=None, seed=0):
    """A small LIF + ALIF network from explicit arrays that spikes often, with refractoriness."""
    g = torch.Generator().manual_seed(seed)
    w_in = 0.25 * torch.randn(S, N_IN, N, generator=g, dtype=DT)
    w_rec = 0.08 * torch.randn(S, N, N, generator=g, dtype=DT) if recurrent else torch.zeros(S, N, N, dtype=DT)
    w_out = torch.randn(S, N, N_OUT, generator=g, dtype=DT)
    beta = torch.tensor([0.0] * (N // 2) + [1.8] * (N // 2), dtype=DT)
    neuron = neuron or NeuronConfig(thr=0.03, tau_a=100.0, n_ref=3)
    if neuron.input_scaling == "1":      # unscaled input: keep the drive comparable
        w_in, w_rec = w_in / 20, w_rec / 20
    return Network.from_arrays(
        w_in=w_in, w_rec=w_rec, w_out=w_out, beta=beta, neuron=neuron, tracking_feedback=True,
        m_in=torch.ones(S, N_IN, N), m_rec=(1 - torch.eye(N)).expand(S, N, N), m_out=torch.ones(S, N, N_OUT),
        cells=torch.randperm(N, generator=g), grid=(4, 4), dtype=DT)


def inputs(seed=1, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, S, B, N_IN, generator=g) < rate).to(DT)
    labels = torch.randint(0, N_OUT, (S, B), generator=g)
    target = torch.randn(T, S, 1, N_OUT, generator=g, dtype=DT)
    return x, labels, target


def assert_active(net, x):
    """The identities are only worth testing if units spike, adapt and hit refractoriness."""
    rec = forward(net, x, keep_state=True)
    rate = float(rec.z.mean())
    assert 0.02 < rate < 0.5, f"rate {rate}"
    active = float((rec.psi > 0).double().mean())
    assert active > 0.05, f"fraction of steps with psi > 0: {active}"
    # refractory steps where the membrane is above threshold but no spike is allowed
    above = (rec.v - (net.neuron.thr + net.neuron.beta * rec.a)) > 0
    assert bool((above & (rec.z == 0)).any())


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


CONVENTIONS = [
    {},
    {"spike_condition": ">="},
    {"adapt_increment": "1"},
    {"input_scaling": "1"},
    {"refractory": "including_spike"},
    {"reset": "adaptive"},
]


def conv_id(conv):
    return ",".join(f"{k}={v}" for k, v in conv.items()) or "spec"


@pytest.mark.parametrize("conv", CONVENTIONS, ids=conv_id)
@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("detach", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["full", "no_rec", "no_reset", "neither"])
def test_bptt_adjoint_equals_autodiff(conv, kind, detach):
    neuron = dataclasses.replace(NeuronConfig(thr=0.03, tau_a=100.0, n_ref=3), **conv)
    net = explicit_network(neuron=neuron)
    x, labels, target = inputs()
    assert_active(net, x)
    obj = Objective(kind, window=30, c_reg=0.3)
    tgt = labels if kind == "classification" else target
    ref = bptt(net, x, tgt, obj, *detach)
    got = bptt_adjoint(net, x, tgt, obj, *detach)
    for name in Params._fields:
        assert rel_err(getattr(got.grads, name), getattr(ref.grads, name)) < 1e-10, name
    torch.testing.assert_close(got.task_loss, ref.task_loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(got.reg_loss, ref.reg_loss, rtol=1e-12, atol=0)


@pytest.mark.parametrize("reductions", [("sum", "sum"), ("sum", "mean"), ("mean", "sum")])
def test_bptt_adjoint_follows_the_loss_reductions(reductions):
    net = explicit_network()
    x, labels, _ = inputs()
    obj = Objective("classification", window=25, c_reg=0.5, time_reduction=reductions[0],
                    batch_reduction=reductions[1])
    ref, got = bptt(net, x, labels, obj), bptt_adjoint(net, x, labels, obj)
    for name in Params._fields:
        assert rel_err(getattr(got.grads, name), getattr(ref.grads, name)) < 1e-10, name


def test_bptt_mode_is_checked():
    with pytest.raises(ValueError, match="rule.bptt_mode = 'tape': must be one of adjoint, autograd"):
        Rule("bptt", Objective("classification", window=5), bptt_mode="tape")


@pytest.mark.parametrize("conv", CONVENTIONS, ids=conv_id)
@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_eprop_equals_bptt_without_recurrence(conv, kind):
    neuron = dataclasses.replace(NeuronConfig(thr=0.03, tau_a=100.0, n_ref=3), **conv)
    net = explicit_network(recurrent=False, neuron=neuron)
    x, labels, target = inputs()
    assert_active(net, x)
    obj = Objective(kind, window=30, c_reg=0.3)
    tgt = labels if kind == "classification" else target
    keys = torch.zeros(S, B, dtype=torch.int64)
    ref = bptt(net, x, tgt, obj, detach_reset=True)
    got = eprop_factorised(net, x, tgt, obj, None, keys)
    assert rel_err(got.grads.w_in, ref.grads.w_in) < 1e-10
    assert rel_err(got.grads.w_out, ref.grads.w_out) < 1e-10
    torch.testing.assert_close(got.task_loss, ref.task_loss, rtol=1e-12, atol=0)


@pytest.mark.parametrize("reductions", [("mean", "mean", "mean"), ("sum", "sum", "sum"), ("sum", "mean", "sum")])
def test_eprop_equals_autodiff_with_stop_gradients(reductions):
    net = explicit_network()
    x, labels, _ = inputs()
    assert_active(net, x)
    t_red, b_red, g_red = reductions
    obj = Objective("classification", window=25, c_reg=0.5, time_reduction=t_red,
                    batch_reduction=b_red, grad_time_reduction=g_red)
    keys = torch.zeros(S, B, dtype=torch.int64)
    ref = bptt(net, x, labels, obj, detach_rec=True, detach_reset=True)
    for fn in (eprop_factorised, eprop_online):
        got = fn(net, x, labels, obj, None, keys)
        for name in Params._fields:
            assert rel_err(getattr(got.grads, name), getattr(ref.grads, name)) < 1e-10, (fn.__name__, name)
        torch.testing.assert_close(got.reg_loss, ref.reg_loss, rtol=1e-12, atol=0)


def test_full_bptt_differs_from_eprop_with_recurrence():
    """Sanity: the stop-gradients matter, so test 2 is not vacuous."""
    net = explicit_network()
    x, labels, _ = inputs()
    obj = Objective("classification", window=25, c_reg=0.5)
    full = bptt(net, x, labels, obj)
    e = eprop_factorised(net, x, labels, obj, None, torch.zeros(S, B, dtype=torch.int64))
    assert rel_err(e.grads.w_rec, full.grads.w_rec) > 1e-3


def tiny_config(**sections) -> Config:
    data = {"neuron": {"n_lif": 8, "n_alif": 8, "thr": 0.03, "tau_a": 200.0},
            "network": {"grid_h": 5, "grid_w": 5, "in_density": 0.5, "out_density": 0.3, "gain_in": 3.0},
            "train": {"seeds": [1, 2], "dtype": "float64"}}
    for k, v in sections.items():
        data.setdefault(k, {}).update(v)
    return from_mapping(data)


def config_network(cfg: Config, n_in=N_IN, n_out=N_OUT):
    return Network.from_config(cfg, cfg.train.seeds, n_in, n_out, dtype=DT)


FEEDBACK = ["symmetric_init", "random_dense", "random_sparse", "symmetric_tracking"]
MODULATORS = [None, DiffusionConfig(k=0.75), DiffusionConfig(k=0.9, radius=2),
              DiffusionConfig(kernel="laplacian", k=0.8, D=0.2, n_sub=2),
              DiffusionConfig(shuffle="fixed"), DiffusionConfig(shuffle="per_step"),
              DiffusionConfig(shuffle="legacy"),
              DiffusionConfig(channels="cell_type", channel_k=[0.5, 0.9], channel_q=[1.0, 0.5]),
              DiffusionConfig(channels="per_output", channel_radius=[1, 2])]


@pytest.mark.parametrize("feedback", FEEDBACK)
@pytest.mark.parametrize("diffusion", MODULATORS, ids=lambda d: "none" if d is None else
                         f"{d.kernel}-k{d.k}-r{d.radius}-{d.shuffle}-{d.channels}")
def test_online_equals_factorised(feedback, diffusion):
    cfg = tiny_config(network={"feedback": feedback})
    net = config_network(cfg)
    x, labels, _ = inputs(rate=0.2)
    assert float(forward(net, x).z.mean()) > 0.01
    obj = Objective("classification", window=20, c_reg=0.2)
    mod = None if diffusion is None else modulator_from_config(diffusion, net)
    keys = torch.arange(S * B, dtype=torch.int64).reshape(S, B) * 7919
    a = eprop_online(net, x, labels, obj, mod, keys)
    b = eprop_factorised(net, x, labels, obj, mod, keys)
    for name in Params._fields:
        ga, gb = getattr(a.grads, name), getattr(b.grads, name)
        assert float(gb.abs().max()) > 0
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-14 * float(gb.abs().max()))


def test_diffusion_changes_the_gradient_and_only_the_task_term():
    cfg = tiny_config()
    net = config_network(cfg)
    x, labels, _ = inputs(rate=0.2)
    keys = torch.zeros(S, B, dtype=torch.int64)
    plain = eprop_factorised(net, x, labels, Objective("classification", 20, c_reg=0.0), None, keys)
    diff = eprop_factorised(net, x, labels, Objective("classification", 20, c_reg=0.0),
                            modulator_from_config(DiffusionConfig(k=0.75), net), keys)
    assert rel_err(diff.grads.w_rec, plain.grads.w_rec) > 1e-3
    assert torch.equal(diff.grads.w_out, plain.grads.w_out)        # g^out is shared (MODEL.md §4)
    # with only the regulariser (no window error: the target is the readout itself) they agree
    reg_only = Objective("regression", 20, c_reg=1.0)
    a = eprop_factorised(net, x, forward(net, x).y, reg_only, None, keys)
    b = eprop_factorised(net, x, forward(net, x).y, reg_only, modulator_from_config(DiffusionConfig(), net), keys)
    assert torch.equal(a.grads.w_in, b.grads.w_in) and float(a.grads.w_in.abs().max()) > 0


@pytest.mark.parametrize("rule", ["bptt", "eprop_online", "eprop_factorised", "diffusion"])
def test_seeds_batched_equal_sequential(rule):
    cfg = tiny_config(train={"seeds": [3, 4, 5]})
    net = Network.from_config(cfg, [3, 4, 5], N_IN, N_OUT, dtype=DT)
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(T, 3, B, N_IN, generator=g) < 0.2).to(DT)
    labels = torch.randint(0, 2, (3, B), generator=g)
    keys = torch.arange(3 * B, dtype=torch.int64).reshape(3, B)
    obj = Objective("classification", 20, c_reg=0.2)

    def grads(n, xs, ls, ks):
        if rule == "bptt":
            return bptt(n, xs, ls, obj).grads
        mod = modulator_from_config(DiffusionConfig(shuffle="per_step"), n) if rule == "diffusion" else None
        fn = eprop_online if rule == "eprop_online" else eprop_factorised
        return fn(n, xs, ls, obj, mod, ks).grads

    together = grads(net, x, labels, keys)
    for i in range(3):
        alone = grads(net.select([i]), x[:, i:i + 1], labels[i:i + 1], keys[i:i + 1])
        for a, b in zip(alone, together):
            torch.testing.assert_close(a[0], b[i], rtol=0, atol=1e-10)


def test_alif_step_matches_the_equations_by_hand():
    """One unit, two steps, against MODEL.md §1 written out."""
    from lava_diffmod.float.neurons import alif_parameters
    cfg = NeuronConfig(thr=1.0, tau_m=20.0, tau_a=200.0, n_ref=2, gamma=0.3)
    p = alif_parameters(cfg, torch.tensor([2.0], dtype=DT))
    s = alif_init((1, 1, 1), torch.zeros(1, dtype=DT))
    s, psi = alif_step(s, torch.tensor([[[30.0]]], dtype=DT), p)
    alpha = torch.exp(torch.tensor(-1 / 20.0, dtype=DT))
    v1 = (1 - alpha) * 30.0
    assert float(s.v) == pytest.approx(float(v1)) and float(s.z) == 1.0   # v1 = 1.46 > thr 1
    assert float(psi) == pytest.approx(0.3 * max(0.0, 1 - abs(float(v1) - 1.0)))
    s, psi = alif_step(s, torch.tensor([[[0.0]]], dtype=DT), p)
    rho = torch.exp(torch.tensor(-1 / 200.0, dtype=DT))
    assert float(s.a) == pytest.approx(float(1 - rho))                     # a = (1−ρ) z(t−1)
    assert float(s.v) == pytest.approx(float(alpha * v1 - 1.0))             # reset subtracts thr
    assert int(s.r) == 2 and float(s.z) == 0.0 and float(psi) == 0.0       # refractory: ψ = 0
