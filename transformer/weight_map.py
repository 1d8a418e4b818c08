"""The weight map: every tensor of a checkpoint file, what it feeds in our encoder, its shape and size.

Read from the safetensors headers only (no tensor data is loaded), through the family's own key table,
so the map shows the file as it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from . import checkpoints
from .config import EncoderConfig

# Our parameter (without .weight/.bias) -> the step whose value it computes, where the names differ.
_STEP_OF_PARAMETER = {"ffn.up": "ffn.pre_act", "ffn.down": "ffn.out"}
_QKV_STEPS = ("attn.q", "attn.k", "attn.v")


@dataclass(frozen=True)
class WeightRow:
    checkpoint_name: str  # the name in the file
    parameter: str  # our parameter it fills, or "" when deliberately unused
    step: str  # the step it computes, e.g. "layers.0.attn.q"
    layer: int | None
    shape: tuple[int, ...]
    n_parameters: int
    file: str


def _step_for(target: checkpoints.Target) -> str:
    stem = re.sub(r"\.(weight|bias)$", "", target.name)
    match = re.match(r"^(layers\.\d+\.)(.*)$", stem)
    prefix, local = (match.group(1), match.group(2)) if match else ("", stem)
    if local == "attn.qkv" and target.parts == 3:
        return prefix + _QKV_STEPS[target.part]
    return prefix + _STEP_OF_PARAMETER.get(local, local)


def weight_map(weight_files: Sequence[Path], raw_config: Mapping[str, Any], config: EncoderConfig) -> list[WeightRow]:
    family = checkpoints.family_for(raw_config)
    table = family.key_table(config)
    head = family.mlm_head(raw_config, config)
    head_modules = tuple(f"{name}." for name in (head.transform, head.norm, head.decoder)) + (
        (head.separate_bias,) if head.separate_bias else ()
    )
    rows = []
    for path in weight_files:
        with safe_open(str(path), "pt") as handle:
            for name in handle.keys():
                shape = tuple(handle.get_slice(name).get_shape())
                target = table.get(family.canonical_name(name))
                canonical = family.canonical_name(name)
                if target:
                    parameter, step = target.name, _step_for(target)
                elif canonical.startswith(head_modules):
                    parameter, step = "mlm_head", "mlm_logits"  # the masked-LM head, outside the encoder
                else:
                    parameter, step = "", "(not used)"
                layer_match = re.match(r"^layers\.(\d+)\.", parameter)
                rows.append(WeightRow(name, parameter, step, int(layer_match.group(1)) if layer_match else None,
                                      shape, math.prod(shape), Path(path).name))
    return rows


def totals_by_layer(rows: Sequence[WeightRow]) -> dict[str, int]:
    """Parameter counts per layer ("embeddings and other" for the rest, "not used" for ignored tensors)."""
    totals: dict[str, int] = {}
    for row in rows:
        if not row.parameter or row.parameter == "mlm_head":
            key = "not used" if not row.parameter else "masked-LM head"
        else:
            key = f"layer {row.layer}" if row.layer is not None else "embeddings and other"
        totals[key] = totals.get(key, 0) + row.n_parameters
    return totals


def model_weight_map(model) -> list[WeightRow]:
    """The weight map of a loaded ``Model``, from the very files it was loaded from."""
    return weight_map(model.weight_files, model.raw_config, model.config)
