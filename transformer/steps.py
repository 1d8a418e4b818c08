"""The step record: every intermediate of the forward pass as a named, explained tensor.

Modules call ``record(name, tensor)`` at each step. With no recorder they pass a ``None`` and nothing
is kept; with a ``Recorder`` a reference to the tensor (never a copy) is stored under a name that
follows the module tree, such as ``layers.0.attn.pattern``. Nothing is attached to the modules, so
nothing outlives the call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import torch

from .config import EncoderConfig

# What each step is, keyed by its name without the ``layers.N.`` prefix:
# (axis names, one plain sentence, formula in LaTeX).
STEP_DOCS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "embeddings.token": (
        ("token", "d_model"),
        "Each token id picks its row of the learned token-embedding table.",
        r"E_{\text{tok}}[\mathrm{id}_t]",
    ),
    "embeddings.position": (
        ("token", "d_model"),
        "Each position 0, 1, 2, ... gets its own vector, so the model can tell word order apart.",
        r"E_{\text{pos}}[t]",
    ),
    "embeddings.segment": (
        ("token", "d_model"),
        "Each token gets the vector of its segment: 0 for the first text, 1 for the second of a pair.",
        r"E_{\text{seg}}[s_t]",
    ),
    "embeddings.sum": (
        ("token", "d_model"),
        "The token, position and segment vectors are added into one input vector per token.",
        r"e_t = E_{\text{tok}}[\mathrm{id}_t] + E_{\text{pos}}[t] + E_{\text{seg}}[s_t]",
    ),
    "embeddings.norm": (
        ("token", "d_model"),
        "LayerNorm rescales each token vector to zero mean and unit variance, then applies a learned scale and shift.",
        r"x^{(0)}_t = \gamma \odot \frac{e_t - \mu_t}{\sqrt{\sigma_t^2 + \epsilon}} + \beta",
    ),
    "embeddings.project": (
        ("token", "d_model"),
        "A learned linear map widens each normalised embedding from the narrow embedding width to the model width.",
        r"x^{(0)}_t = \hat{e}_t W_E + b_E",
    ),
    "ln1": (
        ("token", "d_model"),
        "LayerNorm normalises each token vector (zero mean, unit variance) and applies a learned scale and shift.",
        r"\mathrm{LN}(z)_t = \gamma \odot \frac{z_t - \mu_t}{\sqrt{\sigma_t^2 + \epsilon}} + \beta",
    ),
    "attn.q": (
        ("head", "token", "d_head"),
        "Queries: each token's vector is projected to what it is looking for, split into one slice per head.",
        r"Q = x W_Q + b_Q \;\to\; (H, T, d_{\text{head}})",
    ),
    "attn.k": (
        ("head", "token", "d_head"),
        "Keys: each token's vector is projected to what it offers to be found by, one slice per head.",
        r"K = x W_K + b_K \;\to\; (H, T, d_{\text{head}})",
    ),
    "attn.v": (
        ("head", "token", "d_head"),
        "Values: each token's vector is projected to the content it passes on when attended to, one slice per head.",
        r"V = x W_V + b_V \;\to\; (H, T, d_{\text{head}})",
    ),
    "attn.scores": (
        ("head", "query", "key"),
        "Each query is compared with every key by a dot product, scaled by the square root of the head width; padding keys get a huge negative score.",
        r"S_h = \frac{Q_h K_h^\top}{\sqrt{d_{\text{head}}}} + M",
    ),
    "attn.pattern": (
        ("head", "query", "key"),
        "Softmax turns each row of scores into attention weights that are positive and sum to 1.",
        r"A_h = \mathrm{softmax}_{\text{key}}(S_h)",
    ),
    "attn.context": (
        ("head", "token", "d_head"),
        "Each token takes the attention-weighted average of the value vectors, separately in every head.",
        r"C_h = A_h V_h",
    ),
    "attn.out": (
        ("token", "d_model"),
        "The heads' results are concatenated and mixed back to the model width by the output projection.",
        r"\mathrm{Attn}(x) = [C_1; \dots; C_H]\, W_O + b_O",
    ),
    "resid_mid": (
        ("token", "d_model"),
        "The residual connection adds the attention output to the layer's input, so information can flow past the sublayer.",
        r"r = x + \mathrm{Attn}(x)",
    ),
    "ffn.pre_act": (
        ("token", "d_ff"),
        "The feed-forward network first widens each token vector with a linear map (to 4 times the model width in BERT).",
        r"u = y W_1 + b_1",
    ),
    "ffn.act": (
        ("token", "d_ff"),
        "A non-linearity (GELU in BERT) is applied to every element, letting the network compute more than linear maps.",
        r"\mathrm{GELU}(u) = u \cdot \Phi(u)",
    ),
    "ffn.out": (
        ("token", "d_model"),
        "A second linear map brings each token vector back to the model width; tokens are processed independently.",
        r"\mathrm{FFN}(y) = \mathrm{GELU}(u)\, W_2 + b_2",
    ),
    "resid_post": (
        ("token", "d_model"),
        "The second residual connection adds the feed-forward output to its input.",
        r"r' = y + \mathrm{FFN}(y)",
    ),
    "ln2": (
        ("token", "d_model"),
        "The second LayerNorm normalises each token vector again, giving the layer's output.",
        r"\mathrm{LN}(z)_t = \gamma \odot \frac{z_t - \mu_t}{\sqrt{\sigma_t^2 + \epsilon}} + \beta",
    ),
    "final_norm": (
        ("token", "d_model"),
        "Pre-LN stacks end with one more LayerNorm over the last residual stream.",
        r"\mathrm{LN}(r'_L)",
    ),
}

_LAYER_PREFIX = re.compile(r"^layers\.\d+\.")

# Layer steps computed with the layer's own weights (the others only add or pass values on).
_WEIGHTED_KINDS = ("attn.q", "attn.k", "attn.v", "attn.out", "ln1", "ffn.pre_act", "ffn.out", "ln2")
SHARED_WEIGHTS_NOTE = " Every layer of this model applies the same, shared weights here (ALBERT)."


def step_docs(config: EncoderConfig) -> dict[str, tuple[tuple[str, ...], str, str]]:
    """STEP_DOCS in the words of one configuration: segments, position rows, embedding width, shared layers."""
    docs = dict(STEP_DOCS)

    def reword(kind: str, doc: str | None = None, formula: str | None = None, axes: tuple[str, ...] | None = None) -> None:
        old_axes, old_doc, old_formula = docs[kind]
        docs[kind] = (axes or old_axes, doc or old_doc, formula or old_formula)

    # The input sum's terms, each as this configuration computes it.
    default_terms = (r"E_{\text{tok}}[\mathrm{id}_t]", r"E_{\text{pos}}[t]", r" + E_{\text{seg}}[s_t]")
    token, position, segment = default_terms
    if config.type_vocab_size == 0:
        segment = ""
        reword("embeddings.sum", "The token and position vectors are added into one input vector per token (this model has no segments).")
    elif not config.use_segments:
        segment = r" + E_{\text{seg}}[0]"
        reword("embeddings.segment", "This model has no segments: every token gets the same learned type vector (row 0).",
               r"E_{\text{seg}}[0]")
    if config.positional == "sinusoidal":
        position = r"\mathrm{PE}[t]"
        reword("embeddings.position", "Each position 0, 1, 2, ... gets a fixed sinusoidal vector (Vaswani et al. 2017), "
               "so the model can tell word order apart.", position)
    if config.position_offset:
        k = config.position_offset
        position = rf"E_{{\text{{pos}}}}[t + {k}]"
        reword("embeddings.position", f"Each position gets its own learned vector; rows are counted from {k} "
               f"(row {k - 1} is for padding), so token t takes row t + {k}.", position)
    if (token, position, segment) != default_terms:
        reword("embeddings.sum", formula=f"e_t = {token} + {position}{segment}")
    if config.embedding_size is not None:
        narrow = ("token", "d_embed")
        for kind in ("embeddings.token", "embeddings.position", "embeddings.segment", "embeddings.sum"):
            reword(kind, axes=narrow)
        reword("embeddings.norm", axes=narrow,
               formula=r"\hat{e}_t = \gamma \odot \frac{e_t - \mu_t}{\sqrt{\sigma_t^2 + \epsilon}} + \beta")
    if config.shared_layers:
        for kind in _WEIGHTED_KINDS:
            reword(kind, docs[kind][1] + SHARED_WEIGHTS_NOTE)
    return docs


# A step reporter: takes a step's name and tensor, returns the tensor unchanged.
Record = Callable[[str, torch.Tensor], torch.Tensor]


def passthrough(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """The reporter used when nothing is recorded."""
    return tensor


@dataclass(frozen=True)
class Step:
    """One recorded intermediate: its tensor (a reference, not a copy) and what it means."""

    name: str
    tensor: torch.Tensor
    axes: tuple[str, ...]
    doc: str
    formula: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    @property
    def layer(self) -> int | None:
        """The layer index for ``layers.N.*`` steps, ``None`` for embeddings and the final norm."""
        if self.name.startswith("layers."):
            return int(self.name.split(".")[1])
        return None

    @property
    def kind(self) -> str:
        """The step's name without its layer prefix, e.g. ``attn.pattern``."""
        return _LAYER_PREFIX.sub("", self.name)


class Recorder:
    """Collects the steps of one forward pass of a single sequence (batch size 1).

    ``docs`` explains the steps (``Encoder.step_docs`` words them for its configuration; STEP_DOCS by default).
    """

    def __init__(self, docs: Mapping[str, tuple[tuple[str, ...], str, str]] | None = None) -> None:
        self.steps: list[Step] = []
        self.docs = STEP_DOCS if docs is None else docs

    def __call__(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        axes, doc, formula = self.docs[_LAYER_PREFIX.sub("", name)]
        # tensor[0] drops the batch axis as a view: the record shares memory with the forward pass.
        self.steps.append(Step(name, tensor[0], axes, doc, formula))
        return tensor
