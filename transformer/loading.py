"""from_pretrained: checkpoint files -> a verified, strictly mapped, ready ``Model``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from . import checkpoints
from .config import EncoderConfig
from .encoder import Encoder
from .errors import TransformerError
from .hub import locate
from .model import Model, Pooling
from .tokenizer import Tokenizer


def _read_config(path: Path) -> tuple[dict, EncoderConfig]:
    """config.json -> (its raw contents, our config); refuses what this package cannot or will not load."""
    try:
        raw_config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TransformerError(f"config.json could not be read: {err.strerror}") from None  # no path in the message
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TransformerError(f"config.json is not valid JSON: {err}") from None
    if not isinstance(raw_config, dict):
        raise TransformerError("config.json is not a JSON object.")
    return raw_config, checkpoints.read_config(raw_config)


def from_pretrained(
    source: str | os.PathLike | None = None,
    revision: str | None = None,
    device: str | torch.device | None = None,
    allow_local: bool = True,
    max_weight_bytes: int | None = None,
) -> Model:
    """Load the bundled default (``source=None``), a local folder, or a Hub repo id (at ``revision``).

    Weights come only from safetensors. Every failure raises ``TransformerError`` with a reason a user can
    act on. ``allow_local=False`` refuses folder paths and ``max_weight_bytes`` refuses larger Hub weights
    before downloading them (for servers that take the source from users).
    """
    device = torch.device(device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TransformerError("device='cuda' was asked for, but this machine has no CUDA GPU available to PyTorch.")
    files = locate(source, revision, allow_local=allow_local, vet_config=_read_config, max_weight_bytes=max_weight_bytes)
    raw_config, config = _read_config(files.config)

    tensors = {}
    for path in files.weights:
        try:
            tensors.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as err:
            raise TransformerError(f"{path.name} is not a valid safetensors file (corrupted or truncated): {err}") from None
    with torch.device("meta"):
        encoder = Encoder(config)  # shapes only; the checkpoint's tensors become the parameters below
    expected = {name: tensor.shape for name, tensor in encoder.state_dict().items()}
    state_dict = checkpoints.to_state_dict(raw_config, config, tensors, expected)
    state_dict = {name: tensor.to(torch.float32) for name, tensor in state_dict.items()}
    encoder.load_state_dict(state_dict, strict=True, assign=True)
    head = checkpoints.masked_lm_head(raw_config, config, tensors, encoder.embeddings.token.weight)
    tokenizer = Tokenizer.from_files(files.optional, max_length=config.max_tokens)
    tokenizer = _with_family_specials(tokenizer, checkpoints.special_tokens(raw_config))
    if tokenizer.vocab_size > config.vocab_size:
        raise TransformerError(
            f"The tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size} embeddings."
        )
    return Model(encoder.to(device), tokenizer, files.source, Pooling.from_files(files.optional),
                 mlm_head=head.to(device) if head is not None else None, weight_files=files.weights, raw_config=raw_config)


def _with_family_specials(tokenizer: Tokenizer, family_specials: dict[str, str] | None) -> Tokenizer:
    """Fill in the family's special tokens (RoBERTa's <mask>, ALBERT's <pad>) where the checkpoint named none.

    Repos such as FacebookAI/roberta-base have no special_tokens_map.json: the tokenizer then falls back to
    BERT's [MASK], [PAD] ..., which their vocabularies lack. A role whose token is in the vocabulary stays.
    """
    if not family_specials:
        return tokenizer
    vocab = tokenizer.backend
    chosen = dict(tokenizer.special_tokens)
    for role, token in family_specials.items():
        if vocab.token_to_id(chosen.get(role, "")) is None and vocab.token_to_id(token) is not None:
            chosen[role] = token
    return tokenizer if chosen == tokenizer.special_tokens else Tokenizer(vocab, chosen, tokenizer.max_length)
