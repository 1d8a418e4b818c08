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
    type_vocab_size: int = 2  # number of segments (token types); 0: no segment table (DistilBERT)
    activation: str = "gelu"  # "gelu" (exact, erf), "relu" or "gelu_new" (tanh approximation)
    layer_norm_eps: float = 1e-12
    positional: str = "learned"  # "learned" position embeddings (BERT) or "sinusoidal" (Vaswani et al. 2017)
    norm_placement: str = "post"  # "post": LayerNorm after each residual (BERT); "pre": before each sublayer
    pad_token_id: int = 0
    model_type: str = "bert"
    # Factorised embeddings (ALBERT, ELECTRA): token, position and segment tables this wide, projected up
    # to d_model by a learned linear map. None: the embeddings are d_model wide and nothing is projected.
    embedding_size: int | None = None
    # 0: token t sits at position t. k > 0 (RoBERTa: k = pad_token_id + 1, as fairseq): positions count
    # only the non-padding tokens, starting at k, and padding tokens take row k - 1.
    position_offset: int = 0
    use_segments: bool = True  # False: token types are ignored, every token is in segment 0 (RoBERTa, DistilBERT)
    shared_layers: bool = False  # True: one layer's weights are applied at every depth (ALBERT)
    # A sinusoidal model whose checkpoint stores its table (DistilBERT's sinusoidal_pos_embds): the stored
    # table is used, as the reference does, rather than recomputed.
    sinusoidal_in_weights: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation {self.activation!r} (supported: {', '.join(ACTIVATIONS)})")
        if self.positional not in POSITIONALS:
            problems.append(f"positional {self.positional!r} (supported: {', '.join(POSITIONALS)})")
        if self.norm_placement not in NORM_PLACEMENTS:
            problems.append(f"norm_placement {self.norm_placement!r} (supported: {', '.join(NORM_PLACEMENTS)})")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_positions"):
            if getattr(self, name) < 1:
                problems.append(f"{name} = {getattr(self, name)} (must be at least 1)")
        if self.type_vocab_size < 0 or (self.use_segments and self.type_vocab_size < 1):
            problems.append(f"type_vocab_size = {self.type_vocab_size} (at least 1 when segments are used, 0 for none)")
        if self.embedding_size is not None and self.embedding_size < 1:
            problems.append(f"embedding_size = {self.embedding_size} (must be at least 1)")
        if not 0 <= self.position_offset < self.max_positions:
            problems.append(f"position_offset = {self.position_offset} (must be in [0, max_positions))")
        elif self.position_offset and self.pad_token_id != self.position_offset - 1:
            problems.append(f"position_offset {self.position_offset} needs pad_token_id {self.position_offset - 1}")
        if self.sinusoidal_in_weights and self.positional != "sinusoidal":
            problems.append("sinusoidal_in_weights needs positional 'sinusoidal'")
        if self.n_heads >= 1 and self.d_model % self.n_heads:
            problems.append(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if problems:
            raise TransformerError("Unsupported encoder configuration: " + "; ".join(problems) + ".")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def embedding_width(self) -> int:
        """Width of the token, position and segment vectors (d_model unless the embeddings are factorised)."""
        return self.embedding_size if self.embedding_size is not None else self.d_model

    @property
    def max_tokens(self) -> int:
        """The longest input: every position row, less those reserved below the offset."""
        return self.max_positions - self.position_offset

    def to_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}
