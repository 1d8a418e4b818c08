"""DistilBERT: a six-layer BERT with its own tensor names, no segments, and optionally sinusoidal positions.

From transformers 5.23 (transformers/models/distilbert/modeling_distilbert.py), what differs from BERT:
  * config.json says dim, n_layers, n_heads, hidden_dim and activation (not hidden_size ... hidden_act);
  * every LayerNorm has eps 1e-12, fixed in the code (the config has no layer_norm_eps);
  * no token_type_embeddings: the input is token + position only;
  * with sinusoidal_pos_embds the position table is the Vaswani et al. table, stored among the weights
    (``_init_weights`` fills it; it is saved and loaded like any table); we use the stored table;
  * names, under an optional ``distilbert.`` prefix: attention.{q,k,v,out}_lin, sa_layer_norm (after
    attention), ffn.lin1 / ffn.lin2, output_layer_norm (after the feed-forward), ``transformer.layer.i``;
  * the MLM head (DistilBertForMaskedLM) is three top-level modules: vocab_transform, the config's
    activation, vocab_layer_norm, and vocab_projector (tied to the word embeddings, with its own bias).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import EncoderConfig
from . import reading
from .table import HeadLayout, Target, remove_prefix

LAYER_NORM_EPS = 1e-12  # hard-coded in every DistilBERT LayerNorm
IGNORED_PREFIXES = ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.", "embeddings.position_ids")
SPECIAL_TOKENS = None  # BERT's WordPiece specials


def read_config(raw: Mapping[str, Any]) -> EncoderConfig:
    act = reading.activation(raw, "activation", "gelu")
    reading.require(raw, ("vocab_size", "dim", "n_layers", "n_heads", "hidden_dim"), "DistilBERT")
    sinusoidal = bool(raw.get("sinusoidal_pos_embds", False))
    return reading.build(lambda: EncoderConfig(
        vocab_size=int(raw["vocab_size"]),
        d_model=int(raw["dim"]),
        n_layers=int(raw["n_layers"]),
        n_heads=int(raw["n_heads"]),
        d_ff=int(raw["hidden_dim"]),
        max_positions=int(raw.get("max_position_embeddings", 512)),
        type_vocab_size=0,
        activation=act,
        layer_norm_eps=LAYER_NORM_EPS,
        positional="sinusoidal" if sinusoidal else "learned",
        sinusoidal_in_weights=sinusoidal,
        pad_token_id=reading.pad_token_id(raw, 0),
        model_type="distilbert",
        use_segments=False,
    ))


def canonical_name(key: str) -> str:
    return remove_prefix(key, "distilbert.")


def ignored(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES)


def key_table(config: EncoderConfig) -> dict[str, Target]:
    table = {
        "embeddings.word_embeddings.weight": Target("embeddings.token.weight"),
        "embeddings.position_embeddings.weight": Target("embeddings.position.weight"),  # learned or sinusoidal
        "embeddings.LayerNorm.weight": Target("embeddings.norm.weight"),
        "embeddings.LayerNorm.bias": Target("embeddings.norm.bias"),
    }
    for i in range(config.n_layers):
        theirs, ours = f"transformer.layer.{i}", f"layers.{i}"
        for part, projection in enumerate(("q_lin", "k_lin", "v_lin")):
            for kind in ("weight", "bias"):
                table[f"{theirs}.attention.{projection}.{kind}"] = Target(f"{ours}.attn.qkv.{kind}", part, 3)
        for kind in ("weight", "bias"):
            table[f"{theirs}.attention.out_lin.{kind}"] = Target(f"{ours}.attn.out.{kind}")
            table[f"{theirs}.sa_layer_norm.{kind}"] = Target(f"{ours}.ln1.{kind}")
            table[f"{theirs}.ffn.lin1.{kind}"] = Target(f"{ours}.ffn.up.{kind}")
            table[f"{theirs}.ffn.lin2.{kind}"] = Target(f"{ours}.ffn.down.{kind}")
            table[f"{theirs}.output_layer_norm.{kind}"] = Target(f"{ours}.ln2.{kind}")
    return table


def mlm_head(raw: Mapping[str, Any], config: EncoderConfig) -> HeadLayout:
    return HeadLayout(
        transform="vocab_transform",
        norm="vocab_layer_norm",
        decoder="vocab_projector",
        separate_bias=None,
        activation=config.activation,
        width=config.d_model,
    )
