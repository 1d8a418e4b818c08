"""The position-wise feed-forward network: Linear, activation, Linear."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig
from .steps import Record, passthrough

ACTIVATION_FUNCTIONS = {
    "gelu": F.gelu,  # exact: x * Phi(x) with the erf, as BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # the tanh approximation (GPT-2, some BERTs)
    "relu": F.relu,
}


class FeedForward(nn.Module):
    def __init__(self, config: EncoderConfig, name: str) -> None:
        super().__init__()
        self.name = name  # e.g. "layers.0.ffn"
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.activation = ACTIVATION_FUNCTIONS[config.activation]
        self.down = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor, record: Record = passthrough) -> torch.Tensor:
        pre_act = record(f"{self.name}.pre_act", self.up(x))  # (B, T, d_ff)
        act = record(f"{self.name}.act", self.activation(pre_act))
        return record(f"{self.name}.out", self.down(act))  # (B, T, d)
