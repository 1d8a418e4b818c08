"""Checkpoint families: each module reads its family's config.json and maps its tensor names to ours.

A family module provides ``read_config(raw) -> EncoderConfig``; ``key_table(config)``, from checkpoint
tensor names (in canonical spelling) to ``Target``s; ``canonical_name(key)``, which undoes the
family's spelling variants; and ``ignored(name)``, the tensors deliberately left unused.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch

from ..config import EncoderConfig
from ..errors import TransformerError
from . import bert
from .table import Target, convert_state_dict

FAMILIES: dict[str, ModuleType] = {"bert": bert}

__all__ = ["FAMILIES", "Target", "family_for", "read_config", "to_state_dict"]


def family_for(raw_config: Mapping[str, Any]) -> ModuleType:
    model_type = raw_config.get("model_type")
    if model_type not in FAMILIES:
        supported = ", ".join(sorted(FAMILIES))
        found = "no model_type" if model_type is None else f"model_type {model_type!r}"
        raise TransformerError(f"Unsupported checkpoint: config.json has {found}; supported: {supported}.")
    return FAMILIES[model_type]


def read_config(raw_config: Mapping[str, Any]) -> EncoderConfig:
    if raw_config.get("auto_map") or raw_config.get("trust_remote_code"):
        raise TransformerError("This checkpoint asks for custom code (auto_map); remote code is never run here.")
    return family_for(raw_config).read_config(raw_config)


def to_state_dict(
    raw_config: Mapping[str, Any],
    config: EncoderConfig,
    tensors: Mapping[str, torch.Tensor],
    expected_shapes: Mapping[str, torch.Size],
) -> dict[str, torch.Tensor]:
    """Checkpoint tensors -> our encoder's state dict, strictly (see ``table.convert_state_dict``)."""
    family = family_for(raw_config)
    return convert_state_dict(tensors, family.key_table(config), family.canonical_name, family.ignored, expected_shapes)
