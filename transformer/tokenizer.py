"""Text to token ids with the checkpoint's own tokenizer (``tokenizer.json``, or WordPiece from ``vocab.txt``).

Truncation is done here per call, not through the backend's global settings, so one tokenizer can serve
many threads at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Encoding, Tokenizer as Backend
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from .errors import TransformerError

BERT_SPECIALS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "unk": "[UNK]", "mask": "[MASK]"}


@dataclass(frozen=True)
class Tokenized:
    """One tokenized text or text pair, with where each token came from."""

    texts: tuple[str, ...]
    tokens: tuple[str, ...]
    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]  # character span in its own text; (0, 0) for special tokens
    sequence_ids: tuple[int | None, ...]  # 0 or 1: which text the token came from; None for special tokens
    special: tuple[bool, ...]
    n_dropped: int  # tokens cut by truncation at the model's maximum length

    @property
    def truncated(self) -> bool:
        return self.n_dropped > 0


def _truncated_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Longest-first: take tokens from the longer text until both fit (ties take from the second)."""
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    longer_cut = min(excess, abs(len_a - len_b))
    if len_a > len_b:
        len_a -= longer_cut
    else:
        len_b -= longer_cut
    excess -= longer_cut
    return len_a - excess // 2, len_b - (excess - excess // 2)


class Tokenizer:
    def __init__(self, backend: Backend, special_tokens: dict[str, str], max_length: int) -> None:
        backend.no_truncation()
        backend.no_padding()
        self.backend = backend
        self.special_tokens = special_tokens
        self.max_length = max_length
        self.unk_id = backend.token_to_id(special_tokens["unk"])
        self.pad_id = backend.token_to_id(special_tokens["pad"]) or 0

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    @classmethod
    def from_files(cls, folder_files: dict[str, Path | None], max_length: int) -> "Tokenizer":
        """Build from ``tokenizer.json`` when present, else a BERT WordPiece tokenizer from ``vocab.txt``."""
        settings = _read_json(folder_files.get("tokenizer_config.json"))
        special_map = _read_json(folder_files.get("special_tokens_map.json"))
        specials = dict(BERT_SPECIALS)
        for role in specials:
            value = special_map.get(f"{role}_token", settings.get(f"{role}_token"))
            if isinstance(value, dict):  # {"content": "[CLS]", ...}
                value = value.get("content")
            if isinstance(value, str):
                specials[role] = value
        if folder_files.get("tokenizer.json"):
            try:
                backend = Backend.from_file(str(folder_files["tokenizer.json"]))
            except Exception as err:  # the Rust parser's errors have no common Python type
                raise TransformerError(f"tokenizer.json could not be read: {err}") from None
        elif folder_files.get("vocab.txt"):
            backend = _wordpiece_from_vocab(folder_files["vocab.txt"], specials, bool(settings.get("do_lower_case", True)))
        else:
            raise TransformerError("The checkpoint has neither tokenizer.json nor vocab.txt, so its text cannot be tokenized.")
        model_max = settings.get("model_max_length")
        if isinstance(model_max, int) and 0 < model_max < max_length:
            max_length = model_max
        return cls(backend, specials, max_length)

    def encode(self, text_a: str, text_b: str | None = None, max_length: int | None = None) -> Tokenized:
        """Tokenize one text or a pair, with special tokens, truncated (longest first) to ``max_length``."""
        pair = text_b is not None
        first = self.backend.encode(text_a, add_special_tokens=False)
        second = self.backend.encode(text_b, add_special_tokens=False) if pair else None
        encoding, dropped = self._finish(first, second, max_length or self.max_length)
        texts = (text_a, text_b) if pair else (text_a,)
        return Tokenized(
            texts=texts,
            tokens=tuple(encoding.tokens),
            input_ids=tuple(encoding.ids),
            token_type_ids=tuple(encoding.type_ids),
            offsets=tuple(tuple(span) for span in encoding.offsets),
            sequence_ids=_sequence_ids(encoding.special_tokens_mask, len(first.ids)),
            special=tuple(bool(flag) for flag in encoding.special_tokens_mask),
            n_dropped=dropped,
        )

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize many single texts: (N, T) input ids padded with the pad id, and the (N, T) attention mask."""
        limit = max_length or self.max_length
        encodings = [self._finish(e, None, limit)[0] for e in self.backend.encode_batch(texts, add_special_tokens=False)]
        longest = max(len(e.ids) for e in encodings)
        ids = torch.full((len(texts), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), longest), dtype=torch.long)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids)
            mask[row, : len(encoding.ids)] = 1
        return ids, mask

    def _finish(self, first: Encoding, second: Encoding | None, max_length: int) -> tuple[Encoding, int]:
        budget = max_length - self.backend.num_special_tokens_to_add(second is not None)
        len_a, len_b = len(first.ids), len(second.ids) if second is not None else 0
        keep_a, keep_b = _truncated_lengths(len_a, len_b, budget) if second is not None else (min(len_a, budget), 0)
        if keep_a < len_a:
            first.truncate(keep_a)
        if second is not None and keep_b < len_b:
            second.truncate(keep_b)
        encoding = self.backend.post_process(first, second, add_special_tokens=True)
        return encoding, (len_a - keep_a) + (len_b - keep_b)


def _sequence_ids(special_tokens_mask: list[int], n_first: int) -> tuple[int | None, ...]:
    """Which text each token came from: the first ``n_first`` non-special tokens are text 0, the rest text 1.

    (``Encoding.sequence_ids`` after ``post_process`` of a pair loses the first text's ids, so they are
    rebuilt here from the special-token mask, which marks only the tokens the template added.)
    """
    ids: list[int | None] = []
    seen = 0
    for special in special_tokens_mask:
        if special:
            ids.append(None)
        else:
            ids.append(0 if seen < n_first else 1)
            seen += 1
    return tuple(ids)


def _read_json(path: Path | None) -> dict:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TransformerError(f"{Path(path).name} could not be read: {err}") from None
    return data if isinstance(data, dict) else {}


def _wordpiece_from_vocab(vocab_path: Path, specials: dict[str, str], lowercase: bool) -> Backend:
    """BERT's tokenizer assembled from the library's parts: clean and lowercase, split, WordPiece, add [CLS]/[SEP]."""
    vocab = models.WordPiece.read_file(str(vocab_path))
    missing = [token for token in specials.values() if token not in vocab]
    if missing:
        raise TransformerError(f"vocab.txt lacks the special token(s) {', '.join(missing)}.")
    backend = Backend(models.WordPiece(vocab, unk_token=specials["unk"], max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_token, sep_token = specials["cls"], specials["sep"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, vocab[cls_token]), (sep_token, vocab[sep_token])],
    )
    backend.decoder = decoders.WordPiece()
    backend.add_special_tokens(list(specials.values()))
    return backend
