"""ModProp (RULES.md A.11.5) in float64: the forms agree, μ = 0 is e-prop, the linear network with
types = cells and μ = 1 is BPTT, the zero-diagonal gap shrinks with type size, the ρ(A) guard,
the spiking oracle against the online form, the delayed-XOR tasks and a frozen short run."""
import dataclasses
import math
import warnings

import pytest
import torch

from lava_diffmod import config
from lava_diffmod.config import ConfigError, ModPropConfig, NeuronConfig
from lava_diffmod.float.rate import (RateConfig, RateParams, activation, effective, init_rate_network)
from lava_diffmod.float.readout import Objective
from lava_diffmod.float.rsnn import Network
from lava_diffmod.rules.eprop import eprop_factorised
from lava_diffmod.rules import Rule, gradient_fn
from lava_diffmod.rules.modprop import (NonLocal, RateRule, block_means, cell_types, filter_matrices, guarded_mu,
                                        modprop, nonlocal_gradients, rate_loss, rate_postsynaptic_factor,
                                        type_matrix)
from lava_diffmod.tasks import REGISTRY
from lava_diffmod.tasks.delayed_xor import DelayedXOR, SpikingDelayedXOR
from lava_diffmod.training.checkpoint import CheckpointError
from lava_diffmod.training.rate_train import RateTrainConfig, summary, train_rate

DT = torch.float64
SEEDS = [0, 1]


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def rate_setup(n=12, theta=0.0, cue=10, delay=20):
    net = init_rate_network(RateConfig(n_rec=n, theta=theta), SEEDS, dtype=DT)
    batch = DelayedXOR(cue_ms=cue, delay_ms=delay).batch(SEEDS, "train", 0, range(3), "cpu", DT)
    return net, batch


def rate_grads(net, batch, rule, types=None):
    """Form-1 gradients of the last-step CE w.r.t. the effective W_in and W_rec."""
    w = RateParams(*(p.detach().requires_grad_(True) for p in effective(net)))
    ce, _, _ = rate_loss(w, batch.x, batch.target, net.alpha, net.cfg.theta,
                         net.types if types is None else types, rule)
    return torch.autograd.grad(ce.sum(), w[:2])


def rate_nonlocal(net, batch, how, mu=0.25):
    """The non-local term by the explicit backward scan or the online form 3."""
    w = effective(net)
    h, lam = rate_postsynaptic_factor(w, batch.x, batch.target, net.alpha, net.cfg.theta)
    z_prev = torch.cat([torch.zeros_like(h[:1]), activation(h[:-1], net.cfg.theta)])
    g_in, g_rec, _ = nonlocal_gradients(batch.x, z_prev, lam, (h > net.cfg.theta).to(DT), w.w_rec, net.types,
                                        net.alpha, 1 - net.alpha, mu, how)
    return g_in, g_rec


# ------------------------------------------------------------------ rate RNN

def test_rate_init_follows_a2():
    net = init_rate_network(RateConfig(), [3], dtype=DT)
    w = effective(net).w_rec[0]
    assert int((net.sign > 0).sum()) == 97 and int((net.sign < 0).sum()) == 23
    assert float(w.diagonal().abs().max()) == 0.0
    assert bool((w[:97] >= 0).all()) and bool((w[97:] <= 0).all())
    assert float(w.sum(0).abs().max()) < 1e-12                       # zero summed input per unit
    assert abs(float(torch.linalg.eigvals(w).abs().max()) - 1) < 1e-12  # spectral radius 1


@pytest.mark.parametrize("form", ["backward", "online"])
def test_form1_equals_form3_with_diagonal(form):
    net, batch = rate_setup()
    g_mp = rate_grads(net, batch, RateRule("modprop", mu=0.25, keep_diagonal=True))
    g_ep = rate_grads(net, batch, RateRule("eprop"))
    g_in, g_rec = rate_nonlocal(net, batch, NonLocal(form=form, keep_diagonal=True))
    assert rel_err(g_mp[1] - g_ep[1], g_mp[1]) > 1e-3               # the non-local term matters
    assert rel_err(g_ep[0] + g_in, g_mp[0]) < 1e-10
    assert rel_err(g_ep[1] + g_rec, g_mp[1]) < 1e-10


def test_mdgl_hop_equals_explicit_one_hop():
    net, batch = rate_setup()
    g_md = rate_grads(net, batch, RateRule("mdgl"))
    g_ep = rate_grads(net, batch, RateRule("eprop"))
    g_in, g_rec = rate_nonlocal(net, batch, NonLocal(truncation="mdgl"))
    assert rel_err(g_ep[1] + g_rec, g_md[1]) < 1e-10 and rel_err(g_ep[0] + g_in, g_md[0]) < 1e-10


def test_rate_mu0_is_eprop_exactly():
    net, batch = rate_setup()
    for a, b in zip(rate_grads(net, batch, RateRule("modprop", mu=0.0)), rate_grads(net, batch, RateRule("eprop"))):
        assert torch.equal(a, b)


def test_linear_types_cells_mu1_is_bptt():
    net, batch = rate_setup(theta=-50.0)             # h > θ throughout: f is the identity, f' = 1
    net = net.with_params(net.params._replace(w_rec=0.5 * net.params.w_rec))
    w = effective(net)
    assert bool((rate_postsynaptic_factor(w, batch.x, batch.target, net.alpha, -50.0)[0] > -50).all())
    g_bp = rate_grads(net, batch, RateRule("bptt"))
    g_mp = rate_grads(net, batch, RateRule("modprop", mu=1.0, keep_diagonal=True), types=torch.arange(12))
    for a, b in zip(g_mp, g_bp):
        assert rel_err(a, b) < 1e-12
    # hop_weights = "cell" (the exact W on every hop) is the same rule with the E/I types in place
    g_cell = rate_grads(net, batch, RateRule("modprop", mu=1.0, hop_weights="cell"))
    g_type = rate_grads(net, batch, RateRule("modprop", mu=1.0))
    for a, b, c in zip(g_cell, g_bp, g_type):
        assert rel_err(a, b) < 1e-12 and rel_err(c, b) > 1e-3


def test_cell_hops_mu0_is_eprop_and_bad_name_refused():
    """ReLU network, exact W on the hops: μ = 0 is e-prop bit for bit; at μ = 0.25 the rule is
    neither e-prop nor BPTT (f' → μ on the hops)."""
    net, batch = rate_setup()
    g_ep = rate_grads(net, batch, RateRule("eprop"))
    g0 = rate_grads(net, batch, RateRule("modprop", mu=0.0, hop_weights="cell"))
    assert all(torch.equal(a, b) for a, b in zip(g0, g_ep))
    g_bp = rate_grads(net, batch, RateRule("bptt"))
    g_cell = rate_grads(net, batch, RateRule("modprop", mu=0.25, hop_weights="cell"))
    assert rel_err(g_cell[1], g_bp[1]) > 1e-3 and rel_err(g_cell[1], g_ep[1]) > 1e-3
    with pytest.raises(ValueError, match="hop_weights = 'neuron': must be type or cell"):
        RateRule("modprop", hop_weights="neuron")


def test_zero_diagonal_gap_shrinks_with_type_size():
    """Unbalanced Dale weights (uniform magnitudes, E-dominated), so the block means are far from 0;
    the gap of the zero-diagonal form 1 to form 3 is measured on the whole W_rec gradient."""
    gaps = []
    for n in (12, 48, 192):
        net, batch = rate_setup(n=n)
        mag = torch.rand(2, n, n, generator=torch.Generator().manual_seed(n), dtype=DT) * (2.0 / n)
        net = net.with_params(net.params._replace(w_rec=mag))
        local = rate_grads(net, batch, RateRule("eprop"))[1]
        _, zero = rate_nonlocal(net, batch, NonLocal(keep_diagonal=False))
        _, online = rate_nonlocal(net, batch, NonLocal(form="online"))
        gaps.append(rel_err(local + zero, local + online))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < gaps[0] / 4, gaps


def test_rho_guard_clips_or_raises():
    net, batch = rate_setup()
    members = type_matrix(net.types)
    blocks = block_means(effective(net).w_rec.detach(), members)
    c_in, big = 1 - net.alpha, torch.full((2,), 1e5, dtype=DT)   # balanced: λ < 0, |λ| ~ 1e-3
    with pytest.warns(RuntimeWarning, match="rho"):
        mu = guarded_mu(blocks, members.sum(0), net.alpha, c_in, big)
    assert bool((mu < big).all())
    a_mat, _ = filter_matrices(blocks, members.sum(0), net.alpha, c_in, mu)
    rho = torch.linalg.eigvals(a_mat).abs().amax(-1)
    assert bool((rho <= 1 - 0.01 * (1 - net.alpha) + 1e-12).all())
    with pytest.raises(ValueError, match="rho"):
        guarded_mu(blocks, members.sum(0), net.alpha, c_in, big, remedy="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # the A.8 μ = 0.25 does not trip it
        rate_grads(net, batch, RateRule("modprop", mu=0.25))


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="rate_rule.name"):
        RateRule("sgd")
    with pytest.raises(ValueError, match="modprop.truncation"):
        NonLocal(truncation="two")
    with pytest.raises(ValueError, match="modprop.margin"):
        NonLocal(margin=1.5)
    with pytest.raises(ValueError, match="modprop.form"):
        NonLocal(form="online", truncation="mdgl")


# ------------------------------------------------------------------ spiking network (A.10)

S, B, T, N_IN, N = 2, 3, 60, 6, 8


def spiking_setup(kind="classification"):
    g = torch.Generator().manual_seed(0)
    net = Network.from_arrays(
        w_in=0.25 * torch.randn(S, N_IN, N, generator=g, dtype=DT),
        w_rec=0.1 * torch.randn(S, N, N, generator=g, dtype=DT) + 0.03,
        w_out=torch.randn(S, N, 2, generator=g, dtype=DT), beta=torch.tensor([0.0] * 4 + [1.8] * 4),
        neuron=NeuronConfig(thr=0.03, tau_a=100.0, n_ref=3), tracking_feedback=True,
        m_in=torch.ones(S, N_IN, N), m_rec=(1 - torch.eye(N)).expand(S, N, N), m_out=torch.ones(S, N, 2), dtype=DT)
    x = (torch.rand(T, S, B, N_IN, generator=g) < 0.3).to(DT)
    target = (torch.randint(0, 2, (S, B), generator=g) if kind == "classification"
              else torch.randn(T, S, 1, 2, generator=g, dtype=DT))
    return net, x, target, Objective(kind, 20, c_reg=0.1)


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_spiking_mu0_is_eprop_bit_for_bit(kind):
    net, x, target, obj = spiking_setup(kind)
    keys = torch.zeros(S, B, dtype=torch.int64)
    ref = eprop_factorised(net, x, target, obj, None, keys)
    got = modprop(net, x, target, obj, keys, mu=0.0)
    for a, b in zip(got.grads, ref.grads):
        assert torch.equal(a, b)
    assert torch.equal(got.task_loss, ref.task_loss)


def test_spiking_oracle_matches_online_form():
    net, x, target, obj = spiking_setup()
    ref = eprop_factorised(net, x, target, obj, None, torch.zeros(S, B, dtype=torch.int64))
    oracle = modprop(net, x, target, obj, mu=2.0, keep_diagonal=True)
    online = modprop(net, x, target, obj, mu=2.0, form="online")
    for a, b, e in zip(oracle.grads[:2], online.grads[:2], ref.grads[:2]):
        assert rel_err(a - e, b - e) < 1e-10
        assert rel_err(a, e) > 1e-4                   # the non-local term is not negligible
    assert torch.equal(oracle.grads.w_out, ref.grads.w_out)
    mdgl = modprop(net, x, target, obj, mu=2.0, truncation="mdgl")
    assert rel_err(mdgl.grads.w_rec, ref.grads.w_rec) > 1e-6


def test_spiking_cell_hops_forms_agree_and_rule_dispatch():
    """hop_weights = "cell": every cell its own type, so the hops cross the exact W; the online
    form with N types equals the backward oracle, and ``--rule modprop`` passes the cell types."""
    net, x, target, obj = spiking_setup()
    keys = torch.zeros(S, B, dtype=torch.int64)
    cells = cell_types(net.params.w_rec)
    oracle = modprop(net, x, target, obj, keys, mu=2.0, types=cells, keep_diagonal=True)
    online = modprop(net, x, target, obj, keys, mu=2.0, types=cells, form="online")
    typed = modprop(net, x, target, obj, keys, mu=2.0)
    for a, b, c in zip(oracle.grads[:2], online.grads[:2], typed.grads[:2]):
        assert rel_err(a, b) < 1e-10 and rel_err(a, c) > 1e-4
    rule = Rule("modprop", obj, modprop=ModPropConfig(hop_weights="cell"), mu=torch.full((S,), 2.0, dtype=DT))
    via_rule = gradient_fn(rule, net)(net, x, target, keys)
    plain = modprop(net, x, target, obj, keys, mu=torch.full((S,), 2.0, dtype=DT), types=cells)
    for a, b in zip(via_rule.grads, plain.grads):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="modprop.hop_weights = 'cell'"):
        config.load("examples/cue_accumulation.toml",
                    {"rule.name": "modprop", "modprop.form": "online", "modprop.hop_weights": "cell"})


def test_spiking_guard_fires_on_large_mu():
    net, x, target, obj = spiking_setup()
    with pytest.warns(RuntimeWarning, match="rho"):
        modprop(net, x, target, obj, mu=1e4)
    with pytest.raises(ValueError, match="rho"):
        modprop(net, x, target, obj, mu=1e4, remedy="raise")


# ------------------------------------------------------------------ delayed XOR (A.7)

def test_delayed_xor_shape_timing_labels():
    task = DelayedXOR()
    b = task.batch([0, 1], "train", 5, range(64), "cpu", DT)
    assert task.steps == 900 and b.x.shape == (900, 2, 64, 2) and b.target.shape == (2, 64)
    x = b.x
    bit_a, bit_b = x[:100, ..., 0].amax(0) > 1, x[800:, ..., 1].amax(0) > 1
    assert torch.equal(b.target, (bit_a == bit_b).long())            # label 1 = match (XNOR)
    assert 0 < float(bit_a.double().mean()) < 1 and 0 < float(bit_b.double().mean()) < 1
    peak = x[:100, ..., 0][:, bit_a].mean(-1)
    assert int(peak.argmax()) in (49, 50) and abs(float(peak.max()) - 2.02) < 0.01
    quiet = torch.cat([x[100:, ..., 0].flatten(), x[:800, ..., 1].flatten()])
    assert abs(float(quiet.mean()) - 0.02) < 1e-3 and abs(float(quiet.std()) - 0.01) < 1e-3
    assert torch.equal(x, task.batch([0, 1], "train", 5, range(64), "cpu", DT).x)
    assert not torch.equal(x, task.batch([0, 1], "train", 6, range(64), "cpu", DT).x)


def test_spiking_delayed_xor():
    task = SpikingDelayedXOR(decision_ms=20)
    assert REGISTRY["delayed_xor_spiking"][0] is SpikingDelayedXOR
    b = task.batch([0], "train", 0, range(64), "cpu", torch.float32)
    assert b.x.shape == (900, 1, 64, 30) and task.window == 20
    assert set(b.x.unique().tolist()) <= {0.0, 1.0}
    cue_a = b.x[:100, 0, :, :10].sum((0, 2))
    cue_b = b.x[800:, 0, :, 10:20].sum((0, 2))
    assert torch.equal(b.target[0], ((cue_a > 20) == (cue_b > 20)).long())
    assert float(b.x[100:800, 0, :, :20].mean()) < 0.002        # cue populations idle in the delay
    assert abs(float(b.x[..., 20:].mean()) - 0.01) < 0.002      # 10 Hz background
    with pytest.raises(ValueError, match="decision_ms"):
        SpikingDelayedXOR(decision_ms=200)


# ------------------------------------------------------------------ frozen reference

def test_frozen_short_run():
    torch.set_num_threads(1)
    net = init_rate_network(RateConfig(n_rec=12), SEEDS, dtype=DT)
    cfg = RateTrainConfig(iterations=6, batch=4, eval_every=2, smooth=2, final_logs=2, lr=1e-2)
    hist = train_rate(net, DelayedXOR(cue_ms=10, delay_ms=20), RateRule("modprop"), SEEDS, cfg, progress=False)
    expected = torch.tensor(FROZEN, dtype=DT)
    assert torch.allclose(hist.train_loss, expected, rtol=0, atol=1e-9), hist.train_loss.tolist()
    out = summary(hist, cfg)
    assert len(out["final_loss"]) == 2 and all(math.isfinite(v) for v in out["final_loss"])


def test_rate_training_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    """4 iterations in one go equal 2, a stop, and a resumed run to 4 (weights, Adam, logs);
    a checkpoint of another run is refused."""
    torch.set_num_threads(1)
    net = init_rate_network(RateConfig(n_rec=12), SEEDS, dtype=DT)
    task, rule = DelayedXOR(cue_ms=10, delay_ms=20), RateRule("modprop")
    cfg = RateTrainConfig(iterations=4, batch=4, eval_every=1, smooth=2, final_logs=2, lr=1e-2)
    whole = train_rate(net, task, rule, SEEDS, cfg, progress=False)
    ckpt = tmp_path / "run.pt"
    train_rate(net, task, rule, SEEDS, dataclasses.replace(cfg, iterations=2), progress=False,
               checkpoint=ckpt, checkpoint_every=1)
    resumed = train_rate(net, task, rule, SEEDS, cfg, progress=False, checkpoint=ckpt, checkpoint_every=1)
    for a, b in zip(whole, resumed):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    for a, b in zip(whole.net.params, resumed.net.params):
        assert torch.equal(a, b)
    assert torch.load(ckpt, weights_only=True)["iteration"] == 4
    assert (whole.resumed_from, resumed.resumed_from) == (0, 2)
    with pytest.raises(CheckpointError, match="another run"):
        train_rate(net, task, RateRule("eprop"), SEEDS, cfg, progress=False, checkpoint=ckpt)


FROZEN = [[0.7240986359866907, 0.6935308468821941],
          [0.6927296632015789, 0.6800644051511006],
          [0.6860826585384268, 0.690385892199989],
          [0.6926209399528405, 0.6514479712648924],
          [0.6753397822071348, 0.6903657886634945],
          [0.6743411917594753, 0.6734610038159876]]


def test_rate_init_released_order():
    """``init = "released"``: balance and radius on the full matrix, the diagonal removed after,
    so ρ(W_rec) > 1 and each column sums to minus its removed diagonal; W_out are the first columns
    of a balanced matrix (each sums to 0). The spec order is unchanged by the option."""
    spec = init_rate_network(RateConfig(), [3], dtype=DT)
    rel = init_rate_network(RateConfig(init="released"), [3], dtype=DT)
    assert torch.equal(spec.params.w_in, rel.params.w_in)
    w, w_out = effective(rel).w_rec[0], effective(rel).w_out[0]
    assert float(w.diagonal().abs().max()) == 0.0
    assert float(torch.linalg.eigvals(w).abs().max()) > 1.05
    assert float(w_out.sum(0).abs().max()) < 1e-12 and float(effective(spec).w_out[0].sum(0).abs().min()) > 0.1
    assert bool((w_out[:97] >= 0).all()) and bool((w_out[97:] <= 0).all())
    # E columns: E units lost a positive self-weight, I units a negative one
    col = w.sum(0)
    assert bool((col[:97] < 0).all()) and bool((col[97:] > 0).all())
    with pytest.raises(ValueError, match="rate.init = 'paper': must be spec or released"):
        RateConfig(init="paper")
