"""Tiny randomly initialised BERT checkpoints, made by the reference implementation for the tests."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "##s", "bank", "river", "loan", "a", "."]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_bert_checkpoint(folder: Path, seed: int = 0, **overrides) -> Path:
    """Save a random ``transformers.BertModel`` (safetensors) with a WordPiece vocab.txt into ``folder``.

    LayerNorm scales and shifts are randomised too, so a mapping mistake cannot hide behind ones and zeros.
    """
    from transformers import BertConfig, BertModel

    settings = dict(
        vocab_size=len(SPECIALS) + len(WORDS) + 20,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
    )
    settings.update(overrides)
    torch.manual_seed(seed)
    reference = BertModel(BertConfig(**settings)).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reference.save_pretrained(folder, safe_serialization=True)
    filler = [f"w{i}" for i in range(settings["vocab_size"] - len(SPECIALS) - len(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + filler) + "\n", encoding="utf-8")
    return folder


def reference_model(folder: Path):
    from transformers import BertModel

    return BertModel.from_pretrained(folder, attn_implementation="eager").eval()
