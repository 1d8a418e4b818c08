"""Layer normalisation (Ba et al. 2016), as BERT uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig


class LayerNorm(nn.Module):
    """LN(x) = gamma * (x - mean) / sqrt(var + eps) + beta over the last axis, with the biased variance.

    ``F.layer_norm`` computes exactly this formula in one kernel (tests check it against the formula
    written out); eps comes from the checkpoint's config (1e-12 for BERT).
    """

    def __init__(self, config: EncoderConfig, width: int | None = None) -> None:
        super().__init__()
        self.eps = config.layer_norm_eps
        width = width or config.d_model  # narrower for factorised embeddings and some masked-LM heads
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
