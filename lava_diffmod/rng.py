"""Seeded random numbers that every backend reproduces bit for bit.

Two kinds of draws:

Every draw is a counter-based hash ``u = H(key, index)``: there is no generator state, the value
at an index depends only on the key and the index. So a draw can be recomputed anywhere (CPU,
CUDA, a Lava process model, another torch version), a resumed run sees the same data as an
uninterrupted one, and a network built from (seed, component name) is the same everywhere.
Structural draws (placement, masks, initial weights, feedback) use float64 uniforms with 53
random bits; streams (task data, shuffles, stochastic rounding) use 24-bit float32 uniforms.

The hash is Chris Wellons' ``lowbias32`` integer mixer, applied twice, on 32-bit values held in
int64 tensors.
"""
from __future__ import annotations

import hashlib
import math

import torch

MASK32 = 0xFFFFFFFF


def name_key(*parts: object) -> int:
    """A 32-bit key from any printable parts, e.g. ``name_key(seed, "input_mask")``."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x · c) mod 2^32 for 0 ≤ x, c < 2^32. The int64 product may wrap past 2^63; two's
    complement wrap-around keeps the low 32 bits exact (on CPU and CUDA; tested)."""
    return (x * c) & MASK32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32: a bijective avalanche mix of 32-bit values (int64 tensor in [0, 2^32))."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash_counter(key: torch.Tensor | int, index: torch.Tensor | int) -> torch.Tensor | int:
    """32-bit hash of (key, index); tensors broadcast, plain ints stay on the host (no
    host-to-device copies, so a CUDA graph can capture it); index may exceed 2^32."""
    h = mix32((key & MASK32) ^ (index & MASK32))
    return mix32(((h ^ (index >> 32)) + 0x9E3779B9) & MASK32)


def derive(key: torch.Tensor | int, *counters: int | torch.Tensor) -> torch.Tensor | int:
    """A new 32-bit key from a key and integer counters (iteration, trial, step, ...)."""
    for c in counters:
        key = hash_counter(key, c)
    return key


def hashes(key: torch.Tensor | int, shape: tuple[int, ...], device=None, start: int = 0) -> torch.Tensor:
    """32-bit hashes H(key, i) for every element of ``shape`` (i = start + flat C-order index).

    ``key`` may be a tensor whose shape is a prefix of ``shape`` (one key per leading slice,
    e.g. one per seed); each slice then counts its own flat index from ``start``. A draw of
    shape (R, C) with ``start = r0·C`` is rows r0 … r0+R−1 of the same draw of shape (≥ r0+R, C),
    so a large matrix can be drawn in row blocks.
    """
    if not isinstance(key, torch.Tensor):
        key = torch.full((), key, dtype=torch.int64, device=device)
    inner = tuple(shape[key.dim():])
    index = torch.arange(start, start + math.prod(inner), device=key.device, dtype=torch.int64).reshape(inner)
    return hash_counter(key.reshape(tuple(key.shape) + (1,) * len(inner)), index)


def uniform(key: torch.Tensor | int, shape: tuple[int, ...], device=None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[0, 1) on a 2^-24 grid: (H(key, i) >> 8) / 2^24, exact in float32."""
    return (hashes(key, shape, device) >> 8).to(dtype) * (1.0 / 2**24)


def uniform53(key: torch.Tensor | int, shape: tuple[int, ...], device=None, start: int = 0) -> torch.Tensor:
    """U(0, 1) in float64 with 53 random bits: (k + 1/2) / 2^53 from two 32-bit hashes.
    ``start``: flat index of the first element (see :func:`hashes`)."""
    h = hashes(key, (*shape, 2), device, 2 * start)
    k = ((h[..., 0] >> 5) << 26) | (h[..., 1] >> 6)
    return (k.double() + 0.5) * (1.0 / 2**53)


def normal(key: torch.Tensor | int, shape: tuple[int, ...], device=None, start: int = 0) -> torch.Tensor:
    """Standard normal draws (float64) by the inverse CDF: √2 · erfinv(2u − 1)."""
    return math.sqrt(2.0) * torch.special.erfinv(2 * uniform53(key, shape, device, start) - 1)


def truncated_normal(key: torch.Tensor | int, shape: tuple[int, ...], lo: float, hi: float,
                     device=None, start: int = 0) -> torch.Tensor:
    """Standard normal truncated to [lo, hi] (float64), by the inverse CDF on [Φ(lo), Φ(hi)]."""
    def cdf(x):
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))
    u = cdf(lo) + (cdf(hi) - cdf(lo)) * uniform53(key, shape, device, start)
    return (math.sqrt(2.0) * torch.special.erfinv(2 * u - 1)).clamp_(lo, hi)


def permutation(key: torch.Tensor | int, shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Random permutations of ``range(shape[-1])`` along the last axis: argsort of hashes,
    ties broken by position."""
    m = shape[-1]
    h = hashes(key, shape, device)
    return torch.argsort(h * m + torch.arange(m, device=h.device), dim=-1)
