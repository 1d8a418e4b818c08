"""The input layer: token + position + segment embeddings, then LayerNorm (then a projection, if factorised)."""

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
        width = config.embedding_width  # d_model, or the smaller factorised width (ALBERT, ELECTRA)
        self.token = nn.Embedding(config.vocab_size, width)
        # Sinusoidal positions are a fixed function (no parameters), unless the checkpoint stores the table
        # (DistilBERT); learned ones are a table like tokens.
        has_table = config.positional == "learned" or config.sinusoidal_in_weights
        self.position = nn.Embedding(config.max_positions, width) if has_table else None
        self.segment = nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size else None  # None: DistilBERT
        self.norm = LayerNorm(config, width)
        # Factorised embeddings are learned narrow and mapped up to the model width.
        self.project = nn.Linear(width, config.d_model) if config.embedding_size is not None else None
        self.position_offset = config.position_offset
        self.max_tokens = config.max_tokens

    def position_vectors(self, n_tokens: int, device: torch.device) -> torch.Tensor:
        """The (n_tokens, width) position vectors added to tokens 0..n_tokens-1 of a text without padding."""
        if self.position is None:
            return sinusoidal_table(n_tokens, self.config.embedding_width).to(device)
        return self.position.weight[self.position_offset : self.position_offset + n_tokens]

    def positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The position vector added to each token: (1, T, width), or (B, T, width) when padding shifts the rows."""
        if self.position_offset:
            return self.position(self.position_ids(input_ids))
        return self.position_vectors(input_ids.shape[1], input_ids.device).unsqueeze(0)

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """RoBERTa's (fairseq's) (B, T) position rows: the running count of non-padding tokens, from the offset.

        Padding tokens take row offset - 1 and are not counted, so a padded text gets the positions it has alone.
        """
        real = input_ids.ne(self.config.pad_token_id)  # (B, T)
        return torch.cumsum(real, dim=1) * real + (self.position_offset - 1)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, record: Record = passthrough) -> torch.Tensor:
        n_tokens = input_ids.shape[1]
        if n_tokens > self.max_tokens:
            raise ValueError(f"{n_tokens} tokens exceed the model's {self.max_tokens} positions")
        token = record("embeddings.token", self.token(input_ids))  # (B, T, width)
        position = record("embeddings.position", self.positions(input_ids))  # (1 or B, T, width)
        # A model without a segment table (DistilBERT) adds nothing for segments.
        segment = record("embeddings.segment", self.segment(token_type_ids)) if self.segment is not None else 0.0
        summed = record("embeddings.sum", token + segment + position)
        normed = record("embeddings.norm", self.norm(summed))
        if self.project is None:
            return normed
        return record("embeddings.project", self.project(normed))  # (B, T, d_model)
