"""Reading config.json: the checks and conversions that every family's ``read_config`` shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..config import EncoderConfig
from ..errors import TransformerError

# Checkpoint activation names that mean one of our functions.
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new"}


def refuse_non_encoders(raw: Mapping[str, Any], family: str) -> None:
    """Refuse relative positions and decoder configurations, which this encoder does not implement."""
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise TransformerError(
            f"Unsupported position_embedding_type {position_type!r}: only 'absolute' (learned) positions are supported."
        )
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        raise TransformerError(
            f"This {family} is configured as a decoder (is_decoder/add_cross_attention); only encoders are supported."
        )


def activation(raw: Mapping[str, Any], key: str, default: str) -> str:
    name = raw.get(key, default)
    if name not in ACTIVATIONS:
        raise TransformerError(f"Unsupported {key} {name!r}: supported are {', '.join(sorted(ACTIVATIONS))}.")
    return ACTIVATIONS[name]


def require(raw: Mapping[str, Any], keys: tuple[str, ...], family: str) -> None:
    missing = [key for key in keys if key not in raw]
    if missing:
        raise TransformerError(f"config.json lacks {', '.join(missing)}: it does not describe a {family} encoder.")


def build(make: Callable[[], EncoderConfig]) -> EncoderConfig:
    """Run ``make``, turning a value of the wrong type in config.json into a clear refusal."""
    try:
        return make()
    except (TypeError, ValueError) as err:
        raise TransformerError(f"config.json has a value of the wrong type: {err}") from None


def pad_token_id(raw: Mapping[str, Any], default: int) -> int:
    value = raw.get("pad_token_id")
    return default if value is None else int(value)


BERT_STYLE_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def bert_style(
    raw: Mapping[str, Any], family: str, *, default_activation: str = "gelu", default_pad: int = 0, **fields: Any
) -> EncoderConfig:
    """The config of a family that names its sizes as BertConfig does (BERT, RoBERTa, ELECTRA, ALBERT).

    ``fields`` are the family's own EncoderConfig values; a callable one is called with the pad token id
    while the config is built, so that its conversion errors are reported like the others.
    """
    refuse_non_encoders(raw, family)
    act = activation(raw, "hidden_act", default_activation)
    require(raw, BERT_STYLE_REQUIRED, family)
    pad = pad_token_id(raw, default_pad)
    return build(lambda: EncoderConfig(
        vocab_size=int(raw["vocab_size"]),
        d_model=int(raw["hidden_size"]),
        n_layers=int(raw["num_hidden_layers"]),
        n_heads=int(raw["num_attention_heads"]),
        d_ff=int(raw["intermediate_size"]),
        max_positions=int(raw.get("max_position_embeddings", 512)),
        type_vocab_size=int(raw.get("type_vocab_size", 2)),
        activation=act,
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        pad_token_id=pad,
        model_type=str(raw["model_type"]),
        **{name: value(pad) if callable(value) else value for name, value in fields.items()},
    ))
