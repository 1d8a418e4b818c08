"""A loaded model: the encoder with its tokenizer and pooling, and the ``Run`` of one text through it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from .ablation import HeadAblation
from .config import EncoderConfig
from .encoder import Encoder
from .errors import TransformerError
from .hub import Source
from .mlm import FillMask, LogitLens, MaskedLMHead, Readout, fill_mask, logit_lens
from .steps import Recorder, Step
from .tokenizer import Tokenized, Tokenizer


@dataclass(frozen=True)
class Run:
    """Everything one forward pass computed for one text (or text pair), step by step."""

    tokenized: Tokenized
    input_ids: torch.Tensor  # (T,)
    token_type_ids: torch.Tensor  # (T,)
    steps: tuple[Step, ...]
    hidden_states: tuple[torch.Tensor, ...]  # L + 1 tensors (T, d): embedding output, then each layer's output
    attentions: tuple[torch.Tensor, ...]  # L tensors (H, T, T): softmax probabilities
    # The masked-LM head as a function of hidden states, (N, d) -> (N, vocab); None without one.
    readout: Readout | None = field(default=None, repr=False, compare=False)
    _by_name: dict[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {step.name: step for step in self.steps})

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.tokenized.tokens

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        return self.tokenized.offsets

    @property
    def texts(self) -> tuple[str, ...]:
        return self.tokenized.texts

    @property
    def truncated(self) -> bool:
        return self.tokenized.truncated

    def step(self, name: str) -> Step:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no step {name!r}; steps are {', '.join(self._by_name)}") from None

    @cached_property
    def mlm_logits(self) -> torch.Tensor | None:
        """(T, vocab) the masked-LM head's score of every vocabulary word at every position (None without a head).

        Computed on first use: the head's output is vocab-sized per token (250k wide for XLM-R).
        """
        return None if self.readout is None else self.readout(self.hidden_states[-1])

    def layer_steps(self, layer: int) -> tuple[Step, ...]:
        """The steps of layer ``layer`` in the order they were computed."""
        return tuple(step for step in self.steps if step.layer == layer)

    def cpu(self) -> "Run":
        """The same run with every tensor on the CPU (for plotting a GPU run)."""
        moved = {id(t): t.cpu() for t in (*[s.tensor for s in self.steps], self.input_ids, self.token_type_ids)}
        steps = tuple(Step(s.name, moved[id(s.tensor)], s.axes, s.doc, s.formula) for s in self.steps)
        return _assemble(self.tokenized, moved[id(self.input_ids)], moved[id(self.token_type_ids)], steps, self.readout)


def _assemble(
    tokenized: Tokenized,
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor,
    steps: tuple[Step, ...],
    readout: Readout | None = None,
) -> Run:
    """Build a Run whose hidden states and attentions are the very tensors of the steps that made them."""
    layer_output: dict[int, Step] = {}  # a layer's last step is its output (ln2 post-LN, resid_post pre-LN)
    for step in steps:
        if step.layer is not None:
            layer_output[step.layer] = step
    by_name = {step.name: step for step in steps}
    n_layers = len(layer_output)
    # Layer 0's input: the embeddings, projected to the model width when they are factorised.
    embedded = by_name.get("embeddings.project") or by_name["embeddings.norm"]
    return Run(
        tokenized=tokenized,
        input_ids=input_ids,
        token_type_ids=token_type_ids,
        steps=steps,
        hidden_states=(embedded.tensor, *(layer_output[i].tensor for i in range(n_layers))),
        attentions=tuple(by_name[f"layers.{i}.attn.pattern"].tensor for i in range(n_layers)),
        readout=readout,
    )


@dataclass(frozen=True)
class Pooling:
    """How ``embed`` turns token vectors into one sentence vector."""

    mode: str = "mean"  # "mean" over real tokens, or "cls": the first token's vector
    normalize: bool = False  # L2-normalise the result
    max_length: int | None = None  # tokens kept per text (sentence-transformers' max_seq_length)

    @classmethod
    def from_files(cls, optional: dict[str, Path | None]) -> "Pooling":
        """sentence-transformers' settings when the checkpoint has them; plain mean pooling otherwise."""
        pooling = _json_or_empty(optional.get("pooling_config"))
        modules = _json_or_empty(optional.get("modules.json"), default=[])
        sentence = _json_or_empty(optional.get("sentence_bert_config.json"))
        mode = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules if isinstance(m, dict))
        max_length = sentence.get("max_seq_length")
        return cls(mode, normalize, max_length if isinstance(max_length, int) and max_length > 0 else None)


def _json_or_empty(path: Path | None, default=None):
    if path is None:
        return {} if default is None else default
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {} if default is None else default


class Model:
    """An encoder with the tokenizer, pooling and provenance of the checkpoint it was loaded from."""

    def __init__(
        self,
        encoder: Encoder,
        tokenizer: Tokenizer,
        source: Source,
        pooling: Pooling = Pooling(),
        mlm_head: MaskedLMHead | None = None,
        weight_files: tuple[Path, ...] = (),
        raw_config: dict | None = None,
    ) -> None:
        self.encoder = encoder.eval().requires_grad_(False)  # inference only: no autograd bookkeeping
        self.tokenizer = tokenizer
        self.source = source
        self.pooling = pooling
        self.mlm_head = mlm_head.eval().requires_grad_(False) if mlm_head is not None else None
        self.weight_files = weight_files  # the safetensors files the weights came from (for the weight map)
        self.raw_config = raw_config or {}  # the checkpoint's config.json as read

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @property
    def device(self) -> torch.device:
        return self.encoder.embeddings.token.weight.device

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters())

    @property
    def max_tokens(self) -> int:
        return min(self.config.max_tokens, self.tokenizer.max_length)

    @property
    def has_mlm_head(self) -> bool:
        """Whether the checkpoint came with its masked-LM head, so fill_mask and logit_lens can work."""
        return self.mlm_head is not None

    @property
    def mask_token(self) -> str | None:
        """The token to write where fill_mask should predict a word ("[MASK]", "<mask>"), None if the vocabulary has none."""
        token = self.tokenizer.special_tokens.get("mask")
        return token if token is not None and self.tokenizer.backend.token_to_id(token) is not None else None

    def to(self, device: str | torch.device) -> "Model":
        self.encoder.to(device)
        if self.mlm_head is not None:
            self.mlm_head.to(device)
        return self

    def tokenize(self, text_a: str, text_b: str | None = None) -> Tokenized:
        for text in (text_a, text_b):
            if text is not None and not isinstance(text, str):
                raise TransformerError(f"Text must be a string, not {type(text).__name__}.")
        return self.tokenizer.encode(text_a, text_b, max_length=self.max_tokens)

    @torch.inference_mode()
    def run(self, text_a: str, text_b: str | None = None, ablate: Iterable[tuple[int, int]] = ()) -> Run:
        """Tokenize and encode one text (or a pair), recording every step of the forward pass.

        ``ablate``: (layer, head) pairs to switch off (their weighted sum of values is zeroed).
        """
        tokenized = self.tokenize(text_a, text_b)
        input_ids = torch.tensor([tokenized.input_ids], device=self.device)  # (1, T)
        token_type_ids = torch.tensor([tokenized.token_type_ids], device=self.device)  # (1, T)
        if not self.config.use_segments:
            token_type_ids = torch.zeros_like(token_type_ids)  # what the encoder uses: every token in segment 0
        ablate = list(ablate)
        for layer, head in ablate:
            if not (0 <= layer < self.config.n_layers and 0 <= head < self.config.n_heads):
                raise TransformerError(f"There is no head {head} in layer {layer}: this model has "
                                       f"{self.config.n_layers} layers of {self.config.n_heads} heads.")
        recorder = HeadAblation(ablate) if ablate else Recorder()
        recorder.docs = self.encoder.step_docs  # the steps explained for this model's configuration
        self.encoder(input_ids, token_type_ids, record=recorder)
        readout = self._readout if self.mlm_head is not None else None
        return _assemble(tokenized, input_ids[0], token_type_ids[0], tuple(recorder.steps), readout)

    @torch.inference_mode()
    def _readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, d) hidden states -> (N, vocab) masked-LM logits, on the hidden states' device."""
        x = hidden.to(self.device)
        if self.encoder.final_norm is not None:  # pre-LN stacks normalise the residual stream before any readout
            x = self.encoder.final_norm(x)
        return self.mlm_head(x).to(hidden.device)

    def _require_mlm_head(self) -> None:
        if self.mlm_head is None:
            raise TransformerError(
                "This checkpoint has no masked-language-model head, so it cannot predict masked words: load one "
                "saved with its pre-training head (for example google-bert/bert-base-uncased or distilbert/distilbert-base-uncased)."
            )

    def fill_mask(self, text: "str | Run", top_k: int = 5, text_b: str | None = None) -> FillMask:
        """For each mask token in the text (see ``mask_token``), the top_k words with their probabilities.

        ``text`` may also be a Run (for example one with ablated heads), read as it is.
        """
        self._require_mlm_head()
        if self.mask_token is None:
            raise TransformerError("This model's vocabulary has no mask token, so it cannot predict masked words.")
        run = text if isinstance(text, Run) else self.run(text, text_b)
        return fill_mask(run, self._readout, self.tokenizer, self.tokenizer.backend.token_to_id(self.mask_token), top_k)

    def logit_lens(self, text_or_run: "str | Run", position: int | None = None, top_k: int = 5) -> LogitLens:
        """The masked-LM head applied after the embeddings and after every layer, at one position.

        ``position`` indexes run.tokens; None means the first mask token. The last row is what fill_mask says.
        """
        self._require_mlm_head()
        run = self.run(text_or_run) if isinstance(text_or_run, str) else text_or_run
        if not isinstance(run, Run):
            raise TransformerError(f"logit_lens takes a text or a Run, not {type(text_or_run).__name__}.")
        if position is None:
            mask_id = self.tokenizer.backend.token_to_id(self.mask_token) if self.mask_token else None
            masks = [i for i, token_id in enumerate(run.input_ids.tolist()) if token_id == mask_id]
            if not masks:
                raise TransformerError(f"Choose a position: the text has no {self.mask_token or 'mask'} token to look at.")
            position = masks[0]
        return logit_lens(run, self._readout, self.tokenizer, position, top_k)

    @torch.inference_mode()
    def embed(self, texts: list[str] | str, batch_size: int = 32) -> torch.Tensor:
        """(N, d) sentence embeddings on the CPU, pooled as the checkpoint's sentence-transformers config says."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TransformerError("embed() takes a non-empty list of strings.")
        limit = min(self.pooling.max_length or self.max_tokens, self.max_tokens)
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result = torch.empty(len(texts), self.config.d_model)
        for start in range(0, len(texts), batch_size):
            chosen = order[start : start + batch_size]
            input_ids, mask = self.tokenizer.encode_batch([texts[i] for i in chosen], max_length=limit)
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            hidden = self.encoder(input_ids, torch.zeros_like(input_ids), mask)  # (B, T, d)
            result[chosen] = self._pool(hidden, mask).float().cpu()
        return result

    def sentence_embedding(self, run: Run) -> torch.Tensor:
        """(d,) the run's sentence embedding, pooled like ``embed`` from its last hidden states.

        Equal to ``embed`` for texts within the pooling's ``max_length`` (embed cuts longer texts there).
        """
        hidden = run.hidden_states[-1][None]  # (1, T, d)
        if self.encoder.final_norm is not None:
            hidden = self.encoder.final_norm(hidden.to(self.device))
        return self._pool(hidden, torch.ones(hidden.shape[:2], device=hidden.device))[0].float().cpu()

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling.mode == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=-1) if self.pooling.normalize else pooled
