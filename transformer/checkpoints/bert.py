"""BERT (and MiniLM, which is a BERT): config reading and the one key table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import EncoderConfig
from ..errors import TransformerError
from .table import Target

# Checkpoint activation names that mean one of our functions.
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new"}

# Tensors a BERT checkpoint may carry that the encoder deliberately does not use: the pooler and the
# pre-training heads (masked LM, next-sentence prediction), and the saved position-id buffer.
IGNORED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")


def read_config(raw: Mapping[str, Any]) -> EncoderConfig:
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise TransformerError(
            f"Unsupported position_embedding_type {position_type!r}: only 'absolute' (learned) positions are supported."
        )
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        raise TransformerError("This BERT is configured as a decoder (is_decoder/add_cross_attention); only encoders are supported.")
    act = raw.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise TransformerError(f"Unsupported hidden_act {act!r}: supported are {', '.join(sorted(ACTIVATIONS))}.")
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    missing = [key for key in required if key not in raw]
    if missing:
        raise TransformerError(f"config.json lacks {', '.join(missing)}: it does not describe a BERT encoder.")
    try:
        return EncoderConfig(
            vocab_size=int(raw["vocab_size"]),
            d_model=int(raw["hidden_size"]),
            n_layers=int(raw["num_hidden_layers"]),
            n_heads=int(raw["num_attention_heads"]),
            d_ff=int(raw["intermediate_size"]),
            max_positions=int(raw.get("max_position_embeddings", 512)),
            type_vocab_size=int(raw.get("type_vocab_size", 2)),
            activation=ACTIVATIONS[act],
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(raw.get("pad_token_id") or 0),
            model_type="bert",
        )
    except (TypeError, ValueError) as err:
        raise TransformerError(f"config.json has a value of the wrong type: {err}") from None


def canonical_name(key: str) -> str:
    """Drop the optional ``bert.`` prefix and rename legacy LayerNorm ``gamma``/``beta`` to ``weight``/``bias``."""
    key = key.removeprefix("bert.")
    if "LayerNorm." in key:
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    return key


def ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES)


def key_table(config: EncoderConfig) -> dict[str, Target]:
    """Every BERT checkpoint tensor the encoder uses -> the parameter it fills."""
    table = {
        "embeddings.word_embeddings.weight": Target("embeddings.token.weight"),
        "embeddings.token_type_embeddings.weight": Target("embeddings.segment.weight"),
        "embeddings.LayerNorm.weight": Target("embeddings.norm.weight"),
        "embeddings.LayerNorm.bias": Target("embeddings.norm.bias"),
    }
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
