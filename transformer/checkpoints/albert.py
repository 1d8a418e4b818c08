"""ALBERT: factorised embeddings and one layer's weights shared by every layer.

From transformers 5.23 (transformers/models/albert/modeling_albert.py), what differs from BERT:
  * word, position and segment embeddings and their LayerNorm are ``embedding_size`` wide, and
    ``encoder.embedding_hidden_mapping_in`` (a Linear, always present) maps them to hidden_size;
  * the layers: ``encoder.albert_layer_groups.g.albert_layers.j``, with layer i using group
    int(i / (num_hidden_layers / num_hidden_groups)); every released ALBERT has one group of one layer,
    so one layer's weights are applied num_hidden_layers times (only that case is supported);
  * names inside the layer: attention.{query,key,value}, attention.dense (the output projection),
    attention.LayerNorm (after attention), ffn / ffn_output (the feed-forward), full_layer_layer_norm
    (after the feed-forward);
  * hidden_act defaults to gelu_new; the pooler is a bare ``pooler`` Linear (not used);
  * the MLM head (AlbertForMaskedLM ``predictions``): dense (hidden -> embedding_size), hidden_act,
    LayerNorm, decoder tied to the word embeddings, ``predictions.bias`` tied to ``predictions.decoder.bias``;
    AlbertForPreTraining adds sop_classifier (sentence order, not used);
  * the tokenizer is SentencePiece with [CLS] [SEP] [MASK] <pad> <unk>.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import EncoderConfig
from ..errors import TransformerError
from . import reading
from .table import HeadLayout, Target, remove_prefix

IGNORED_PREFIXES = ("pooler.", "predictions.", "sop_classifier.", "embeddings.position_ids", "embeddings.token_type_ids")
# AlbertTokenizer's defaults, for checkpoints without special_tokens_map.json.
SPECIAL_TOKENS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "<pad>", "unk": "<unk>", "mask": "[MASK]"}
SHARED = "encoder.albert_layer_groups.0.albert_layers.0"  # the one layer every depth applies


def read_config(raw: Mapping[str, Any]) -> EncoderConfig:
    groups, inner = raw.get("num_hidden_groups", 1), raw.get("inner_group_num", 1)
    if groups != 1 or inner != 1:
        raise TransformerError(
            f"Unsupported ALBERT layout num_hidden_groups={groups}, inner_group_num={inner}: only one shared layer "
            "(1 and 1, as in every released ALBERT) is supported."
        )
    return reading.bert_style(
        raw, "ALBERT", default_activation="gelu_new",
        embedding_size=lambda _: int(raw.get("embedding_size", 128)),  # projected even when equal to hidden_size
        shared_layers=True,
    )


def canonical_name(key: str) -> str:
    return remove_prefix(key, "albert.")


def ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES)


def key_table(config: EncoderConfig) -> dict[str, Target]:
    table = {
        "embeddings.word_embeddings.weight": Target("embeddings.token.weight"),
        "embeddings.position_embeddings.weight": Target("embeddings.position.weight"),
        "embeddings.token_type_embeddings.weight": Target("embeddings.segment.weight"),
        "embeddings.LayerNorm.weight": Target("embeddings.norm.weight"),
        "embeddings.LayerNorm.bias": Target("embeddings.norm.bias"),
    }
    for kind in ("weight", "bias"):
        table[f"encoder.embedding_hidden_mapping_in.{kind}"] = Target(f"embeddings.project.{kind}")
        for part, projection in enumerate(("query", "key", "value")):
            table[f"{SHARED}.attention.{projection}.{kind}"] = Target(f"layers.0.attn.qkv.{kind}", part, 3)
        table[f"{SHARED}.attention.dense.{kind}"] = Target(f"layers.0.attn.out.{kind}")
        table[f"{SHARED}.attention.LayerNorm.{kind}"] = Target(f"layers.0.ln1.{kind}")
        table[f"{SHARED}.ffn.{kind}"] = Target(f"layers.0.ffn.up.{kind}")
        table[f"{SHARED}.ffn_output.{kind}"] = Target(f"layers.0.ffn.down.{kind}")
        table[f"{SHARED}.full_layer_layer_norm.{kind}"] = Target(f"layers.0.ln2.{kind}")
    return table


def mlm_head(raw: Mapping[str, Any], config: EncoderConfig) -> HeadLayout:
    return HeadLayout(
        transform="predictions.dense",
        norm="predictions.LayerNorm",
        decoder="predictions.decoder",
        separate_bias="predictions.bias",
        activation=config.activation,
        width=config.embedding_width,
    )
