"""RoBERTa and XLM-RoBERTa: a BERT encoder with fairseq's positions and no segments in use.

From transformers 5.23 (transformers/models/roberta/modeling_roberta.py; XLM-RoBERTa's
modeling_xlm_roberta.py is the same code), what differs from BERT:
  * tensor names are BERT's under a ``roberta.`` prefix (so BERT's key table serves);
  * positions: ``create_position_ids_from_input_ids`` numbers the non-padding tokens from
    ``padding_idx + 1`` (padding_idx = pad_token_id, 1) and gives padding tokens row ``padding_idx``; the
    table has max_position_embeddings = 514 rows for 512 tokens;
  * segments: type_vocab_size is 1 and the tokenizer gives every token type 0, so the one segment row is
    added to every token;
  * the MLM head (RobertaLMHead, ``lm_head``): dense, *always* exact GELU (not hidden_act), layer_norm,
    decoder tied to the word embeddings, and ``lm_head.bias`` tied to ``lm_head.decoder.bias``;
  * the tokenizer is byte-level BPE (RoBERTa) or SentencePiece (XLM-R) in tokenizer.json, with
    <s> </s> <pad> <unk> <mask> as its special tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import EncoderConfig
from . import bert, reading
from .table import HeadLayout, Target, remove_prefix

IGNORED_PREFIXES = ("pooler.", "lm_head.", "embeddings.position_ids", "embeddings.token_type_ids")
# RobertaTokenizer's and XLMRobertaTokenizer's defaults, for checkpoints without special_tokens_map.json.
SPECIAL_TOKENS = {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}


def read_config(raw: Mapping[str, Any]) -> EncoderConfig:
    # Defaults are RobertaConfig's (released checkpoints say 514 positions, pad 1 and eps 1e-5).
    return reading.bert_style(raw, "RoBERTa", default_pad=1, position_offset=lambda pad: pad + 1, use_segments=False)


def canonical_name(key: str) -> str:
    return remove_prefix(key, "roberta.")


def ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES)


def key_table(config: EncoderConfig) -> dict[str, Target]:
    return bert.key_table(config)


def mlm_head(raw: Mapping[str, Any], config: EncoderConfig) -> HeadLayout:
    return HeadLayout(
        transform="lm_head.dense",
        norm="lm_head.layer_norm",
        decoder="lm_head.decoder",
        separate_bias="lm_head.bias",
        activation="gelu",  # RobertaLMHead calls gelu whatever hidden_act says
        width=config.d_model,
    )
