"""Masked-word prediction: the pre-training head, fill-mask, and a layer-by-layer logit lens.

Every masked-LM head of the BERT family has one shape: a linear map, an activation and a LayerNorm
transform each token vector, then a linear map to the vocabulary scores each word. The last map is
usually the token-embedding table itself (tied): a word scores high when the transformed vector
points the way the word's own embedding does. ``checkpoints`` says where each family keeps these.

The logit lens (nostalgebraist 2020) applies the same head to every layer's output instead of only the
last, showing how the prediction forms through the stack. Its last row is the fill-mask prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .config import EncoderConfig
from .errors import TransformerError
from .feed_forward import ACTIVATION_FUNCTIONS
from .norm import LayerNorm
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from .model import Run

MAX_TOP_K = 100  # predictions listed per position: more is never readable, and costs a sort


@dataclass(frozen=True)
class HeadConfig:
    width: int  # the transform's output width: d_model, or the embedding width when the embeddings are factorised
    activation: str  # one of feed_forward.ACTIVATION_FUNCTIONS
    tied: bool  # True: the output matrix is the token-embedding table


class MaskedLMHead(nn.Module):
    """logits = LN(act(x W_T + b_T)) W_V^T + b_V, with W_V the token embeddings when tied."""

    def __init__(self, config: EncoderConfig, head: HeadConfig) -> None:
        super().__init__()
        self.head = head
        self.transform = nn.Linear(config.d_model, head.width)
        self.activation = ACTIVATION_FUNCTIONS[head.activation]
        self.norm = LayerNorm(config, head.width)
        self.decoder = nn.Linear(head.width, config.vocab_size)  # weight: (vocab, width), like the embedding table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_model) -> one score per vocabulary word (..., vocab)."""
        return self.decoder(self.norm(self.activation(self.transform(x))))


# The head applied to hidden states: (N, d_model) -> (N, vocab) logits, on the hidden states' device.
Readout = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Prediction:
    token_id: int
    token: str  # the vocabulary entry, e.g. "##s", "Ġcat" or "▁cat"
    text: str  # the entry decoded to text and stripped, e.g. "s", "cat"
    probability: float


@dataclass(frozen=True)
class MaskPrediction:
    position: int  # index of the mask token in run.tokens
    predictions: tuple[Prediction, ...]  # best first
    probabilities: torch.Tensor  # (top_k,) the predictions' probabilities, as a tensor for plotting
    token_ids: torch.Tensor  # (top_k,) their ids


@dataclass(frozen=True)
class FillMask:
    run: "Run"
    masks: tuple[MaskPrediction, ...]  # one per mask token, in text order


@dataclass(frozen=True)
class LogitLens:
    """The head applied after every layer at one position: rows are the embeddings, then layers 1..L."""

    position: int
    token: str  # the input token at that position
    labels: tuple[str, ...]  # "embeddings", "layer 1", ..., "layer L"
    token_ids: torch.Tensor  # (L + 1, top_k) the top words of each row, best first
    probabilities: torch.Tensor  # (L + 1, top_k) their probabilities
    predictions: tuple[tuple[Prediction, ...], ...]  # the same, as readable predictions
    answer: Prediction  # the final layer's top word (the fill-mask answer)
    answer_ranks: torch.Tensor  # (L + 1,) rank of the answer in each row: 1 = top
    answer_probabilities: torch.Tensor  # (L + 1,) its probability in each row


def scores_at(readout: Readout, states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, vocab) logits and their softmax for each (d_model,) state, computed one state at a time.

    One row per call keeps every row's arithmetic the same however many rows are asked for, so the
    lens's last row and fill-mask's answer are equal to the last bit.
    """
    logits = [readout(state[None])[0] for state in states]  # N tensors (vocab,)
    probabilities = [torch.softmax(row, dim=-1) for row in logits]
    return torch.stack(logits), torch.stack(probabilities)


def _top(probabilities: torch.Tensor, top_k: int, tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor, tuple[Prediction, ...]]:
    values, ids = probabilities.topk(top_k)  # (top_k,) each, best first
    predictions = tuple(
        Prediction(int(i), tokenizer.backend.id_to_token(int(i)) or "", tokenizer.backend.decode([int(i)]).strip(), float(p))
        for p, i in zip(values.tolist(), ids.tolist())
    )
    return values, ids, predictions


def _checked_top_k(top_k: int, vocab_size: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise TransformerError(f"top_k must be a whole number of at least 1, not {top_k!r}.")
    return min(top_k, MAX_TOP_K, vocab_size)


def fill_mask(run: "Run", readout: Readout, tokenizer: Tokenizer, mask_id: int, top_k: int) -> FillMask:
    """The top-k words, with probabilities, for every mask token of ``run``."""
    top_k = _checked_top_k(top_k, tokenizer.vocab_size)
    positions = [i for i, token_id in enumerate(run.input_ids.tolist()) if token_id == mask_id]
    if not positions:
        mask = tokenizer.backend.id_to_token(mask_id)
        raise TransformerError(f"The text has no {mask} token: write {mask} where the word to predict goes.")
    final = run.hidden_states[-1]  # (T, d)
    _, probabilities = scores_at(readout, [final[i] for i in positions])  # (M, vocab)
    masks = []
    for position, row in zip(positions, probabilities):
        values, ids, predictions = _top(row, top_k, tokenizer)
        masks.append(MaskPrediction(position, predictions, values, ids))
    return FillMask(run, tuple(masks))


def logit_lens(run: "Run", readout: Readout, tokenizer: Tokenizer, position: int, top_k: int) -> LogitLens:
    """The head's top-k words at ``position`` after the embeddings and after each layer."""
    top_k = _checked_top_k(top_k, tokenizer.vocab_size)
    n_tokens = len(run.tokens)
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < n_tokens:
        raise TransformerError(f"Position {position!r} is not a token of this text: choose 0 to {n_tokens - 1}.")
    logits, probabilities = scores_at(readout, [state[position] for state in run.hidden_states])  # (L + 1, vocab)
    rows = [_top(row, top_k, tokenizer) for row in probabilities]
    answer = rows[-1][2][0]
    # Ranked by logit, which never underflows: 1 + the number of words scored above the answer in that row.
    answer_ranks = 1 + (logits > logits[:, answer.token_id, None]).sum(-1)  # (L + 1,)
    n_layers = len(run.hidden_states) - 1
    return LogitLens(
        position=position,
        token=run.tokens[position],
        labels=("embeddings", *(f"layer {i}" for i in range(1, n_layers + 1))),
        token_ids=torch.stack([ids for _, ids, _ in rows]),
        probabilities=torch.stack([values for values, _, _ in rows]),
        predictions=tuple(predictions for _, _, predictions in rows),
        answer=answer,
        answer_ranks=answer_ranks,
        answer_probabilities=probabilities[:, answer.token_id],
    )
