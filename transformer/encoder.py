"""The encoder stack: embeddings, then N identical layers (and a final LayerNorm for pre-LN stacks)."""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .embeddings import Embeddings
from .layer import EncoderLayer
from .norm import LayerNorm
from .steps import Record, passthrough, step_docs


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
        # The layers with their own weights: all of them, or the one that every depth shares (ALBERT).
        self.layers = nn.ModuleList(EncoderLayer(config, i) for i in range(1 if config.shared_layers else config.n_layers))
        # The layers in the order they are applied, one per depth. Shared depths are views of layers[0]
        # (same weights, own step names), kept out of the module tree so the weights are counted and saved once.
        self.stack: tuple[EncoderLayer, ...] = (
            (self.layers[0], *(self.layers[0].shared_at(config, i) for i in range(1, config.n_layers)))
            if config.shared_layers
            else tuple(self.layers)
        )
        self.final_norm = LayerNorm(config) if config.norm_placement == "pre" else None
        self.use_segments = config.use_segments
        self.step_docs = step_docs(config)  # what each step is, in this configuration's words

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        record: Record | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T) -> final hidden states (B, T, d). With ``record``, every step is reported to it."""
        if token_type_ids is None or not self.use_segments:
            token_type_ids = torch.zeros_like(input_ids)  # a model without segments puts every token in segment 0
        mask = additive_mask(attention_mask, self.embeddings.token.weight.dtype)
        r = record or passthrough
        x = self.embeddings(input_ids, token_type_ids, r)
        for layer in self.stack:
            x = layer(x, mask, record)
        if self.final_norm is not None:
            x = r("final_norm", self.final_norm(x))
        return x
