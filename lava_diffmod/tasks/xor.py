"""XOR: the four patterns of two binary inputs, target x₁ ⊕ x₂ (RULES.md B.6, full batch)."""
from __future__ import annotations

import torch


def xor_data(dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (4, 2) in {0, 1} and targets (4,) = x₁ XOR x₂."""
    x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype, device=device)
    return x, (x[:, 0] != x[:, 1]).to(dtype)
