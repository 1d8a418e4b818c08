"""The encoder stack: embeddings, then N identical layers (and a final LayerNorm for pre-LN stacks)."""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .embeddings import Embeddings
from .layer import EncoderLayer
from .norm import LayerNorm
from .steps import Record, passthrough


def additive_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) of 1 (real) / 0 (padding) to (B, 1, 1, T) of 0 / the dtype's most negative value.

    Adding the most negative finite number (not -inf, as BERT does) drives padding keys' softmax weight to
    exactly zero while keeping a fully masked row finite.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    keep = attention_mask[:, None, None, :].to(dtype)  # (B, 1, 1, T)
    return (1.0 - keep) * torch.finfo(dtype).min


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(config.n_layers))
        self.final_norm = LayerNorm(config) if config.norm_placement == "pre" else None

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        record: Record | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) -> final hidden states (B, T, d). With ``record``, every step is reported to it."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = additive_mask(attention_mask, self.embeddings.token.weight.dtype)
        r = record or passthrough
        x = self.embeddings(input_ids, token_type_ids, r)
        for layer in self.layers:
            x = layer(x, mask, record)
        if self.final_norm is not None:
            x = r("final_norm", self.final_norm(x))
        return x
