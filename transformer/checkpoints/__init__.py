"""Checkpoint families: each module reads its family's config.json and maps its tensor names to ours.

A family module provides ``read_config(raw) -> EncoderConfig``; ``key_table(config)``, from checkpoint
tensor names (in canonical spelling) to ``Target``s; ``canonical_name(key)``, which undoes the
family's spelling variants; ``ignored(name)``, the tensors deliberately left unused by the encoder;
``mlm_head(raw, config)``, where its masked-LM head lives (a ``HeadLayout``); and ``SPECIAL_TOKENS``,
its tokenizer's special tokens when the checkpoint does not name them (None: BERT's).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import torch

from ..config import EncoderConfig
from ..errors import TransformerError
from ..mlm import HeadConfig, MaskedLMHead
from . import albert, bert, distilbert, electra, roberta
from .table import HeadLayout, Target, convert_state_dict

# model_type in config.json -> its family. Listed in this order in the refusal of other model types.
FAMILIES: dict[str, ModuleType] = {
    "bert": bert,
    "roberta": roberta,
    "xlm-roberta": roberta,  # the same architecture and names as RoBERTa
    "distilbert": distilbert,
    "electra": electra,
    "albert": albert,
}

__all__ = ["FAMILIES", "HeadLayout", "Target", "family_for", "masked_lm_head", "read_config", "special_tokens", "to_state_dict"]


def family_for(raw_config: Mapping[str, Any]) -> ModuleType:
    model_type = raw_config.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        supported = ", ".join(FAMILIES)
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


def special_tokens(raw_config: Mapping[str, Any]) -> dict[str, str] | None:
    """The family's special tokens by role (cls, sep, pad, unk, mask), for tokenizers that do not name them."""
    return family_for(raw_config).SPECIAL_TOKENS


def masked_lm_head(
    raw_config: Mapping[str, Any],
    config: EncoderConfig,
    tensors: Mapping[str, torch.Tensor],
    token_embeddings: torch.nn.Parameter,
) -> MaskedLMHead | None:
    """The checkpoint's masked-LM head, or None when it has none (its transform's weight is the sign).

    Strict like the encoder: a head that is there but incomplete or misshapen is refused, naming the
    tensor. Its tensors are otherwise vetted by the encoder's conversion (used there, or deliberately
    ignored). With tie_word_embeddings (the default) the output matrix is ``token_embeddings`` itself and
    the checkpoint's copy, if any, is not read, as transformers ties it.
    """
    family = family_for(raw_config)
    layout: HeadLayout = family.mlm_head(raw_config, config)
    present = {family.canonical_name(key) for key in tensors}
    if f"{layout.transform}.weight" not in present:
        return None
    tied = bool(raw_config.get("tie_word_embeddings", True))
    if tied and layout.width != config.embedding_width:
        raise TransformerError(
            f"The masked-LM head is {layout.width} wide but tied to {config.embedding_width}-wide token embeddings."
        )
    table = {f"{layout.transform}.{kind}": Target(f"transform.{kind}") for kind in ("weight", "bias")}
    table.update({f"{layout.norm}.{kind}": Target(f"norm.{kind}") for kind in ("weight", "bias")})
    # The output bias: tied checkpoints keep it as the separate vector, untied ones on the decoder; either
    # spelling is read when the usual one is absent (older saves).
    spellings = [name for name in (layout.separate_bias, f"{layout.decoder}.bias") if name is not None]
    if not tied:
        spellings.reverse()
    table[next((name for name in spellings if name in present), spellings[0])] = Target("decoder.bias")
    if not tied:
        table[f"{layout.decoder}.weight"] = Target("decoder.weight")

    head_config = HeadConfig(width=layout.width, activation=layout.activation, tied=tied)
    with torch.device("meta"):
        head = MaskedLMHead(config, head_config)  # shapes only; the checkpoint's tensors become the parameters
    expected = {name: tensor.shape for name, tensor in head.state_dict().items() if not (tied and name == "decoder.weight")}
    # Every tensor outside this table was already accounted for by the encoder's strict conversion.
    state_dict = convert_state_dict(tensors, table, family.canonical_name, lambda name: True, expected)
    head.load_state_dict({name: tensor.to(torch.float32) for name, tensor in state_dict.items()}, strict=False, assign=True)
    if tied:
        head.decoder.weight = token_embeddings  # the very embedding table: one matrix, two uses
    return head
