"""ELECTRA (discriminator and generator): a BERT encoder whose embeddings may be narrower than the model.

From transformers 5.23 (transformers/models/electra/modeling_electra.py), what differs from BERT:
  * tensor names are BERT's under an ``electra.`` prefix (so BERT's key table serves);
  * word, position and segment embeddings and their LayerNorm are ``embedding_size`` wide; when that
    differs from hidden_size, ``embeddings_project`` (a Linear) maps them up to hidden_size before layer 0
    (and transformers' hidden_states[0] is that projected output);
  * no pooler;
  * the generator's MLM head (ElectraForMaskedLM): generator_predictions.dense (hidden -> embedding_size),
    always exact GELU, generator_predictions.LayerNorm, and generator_lm_head (tied to the word
    embeddings, with its own bias). The discriminator's head (discriminator_predictions, ElectraForPreTraining)
    scores replaced tokens, not words: it is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import EncoderConfig
from . import bert, reading
from .table import HeadLayout, Target, remove_prefix

IGNORED_PREFIXES = ("discriminator_predictions.", "generator_predictions.", "generator_lm_head.",
                    "embeddings.position_ids", "embeddings.token_type_ids")
SPECIAL_TOKENS = None  # BERT's WordPiece specials
DEFAULT_EMBEDDING_SIZE = 128  # ElectraConfig's


def read_config(raw: Mapping[str, Any]) -> EncoderConfig:
    reading.refuse_non_encoders(raw, "ELECTRA")
    act = reading.activation(raw, "hidden_act", "gelu")
    reading.require(raw, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"), "ELECTRA")
    embedding_size = int(raw.get("embedding_size", DEFAULT_EMBEDDING_SIZE))
    return reading.build(lambda: EncoderConfig(
        vocab_size=int(raw["vocab_size"]),
        d_model=int(raw["hidden_size"]),
        n_layers=int(raw["num_hidden_layers"]),
        n_heads=int(raw["num_attention_heads"]),
        d_ff=int(raw["intermediate_size"]),
        max_positions=int(raw.get("max_position_embeddings", 512)),
        type_vocab_size=int(raw.get("type_vocab_size", 2)),
        activation=act,
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        pad_token_id=reading.pad_token_id(raw, 0),
        model_type="electra",
        # ElectraModel has embeddings_project only when the widths differ.
        embedding_size=embedding_size if embedding_size != int(raw["hidden_size"]) else None,
    ))


def canonical_name(key: str) -> str:
    return remove_prefix(key, "electra.")


def ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES)


def key_table(config: EncoderConfig) -> dict[str, Target]:
    table = bert.key_table(config)
    if config.embedding_size is not None:
        for kind in ("weight", "bias"):
            table[f"embeddings_project.{kind}"] = Target(f"embeddings.project.{kind}")
    return table


def mlm_head(raw: Mapping[str, Any], config: EncoderConfig) -> HeadLayout:
    return HeadLayout(
        transform="generator_predictions.dense",
        norm="generator_predictions.LayerNorm",
        decoder="generator_lm_head",
        separate_bias=None,
        activation="gelu",  # ElectraGeneratorPredictions uses get_activation("gelu") whatever hidden_act says
        width=config.embedding_width,
    )
