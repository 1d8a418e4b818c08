"""Sinusoidal positional encoding (Vaswani et al. 2017, section 3.5) as a pure function."""

from __future__ import annotations

import math

import torch


def sinusoidal_table(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The (n_positions, d_model) table PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)).

    Even dimensions hold sines and odd dimensions cosines of the same frequency, so each pair rotates at
    its own speed as the position grows. An odd ``d_model`` drops the last cosine.
    """
    if n_positions < 0 or d_model < 1:
        raise ValueError(f"need n_positions >= 0 and d_model >= 1, got {n_positions} and {d_model}")
    position = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(base) / d_model)
    )  # (ceil(d/2),)
    angle = position * frequency  # (P, ceil(d/2))
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table.to(torch.float32)
