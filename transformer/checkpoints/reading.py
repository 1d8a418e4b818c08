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
