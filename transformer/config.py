"""The encoder's hyper-parameters: a small, frozen, validated dataclass (checkpoints/ reads it from config.json)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import TransformerError

ACTIVATIONS = ("gelu", "relu", "gelu_new")
POSITIONALS = ("learned", "sinusoidal")
NORM_PLACEMENTS = ("post", "pre")


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 30522
    d_model: int = 768  # width of every token vector (hidden_size)
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 3072  # width of the feed-forward hidden layer (intermediate_size)
    max_positions: int = 512  # longest input, in tokens, that has a position vector
    type_vocab_size: int = 2  # number of segments (token types)
    activation: str = "gelu"  # "gelu" (exact, erf), "relu" or "gelu_new" (tanh approximation)
    layer_norm_eps: float = 1e-12
    positional: str = "learned"  # "learned" position embeddings (BERT) or "sinusoidal" (Vaswani et al. 2017)
    norm_placement: str = "post"  # "post": LayerNorm after each residual (BERT); "pre": before each sublayer
    pad_token_id: int = 0
    model_type: str = "bert"

    def __post_init__(self) -> None:
        problems = []
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation {self.activation!r} (supported: {', '.join(ACTIVATIONS)})")
        if self.positional not in POSITIONALS:
            problems.append(f"positional {self.positional!r} (supported: {', '.join(POSITIONALS)})")
        if self.norm_placement not in NORM_PLACEMENTS:
            problems.append(f"norm_placement {self.norm_placement!r} (supported: {', '.join(NORM_PLACEMENTS)})")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_positions", "type_vocab_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} = {getattr(self, name)} (must be at least 1)")
        if self.n_heads >= 1 and self.d_model % self.n_heads:
            problems.append(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if problems:
            raise TransformerError("Unsupported encoder configuration: " + "; ".join(problems) + ".")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}
