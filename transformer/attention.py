"""Multi-head self-attention (Vaswani et al. 2017, section 3.2), written out step by step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig
from .steps import Record


class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig, name: str) -> None:
        super().__init__()
        self.name = name  # e.g. "layers.0.attn": the prefix of this module's step names
        self.n_heads, self.d_head = config.n_heads, config.d_head
        # Q, K and V projections fused into one (3d, d) matrix: one matrix multiply instead of three.
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, record: Record | None = None) -> torch.Tensor:
        """x: (B, T, d); mask: additive (B, 1, 1, T) with 0 for real keys and a huge negative for padding."""
        B, T, d = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.d_head)  # (B, T, 3, H, d_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, d_head)
        if record is None:
            # Nothing to record: the fused kernel computes softmax(QK^T/sqrt(d_head) + M) V without keeping A.
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            name = self.name
            record(f"{name}.q", q), record(f"{name}.k", k), record(f"{name}.v", v)
            scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.d_head))  # (B, H, T, T)
            if mask is not None:
                scores = scores + mask
            record(f"{name}.scores", scores)
            pattern = record(f"{name}.pattern", torch.softmax(scores, dim=-1))  # rows sum to 1
            context = record(f"{name}.context", torch.matmul(pattern, v))  # (B, H, T, d_head)
        merged = context.transpose(1, 2).reshape(B, T, d)  # (B, T, H * d_head): heads side by side
        output = self.out(merged)
        return output if record is None else record(f"{self.name}.out", output)
