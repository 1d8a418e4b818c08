"""One encoder layer: the two sublayers, each wrapped in a residual connection and a LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from .attention import SelfAttention
from .config import EncoderConfig
from .feed_forward import FeedForward
from .norm import LayerNorm
from .steps import Record, passthrough


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig, index: int) -> None:
        super().__init__()
        self.name = f"layers.{index}"
        self.pre_norm = config.norm_placement == "pre"
        self.attn = SelfAttention(config, f"{self.name}.attn")
        self.ln1 = LayerNorm(config)
        self.ffn = FeedForward(config, f"{self.name}.ffn")
        self.ln2 = LayerNorm(config)

    def shared_at(self, config: EncoderConfig, index: int) -> "EncoderLayer":
        """This layer's very weights, applied as layer ``index`` and recording under that layer's step names.

        ALBERT applies one layer's weights at every depth. The twin holds the same sublayer modules, so a
        change to (or a move of) the weights is a change to every depth at once.
        """
        with torch.device("meta"):  # the twin's own parameters are placeholders, replaced just below
            twin = EncoderLayer(config, index)
        twin.attn.qkv, twin.attn.out = self.attn.qkv, self.attn.out
        twin.ffn.up, twin.ffn.down = self.ffn.up, self.ffn.down
        twin.ln1, twin.ln2 = self.ln1, self.ln2
        own = {id(p) for p in self.parameters()}
        if not all(id(p) in own for p in twin.parameters()):  # a sublayer gained weights this method does not share
            raise AssertionError("EncoderLayer.shared_at left a parameter unshared")
        return twin

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, record: Record | None = None) -> torch.Tensor:
        return (self.pre_ln if self.pre_norm else self.post_ln)(x, mask, record)

    def post_ln(self, x: torch.Tensor, mask: torch.Tensor | None, record: Record | None) -> torch.Tensor:
        """BERT: x = LN1(x + Attn(x)); x = LN2(x + FFN(x))."""
        r, n = record or passthrough, self.name
        resid_mid = r(f"{n}.resid_mid", x + self.attn(x, mask, record))
        x = r(f"{n}.ln1", self.ln1(resid_mid))
        resid_post = r(f"{n}.resid_post", x + self.ffn(x, r))
        return r(f"{n}.ln2", self.ln2(resid_post))

    def pre_ln(self, x: torch.Tensor, mask: torch.Tensor | None, record: Record | None) -> torch.Tensor:
        """Most newer models: normalise each sublayer's input; the residual stream itself is never normalised."""
        r, n = record or passthrough, self.name
        resid_mid = r(f"{n}.resid_mid", x + self.attn(r(f"{n}.ln1", self.ln1(x)), mask, record))
        return r(f"{n}.resid_post", resid_mid + self.ffn(r(f"{n}.ln2", self.ln2(resid_mid)), r))
