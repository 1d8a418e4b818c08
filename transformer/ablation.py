"""Head ablation: a recorder that switches chosen attention heads off while it records.

Every step passes through the recorder, and the forward pass continues with what the recorder returns.
Returning zeros for a head's weighted sum of values (``attn.context``) removes that head's contribution
to the layer's output, exactly as if the head did not exist (the output projection's bias remains).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .steps import Recorder


class HeadAblation(Recorder):
    def __init__(self, heads: Iterable[tuple[int, int]]) -> None:
        super().__init__()
        self.heads: dict[int, list[int]] = {}
        for layer, head in heads:
            self.heads.setdefault(int(layer), []).append(int(head))

    def __call__(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        if name.endswith(".attn.context"):
            layer = int(name.split(".")[1])
            if layer in self.heads:
                keep = torch.ones(tensor.shape[1], dtype=tensor.dtype, device=tensor.device)
                keep[self.heads[layer]] = 0.0
                tensor = tensor * keep[None, :, None, None]  # (B, H, T, d_head): zero the chosen heads
        return super().__call__(name, tensor)
