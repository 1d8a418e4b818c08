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
