"""BERT (and MiniLM, which is a BERT): config reading, the key table and the masked-LM head.

Names as transformers 5.23 writes them (transformers/models/bert/modeling_bert.py): the encoder under an
optional ``bert.`` prefix, the MLM head under ``cls.predictions`` (BertForMaskedLM / BertForPreTraining).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import EncoderConfig
from . import reading
from .table import HeadLayout, Target, remove_prefix

# Tensors a BERT checkpoint may carry that the encoder deliberately does not use: the pooler and the
# pre-training heads (masked LM, next-sentence prediction), and the saved position-id buffer. The masked-LM
# head is read separately, by ``mlm_head``.
IGNORED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")
SPECIAL_TOKENS = None  # the tokenizer's defaults ([CLS], [SEP], [PAD], [UNK], [MASK]) are BERT's


def read_config(raw: Mapping[str, Any]) -> EncoderConfig:
    return reading.bert_style(raw, "BERT")


def canonical_name(key: str) -> str:
    """Drop the optional ``bert.`` prefix and rename legacy LayerNorm ``gamma``/``beta`` to ``weight``/``bias``."""
    return remove_prefix(key, "bert.")


def ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES)


def key_table(config: EncoderConfig) -> dict[str, Target]:
    """Every BERT checkpoint tensor the encoder uses -> the parameter it fills.

    RoBERTa and ELECTRA name their encoders exactly so (they reuse this table).
    """
    table = {
        "embeddings.word_embeddings.weight": Target("embeddings.token.weight"),
        "embeddings.LayerNorm.weight": Target("embeddings.norm.weight"),
        "embeddings.LayerNorm.bias": Target("embeddings.norm.bias"),
    }
    if config.type_vocab_size:
        table["embeddings.token_type_embeddings.weight"] = Target("embeddings.segment.weight")
    if config.positional == "learned":
        table["embeddings.position_embeddings.weight"] = Target("embeddings.position.weight")
    for i in range(config.n_layers):
        theirs, ours = f"encoder.layer.{i}", f"layers.{i}"
        for part, projection in enumerate(("query", "key", "value")):
            for kind in ("weight", "bias"):
                table[f"{theirs}.attention.self.{projection}.{kind}"] = Target(f"{ours}.attn.qkv.{kind}", part, 3)
        for kind in ("weight", "bias"):
            table[f"{theirs}.attention.output.dense.{kind}"] = Target(f"{ours}.attn.out.{kind}")
            table[f"{theirs}.attention.output.LayerNorm.{kind}"] = Target(f"{ours}.ln1.{kind}")
            table[f"{theirs}.intermediate.dense.{kind}"] = Target(f"{ours}.ffn.up.{kind}")
            table[f"{theirs}.output.dense.{kind}"] = Target(f"{ours}.ffn.down.{kind}")
            table[f"{theirs}.output.LayerNorm.{kind}"] = Target(f"{ours}.ln2.{kind}")
    return table


def mlm_head(raw: Mapping[str, Any], config: EncoderConfig) -> HeadLayout:
    """BertLMPredictionHead: transform.dense, the hidden_act, transform.LayerNorm, decoder (tied) + bias."""
    return HeadLayout(
        transform="cls.predictions.transform.dense",
        norm="cls.predictions.transform.LayerNorm",
        decoder="cls.predictions.decoder",
        separate_bias="cls.predictions.bias",
        activation=config.activation,
        width=config.d_model,
    )
