"""What attention really moves: rollout across layers, norm-based attention, one word in two contexts.

Pure functions of a Run's tensors (and, for norms, a layer's output-projection weight): no model calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def attention_rollout(attentions: Sequence[torch.Tensor], residual_weight: float = 0.5) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", section 3).

    Each layer's head-averaged attention is mixed with the identity to account for the residual connection,
    A'_l = w I + (1 - w) mean_h A_l (rows renormalised), and the layers are chained: R_l = A'_l R_{l-1}.
    Returns (L, T, T): row i of R_l says how much of token i's representation after layer l traces back
    to each input token. Every row sums to 1.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one layer of attention")
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(f"residual_weight must be in [0, 1], got {residual_weight}")
    n_tokens = attentions[0].shape[-1]
    identity = torch.eye(n_tokens, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout, layers = identity, []
    for pattern in attentions:  # each (H, T, T)
        mixed = residual_weight * identity + (1.0 - residual_weight) * pattern.mean(0)  # (T, T)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        rollout = mixed @ rollout
        layers.append(rollout)
    return torch.stack(layers)


def value_vector_norms(pattern: torch.Tensor, value: torch.Tensor, out_weight: torch.Tensor) -> torch.Tensor:
    """Norm-based attention (Kobayashi et al. 2020, "Attention is Not Only a Weight", section 3).

    The attention output of token i is sum_h sum_j a_hij f_h(x_j), with f_h(x_j) = v_hj W_O,h the value
    vector carried through head h's slice of the output projection. Returns (H, T, T) of ||a_hij f_h(x_j)||:
    how much each head actually moves from token j into token i (the output bias is not attributed to j).

    pattern: (H, T, T) attention probabilities; value: (H, T, d_head); out_weight: (d, H * d_head) as stored
    by a Linear layer (y = x W^T + b).
    """
    n_heads, n_tokens, d_head = value.shape
    if pattern.shape != (n_heads, n_tokens, n_tokens):
        raise ValueError(f"pattern shape {tuple(pattern.shape)} does not fit value shape {tuple(value.shape)}")
    if out_weight.shape[1] != n_heads * d_head:
        raise ValueError(f"out_weight has {out_weight.shape[1]} inputs, expected {n_heads * d_head}")
    per_head_weight = out_weight.T.reshape(n_heads, d_head, -1)  # (H, d_head, d): rows of W_O per head
    transformed = torch.bmm(value, per_head_weight)  # (H, T, d): f_h(x_j)
    return pattern * transformed.norm(dim=-1).unsqueeze(1)  # (H, T, T)


def layer_value_norms(pattern: torch.Tensor, value: torch.Tensor, out_weight: torch.Tensor) -> torch.Tensor:
    """(T, T) of ||sum_h a_hij f_h(x_j)||: the whole layer's attention-moved vector from j to i."""
    n_heads, n_tokens, d_head = value.shape
    per_head_weight = out_weight.T.reshape(n_heads, d_head, -1)  # (H, d_head, d)
    transformed = torch.bmm(value, per_head_weight)  # (H, T, d)
    moved = pattern.unsqueeze(-1) * transformed.unsqueeze(1)  # (H, T_query, T_key, d)
    return moved.sum(0).norm(dim=-1)


@dataclass(frozen=True)
class WordInContexts:
    """One word's vector in two texts, compared layer by layer."""

    word: str
    positions: tuple[tuple[int, ...], tuple[int, ...]]  # token indices of the word in each text
    cosine_by_layer: torch.Tensor  # (L + 1,): embeddings, then each layer
    attention_entropy: tuple[torch.Tensor, torch.Tensor]  # (L, H) entropy of the word's attention row
    self_attention: tuple[torch.Tensor, torch.Tensor]  # (L, H) weight the word gives to its own tokens


def find_word(tokens: Sequence[str], offsets: Sequence[tuple[int, int]], text: str, word: str) -> tuple[int, ...]:
    """Token indices covering the first whole-word, case-insensitive occurrence of ``word`` in ``text``."""
    lowered, target = text.lower(), word.lower().strip()
    if not target:
        raise ValueError("the word to compare is empty")
    start = 0
    while (found := lowered.find(target, start)) >= 0:
        end = found + len(target)
        before_ok = found == 0 or not lowered[found - 1].isalnum()
        after_ok = end == len(lowered) or not lowered[end].isalnum()
        if before_ok and after_ok:
            indices = tuple(i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > found)
            if indices:
                return indices
        start = found + 1
    raise ValueError(f"{word!r} does not occur as a word in {text[:60]!r}")


def compare_word_in_contexts(run_a, run_b, word: str, text_index: int = 0) -> WordInContexts:
    """How the vector of ``word`` differs between two runs (e.g. "river bank" and "bank loan").

    A word split into several word pieces is represented by the mean of its pieces' vectors.
    """
    runs = (run_a, run_b)
    positions = tuple(
        find_word(run.tokens, _offsets_of_text(run, text_index), run.texts[text_index], word) for run in runs
    )
    vectors = [torch.stack([h[list(pos)].mean(0) for h in run.hidden_states]) for run, pos in zip(runs, positions)]
    cosine = torch.nn.functional.cosine_similarity(vectors[0], vectors[1], dim=-1)

    def attention_rows(run, pos):
        rows = torch.stack([a[:, list(pos)].mean(1) for a in run.attentions])  # (L, H, T): the word's attention
        entropy = -(rows * rows.clamp_min(1e-12).log()).sum(-1)
        return entropy, rows[..., list(pos)].sum(-1)

    (entropy_a, self_a), (entropy_b, self_b) = (attention_rows(r, p) for r, p in zip(runs, positions))
    return WordInContexts(word, positions, cosine, (entropy_a, entropy_b), (self_a, self_b))


def _offsets_of_text(run, text_index: int) -> list[tuple[int, int]]:
    """Offsets with tokens of the other text (and special tokens) blanked to (0, 0)."""
    return [span if seq == text_index else (0, 0) for span, seq in zip(run.offsets, run.tokenized.sequence_ids)]
