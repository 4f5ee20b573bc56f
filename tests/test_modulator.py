"""The diffusing neuromodulator (MODEL.md §4, §8)."""
import dataclasses

import pytest
import torch

from lava_diffmod.config import DiffusionConfig
from lava_diffmod.float.readout import Objective
from lava_diffmod.rules import eprop_factorised, eprop_online
from lava_diffmod.rules import modulator as md

from test_identities import DT, N_IN, N_OUT, B, S, T, config_network, inputs, tiny_config


def field_mod(h=6, w=7, **cfg):
    """A modulator over a full h x w grid with neuron j at a shuffled cell."""
    from lava_diffmod.float.rsnn import Network
    n = h * w
    net = Network.from_arrays(w_in=torch.zeros(1, 2, n), w_rec=torch.zeros(1, n, n), w_out=torch.ones(1, n, 2),
                              cells=torch.randperm(n, generator=torch.Generator().manual_seed(0)),
                              grid=(h, w), dtype=DT)
    mod = md.modulator_from_config(DiffusionConfig(**cfg), net)
    if mod.shuffle == "fixed":   # explicit arrays carry the identity; draw a real Π
        mod = dataclasses.replace(mod, perm=torch.randperm(n, generator=torch.Generator().manual_seed(3))[None])
    return mod, net


@pytest.mark.parametrize("cfg", [dict(k=0.75), dict(k=0.6, radius=2), dict(k=1.0),
                                 dict(kernel="laplacian", k=0.8, D=0.25), dict(kernel="laplacian", k=0.9, D=0.6, n_sub=3),
                                 dict(k=0.75, shuffle="fixed")])
def test_diffusion_keeps_mass_times_k(cfg):
    mod, _ = field_mod(**cfg)
    g = torch.rand(2, 3, 1, 42, generator=torch.Generator().manual_seed(1), dtype=DT)
    keys = torch.zeros(2, 3, dtype=torch.int64)
    perm = md.shuffle_perm(mod, keys, 0)
    out = md.diffuse(g, mod) if perm is None else md._unpermute(md.diffuse(md._permute(g, perm), mod), perm)
    torch.testing.assert_close(out.sum(-1), cfg["k"] * g.sum(-1), rtol=1e-13, atol=0)


def test_box_kernel_is_a_circular_convolution():
    mod, _ = field_mod(h=6, w=7, k=0.75, radius=1)
    g = torch.rand(1, 1, 1, 42, generator=torch.Generator().manual_seed(2), dtype=DT)
    grid = g.reshape(1, 1, 6, 7)
    padded = torch.nn.functional.pad(grid, (1, 1, 1, 1), mode="circular")
    conv = torch.nn.functional.conv2d(padded, torch.full((1, 1, 3, 3), 0.75 / 9, dtype=DT))
    torch.testing.assert_close(md.diffuse(g, mod).reshape(1, 1, 6, 7), conv, rtol=1e-14, atol=1e-16)


def test_laplacian_is_k_times_identity_plus_d_delta_on_an_impulse():
    mod, _ = field_mod(h=6, w=7, kernel="laplacian", k=0.5, D=0.2)
    g = torch.zeros(1, 1, 1, 42, dtype=DT)
    g[..., 3 * 7 + 3] = 1.0
    out = md.diffuse(g, mod).reshape(6, 7)
    assert float(out[3, 3]) == pytest.approx(0.5 * (1 - 4 * 0.2))
    for r, c in ((2, 3), (4, 3), (3, 2), (3, 4)):
        assert float(out[r, c]) == pytest.approx(0.5 * 0.2)
    assert float(out[2, 2]) == 0.0


def test_release_order_diffuse_then_release_then_read():
    mod, net = field_mod(h=6, w=7, k=0.75)
    cells = net.cells[0]
    j = 5
    keys = torch.zeros(1, 1, dtype=torch.int64)
    g = md.modulator_init(1, 1, mod, torch.zeros(1, dtype=DT))
    release = torch.zeros(1, 1, 1, 42, dtype=DT)
    release[..., j] = 1.0
    g, local = md.modulator_step(g, release, mod, keys, 0)
    local = local[:, :, 0]
    assert float(local[0, 0, j]) == 1.0                   # own release, undiminished, same step
    assert float(local.abs().sum()) == 1.0                # nobody else sees it yet
    g, local = md.modulator_step(g, torch.zeros_like(release), mod, keys, 1)
    local = local[:, :, 0]
    assert float(local[0, 0, j]) == pytest.approx(0.75 / 9)   # one step later: k/9 stays
    r, c = divmod(int(cells[j]), 7)
    neighbours = {((r + dr) % 6) * 7 + (c + dc) % 7 for dr in (-1, 0, 1) for dc in (-1, 0, 1)}
    seen = {int(cells[i]) for i in range(42) if float(local[0, 0, i]) > 0}
    assert seen == neighbours                               # the 3 x 3 Moore neighbourhood
    assert float(g.sum()) == pytest.approx(0.75)


def test_shuffled_fixed_keeps_the_centre_term_at_home():
    mod, net = field_mod(h=6, w=7, k=0.9, shuffle="fixed")
    keys = torch.zeros(1, 1, dtype=torch.int64)
    g = torch.zeros(1, 1, 1, 42, dtype=DT)
    g[..., 10] = 1.0
    perm = md.shuffle_perm(mod, keys, 0)
    out = md._unpermute(md.diffuse(md._permute(g, perm), mod), perm)
    assert float(out[..., 10]) == pytest.approx(0.1)
    plain = md.diffuse(g, mod)
    assert not torch.equal((out > 0), (plain > 0))          # neighbours are scrambled


def test_per_step_shuffle_differs_by_step_and_trial_but_is_reproducible():
    mod, _ = field_mod(shuffle="per_step")
    keys = torch.tensor([[1, 2]])
    p0, p1 = md.shuffle_perm(mod, keys, 0), md.shuffle_perm(mod, keys, 1)
    assert not torch.equal(p0, p1) and not torch.equal(p0[0, 0], p0[0, 1])
    assert torch.equal(p0, md.shuffle_perm(mod, keys, 0))
    assert torch.equal(p0.sort(-1).values, torch.arange(42).expand(1, 2, 42))


@pytest.mark.parametrize("shuffle", ["none", "per_step"])
def test_k_zero_is_plain_eprop_exactly(shuffle):
    cfg = tiny_config()
    net = config_network(cfg)
    x, labels, _ = inputs(rate=0.2)
    obj = Objective("classification", 20, c_reg=0.1)
    keys = torch.arange(S * B).reshape(S, B)
    for fn in (eprop_factorised, eprop_online):
        plain = fn(net, x, labels, obj, None, keys)
        k0 = fn(net, x, labels, obj, md.modulator_from_config(DiffusionConfig(k=0.0, shuffle=shuffle), net), keys)
        for a, b in zip(plain.grads, k0.grads):
            assert torch.equal(a, b)


def test_per_output_channels_with_equal_k_equal_one_channel():
    cfg = tiny_config()
    net = config_network(cfg)
    x, labels, _ = inputs(rate=0.2)
    obj = Objective("classification", 20, c_reg=0.0)
    keys = torch.zeros(S, B, dtype=torch.int64)
    one = eprop_factorised(net, x, labels, obj, md.modulator_from_config(DiffusionConfig(k=0.7), net), keys)
    per = eprop_factorised(net, x, labels, obj, md.modulator_from_config(
        DiffusionConfig(k=0.7, channels="per_output"), net), keys)
    for a, b in zip(one.grads, per.grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-16)
    other = eprop_factorised(net, x, labels, obj, md.modulator_from_config(
        DiffusionConfig(channels="per_output", channel_k=[0.2, 0.9]), net), keys)
    assert not torch.allclose(other.grads.w_rec, one.grads.w_rec)


def test_channel_lengths_are_checked():
    cfg = tiny_config()
    net = config_network(cfg)
    with pytest.raises(ValueError, match="channel_k has 3 entries"):
        md.modulator_from_config(DiffusionConfig(channels="cell_type", channel_k=[0.1, 0.2, 0.3]), net)
