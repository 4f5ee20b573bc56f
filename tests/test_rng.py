"""Counter-based random numbers: pinned bits, distributions, addressability."""
import math

import pytest
import torch

from lava_diffmod import rng


def test_bits_are_pinned():
    """The streams define every network and data set: they must never change silently."""
    assert rng.hashes(12345, (4,)).tolist() == [4081071428, 130576045, 2201553030, 2808107269]
    assert rng.name_key(1, "placement") == 4089543324
    assert rng.derive(7, 3, 5) == 3045820491


def test_mul32_is_exact_beyond_int64_overflow():
    x = torch.tensor([2**32 - 1, 2**31 + 12345, 7], dtype=torch.int64)
    for c in (0x7FEB352D, 0x846CA68B):
        assert rng._mul32(x, c).tolist() == [(int(v) * c) % 2**32 for v in x]


def test_key_prefix_gives_independent_slices():
    keys = torch.tensor([5, 6])
    both = rng.uniform(keys, (2, 1000))
    assert torch.equal(both[0], rng.uniform(5, (1000,)))
    assert not torch.equal(both[0], both[1])


def test_uniforms_are_uniform():
    u = rng.uniform(1, (200_000,), dtype=torch.float64)
    assert float(u.mean()) == pytest.approx(0.5, abs=0.003)
    assert float(u.var()) == pytest.approx(1 / 12, rel=0.01)
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    assert float(((counts - 20_000) ** 2 / 20_000).sum()) < 30      # chi² with 9 dof, p ≈ 4e-4
    u53 = rng.uniform53(2, (200_000,))
    assert 0 < float(u53.min()) and float(u53.max()) < 1
    assert len(torch.unique(u53)) == 200_000                        # 53 bits: no ties
    # neighbouring indices are uncorrelated
    assert abs(float(torch.corrcoef(torch.stack([u53[:-1], u53[1:]]))[0, 1])) < 0.01


def test_normal_and_truncated_normal():
    z = rng.normal(3, (200_000,))
    assert float(z.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(z.std()) == pytest.approx(1.0, abs=0.01)
    assert float((z.abs() > 2).double().mean()) == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(2 / math.sqrt(2)))), abs=0.003)
    t = rng.truncated_normal(4, (200_000,), -2.0, 2.0)
    assert float(t.abs().max()) <= 2.0
    assert float(t.std()) == pytest.approx(0.8796256610342398, abs=0.005)


def test_permutations_are_permutations_and_vary():
    p = rng.permutation(torch.tensor([[1, 2, 3]]), (1, 3, 50))
    assert torch.equal(p.sort(-1).values, torch.arange(50).expand(1, 3, 50))
    assert not torch.equal(p[0, 0], p[0, 1])
    first = torch.stack([rng.permutation(k, (10,))[0] for k in range(2000)])
    counts = torch.bincount(first, minlength=10).double()
    assert float(((counts - 200) ** 2 / 200).sum()) < 30
