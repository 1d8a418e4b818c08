"""Strict conversion of checkpoint tensors to our parameter names, shared by every family."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ..errors import TransformerError


@dataclass(frozen=True)
class Target:
    """Where a checkpoint tensor goes: our parameter, and which of its ``parts`` equal chunks along axis 0."""

    name: str
    part: int = 0
    parts: int = 1


def convert_state_dict(
    tensors: Mapping[str, torch.Tensor],
    table: Mapping[str, Target],
    canonical_name: Callable[[str], str],
    ignored: Callable[[str], bool],
    expected_shapes: Mapping[str, torch.Size],
) -> dict[str, torch.Tensor]:
    """Map every checkpoint tensor through ``table`` into a state dict with exactly ``expected_shapes``' keys.

    Refuses, naming the tensor: a missing one, an unexpected one (neither in the table nor deliberately
    ignored), one present under two spellings, and one whose shape does not fit. Tensors that fill a fused
    parameter (Q, K and V into ``qkv``) are concatenated in ``part`` order.
    """
    uncovered = set(expected_shapes) - {target.name for target in table.values()}
    if uncovered:  # a bug in a family's table, not in the checkpoint
        raise AssertionError(f"key table leaves parameters unfilled: {sorted(uncovered)}")
    found: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, tensor in tensors.items():
        name = canonical_name(key)
        if name in table:
            if name in found:
                raise TransformerError(f"The checkpoint holds tensor {name!r} twice (as {key!r} and another spelling).")
            found[name] = tensor
        elif not ignored(name):
            unexpected.append(key)
    if unexpected:
        listed = ", ".join(sorted(unexpected)[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise TransformerError(f"The checkpoint has {len(unexpected)} tensor(s) this encoder does not use: {listed}.")
    missing = sorted(name for name in table if name not in found)
    if missing:
        listed = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise TransformerError(f"The checkpoint lacks {len(missing)} tensor(s) the encoder needs: {listed}.")

    chunks: dict[str, list[torch.Tensor | None]] = {}
    for name, target in table.items():
        full = expected_shapes[target.name]
        want = (full[0] // target.parts, *full[1:])
        got = tuple(found[name].shape)
        if got != want:
            raise TransformerError(f"Tensor {name!r} has shape {got} but this config needs {want}.")
        chunks.setdefault(target.name, [None] * target.parts)[target.part] = found[name]
    return {ours: parts[0] if len(parts) == 1 else torch.cat(parts) for ours, parts in chunks.items()}


def modern_layer_norm_names(key: str) -> str:
    """Rename legacy (TensorFlow-era) LayerNorm ``gamma``/``beta`` to ``weight``/``bias``, as transformers does on load."""
    if "LayerNorm." in key:
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    return key


def remove_prefix(key: str, prefix: str) -> str:
    """Drop the base-model prefix (``roberta.``) that task checkpoints such as *ForMaskedLM put on the encoder."""
    return modern_layer_norm_names(key.removeprefix(prefix))


@dataclass(frozen=True)
class HeadLayout:
    """Where a family keeps its masked-LM head: three checkpoint modules, and how the head computes.

    ``transform`` (a Linear), ``norm`` (a LayerNorm) and ``decoder`` (the Linear to the vocabulary, whose
    weight is absent when it is tied to the token embeddings). ``separate_bias`` is the head's own bias
    vector where the family keeps one beside the decoder (BERT, RoBERTa, ALBERT); when tied, transformers
    makes it the decoder's bias.
    """

    transform: str
    norm: str
    decoder: str
    separate_bias: str | None
    activation: str  # the transform's activation, one of ours
    width: int  # the transform's output width
