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
    def narrower_embeddings(_pad: int) -> int | None:  # ElectraModel projects only when the widths differ
        size = int(raw.get("embedding_size", DEFAULT_EMBEDDING_SIZE))
        return size if size != int(raw["hidden_size"]) else None

    return reading.bert_style(raw, "ELECTRA", embedding_size=narrower_embeddings)


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
