"""The input layer: token + position + segment embeddings, then LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .norm import LayerNorm
from .positional import sinusoidal_table
from .steps import Record, passthrough


class Embeddings(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        # Sinusoidal positions are a fixed function (no parameters); learned ones are a table like tokens.
        self.position = nn.Embedding(config.max_positions, config.d_model) if config.positional == "learned" else None
        self.segment = nn.Embedding(config.type_vocab_size, config.d_model)
        self.norm = LayerNorm(config)

    def position_vectors(self, n_tokens: int, device: torch.device) -> torch.Tensor:
        """The (n_tokens, d_model) position vectors added to tokens 0..n_tokens-1."""
        if self.position is None:
            return sinusoidal_table(n_tokens, self.config.d_model).to(device)
        return self.position.weight[:n_tokens]

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, record: Record = passthrough) -> torch.Tensor:
        n_tokens = input_ids.shape[1]
        if n_tokens > self.config.max_positions:
            raise ValueError(f"{n_tokens} tokens exceed the model's {self.config.max_positions} positions")
        token = record("embeddings.token", self.token(input_ids))  # (B, T, d)
        position = record("embeddings.position", self.position_vectors(n_tokens, input_ids.device).unsqueeze(0))  # (1, T, d)
        segment = record("embeddings.segment", self.segment(token_type_ids))  # (B, T, d)
        summed = record("embeddings.sum", token + segment + position)
        return record("embeddings.norm", self.norm(summed))
