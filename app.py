"""Transformer Explainer: a Gradio app that draws every step of a BERT-family encoder on your text.

Run locally with ``python app.py`` (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT choose the address); on Hugging
Face Spaces the same file runs on CPU, on a GPU, or on ZeroGPU. The app holds no model maths: the
``transformer`` package encodes the text and records each step; this file caches runs, checks inputs and
draws what was recorded with ``transformer.plots``.

Layout of this file, as in Gradio's demo apps: settings and caches, input checks, the shared computations,
the API endpoints and the page's handlers, then ``with gr.Blocks() as demo:`` with the tabs and the event
wiring. Importing it loads no model and starts no server.

Every computation is also a named API endpoint taking plain values (texts, a Hub repo id and revision,
layer/head/step numbers), so it can be scripted with gradio_client without any session state:

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    client.predict("The cat sat.", "", "", "", api_name="/tokenize")
"""

from __future__ import annotations

try:  # ZeroGPU on Hugging Face Spaces: must be imported before anything initialises CUDA.
    import spaces
except ImportError:  # anywhere else the decorated functions simply run where the model is
    spaces = None

import html
import json
import logging
import math
import os
import re
import shutil
import tempfile
import zipfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch

import transformer
from transformer import analysis, export, plots, weight_map
from transformer.step_source import step_source

log = logging.getLogger("transformer-explainer")

# ---------------------------------------------------------------------------------------------- settings

MAX_CHARS = 20_000  # characters read per text; longer input is cut before tokenizing, with a notice
MAX_ID_CHARS = 200  # a Hub repo id (96 characters a part on the Hub) or revision longer than this is refused
MODEL_CACHE_SIZE = 2  # models loaded from the Hub kept at once (the bundled default is always kept)
RUN_CACHE_SIZE = 48  # encoder runs kept (each serves every tab)
RUN_CACHE_BYTES = 1536 * 2**20  # ... and at most this much tensor memory (a 512-token run of a big model is ~0.4 GB)
FIGURE_CACHE_SIZE = 256  # rendered PNGs kept, so revisiting a tab or a step draws nothing
# Requests waiting at most; more get "queue full". EXPLAINER_QUEUE_SIZE overrides it (tests flood a small queue).
QUEUE_SIZE = int(os.environ.get("EXPLAINER_QUEUE_SIZE", "64"))
CONCURRENCY = 2  # requests computed at once (a CPU Space has 2 cores)
# Sessions Gradio keeps in memory; the oldest are dropped. Each API call without a session is a new session of
# ~0.3 MB (Gradio copies the config of every component into it), so Gradio's default of 10,000 lets anyone grow
# the server by ~3 GB. 1,000 is far more people than one Space serves at once. EXPLAINER_SESSION_CAPACITY overrides it.
SESSION_CAPACITY = int(os.environ.get("EXPLAINER_SESSION_CAPACITY", "1000"))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Hub weights larger than this are refused before download (by the size the Hub announces): anyone can type a
# repo id, and a 10 GB checkpoint would fill the disk and memory of a Space. 2.5 GB admits the large BERT-family
# models (xlm-roberta-large is 2.24 GB). EXPLAINER_MAX_WEIGHT_BYTES overrides it.
MAX_WEIGHT_BYTES = int(os.environ.get("EXPLAINER_MAX_WEIGHT_BYTES", "2500000000"))
DEFAULT_KEY: tuple[str, str] = ("", "")  # (repo id, revision) of the bundled default model
MAX_TOP_K = 50  # predictions listed per mask at most
EXPORT_CACHE_SIZE = 24  # export folders kept on disk at once; older ones are deleted
MAX_CSV_VALUES = 1_000_000  # numbers written as CSV at most (a CSV row per number is slow and ~20x bigger)
MAX_RUN_EXPORT_BYTES = 1024 * 2**20  # the whole-run download at most (a 512-token BERT-base run is ~0.5 GB)
# Well-known checkpoints with their masked-LM head, offered next to the bundled default.
SUGGESTED_MODELS = (
    "google-bert/bert-base-uncased",
    "distilbert/distilbert-base-uncased",
    "FacebookAI/roberta-base",
    "google/electra-small-generator",
    "albert/albert-base-v2",
)

ModelKey = tuple[str, str]


class InputProblem(Exception):
    """Input a user can correct: reported as one clear line, never as a stack trace."""


# ------------------------------------------------------------------------------------------------ caches


class LruCache:
    """A thread-safe least-recently-used cache whose values are built at most once per key at a time.

    Concurrent requests for the same missing key wait for the first one's result instead of repeating
    the work (ten users asking for the same model load it once). Bounded by entries and by ``size_of``.
    """

    def __init__(self, max_entries: int, max_size: int | None = None, size_of: Callable[[Any], int] = lambda _: 0,
                 on_evict: Callable[[Any], None] | None = None) -> None:
        self.max_entries, self.max_size, self.size_of, self.on_evict = max_entries, max_size, size_of, on_evict
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        return None

    def get_or_build(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            found = self.get(key)
            if found is not None:
                return found
            try:
                value = build()
            finally:
                with self._lock:
                    self._building.pop(key, None)
            self._store(key, value)
            return value

    def _store(self, key: Hashable, value: Any) -> None:
        size = self.size_of(value)
        evicted = []
        with self._lock:
            self._items[key] = (value, size)
            self._size += size
            while len(self._items) > 1 and (
                len(self._items) > self.max_entries or (self.max_size is not None and self._size > self.max_size)
            ):
                _, (old, old_size) = self._items.popitem(last=False)
                self._size -= old_size
                evicted.append(old)
        for old in evicted:
            if self.on_evict is not None:
                self.on_evict(old)

    def __len__(self) -> int:
        return len(self._items)


def _run_bytes(run: transformer.Run) -> int:
    return sum(step.tensor.nelement() * step.tensor.element_size() for step in run.steps)


def _delete_file(path: Path) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _delete_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


_models = LruCache(MODEL_CACHE_SIZE)
_runs = LruCache(RUN_CACHE_SIZE, RUN_CACHE_BYTES, _run_bytes)
_embeddings = LruCache(512)
_figures = LruCache(FIGURE_CACHE_SIZE, on_evict=_delete_file)
_exports = LruCache(EXPORT_CACHE_SIZE, on_evict=_delete_folder)
_weight_maps = LruCache(MODEL_CACHE_SIZE + 1)
_results = LruCache(256)  # plain-data answers (fill-mask, logit lens, ablation) that take a while to compute
_default_model: transformer.Model | None = None
_default_lock = threading.Lock()
_figure_dir: Path | None = None


def default_model() -> transformer.Model:
    """The bundled model, loaded once on first use and kept for the life of the server."""
    global _default_model
    with _default_lock:
        if _default_model is None:
            _default_model = transformer.from_pretrained(device=DEVICE)
        return _default_model


def model_key(model_id: Any, revision: Any) -> ModelKey:
    """The cache key of a model choice: ``("", "")`` is the bundled default, else (Hub repo id, revision)."""
    for name, value in (("model_id", model_id), ("revision", revision)):
        if value is not None and not isinstance(value, str):
            raise InputProblem(f"{name} must be text (a Hub repo id such as 'google-bert/bert-base-uncased'), not {type(value).__name__}.")
    repo, rev = (model_id or "").strip(), (revision or "").strip()
    for name, value in (("Hub repo id", repo), ("revision", rev)):
        if len(value) > MAX_ID_CHARS:  # refused before it is quoted: a megabyte id must not make a megabyte message
            raise InputProblem(f"That is not a valid {name}: it has {len(value):,} characters, at most {MAX_ID_CHARS} are allowed.")
    if not repo:
        if rev:
            raise InputProblem("A revision was given without a Hub repo id; enter the repo id too.")
        return DEFAULT_KEY
    bundled = default_model().source
    if repo == bundled.location and rev in ("", bundled.revision):
        return DEFAULT_KEY  # the very files that are bundled (same commit, verified hashes)
    return repo, rev


def get_model(key: ModelKey) -> transformer.Model:
    """The model for ``key``, from the shared cache; user-typed ids can never name a server folder."""
    if key == DEFAULT_KEY:
        return default_model()
    repo, rev = key
    return _models.get_or_build(key, lambda: transformer.from_pretrained(
        repo, rev or None, device=DEVICE, allow_local=False, max_weight_bytes=MAX_WEIGHT_BYTES))


def _on_gpu(function: Callable) -> Callable:
    """On ZeroGPU, run ``function`` with a GPU attached (only the forward passes are decorated)."""
    return spaces.GPU(function) if spaces is not None else function


@_on_gpu
def _encode(key: ModelKey, text_a: str, text_b: str | None, ablate: tuple[tuple[int, int], ...] = ()) -> transformer.Run:
    """The one forward pass per (model, texts, heads switched off): every step recorded, moved to the CPU for drawing."""
    return get_model(key).run(text_a, text_b, ablate=ablate).cpu()


@_on_gpu
def _embed(key: ModelKey, text: str) -> np.ndarray:
    return get_model(key).embed([text])[0].numpy()


# The masked-LM head runs on the model's device too, so on ZeroGPU its readouts need the GPU attached.
@_on_gpu
def _fill_mask(key: ModelKey, run: transformer.Run, top_k: int) -> transformer.FillMask:
    return get_model(key).fill_mask(run, top_k)


@_on_gpu
def _logit_lens(key: ModelKey, run: transformer.Run, position: int, top_k: int) -> transformer.LogitLens:
    return get_model(key).logit_lens(run, position, top_k)


@_on_gpu
def _mask_log_probabilities(run: transformer.Run, positions: list[int]) -> torch.Tensor:
    """(M, vocab) log-probabilities of the head's words at ``positions`` after the last layer."""
    return torch.log_softmax(run.readout(run.hidden_states[-1][positions]).float(), dim=-1)


# ------------------------------------------------------------------------------------------ input checks


@dataclass(frozen=True)
class Texts:
    """The text (or text pair) to run, after the checks; ``notices`` says what was changed."""

    a: str
    b: str | None
    notices: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_texts(text_a: Any, text_b: Any = None) -> Texts:
    """Check the inputs: text is required, a blank second text means 'no pair', very long text is cut."""
    cleaned, notices = [], []
    for name, text in (("text", text_a), ("second text", text_b)):
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise InputProblem(f"The {name} must be a string, not {type(text).__name__}.")
        if len(text) > MAX_CHARS:
            notices.append(f"The {name} has {len(text):,} characters; only the first {MAX_CHARS:,} were read.")
            text = text[:MAX_CHARS]
        # JSON can carry lone UTF-16 surrogates ("\ud800"); they are not characters, and the tokenizer refuses them.
        text, replaced = LONE_SURROGATE.subn("\ufffd", text)
        if replaced:
            notices.append(f"The {name} had {replaced:,} invalid characters (unpaired surrogates); each became \ufffd.")
        cleaned.append(text)
    first, second = cleaned
    if not first.strip():
        raise InputProblem("The text is empty: type a sentence (or pick an example) and press Run.")
    return Texts(first, second if second.strip() else None, tuple(notices))


def whole_number(value: Any, name: str, low: int, high: int, meaning: str = "") -> int:
    """``value`` as an int in [low, high], or an InputProblem that says what is allowed."""
    allowed = f"{low} to {high}" + (f" ({meaning})" if meaning else "")
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,9}\s*", value):
        number = int(value)
    if number is None:
        raise InputProblem(f"{name} must be a whole number from {allowed}; got {value!r}.")
    if not low <= number <= high:
        shown = number if abs(number) < 10**12 else f"{number:.3g}"  # not 300 digits for 1e300
        raise InputProblem(f"{name} {shown} is out of range: use {allowed}.")
    return number


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 400 else text[:399] + "…"


# --------------------------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class Job:
    """A checked request: the model, its key and the run of the texts through it."""

    key: ModelKey
    model: transformer.Model
    texts: Texts
    run: transformer.Run
    seconds: float  # time spent encoding (0 when the run came from the cache)
    ablate: tuple[tuple[int, int], ...] = ()  # (layer, head) pairs switched off in this run

    @property
    def cache_key(self) -> tuple:
        return _run_key(self.key, self.texts, self.ablate)


def _run_key(key: ModelKey, texts: Texts, ablate: tuple[tuple[int, int], ...]) -> tuple:
    return (key, texts.a, texts.b) + ((("ablate", ablate),) if ablate else ())


def prepare(text_a: Any, text_b: Any, key: ModelKey, ablate: tuple[tuple[int, int], ...] = ()) -> Job:
    """Check the texts, get the model and the (cached) run: the single entry point of every tab.

    ``ablate``: checked (layer, head) pairs to switch off; such runs are cached like any other.
    """
    texts = clean_texts(text_a, text_b)
    model = get_model(key)
    cache_key = _run_key(key, texts, ablate)
    started = time.perf_counter()
    cached = _runs.get(cache_key)
    encode = (lambda: _encode(key, texts.a, texts.b, ablate)) if ablate else (lambda: _encode(key, texts.a, texts.b))
    run = cached if cached is not None else _runs.get_or_build(cache_key, encode)
    return Job(key, model, texts, run, 0.0 if cached is not None else time.perf_counter() - started, ablate)


def _figure_path() -> Path:
    global _figure_dir
    if _figure_dir is None:
        root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        _figure_dir = Path(tempfile.mkdtemp(prefix="explainer-figures-", dir=root))
    return _figure_dir / f"{uuid.uuid4().hex}.png"


def figure(cache_key: Hashable, draw: Callable[[], Any]) -> str:
    """A PNG path for the figure ``draw`` makes, drawn once per key and remembered (bounded)."""
    return str(_figures.get_or_build(cache_key, lambda: plots.render_png(draw(), _figure_path())))


Tensors = dict[str, tuple[torch.Tensor, tuple[str, ...]]]  # name -> (tensor, axis names)


@dataclass(frozen=True)
class View:
    """One figure of the page: how to draw it, the tensors it shows, and the stem of its download names.

    The PNG is drawn once per ``key`` (see ``figure``); SVG and the tensors are only made for downloads.
    """

    name: str  # file stem, built from checked numbers and fixed words only (never from user text)
    key: Hashable
    draw: Callable[[], Any]
    tensors: Callable[[], Tensors]
    tokens: tuple[str, ...] | None = None  # labels of the tensors' token / query / key axes


def png(view: View) -> str:
    return figure(view.key, view.draw)


def _tokens(job: Job) -> list[str]:
    return list(job.run.tokens)


def _segment_boundaries(job: Job) -> list[int]:
    """Index of the first token of the second text (after the first [SEP]), for separator lines."""
    types = job.run.tokenized.token_type_ids
    return [i for i in range(1, len(types)) if types[i] != types[i - 1]]


def _layer_count(job: Job) -> int:
    return job.model.config.n_layers


def _check_layer(job: Job, layer: Any) -> int:
    n = _layer_count(job)
    return whole_number(layer, "layer", 0, n - 1, f"this model has {n} layers")


def _check_head(job: Job, head: Any, allow_all: bool = False) -> int:
    n = job.model.config.n_heads
    low = -1 if allow_all else 0
    return whole_number(head, "head", low, n - 1, f"this model has {n} heads" + ("; -1 shows all" if allow_all else ""))


# ------------------------------------------------------------------------------------- model description


def describe_model(model: transformer.Model) -> dict:
    config, source = model.config, model.source
    return {
        "source": source.describe(),
        "kind": source.kind,
        "repo_id": source.location,
        "revision": source.revision,
        "license": source.license,
        "layers": config.n_layers,
        "heads": config.n_heads,
        "hidden_size": config.d_model,
        "head_size": config.d_head,
        "ffn_size": config.d_ff,
        "vocabulary": config.vocab_size,
        "max_tokens": model.max_tokens,
        "parameters": model.n_parameters,
        "positional": config.positional,
        "norm_placement": config.norm_placement,
        "activation": config.activation,
        "device": str(model.device),
    }


def model_markdown(info: dict) -> str:
    license_ = f" · license {info['license']}" if info["license"] else ""
    return (
        f"**Loaded:** {html.escape(info['source'])}{license_}\n\n"
        f"{info['layers']} layers · {info['heads']} heads of {info['head_size']} · hidden size {info['hidden_size']} · "
        f"feed-forward {info['ffn_size']} · vocabulary {info['vocabulary']:,} · up to {info['max_tokens']} tokens · "
        f"{info['parameters'] / 1e6:.1f} M parameters · {info['positional']} positions · "
        f"{info['norm_placement']}-LN · {info['activation'].upper()} · on {info['device']}"
    )


# ----------------------------------------------------------------------------------------- tokenization


def _visible(text: str) -> str:
    """Control characters shown as their Unicode pictures (U+2400...), so nothing invisible hides in the page."""
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 32 and c not in "\n\t" else ("\u2421" if c == "\x7f" else c) for c in text)


def tokenization_data(job: Job) -> dict:
    """Everything the Tokenization tab shows, as plain data (also the API's answer)."""
    tokenized, texts = job.run.tokenized, job.texts
    unk_id = job.model.tokenizer.unk_id
    rows = []
    for index, (token, token_id, (start, end), segment, special) in enumerate(
        zip(tokenized.tokens, tokenized.input_ids, tokenized.offsets, tokenized.token_type_ids, tokenized.special)
    ):
        source = texts.all[segment] if segment < len(texts.all) else ""
        rows.append({
            "index": index,
            "token": token,
            "id": int(token_id),
            "start": None if special else int(start),
            "end": None if special else int(end),
            "text": "" if special else source[start:end],
            "segment": "AB"[segment] if segment < 2 else str(segment),
            "special": bool(special),
            "unknown": bool(token_id == unk_id and not special),
        })
    counts = {
        "characters": [len(text) for text in texts.all],
        "words": [len(text.split()) for text in texts.all],
        "tokens": len(rows),
        "special_tokens": sum(row["special"] for row in rows),
        "unknown_tokens": sum(row["unknown"] for row in rows),
        "max_tokens": job.model.max_tokens,
    }
    notices = list(texts.notices)
    if tokenized.truncated:
        notices.append(_truncation_notice(rows, texts, tokenized.n_dropped, job.model.max_tokens))
    return {"tokens": rows, "counts": counts, "truncated": tokenized.truncated, "dropped_tokens": tokenized.n_dropped,
            "notices": notices}


def _truncation_notice(rows: list[dict], texts: Texts, dropped: int, limit: int) -> str:
    """Say plainly where truncation cut each text."""
    cuts = []
    for segment, text in zip("AB", texts.all):
        kept = [row["end"] for row in rows if row["segment"] == segment and not row["special"]]
        end = max(kept) if kept else 0
        if text[end:].strip():
            label = "the text" if len(texts.all) == 1 else f"text {segment}"
            tail = text[max(0, end - 30) : end].replace("\n", " ")
            cuts.append(f"{label} stops after character {end:,} of {len(text):,} (“…{tail}”)")
    where = "; ".join(cuts) if cuts else "the end of the input"
    return f"The model reads at most {limit} tokens, so {dropped:,} tokens were cut: {where}. The greyed part below was not read."


def tokenization_html(data: dict, texts: Texts) -> str:
    """The original text with each token highlighted over its characters, then the token sequence as chips."""
    rows = data["tokens"]
    parts = ['<div class="tok-view">']
    for segment, text in zip("AB", texts.all):
        label = "Text" if len(texts.all) == 1 else f"Text {segment}"
        spans = [row for row in rows if row["segment"] == segment and not row["special"]]
        parts.append(f'<div class="tok-label">{label}</div><div class="tok-text" dir="auto">')
        cursor, colour = 0, 0
        for row in spans:
            start, end = row["start"], row["end"]
            if start < cursor:  # several tokens for one character (rare): the first one is drawn
                continue
            parts.append(html.escape(_visible(text[cursor:start])))
            kind = "tok-unk" if row["unknown"] else f"tok-c{colour % 4}"
            title = f"#{row['index']} {row['token']} (id {row['id']})"
            parts.append(f'<span class="tok {kind}" title="{html.escape(title)}">{html.escape(_visible(text[start:end]))}</span>')
            cursor, colour = end, colour + 1
        rest = text[cursor:]
        if data["truncated"] and rest.strip():
            shown = rest if len(rest) <= 600 else rest[:600] + f" … ({len(rest) - 600:,} more characters)"
            parts.append(f'<span class="tok-cut" title="not read: beyond the maximum length">{html.escape(_visible(shown))}</span>')
        else:
            parts.append(html.escape(_visible(rest)))
        parts.append("</div>")
    parts.append('<div class="tok-label">What the model reads</div><div class="tok-chips" dir="ltr">')
    colour = 0
    for row in rows:
        if row["special"]:
            kind = "tok-special"
        elif row["unknown"]:
            kind = "tok-unk"
        else:
            kind, colour = f"tok-c{colour % 4}", colour + 1
        title = f"#{row['index']} id {row['id']}" + (f" · “{row['text']}”" if row["text"] else "")
        parts.append(f'<span class="chip {kind}" title="{html.escape(title)}">{html.escape(_visible(row["token"]))}</span>')
    parts.append("</div></div>")
    return "".join(parts)


def tokenization_summary(data: dict, texts: Texts) -> str:
    counts = data["counts"]
    if len(texts.all) == 1:
        sizes = f"**{counts['characters'][0]:,}** characters · **{counts['words'][0]:,}** words"
    else:
        sizes = " · ".join(f"text {s}: **{c:,}** characters, **{w:,}** words" for s, c, w in zip("AB", counts["characters"], counts["words"]))
    line = (f"{sizes} → **{counts['tokens']}** tokens ({counts['special_tokens']} special, "
            f"{counts['unknown_tokens']} unknown) of at most {counts['max_tokens']}.")
    notices = "".join(f"\n\n> ⚠️ {html.escape(notice)}" for notice in data["notices"])
    return line + notices


TOKEN_COLUMNS = ["#", "token", "id", "characters", "text", "segment", "special", "unknown"]


def token_table(data: dict) -> list[list]:
    return [
        [row["index"], row["token"], row["id"], "" if row["special"] else f"{row['start']}–{row['end']}",
         _visible(row["text"]), row["segment"], "yes" if row["special"] else "", "yes" if row["unknown"] else ""]
        for row in data["tokens"]
    ]


# ----------------------------------------------------------------------------------- positional encodings


def positional_view(width: Any, length: Any) -> View:
    width = whole_number(width, "width", 2, 2048, "model width d")
    length = whole_number(length, "length", 2, 2048, "number of positions")
    return View(f"sinusoid-d{width}-p{length}", ("sinusoid", width, length),
                lambda: plots.sinusoid(transformer.sinusoidal_table(length, width)),
                lambda: {"sinusoidal_table": (transformer.sinusoidal_table(length, width), ("position", "dimension"))})


def positional_figure(width: Any, length: Any) -> str:
    return png(positional_view(width, length))


def position_similarity_view(key: ModelKey, length: Any) -> View:
    model = get_model(key)
    config = model.config
    own = model.encoder.embeddings.position  # None: sinusoidal positions computed, not stored
    offset = int(getattr(config, "position_offset", 0) or 0)  # RoBERTa counts its rows from 2
    available = config.max_positions if own is None else own.weight.shape[0] - offset
    length = whole_number(length, "length", 2, available, f"this model has {available} positions")
    width = config.embedding_width  # the position vectors are as wide as the (maybe factorised) embeddings
    if config.positional == "sinusoidal":
        own_title, missing = "this model's own table: the sinusoidal one,\nas stored in its checkpoint", (
            "This model learns no positions:\nits own table is the\nsinusoidal one on the left")
    else:
        own_title, missing = f"learned by {model.source.location}", "this model has no learned\nposition table"

    def tables() -> Tensors:
        found = {"sinusoidal_table": (transformer.sinusoidal_table(length, width), ("position", "dimension"))}
        if own is not None:
            found["model_table"] = (own.weight[offset : offset + length].detach().float().cpu(), ("position", "dimension"))
        return found

    def draw():
        found = tables()
        table = found["model_table"][0] if "model_table" in found else None
        return plots.position_similarity(found["sinusoidal_table"][0], table, learned_title=own_title, missing_note=missing)

    return View(f"position-similarity-p{length}", ("position-similarity", key, length), draw, tables)


def position_similarity_figure(key: ModelKey, length: Any) -> str:
    return png(position_similarity_view(key, length))


def positions_note(model: transformer.Model) -> str:
    """Which position table this model itself uses, in one short paragraph."""
    config, name = model.config, html.escape(model.source.location)
    if config.positional == "sinusoidal":
        stored = (" Its checkpoint stores that table, and the right panel shows the stored copy: it matches the formula."
                  if model.encoder.embeddings.position is not None else "")
        return (f"**This model ({name}) learns no position vectors: its own table is the sinusoidal one** (left), "
                f"computed at its embedding width {config.embedding_width}.{stored}")
    rows = (f" Its rows are counted from {config.position_offset} (fairseq's convention), so token t uses row "
            f"t + {config.position_offset}." if config.position_offset else "")
    return (f"**This model ({name}) learned its own table** of {config.max_positions} position vectors during "
            f"training (right).{rows}")


def _optional_step(job: Job, name: str) -> torch.Tensor | None:
    """A step's tensor, or None when this architecture has no such step (e.g. no segments in DistilBERT)."""
    try:
        return job.run.step(name).tensor
    except KeyError:
        return None


def composition_view(job: Job) -> View:
    token, position = _optional_step(job, "embeddings.token"), _optional_step(job, "embeddings.position")
    if token is None or position is None:
        raise InputProblem("This model's record has no separate token and position embedding steps to compare.")
    segment = _optional_step(job, "embeddings.segment")  # None: the model has no segment table (DistilBERT)
    config = job.model.config
    note = ""
    if config.embedding_size is not None:  # ALBERT, ELECTRA: narrow embeddings, widened after the LayerNorm
        note = (f"{config.embedding_width}-wide embeddings; after the LayerNorm a learned map widens them to "
                f"{config.d_model} (step embeddings.project)")
    names = ["embeddings.token", "embeddings.position"] + (["embeddings.segment"] if segment is not None else [])
    return View("input-composition", ("composition", job.cache_key),
                lambda: plots.input_composition(token, position, segment, _tokens(job), note=note),
                lambda: {name: (job.run.step(name).tensor, job.run.step(name).axes) for name in names},
                tuple(job.run.tokens))


def composition_figure(job: Job) -> str:
    return png(composition_view(job))


# ----------------------------------------------------------------------------------------- step-through


def sections(job: Job) -> list[tuple[int, str, list[int]]]:
    """The record grouped for walking: (section number, title, indices into run.steps) in order.

    Section -1 is the embeddings, 0..L-1 the layers, L the final norm of pre-LN stacks.
    """
    n_layers = _layer_count(job)
    groups: dict[int, list[int]] = {}
    for index, step in enumerate(job.run.steps):
        number = step.layer if step.layer is not None else (-1 if step.name.startswith("embeddings") else n_layers)
        groups.setdefault(number, []).append(index)
    titles = {-1: "Embeddings", n_layers: "Final norm"}
    return [(number, titles.get(number, f"Layer {number}"), indices) for number, indices in sorted(groups.items())]


def _locate_step(job: Job, index: int) -> tuple[int, int]:
    """(section number, position within it) of the step at ``index`` of the whole record."""
    for number, _, indices in sections(job):
        if index in indices:
            return number, indices.index(index)
    raise InputProblem(f"step {index} is not in the record")


def step_statistics(step: transformer.Step, tokens: list[str]) -> list[list]:
    """Per token: L2 norm, mean, std, min and max over all the step's other axes."""
    values = step.tensor.detach().float()
    token_axis = 1 if step.axes[0] == "head" else 0
    per_token = values.movedim(token_axis, 0).reshape(values.shape[token_axis], -1)  # (T, everything else)
    norms, means = per_token.norm(dim=1), per_token.mean(dim=1)
    stds = per_token.std(dim=1, unbiased=False)
    lows, highs = per_token.min(dim=1).values, per_token.max(dim=1).values
    return [[i, token, round(float(norms[i]), 4), round(float(means[i]), 4), round(float(stds[i]), 4),
             round(float(lows[i]), 4), round(float(highs[i]), 4)] for i, token in enumerate(tokens)]


STEP_STAT_COLUMNS = ["#", "token", "L2 norm", "mean", "std", "min", "max"]


def step_view(job: Job, index: int, head: int) -> tuple[dict, str, list[list]]:
    """One step of the record: what it is (dict), its heatmap (PNG path) and per-token statistics."""
    steps = job.run.steps
    step = steps[index]
    section, position = _locate_step(job, index)
    section_steps = [steps[i].name for i in dict((n, ix) for n, _, ix in sections(job))[section]]
    tokens = _tokens(job)
    head_of_step = head if (head >= 0 and step.axes[0] == "head") else None
    values = step.tensor.detach().float()
    info = {
        "name": step.name,
        "kind": step.kind,
        "layer": section,
        "step": position,
        "index": index,
        "count": len(steps),
        "layer_steps": section_steps,
        "doc": step.doc,
        "formula": step.formula,
        "shape": list(step.shape),
        "axes": list(step.axes),
        "head": head_of_step,
        "source": _source_of(step.name, job.model.config.norm_placement),
        "shared_weights": bool(job.model.config.shared_layers and step.layer is not None),
        "mean": float(values.mean()),
        "std": float(values.std(unbiased=False)),
        "min": float(values.min()),
        "max": float(values.max()),
    }
    return info, png(step_figure_view(job, index, head_of_step)), step_statistics(step, tokens)


def step_figure_view(job: Job, index: int, head: int | None) -> View:
    """Step ``index`` of the record drawn by its axes; ``head`` picks one head of a per-head step."""
    step = job.run.steps[index]
    title = step.name + (f" · head {head}" if head is not None else "")
    if head is None:
        tensors = {step.name: (step.tensor, step.axes)}
    else:
        tensors = {f"{step.name}.head{head}": (step.tensor[head], step.axes[1:])}
    return View(step.name.replace(".", "-") + (f"-head{head}" if head is not None else ""), ("step", job.cache_key, index, head),
                lambda: plots.step_figure(step.tensor, step.axes, _tokens(job), title=title, head=head),
                lambda: tensors, tuple(job.run.tokens))


def _source_of(name: str, norm_placement: str) -> dict | None:
    """The package's own source lines that computed this step (read from the code that ran)."""
    try:
        source = step_source(name, norm_placement)
    except (KeyError, OSError, SyntaxError):
        return None
    return {"file": source.file, "lines": list(source.lines), "code": source.code}


def step_code(info: dict) -> str:
    source = info.get("source")
    if not source:
        return "# (no source lines found for this step)"
    lines = source["lines"]
    span = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}–{lines[-1]}"
    return f"# {source['file']}, {span}\n{source['code']}"


def step_markdown(info: dict) -> str:
    shape = ", ".join(f"{axis} = {size}" for axis, size in zip(info["axes"], info["shape"]))
    head = f" — showing head {info['head']}" if info["head"] is not None else ""
    shared = ("> Every layer of this model applies **the same, shared weights** (ALBERT): layers differ only in "
              "their input.\n\n" if info.get("shared_weights") else "")
    return (
        f"### Step {info['index'] + 1} of {info['count']}: `{info['name']}`{head}\n\n{shared}"
        f"{html.escape(info['doc'])}\n\n"
        f"$${info['formula']}$$\n\n"
        f"**Shape** ({shape}) · mean {info['mean']:.4g} · std {info['std']:.4g} · "
        f"min {info['min']:.4g} · max {info['max']:.4g}"
    )


NORM_PLACEMENT_TEXT = r"""
**Where LayerNorm sits.** BERT (and MiniLM) use *post-LN*, the original Transformer's placement: each
sublayer's output is added to its input and *then* normalised,

$$x' = \mathrm{LN}_1\big(x + \mathrm{Attn}(x)\big), \qquad y = \mathrm{LN}_2\big(x' + \mathrm{FFN}(x')\big).$$

That is why the steps of a layer run `attn.*` → `resid_mid` → `ln1` → `ffn.*` → `resid_post` → `ln2`.
Most later models (GPT-2 and after) use *pre-LN*: normalise the sublayer's *input* and keep the residual
stream itself un-normalised, with one final LayerNorm after the last layer,

$$x' = x + \mathrm{Attn}\big(\mathrm{LN}_1(x)\big), \qquad y = x' + \mathrm{FFN}\big(\mathrm{LN}_2(x')\big).$$

Pre-LN trains more stably in deep stacks because the residual path is an identity from input to output;
post-LN keeps every layer's output at unit scale.
"""


def _svg_column(cx: int, title: str, items: list[tuple[str, str]]) -> list[str]:
    """One layer drawn top to bottom: boxes joined by arrows; "tap" starts a residual branch, "add" ends it."""
    colours = {"attn": "#dbeafe", "ffn": "#bbf7d0", "norm": "#fde68a"}
    parts = [f'<text x="{cx}" y="16" class="nd-title">{title}</text>',
             f'<text x="{cx}" y="40" class="nd-outer">x (the layer\'s input)</text>']
    y, taps = 46, []
    for kind, label in items:
        if kind == "tap":
            taps.append(y + 8)  # the branch leaves from the middle of the next arrow
            continue
        if kind == "end":
            parts.append(f'<line x1="{cx}" y1="{y}" x2="{cx}" y2="{y + 16}" class="nd-arrow"/>')
            parts.append(f'<text x="{cx}" y="{y + 30}" class="nd-outer">{label}</text>')
            y += 34
            continue
        parts.append(f'<line x1="{cx}" y1="{y}" x2="{cx}" y2="{y + 16}" class="nd-arrow"/>')
        y += 16
        if kind == "add":
            top = taps.pop()
            side = cx + 92
            parts.append(f'<polyline points="{cx},{top} {side},{top} {side},{y + 10} {cx + 11},{y + 10}" class="nd-residual"/>')
            parts.append(f'<circle cx="{cx}" cy="{y + 10}" r="10" class="nd-plus"/>'
                         f'<text x="{cx}" y="{y + 14}" class="nd-label">+</text>')
            y += 20
        else:
            parts.append(f'<rect x="{cx - 70}" y="{y}" width="140" height="26" rx="5" fill="{colours[kind]}" class="nd-box"/>'
                         f'<text x="{cx}" y="{y + 17}" class="nd-label">{label}</text>')
            y += 26
    return parts


def norm_placement_svg() -> str:
    """Where the two LayerNorms of a layer sit: post-LN (BERT) on the left, pre-LN on the right."""
    post = _svg_column(120, "post-LN (BERT)", [
        ("tap", ""), ("attn", "self-attention"), ("add", ""), ("norm", "LayerNorm  ln1"), ("tap", ""),
        ("ffn", "feed-forward"), ("add", ""), ("norm", "LayerNorm  ln2"), ("end", "output: normalised"),
    ])
    pre = _svg_column(400, "pre-LN", [
        ("tap", ""), ("norm", "LayerNorm  ln1"), ("attn", "self-attention"), ("add", ""), ("tap", ""),
        ("norm", "LayerNorm  ln2"), ("ffn", "feed-forward"), ("add", ""), ("end", "output: raw sum (final LN at the end)"),
    ])
    style = ("<style>.nd-title{font:600 14px sans-serif;text-anchor:middle;fill:currentColor}"
             ".nd-label{font:12px sans-serif;text-anchor:middle;fill:#111827}"
             ".nd-outer{font:12px sans-serif;text-anchor:middle;fill:currentColor}"
             ".nd-box{stroke:#6b7280;stroke-width:1}.nd-arrow{stroke:#6b7280;stroke-width:1.5;marker-end:url(#nd-head)}"
             ".nd-residual{fill:none;stroke:#9333ea;stroke-width:1.5;stroke-dasharray:4 3;marker-end:url(#nd-head-r)}"
             ".nd-plus{fill:#fff;stroke:#9333ea;stroke-width:1.5}</style>")
    markers = ('<defs><marker id="nd-head" markerWidth="8" markerHeight="8" refX="6" refY="3" orient="auto">'
               '<path d="M0,0 L6,3 L0,6 z" fill="#6b7280"/></marker>'
               '<marker id="nd-head-r" markerWidth="8" markerHeight="8" refX="6" refY="3" orient="auto">'
               '<path d="M0,0 L6,3 L0,6 z" fill="#9333ea"/></marker></defs>')
    return (f'<svg class="norm-diagram" viewBox="0 0 560 330" width="560" height="330" role="img" '
            f'aria-label="post-LN and pre-LN layer diagrams" xmlns="http://www.w3.org/2000/svg">{style}{markers}'
            + "".join(post + pre) + "</svg>")


# ----------------------------------------------------------------------------------------------- attention


def attention_head_view(job: Job, layer: int, head: int) -> View:
    pattern = job.run.attentions[layer][head]  # (T, T)
    return View(f"attention-layer{layer}-head{head}", ("attention-head", job.cache_key, layer, head),
                lambda: plots.attention_head(pattern, _tokens(job), title=f"Layer {layer}, head {head}: who attends to whom",
                                             boundaries=_segment_boundaries(job)),
                lambda: {f"layers.{layer}.attn.pattern.head{head}": (pattern, ("query", "key"))}, tuple(job.run.tokens))


def attention_head_figure(job: Job, layer: int, head: int) -> str:
    return png(attention_head_view(job, layer, head))


def attention_layer_view(job: Job, layer: int) -> View:
    return View(f"attention-layer{layer}", ("attention-layer", job.cache_key, layer),
                lambda: plots.head_grid(job.run.attentions[layer], colorbar_label="attention weight",
                                        title=f"Layer {layer}: all {job.model.config.n_heads} heads (rows: query, columns: key)"),
                lambda: {f"layers.{layer}.attn.pattern": (job.run.attentions[layer], ("head", "query", "key"))},
                tuple(job.run.tokens))


def attention_layer_figure(job: Job, layer: int) -> str:
    return png(attention_layer_view(job, layer))


def attention_overview_view(job: Job) -> View:
    def stack() -> torch.Tensor:
        return torch.stack(job.run.attentions)  # (L, H, T, T)

    return View("attention-all-layers", ("attention-overview", job.cache_key),
                lambda: plots.attention_overview(stack(), title="Every head of every layer (each tile scaled to its own maximum)"),
                lambda: {"attentions": (stack(), ("layer", "head", "query", "key"))}, tuple(job.run.tokens))


def attention_overview_figure(job: Job) -> str:
    return png(attention_overview_view(job))


def _flow_tensors(job: Job, layer: int, head: int) -> Tensors:
    """The head's weights, the norms of what it moves (Kobayashi et al.), and the rollout up to this layer."""
    run = job.run
    pattern = run.attentions[layer]  # (H, T, T)
    value = run.step(f"layers.{layer}.attn.v").tensor  # (H, T, d_head)
    # The layer applied at this depth: ALBERT shares one set of weights across depths (encoder.stack).
    applied = getattr(job.model.encoder, "stack", None) or job.model.encoder.layers
    out_weight = applied[layer].attn.out.weight.detach().float().cpu()  # (d, H * d_head)
    moved = analysis.value_vector_norms(pattern.float(), value.float(), out_weight)[head]  # (T, T)
    rollout = analysis.attention_rollout([a.float() for a in run.attentions])[layer]  # (T, T)
    axes = ("query", "key")
    return {"weights": (pattern[head], axes), "moved_norms": (moved, axes), "rollout": (rollout, axes)}


def attention_flow_view(job: Job, layer: int, head: int) -> View:
    """The head's weights, what they actually move (norm-based), and the rollout through all layers so far."""
    def draw():
        tensors = _flow_tensors(job, layer, head)
        return plots.token_matrices(
            [tensors[name][0] for name in ("weights", "moved_norms", "rollout")], _tokens(job),
            [f"weights a (layer {layer}, head {head})", "what it moves: ‖a · v W_O‖", f"rollout through layer {layer}"],
            colorbar_labels=["attention weight", "norm of the moved vector", "share of the input token"],
            boundaries=_segment_boundaries(job), figsize=plots.SIZE_TRIPLE)

    return View(f"attention-flow-layer{layer}-head{head}", ("attention-flow", job.cache_key, layer, head), draw,
                lambda: _flow_tensors(job, layer, head), tuple(job.run.tokens))


def attention_flow_figure(job: Job, layer: int, head: int) -> str:
    return png(attention_flow_view(job, layer, head))


HEAD_COLUMNS = ["layer", "head", "entropy (bits)", "to [CLS]", "to [SEP]", "to itself", "to previous", "to next", "looks like"]


def head_summary(job: Job, layer: int | None) -> list[dict]:
    """Per head: the entropy of its attention rows and the share of attention that goes to special places.

    Shares are averaged over query tokens; a share near 1 marks a known head type (previous-token heads,
    heads resting on [CLS] or [SEP], ...). Entropy is in bits, averaged over query tokens.
    """
    tokens = _tokens(job)
    specials = job.model.tokenizer.special_tokens
    cls_keys = [i for i, t in enumerate(tokens) if t == specials["cls"]]
    sep_keys = [i for i, t in enumerate(tokens) if t == specials["sep"]]
    layers = range(_layer_count(job)) if layer is None else [layer]
    rows = []
    for index in layers:
        pattern = job.run.attentions[index].detach().double()  # (H, T, T)
        n_tokens = pattern.shape[-1]
        entropy = -(pattern * torch.log2(pattern.clamp_min(1e-30))).sum(-1).mean(-1)  # (H,)
        shares = {
            "to [CLS]": pattern[:, :, cls_keys].sum(-1).mean(-1),
            "to [SEP]": pattern[:, :, sep_keys].sum(-1).mean(-1),
            "to itself": pattern.diagonal(dim1=-2, dim2=-1).mean(-1),
            "to previous": pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1) if n_tokens > 1 else torch.zeros(pattern.shape[0]),
            "to next": pattern.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1) if n_tokens > 1 else torch.zeros(pattern.shape[0]),
        }
        for head in range(pattern.shape[0]):
            values = {name: float(share[head]) for name, share in shares.items()}
            rows.append({"layer": index, "head": head, "entropy (bits)": float(entropy[head]), **values,
                         "looks like": _head_type(values, float(entropy[head]), n_tokens)})
    return rows


def _head_type(shares: dict[str, float], entropy: float, n_tokens: int) -> str:
    name, share = max(shares.items(), key=lambda item: item[1])
    if share >= 0.5:
        return {"to [CLS]": "[CLS] head", "to [SEP]": "[SEP] head", "to itself": "self head",
                "to previous": "previous-token head", "to next": "next-token head"}[name]
    if n_tokens > 2 and entropy >= 0.8 * math.log2(n_tokens):
        return "broad (averaging)"
    return "mixed"


def head_table(rows: list[dict]) -> list[list]:
    return [[row["layer"], row["head"], *(round(row[c], 3) for c in HEAD_COLUMNS[2:-1]), row["looks like"]] for row in rows]


# -------------------------------------------------------------------------------------------------- output


def sentence_embedding(job: Job, text: str) -> np.ndarray:
    return _embeddings.get_or_build((job.key, text), lambda: _embed(job.key, text))


def embedding_view(job: Job) -> View:
    vectors = [sentence_embedding(job, text) for text in job.texts.all]
    labels = ["text" if len(vectors) == 1 else f"text {s}" for s in "AB"[: len(vectors)]]
    cosine = _cosine_of(vectors)
    title = "Sentence embedding" + ("s" if len(vectors) == 2 else "") + (f" · cosine similarity {cosine:.4f}" if cosine is not None else "")
    return View("sentence-embedding", ("embedding", job.cache_key),
                lambda: plots.embedding_strips(np.stack(vectors), labels, title=title),
                lambda: {"sentence_embeddings": (torch.from_numpy(np.stack(vectors)), ("text", "dimension"))})


def token_cosine_view(job: Job) -> View:
    final = job.run.hidden_states[-1]  # (T, d)
    return View("token-cosine", ("token-cosine", job.cache_key),
                lambda: plots.cosine_matrix(final, _tokens(job), title="Cosine similarity of the tokens' final vectors",
                                            boundaries=_segment_boundaries(job)),
                lambda: {"final_hidden_states": (final, ("token", "d_model"))}, tuple(job.run.tokens))


def _cosine_of(vectors: list[np.ndarray]) -> float | None:
    if len(vectors) != 2:
        return None
    a, b = vectors
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def output_view(job: Job) -> tuple[dict, str, str]:
    """Sentence embedding(s), the texts' cosine similarity, and the tokens' final-layer cosine similarity."""
    vectors = [sentence_embedding(job, text) for text in job.texts.all]
    cosine = _cosine_of(vectors)
    pooling = job.model.pooling
    info = {
        "dimension": int(vectors[0].shape[0]),
        "pooling": pooling.mode + (" + L2 normalise" if pooling.normalize else ""),
        "embeddings": [{"norm": float(np.linalg.norm(v)), "first_values": [round(float(x), 6) for x in v[:8]]} for v in vectors],
        "cosine": cosine,
    }
    return info, png(embedding_view(job)), png(token_cosine_view(job))


def output_markdown(info: dict) -> str:
    lines = [f"Each text becomes one vector of **{info['dimension']}** numbers ({info['pooling']} pooling of the final token vectors)."]
    for label, item in zip(("Text A", "Text B") if len(info["embeddings"]) == 2 else ("Text",), info["embeddings"]):
        first = ", ".join(f"{x:+.3f}" for x in item["first_values"][:6])
        lines.append(f"- {label}: norm {item['norm']:.4f}; first values [{first}, …]")
    if info["cosine"] is not None:
        lines.append(f"\n### Cosine similarity of the two texts: {info['cosine']:.4f}")
    else:
        lines.append("\nAdd a second text to compare the two sentences' embeddings.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ masked words


def no_head_sentence(model: transformer.Model) -> str:
    return (f"{model.source.location} has no masked-language-model head (it was saved without its pre-training head), "
            f"so it cannot predict masked words: load a checkpoint with one, such as {SUGGESTED_MODELS[0]}.")


def _require_head(model: transformer.Model) -> None:
    if not model.has_mlm_head:
        raise InputProblem(no_head_sentence(model))
    if model.mask_token is None:
        raise InputProblem("This model's vocabulary has no mask token, so it cannot predict masked words.")


def _top_k(value: Any) -> int:
    return whole_number(value, "top_k", 1, MAX_TOP_K, "words listed per mask")


def _prediction(prediction: transformer.Prediction) -> dict:
    return {"word": prediction.text, "token": prediction.token, "id": prediction.token_id,
            "probability": prediction.probability}


def _mask_positions(job: Job) -> list[int]:
    mask_id = job.model.tokenizer.backend.token_to_id(job.model.mask_token) if job.model.mask_token else None
    return [i for i, token_id in enumerate(job.run.input_ids.tolist()) if token_id == mask_id]


def fill_mask_data(job: Job, top_k: int) -> dict:
    """The package's fill-mask on the (cached) run, as plain data (cached: 48 masks of a long text take a while).

    A text without a mask token is an input problem.
    """
    _require_head(job.model)
    if not _mask_positions(job):
        raise InputProblem(f"The text has no {job.model.mask_token} token: write {job.model.mask_token} where the word "
                           "to predict goes, or click a token to mask it.")

    def build() -> dict:
        result = _fill_mask(job.key, job.run, top_k)
        return {
            "mask_token": job.model.mask_token,
            "tokens": list(job.run.tokens),
            "masks": [{"position": mask.position, "predictions": [_prediction(p) for p in mask.predictions]}
                      for mask in result.masks],
        }

    return _results.get_or_build(("fill-mask", job.cache_key, top_k), build)


def _words(predictions: list[dict]) -> list[str]:
    return [p["word"] or p["token"] for p in predictions]  # special tokens decode to "": show the entry


def fill_mask_view(job: Job, data: dict, top_k: int) -> View:
    masks = data["masks"]
    shown = masks[: plots.MAX_PANELS]  # the table lists every mask; the chart the first few
    titles = [f"mask {i + 1} (token #{mask['position']})" for i, mask in enumerate(shown)]

    def tensors() -> Tensors:
        return {"probabilities": (torch.tensor([[p["probability"] for p in m["predictions"]] for m in masks]), ("mask", "rank")),
                "token_ids": (torch.tensor([[p["id"] for p in m["predictions"]] for m in masks]), ("mask", "rank"))}

    return View(f"fill-mask-top{top_k}", ("fill-mask", job.cache_key, top_k),
                lambda: plots.prediction_bars(tensors()["probabilities"][0][: len(shown)],
                                              [_words(m["predictions"]) for m in shown], titles), tensors)


FILL_COLUMNS = ["mask", "token #", "rank", "word", "vocabulary entry", "id", "probability"]


def fill_mask_table(data: dict) -> list[list]:
    return [[number + 1, mask["position"], rank + 1, p["word"], p["token"], p["id"], round(p["probability"], 4)]
            for number, mask in enumerate(data["masks"]) for rank, p in enumerate(mask["predictions"])]


def logit_lens_data(job: Job, position: Any, top_k: int) -> dict:
    """The package's logit lens at token ``position`` (-1: the first mask token), as plain data (cached)."""
    _require_head(job.model)
    n_tokens = len(job.run.tokens)
    chosen = whole_number(position, "position", -1, n_tokens - 1, "-1 is the first mask token")
    if chosen == -1:
        masks = _mask_positions(job)
        if not masks:
            raise InputProblem(f"The text has no {job.model.mask_token} token: choose a position from 0 to {n_tokens - 1}.")
        chosen = masks[0]

    def build() -> dict:
        lens = _logit_lens(job.key, job.run, chosen, top_k)
        return {
            "position": lens.position,
            "token": lens.token,
            "labels": list(lens.labels),
            "rows": [[_prediction(p) for p in row] for row in lens.predictions],
            "answer": _prediction(lens.answer),
            "answer_ranks": [int(r) for r in lens.answer_ranks.tolist()],
            "answer_probabilities": [float(p) for p in lens.answer_probabilities.tolist()],
        }

    return _results.get_or_build(("logit-lens", job.cache_key, chosen, top_k), build)


def logit_lens_view(job: Job, data: dict, top_k: int) -> View:
    answer = data["answer"]["word"] or data["answer"]["token"]
    title = f"Logit lens at token #{data['position']} “{data['token']}”: the final answer is “{answer}”"

    def tensors() -> Tensors:
        return {"probabilities": (torch.tensor([[p["probability"] for p in row] for row in data["rows"]]), ("layer", "rank")),
                "token_ids": (torch.tensor([[p["id"] for p in row] for row in data["rows"]]), ("layer", "rank")),
                "answer_ranks": (torch.tensor(data["answer_ranks"]), ("layer",)),
                "answer_probabilities": (torch.tensor(data["answer_probabilities"]), ("layer",))}

    def draw():
        found = tensors()
        return plots.logit_lens(found["probabilities"][0], [_words(row) for row in data["rows"]], data["labels"],
                                found["answer_probabilities"][0], found["answer_ranks"][0].float(), answer=answer, title=title)

    return View(f"logit-lens-token{data['position']}-top{top_k}", ("logit-lens", job.cache_key, data["position"], top_k),
                draw, tensors)


LENS_COLUMNS = ["after", "top words (probability)", "rank of the answer", "probability of the answer"]


def logit_lens_table(data: dict) -> list[list]:
    return [[label, ", ".join(f"{p['word'] or p['token']} ({p['probability']:.3f})" for p in row[:5]), rank, round(prob, 4)]
            for label, row, rank, prob in zip(data["labels"], data["rows"], data["answer_ranks"], data["answer_probabilities"])]


def masked_text(job: Job, index: Any) -> str:
    """The first text with token ``index`` replaced by the model's mask token (for "click a token to mask it")."""
    _require_head(job.model)
    tokenized = job.run.tokenized
    index = whole_number(index, "index", 0, len(tokenized.tokens) - 1, "a token of the text")
    if tokenized.special[index]:
        raise InputProblem(f"Token #{index} is {tokenized.tokens[index]}, a special token: pick a word piece.")
    if tokenized.sequence_ids[index] != 0:
        raise InputProblem(f"Token #{index} is in the second text; only the first text is masked.")
    start, end = tokenized.offsets[index]
    text = job.texts.a
    while start < end and text[start].isspace():  # SentencePiece pieces may start at the space before a word
        start += 1
    if text[start:end] == job.model.mask_token:
        return text
    return text[:start] + job.model.mask_token + text[end:]


def mask_token_choices(job: Job) -> list[tuple[str, int]]:
    return [(f"#{i} {token}", i) for i, token in enumerate(job.run.tokens)]


def highlighted_tokens(job: Job) -> list[tuple[str, str]]:
    """The tokens for the clickable token strip: (shown text, kind); the kind colours it."""
    masks = set(_mask_positions(job))
    return [(token + " ", "mask" if i in masks else "special" if special else "token")
            for i, (token, special) in enumerate(zip(job.run.tokens, job.run.tokenized.special))]


# ------------------------------------------------------------------------------------------ head ablation


def parse_heads(spec: Any, n_layers: int, n_heads: int) -> tuple[tuple[int, int], ...]:
    """Heads to switch off, written "layer.head" (e.g. "2.5") or "layer.*" for a whole layer, separated by commas.

    Returns the sorted, distinct (layer, head) pairs.
    """
    if isinstance(spec, (list, tuple)) and all(isinstance(item, str) for item in spec):
        items = [part for item in spec for part in re.split(r"[\s,;]+", item) if part]
    elif isinstance(spec, str):
        if len(spec) > 10_000:
            raise InputProblem("The list of heads is too long (over 10,000 characters).")
        items = [part for part in re.split(r"[\s,;]+", spec) if part]
    else:
        raise InputProblem(f"heads must be text such as '0.3, 2.*' (layer.head, or layer.* for a whole layer), not {type(spec).__name__}.")
    if not items:
        raise InputProblem("Choose at least one head to switch off: write layer.head (e.g. 0.3) or layer.* for a whole layer.")
    chosen: set[tuple[int, int]] = set()
    for item in items:
        match = re.fullmatch(r"(\d{1,4})[.:](\d{1,4}|\*)", item)
        if not match:
            raise InputProblem(f"'{item[:40]}' is not a head: write layer.head (e.g. 0.3) or layer.* for a whole layer.")
        layer = int(match.group(1))
        if layer >= n_layers:
            raise InputProblem(f"layer {layer} is out of range: use 0 to {n_layers - 1} (this model has {n_layers} layers).")
        if match.group(2) == "*":
            chosen.update((layer, head) for head in range(n_heads))
            continue
        head = int(match.group(2))
        if head >= n_heads:
            raise InputProblem(f"head {head} is out of range: use 0 to {n_heads - 1} (this model has {n_heads} heads).")
        chosen.add((layer, head))
    return tuple(sorted(chosen))


def describe_heads(heads: tuple[tuple[int, int], ...], n_heads: int) -> str:
    """The switched-off heads in words, e.g. "layer 2 (all 12 heads); layer 4 head 1"."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    parts = []
    for layer, chosen in by_layer.items():
        if len(chosen) == n_heads:
            parts.append(f"layer {layer} (all {n_heads} heads)")
        else:
            parts.append(f"layer {layer} head{'s' if len(chosen) > 1 else ''} {', '.join(map(str, chosen))}")
    return "; ".join(parts)


def head_choices(n_layers: int, n_heads: int) -> list[tuple[str, str]]:
    choices = []
    for layer in range(n_layers):
        choices.append((f"layer {layer} · all heads", f"{layer}.*"))
        choices.extend((f"layer {layer} · head {head}", f"{layer}.{head}") for head in range(n_heads))
    return choices


@dataclass(frozen=True)
class Ablation:
    """A run and the same run with some heads switched off."""

    original: Job
    ablated: Job

    @property
    def heads(self) -> tuple[tuple[int, int], ...]:
        return self.ablated.ablate


def ablate(text_a: Any, text_b: Any, key: ModelKey, heads: Any) -> Ablation:
    original = prepare(text_a, text_b, key)
    config = original.model.config
    chosen = parse_heads(heads, config.n_layers, config.n_heads)
    return Ablation(original, prepare(text_a, text_b, key, chosen))


def _token_change(ablation: Ablation) -> torch.Tensor:
    """(T,) how far each token's final vector moved: the norm of the difference."""
    return (ablation.ablated.run.hidden_states[-1] - ablation.original.run.hidden_states[-1]).norm(dim=-1)


def ablation_data(ablation: Ablation, top_k: int) -> dict:
    """What switching the heads off changed, as plain data (cached per ablated run and top_k)."""
    return _results.get_or_build(("ablation", ablation.ablated.cache_key, top_k), lambda: _ablation_data(ablation, top_k))


def _ablation_data(ablation: Ablation, top_k: int) -> dict:
    model, original, ablated = ablation.original.model, ablation.original.run, ablation.ablated.run
    embedding, changed = model.sentence_embedding(original), model.sentence_embedding(ablated)
    cosine = float(torch.nn.functional.cosine_similarity(embedding, changed, dim=0))
    change = _token_change(ablation)
    data = {
        "heads": [list(pair) for pair in ablation.heads],
        "description": describe_heads(ablation.heads, model.config.n_heads),
        "sentence_embedding_cosine": cosine,
        "token_change": [{"index": i, "token": token, "change": float(value)}
                         for i, (token, value) in enumerate(zip(original.tokens, change.tolist()))],
        "fill_mask": None,
    }
    if model.has_mlm_head and model.mask_token and _mask_positions(ablation.original):
        data["fill_mask"] = _prediction_shift(ablation, top_k)
    return data


def _prediction_shift(ablation: Ablation, top_k: int) -> list[dict]:
    """At each mask: the top words before and after, the new probability of the old top words, and
    KL(before || after) of the whole vocabulary distribution (nats)."""
    key = ablation.original.key
    before = _fill_mask(key, ablation.original.run, top_k)
    after = _fill_mask(key, ablation.ablated.run, top_k)
    positions = [mask.position for mask in before.masks]
    log_before, log_after = (_mask_log_probabilities(run, positions)  # (M, vocab)
                             for run in (ablation.original.run, ablation.ablated.run))
    kl = torch.nn.functional.kl_div(log_after, log_before, log_target=True, reduction="none").sum(-1)  # (M,)
    old_ids = torch.stack([mask.token_ids for mask in before.masks])  # (M, k)
    old_words_after = log_after.exp().gather(1, old_ids)  # (M, k)
    return [{"position": b.position, "kl_divergence": float(kl[i]),
             "before": [_prediction(p) for p in b.predictions], "after": [_prediction(p) for p in a.predictions],
             "before_words_after": [float(x) for x in old_words_after[i].tolist()]}
            for i, (b, a) in enumerate(zip(before.masks, after.masks))]


def ablation_change_view(ablation: Ablation) -> View:
    job, what = ablation.original, describe_heads(ablation.heads, ablation.original.model.config.n_heads)

    def tensors() -> Tensors:
        return {"change": (_token_change(ablation), ("token",)),
                "final_hidden_states": (job.run.hidden_states[-1], ("token", "d_model")),
                "final_hidden_states_ablated": (ablation.ablated.run.hidden_states[-1], ("token", "d_model"))}

    return View(f"ablation-change-{len(ablation.heads)}heads", ("ablation-change", ablation.ablated.cache_key),
                lambda: plots.token_bars(_token_change(ablation), _tokens(job), boundaries=_segment_boundaries(job),
                                         title=f"How far each token's final vector moves with {what} switched off",
                                         ylabel="‖h(ablated) − h‖"),
                tensors, tuple(job.run.tokens))


def ablation_predictions_view(ablation: Ablation, shift: list[dict], top_k: int) -> View:
    shown = shift[: plots.MAX_PANELS]
    before = torch.tensor([[p["probability"] for p in mask["before"]] for mask in shown])  # (M, k)
    after = torch.tensor([mask["before_words_after"] for mask in shown])  # (M, k)
    words = [[p["word"] or p["token"] for p in mask["before"]] for mask in shown]
    titles = [f"token #{mask['position']}: KL {mask['kl_divergence']:.3f} nats" for mask in shown]

    def tensors() -> Tensors:
        return {"before": (torch.tensor([[p["probability"] for p in m["before"]] for m in shift]), ("mask", "rank")),
                "after_same_words": (torch.tensor([m["before_words_after"] for m in shift]), ("mask", "rank")),
                "token_ids": (torch.tensor([[p["id"] for p in m["before"]] for m in shift]), ("mask", "rank")),
                "kl_divergence": (torch.tensor([m["kl_divergence"] for m in shift]), ("mask",))}

    return View(f"ablation-predictions-top{top_k}", ("ablation-predictions", ablation.ablated.cache_key, top_k),
                lambda: plots.prediction_bars(before, words, titles, compare=after, series=("all heads", "heads switched off")),
                tensors)


ABLATION_COLUMNS = ["token #", "rank", "before", "p before", "p after (same word)", "after", "p after", "KL (nats)"]


def ablation_table(data: dict) -> list[list]:
    rows = []
    for mask in data["fill_mask"] or []:
        for rank, (old, new, moved) in enumerate(zip(mask["before"], mask["after"], mask["before_words_after"])):
            rows.append([mask["position"], rank + 1, old["word"] or old["token"], round(old["probability"], 4), round(moved, 4),
                         new["word"] or new["token"], round(new["probability"], 4), round(mask["kl_divergence"], 4) if rank == 0 else ""])
    return rows


def ablation_markdown(data: dict, model: transformer.Model) -> str:
    changes = sorted(data["token_change"], key=lambda row: -row["change"])[:3]
    moved = ", ".join(f"“{html.escape(row['token'])}” ({row['change']:.3f})" for row in changes)
    lines = [f"**Switched off:** {html.escape(data['description'])}.",
             f"**Cosine of the sentence embedding to the original: {data['sentence_embedding_cosine']:.4f}** "
             f"(1 = unchanged). Tokens that moved most: {moved}."]
    if data["fill_mask"] is not None:
        kls = ", ".join(f"#{m['position']}: {m['kl_divergence']:.3f}" for m in data["fill_mask"])
        lines.append(f"**Masked-word predictions:** KL divergence (before ‖ after) at each mask, in nats: {kls}.")
    elif model.has_mlm_head:
        lines.append(f"Write {model.mask_token} in the text to also see how the masked-word predictions change.")
    else:
        lines.append("This model has no masked-LM head, so only the vectors are compared.")
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------------ one word, two contexts

WORD_TEXTS = ("We sat on the river bank.", "The bank approved my loan.")


@dataclass(frozen=True)
class WordComparison:
    jobs: tuple[Job, Job]
    result: analysis.WordInContexts


def compare_word(text_a: Any, text_b: Any, key: ModelKey, word: Any) -> WordComparison:
    if not isinstance(word, str) or not word.strip():
        raise InputProblem("Type the word to compare (it must appear in both texts).")
    if len(word) > 100:
        raise InputProblem("The word is too long: at most 100 characters.")
    if not isinstance(text_b, str) or not text_b.strip():
        raise InputProblem("Give two texts that share the word: the second text is empty.")
    jobs = (prepare(text_a, None, key), prepare(text_b, None, key))
    try:
        result = analysis.compare_word_in_contexts(jobs[0].run, jobs[1].run, word.strip())
    except ValueError as error:
        raise InputProblem(f"The word must appear in both texts: {one_line(error)}") from None
    return WordComparison(jobs, result)


def word_data(comparison: WordComparison) -> dict:
    result, (job_a, job_b) = comparison.result, comparison.jobs
    n_layers = len(result.cosine_by_layer) - 1
    return {
        "word": result.word,
        "positions": [list(result.positions[0]), list(result.positions[1])],
        "tokens": [[job_a.run.tokens[i] for i in result.positions[0]], [job_b.run.tokens[i] for i in result.positions[1]]],
        "labels": ["embeddings", *(f"layer {i}" for i in range(1, n_layers + 1))],
        "cosine_by_layer": [float(x) for x in result.cosine_by_layer.tolist()],
        "entropy_difference": (result.attention_entropy[1] - result.attention_entropy[0]).tolist(),
        "self_attention_difference": (result.self_attention[1] - result.self_attention[0]).tolist(),
    }


def _word_key(comparison: WordComparison) -> tuple:
    return ("word", comparison.jobs[0].cache_key, comparison.jobs[1].cache_key, comparison.result.word.lower())


def word_cosine_view(comparison: WordComparison) -> View:
    result = comparison.result
    labels = ["embeddings", *(f"layer {i}" for i in range(1, len(result.cosine_by_layer)))]
    low = min(0.0, float(result.cosine_by_layer.min()) - 0.05)
    return View("word-cosine-by-layer", _word_key(comparison) + ("cosine",),
                lambda: plots.layer_curve(result.cosine_by_layer, labels, limits=(low, 1.08), ylabel="cosine similarity",
                                          title=f"“{result.word}” in text A vs text B: cosine of its vectors after each layer"),
                lambda: {"cosine_by_layer": (result.cosine_by_layer, ("layer",))})


def word_heads_view(comparison: WordComparison) -> View:
    result = comparison.result
    entropy = result.attention_entropy[1] - result.attention_entropy[0]  # (L, H)
    itself = result.self_attention[1] - result.self_attention[0]  # (L, H)

    def tensors() -> Tensors:
        axes = ("layer", "head")
        return {"entropy_a": (result.attention_entropy[0], axes), "entropy_b": (result.attention_entropy[1], axes),
                "self_attention_a": (result.self_attention[0], axes), "self_attention_b": (result.self_attention[1], axes)}

    return View("word-heads", _word_key(comparison) + ("heads",),
                lambda: plots.layer_head_maps([entropy, itself],
                                              ["entropy of its attention: B − A", "weight it gives itself: B − A"],
                                              colorbar_labels=["nats", "attention weight"],
                                              title=f"How each head treats “{result.word}” differently in text B than in text A"),
                tensors)


def word_markdown(data: dict) -> str:
    cosines = data["cosine_by_layer"]
    pieces = [" ".join(tokens) for tokens in data["tokens"]]
    return (f"“{html.escape(data['word'])}” is token(s) {data['positions'][0]} ({html.escape(pieces[0])}) in text A and "
            f"{data['positions'][1]} ({html.escape(pieces[1])}) in text B. Its vectors start with cosine "
            f"**{cosines[0]:.3f}** after the embeddings and end at **{cosines[-1]:.3f}** after the last layer: the lower, "
            "the more the context changed what the model makes of the word.")


# ------------------------------------------------------------------------------------------ weight map

WEIGHT_COLUMNS = ["checkpoint tensor", "our parameter", "step it computes", "layer", "shape", "parameters", "file"]


def weight_map_data(key: ModelKey) -> dict:
    def build() -> dict:
        model = get_model(key)
        rows = weight_map.model_weight_map(model)
        return {
            "n_tensors": len(rows),
            "n_parameters": sum(row.n_parameters for row in rows),
            "files": sorted({row.file for row in rows}),
            "totals": weight_map.totals_by_layer(rows),
            "rows": [{"checkpoint_name": row.checkpoint_name, "parameter": row.parameter, "step": row.step, "layer": row.layer,
                      "shape": list(row.shape), "n_parameters": row.n_parameters, "file": row.file} for row in rows],
        }

    return _weight_maps.get_or_build(key, build)


def weight_table(data: dict) -> list[list]:
    return [[row["checkpoint_name"], row["parameter"] or "(not used)", row["step"], "" if row["layer"] is None else row["layer"],
             " × ".join(map(str, row["shape"])) or "scalar", f"{row['n_parameters']:,}", row["file"]] for row in data["rows"]]


def weight_totals_table(data: dict) -> list[list]:
    total = data["n_parameters"] or 1
    return [[name, f"{count:,}", f"{100 * count / total:.1f}%"] for name, count in data["totals"].items()]


def weights_markdown(data: dict, model: transformer.Model) -> str:
    shared = (" This model shares one layer's weights across all its layers (ALBERT), so the file holds a single layer."
              if model.config.shared_layers else "")
    return (f"**{data['n_tensors']}** tensors with **{data['n_parameters']:,}** numbers in {', '.join(data['files'])}, "
            f"read from the file headers (no weights loaded). Each row says which parameter of our encoder the tensor "
            f"fills and which step of the step-through it computes.{shared}")


# ---------------------------------------------------------------------------------------------- exports

EXPORT_FORMATS = {"figure": ("png", "svg"), "tensors": ("safetensors", "csv")}


def _export_root() -> Path:
    return _figure_path().parent  # the figures' temp folder; each export gets its own subfolder


def export_file(filename: str, write: Callable[[Path], None]) -> str:
    """Write one download into a fresh folder of the app's temp dir; the oldest folders are deleted (bounded)."""
    folder = _export_root() / f"export-{uuid.uuid4().hex}"
    folder.mkdir()
    path = folder / filename
    try:
        write(path)
    except BaseException:
        _delete_folder(folder)
        raise
    _exports.get_or_build(folder, lambda: folder)
    return str(path)


def export_figure_file(view: View, fmt: str) -> str:
    if fmt == "png":
        return export_file(f"{view.name}.png", lambda path: shutil.copyfile(png(view), path))
    return export_file(f"{view.name}.svg", lambda path: path.write_bytes(plots.render_bytes(view.draw(), "svg")))


def _tensor_metadata(view: View, tensors: Tensors, source: str) -> dict[str, str]:
    return {"view": view.name, "axes": json.dumps({name: list(axes) for name, (_, axes) in tensors.items()}),
            "tokens": json.dumps(list(view.tokens or ()), ensure_ascii=False), "source": source}


def export_tensors_file(view: View, fmt: str, source: str) -> str:
    tensors = {name: (tensor.detach().cpu(), axes) for name, (tensor, axes) in view.tensors().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        # clone: safetensors refuses tensors that share memory (slices of one step)
        plain = {name: tensor.contiguous().clone() for name, (tensor, _) in tensors.items()}
        return export_file(f"{view.name}.safetensors",
                           lambda path: save_file(plain, str(path), metadata=_tensor_metadata(view, tensors, source)))
    count = sum(tensor.numel() for tensor, _ in tensors.values())
    if count > MAX_CSV_VALUES:
        raise InputProblem(f"This view has {count:,} numbers, more than the {MAX_CSV_VALUES:,} written as CSV: "
                           "download the tensors as .safetensors instead.")
    tokens = list(view.tokens) if view.tokens else None

    def as_csv(tensor: torch.Tensor, axes: tuple[str, ...]) -> str:
        return export.tensor_to_csv(tensor, axes, tokens if any(a in ("token", "query", "key") for a in axes) else None)

    if len(tensors) == 1:
        (name, (tensor, axes)), = tensors.items()
        return export_file(f"{view.name}.csv", lambda path: path.write_text(as_csv(tensor, axes), encoding="utf-8"))

    def write_zip(path: Path) -> None:  # one CSV per tensor: their axes differ
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, (tensor, axes) in tensors.items():
                archive.writestr(f"{name}.csv", as_csv(tensor, axes))

    return export_file(f"{view.name}-csv.zip", write_zip)


def export_run_file(job: Job) -> str:
    size = _run_bytes(job.run)
    if size > MAX_RUN_EXPORT_BYTES:
        raise InputProblem(f"This run holds {size / 2**20:,.0f} MB of tensors, more than the {MAX_RUN_EXPORT_BYTES // 2**20:,} MB "
                           "offered for download: use a shorter text, or export one view's tensors.")
    return export_file("run.safetensors", lambda path: export.save_run(job.run, str(path), job.model.source.describe()))


def _options(options: Any) -> dict:
    if options is None or options == "":
        return {}
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except json.JSONDecodeError:
            raise InputProblem("options must be a JSON object such as {\"layer\": 2, \"head\": 3}.") from None
    if not isinstance(options, dict):
        raise InputProblem(f"options must be a JSON object such as {{\"layer\": 2, \"head\": 3}}, not {type(options).__name__}.")
    return options


def _step_index(job: Job, layer: Any, step: Any) -> int:
    groups = sections(job)
    numbers = [number for number, _, _ in groups]
    layer = whole_number(layer, "layer", numbers[0], numbers[-1], "-1 is the embeddings")
    indices = dict((number, ix) for number, _, ix in groups)[layer]
    position = whole_number(step, "step", 0, len(indices) - 1, f"{'this layer' if layer >= 0 else 'this section'} has {len(indices)} steps")
    return indices[position]


# view name -> (its options with defaults, how to build it from (text_a, text_b, model key, options))
ViewBuilder = Callable[[Any, Any, ModelKey, dict], View]


def _job_view(build: Callable[[Job, dict], View]) -> ViewBuilder:
    return lambda a, b, key, o: build(prepare(a, b, key), o)


def _step_option_view(job: Job, o: dict) -> View:
    head = _check_head(job, o["head"], allow_all=True)
    index = _step_index(job, o["layer"], o["step"])
    return step_figure_view(job, index, head if head >= 0 and job.run.steps[index].axes[0] == "head" else None)


def _fill_option_view(job: Job, o: dict) -> View:
    top_k = _top_k(o["top_k"])
    return fill_mask_view(job, fill_mask_data(job, top_k), top_k)


def _lens_option_view(job: Job, o: dict) -> View:
    top_k = _top_k(o["top_k"])
    return logit_lens_view(job, logit_lens_data(job, o["position"], top_k), top_k)


def _ablation_predictions_option_view(a: Any, b: Any, key: ModelKey, o: dict) -> View:
    ablation, top_k = ablate(a, b, key, o["heads"]), _top_k(o["top_k"])
    _require_head(ablation.original.model)
    data = ablation_data(ablation, top_k)
    if data["fill_mask"] is None:
        raise InputProblem(f"The text has no {ablation.original.model.mask_token} token, so there are no predictions to compare.")
    return ablation_predictions_view(ablation, data["fill_mask"], top_k)


VIEWS: dict[str, tuple[dict[str, Any], ViewBuilder]] = {
    "positional": ({"width": 128, "length": 128}, lambda a, b, key, o: positional_view(o["width"], o["length"])),
    "position_similarity": ({"length": 128}, lambda a, b, key, o: position_similarity_view(key, o["length"])),
    "input_composition": ({}, _job_view(lambda job, o: composition_view(job))),
    "step": ({"layer": -1, "step": 0, "head": -1}, _job_view(_step_option_view)),
    "attention_head": ({"layer": 0, "head": 0}, _job_view(
        lambda job, o: attention_head_view(job, _check_layer(job, o["layer"]), _check_head(job, o["head"])))),
    "attention_layer": ({"layer": 0}, _job_view(lambda job, o: attention_layer_view(job, _check_layer(job, o["layer"])))),
    "attention_flow": ({"layer": 0, "head": 0}, _job_view(
        lambda job, o: attention_flow_view(job, _check_layer(job, o["layer"]), _check_head(job, o["head"])))),
    "attention_overview": ({}, _job_view(lambda job, o: attention_overview_view(job))),
    "sentence_embedding": ({}, _job_view(lambda job, o: embedding_view(job))),
    "token_cosine": ({}, _job_view(lambda job, o: token_cosine_view(job))),
    "fill_mask": ({"top_k": 5}, _job_view(_fill_option_view)),
    "logit_lens": ({"position": -1, "top_k": 5}, _job_view(_lens_option_view)),
    "ablation_change": ({"heads": ""}, lambda a, b, key, o: ablation_change_view(ablate(a, b, key, o["heads"]))),
    "ablation_predictions": ({"heads": "", "top_k": 5}, _ablation_predictions_option_view),
    "word_cosine": ({"word": ""}, lambda a, b, key, o: word_cosine_view(compare_word(a, b, key, o["word"]))),
    "word_heads": ({"word": ""}, lambda a, b, key, o: word_heads_view(compare_word(a, b, key, o["word"]))),
}


def build_view(view: Any, text_a: Any, text_b: Any, key: ModelKey, options: Any) -> View:
    """The named view with its options checked (unknown names and options are input problems)."""
    if not isinstance(view, str) or view not in VIEWS:
        raise InputProblem(f"Unknown view {str(view)[:40]!r}: choose one of {', '.join(VIEWS)}.")
    defaults, build = VIEWS[view]
    given = _options(options)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise InputProblem(f"The view {view} has no option {', '.join(map(str, unknown))[:80]}; its options: {allowed}.")
    return build(text_a, text_b, key, {**defaults, **given})


def _format(kind: str, fmt: Any) -> str:
    allowed = EXPORT_FORMATS[kind]
    if not isinstance(fmt, str) or fmt.strip().lower().lstrip(".") not in allowed:
        raise InputProblem(f"format must be {' or '.join(allowed)}, not {str(fmt)[:20]!r}.")
    return fmt.strip().lower().lstrip(".")


# ------------------------------------------------------------------------------------------ API endpoints
# Plain values in, plain values out: each is registered below with api_name=... for gradio_client.


def api_endpoint(function: Callable) -> Callable:
    """Turn input problems into one-line gr.Error messages; log anything unexpected, show no stack trace."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (InputProblem, transformer.TransformerError) as error:
            raise gr.Error(one_line(error), print_exception=False) from None
        except gr.Error:
            raise
        except Exception:
            log.exception("unexpected failure in %s", function.__name__)
            raise gr.Error("Something went wrong on the server while computing this; the details are in the server log.") from None

    return wrapper


@api_endpoint
def load_model(model_id: str, revision: str, progress=gr.Progress(track_tqdm=True)) -> dict:
    """Load a BERT-family model from the Hub (empty id: the bundled default) and describe it."""
    key = model_key(model_id, revision)
    progress(0.05, desc=f"Loading {key[0] or 'the bundled model'} …")
    model = get_model(key)
    progress(1.0, desc="Loaded")
    return describe_model(model)


@api_endpoint
def tokenize(text_a: str, text_b: str, model_id: str, revision: str) -> dict:
    """The tokens of the text (pair): token, id, character span, segment, special, unknown; counts; truncation."""
    return tokenization_data(prepare(text_a, text_b, model_key(model_id, revision)))


@api_endpoint
def positional(width: float, length: float) -> str:
    """The sinusoidal positional encoding table for a model width and a number of positions, as a PNG."""
    return positional_figure(width, length)


@api_endpoint
def position_similarity(model_id: str, revision: str, length: float) -> str:
    """Cosine similarity between positions: sinusoidal table next to the model's learned table."""
    return position_similarity_figure(model_key(model_id, revision), length)


@api_endpoint
def input_composition(text_a: str, text_b: str, model_id: str, revision: str) -> str:
    """How much of each token's input vector comes from its token, position and segment embeddings."""
    return composition_figure(prepare(text_a, text_b, model_key(model_id, revision)))


@api_endpoint
def walk_step(text_a: str, text_b: str, model_id: str, revision: str, layer: float, step: float, head: float) -> tuple[dict, str]:
    """One recorded step. layer: -1 embeddings, 0..L-1 a layer (L: final norm of pre-LN models); step: its
    index within that layer; head: -1 for all heads of a 3-D step. Returns its description and heatmap."""
    job = prepare(text_a, text_b, model_key(model_id, revision))
    groups = sections(job)
    numbers = [number for number, _, _ in groups]
    layer = whole_number(layer, "layer", numbers[0], numbers[-1], "-1 is the embeddings")
    indices = dict((number, ix) for number, _, ix in groups)[layer]
    position = whole_number(step, "step", 0, len(indices) - 1, f"{'this layer' if layer >= 0 else 'this section'} has {len(indices)} steps")
    head = _check_head(job, head, allow_all=True)
    info, image, stats = step_view(job, indices[position], head)
    info["statistics"] = [dict(zip(STEP_STAT_COLUMNS, row)) for row in stats]
    return info, image


@api_endpoint
def attention_head(text_a: str, text_b: str, model_id: str, revision: str, layer: float, head: float) -> str:
    """One head's attention pattern as a token-by-token heatmap."""
    job = prepare(text_a, text_b, model_key(model_id, revision))
    return attention_head_figure(job, _check_layer(job, layer), _check_head(job, head))


@api_endpoint
def attention_layer(text_a: str, text_b: str, model_id: str, revision: str, layer: float) -> str:
    """All heads of one layer as a mosaic."""
    job = prepare(text_a, text_b, model_key(model_id, revision))
    return attention_layer_figure(job, _check_layer(job, layer))


@api_endpoint
def attention_flow(text_a: str, text_b: str, model_id: str, revision: str, layer: float, head: float) -> str:
    """One head's weights, the norm of what it moves (Kobayashi et al. 2020) and attention rollout (Abnar & Zuidema 2020)."""
    job = prepare(text_a, text_b, model_key(model_id, revision))
    return attention_flow_figure(job, _check_layer(job, layer), _check_head(job, head))


@api_endpoint
def attention_overview(text_a: str, text_b: str, model_id: str, revision: str) -> str:
    """Every head of every layer as one mosaic."""
    return attention_overview_figure(prepare(text_a, text_b, model_key(model_id, revision)))


@api_endpoint
def summarize_heads(text_a: str, text_b: str, model_id: str, revision: str, layer: float) -> dict:
    """Per-head summary (entropy, share of attention to [CLS], [SEP], itself, previous, next); layer -1: all."""
    job = prepare(text_a, text_b, model_key(model_id, revision))
    chosen = whole_number(layer, "layer", -1, _layer_count(job) - 1, "-1 for all layers")
    return {"heads": head_summary(job, None if chosen == -1 else chosen)}


@api_endpoint
def output(text_a: str, text_b: str, model_id: str, revision: str) -> tuple[dict, str, str]:
    """The sentence embedding(s), the cosine similarity of the two texts, and the tokens' cosine similarity."""
    return output_view(prepare(text_a, text_b, model_key(model_id, revision)))


@api_endpoint
def fill_mask(text_a: str, text_b: str, model_id: str, revision: str, top_k: float) -> tuple[dict, str]:
    """For each mask token in the text, the top_k words with their probabilities (models with a masked-LM head)."""
    job = prepare(text_a, text_b, model_key(model_id, revision))
    top_k = _top_k(top_k)
    data = fill_mask_data(job, top_k)
    return data, png(fill_mask_view(job, data, top_k))


@api_endpoint
def logit_lens(text_a: str, text_b: str, model_id: str, revision: str, position: float, top_k: float) -> tuple[dict, str]:
    """The masked-LM head read out after the embeddings and after every layer at token position (-1: first mask)."""
    job = prepare(text_a, text_b, model_key(model_id, revision))
    top_k = _top_k(top_k)
    data = logit_lens_data(job, position, top_k)
    return data, png(logit_lens_view(job, data, top_k))


@api_endpoint
def mask_token(text_a: str, text_b: str, model_id: str, revision: str, index: float) -> str:
    """The first text with token number index replaced by the model's mask token."""
    return masked_text(prepare(text_a, text_b, model_key(model_id, revision)), index)


@api_endpoint
def ablate_heads(text_a: str, text_b: str, model_id: str, revision: str, heads: str, top_k: float) -> tuple[dict, str, str | None]:
    """Switch heads off ("layer.head" or "layer.*", comma-separated) and compare with the full model: sentence
    embedding cosine, per-token change of the final vectors, and (with a head and mask tokens) the predictions."""
    ablation = ablate(text_a, text_b, model_key(model_id, revision), heads)
    top_k = _top_k(top_k)
    data = ablation_data(ablation, top_k)
    predictions = None if data["fill_mask"] is None else png(ablation_predictions_view(ablation, data["fill_mask"], top_k))
    return data, png(ablation_change_view(ablation)), predictions


@api_endpoint
def word_in_contexts(text_a: str, text_b: str, model_id: str, revision: str, word: str) -> tuple[dict, str, str]:
    """One word in two texts: cosine of its vectors layer by layer, and per head the difference of its attention."""
    comparison = compare_word(text_a, text_b, model_key(model_id, revision), word)
    return word_data(comparison), png(word_cosine_view(comparison)), png(word_heads_view(comparison))


@api_endpoint
def model_weights(model_id: str, revision: str) -> dict:
    """Every tensor of the model's checkpoint files: name, our parameter, its step, layer, shape, size; totals per layer."""
    return weight_map_data(model_key(model_id, revision))


@api_endpoint
def export_figure(text_a: str, text_b: str, model_id: str, revision: str, view: str, options: Any, file_format: str) -> str:
    """A view's figure as a PNG or SVG file. view: see VIEWS (e.g. "attention_head"); options: JSON such as {"layer": 2, "head": 3}."""
    fmt = _format("figure", file_format)
    return export_figure_file(build_view(view, text_a, text_b, model_key(model_id, revision), options), fmt)


@api_endpoint
def export_tensors(text_a: str, text_b: str, model_id: str, revision: str, view: str, options: Any, file_format: str) -> str:
    """The tensors behind a view as .safetensors (axes and tokens in its metadata) or CSV (a zip of CSVs for several)."""
    fmt = _format("tensors", file_format)
    key = model_key(model_id, revision)
    return export_tensors_file(build_view(view, text_a, text_b, key, options), fmt, get_model(key).source.describe())


@api_endpoint
def export_run(text_a: str, text_b: str, model_id: str, revision: str) -> str:
    """Every recorded step of the run as one .safetensors file, one tensor per step name (tokens in the metadata)."""
    return export_run_file(prepare(text_a, text_b, model_key(model_id, revision)))


# ----------------------------------------------------------------------------------------- page handlers
# The page keeps the model choice in a gr.State (per browser session); these adapt the API functions to it.

TABS = ("tokens", "positions", "steps", "attention", "output")


def _skips(count: int) -> Any:
    """Leave ``count`` outputs as they are (one output takes a bare skip: Gradio does not unpack a 1-tuple)."""
    return gr.skip() if count == 1 else tuple(gr.skip() for _ in range(count))


def page_handler(count: int, warn: bool = True):
    """Page events: input problems become a warning toast (optional) and leave the outputs as they were."""

    def decorate(function: Callable) -> Callable:
        @wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except (InputProblem, transformer.TransformerError) as error:
                if warn:
                    gr.Warning(one_line(error))
                return _skips(count)
            except Exception:
                log.exception("unexpected failure in %s", function.__name__)
                gr.Warning("Something went wrong while drawing this; the details are in the server log.")
                return _skips(count)

        return wrapper

    return decorate


def when_current(tab: str, handler: Callable, count: int) -> Callable:
    """After Run, redraw a tab only if it is the one being looked at (the others draw when opened)."""

    def guarded(current_tab: str, *args):
        return handler(*args) if current_tab == tab else _skips(count)

    return guarded


def page_run(text_a: str, text_b: str, model: ModelKey):
    """Run: encode once (cached), then fill the status line and the Tokenization tab."""
    try:
        job = prepare(text_a, text_b, model)
    except (InputProblem, transformer.TransformerError) as error:
        gr.Warning(one_line(error))
        return (f"⚠️ {html.escape(one_line(error))}", *_skips(3))
    data = tokenization_data(job)
    timing = f"encoded in {job.seconds * 1000:.0f} ms" if job.seconds else "from cache"
    pair = " (pair)" if job.texts.b is not None else ""
    status = (f"**{len(job.run.tokens)} tokens**{pair} · {html.escape(job.model.source.describe())} · "
              f"{job.model.config.n_layers} layers × {job.model.config.n_heads} heads · {timing}")
    if data["truncated"] or job.texts.notices:
        status += " · ⚠️ input was cut, see Tokenization"
    return status, tokenization_html(data, job.texts), tokenization_summary(data, job.texts), token_table(data)


@page_handler(4, warn=False)
def page_positions(text_a: str, text_b: str, model: ModelKey, width: float, length: float):
    job = prepare(text_a, text_b, model)
    return (positional_figure(width, length), position_similarity_figure(model, min(int(length), job.model.config.max_positions)),
            composition_figure(job), positions_note(job.model))


@page_handler(2)
def page_positional_sliders(model: ModelKey, width: float, length: float):
    limit = get_model(model).config.max_positions
    return positional_figure(width, length), position_similarity_figure(model, min(int(length), limit))


STEP_OUTPUTS = 7


@page_handler(STEP_OUTPUTS, warn=False)
def page_step(text_a: str, text_b: str, model: ModelKey, index: int, head: int):
    """Draw step ``index`` of the whole record and set the section and step pickers to match it."""
    job = prepare(text_a, text_b, model)
    index = int(np.clip(index or 0, 0, len(job.run.steps) - 1))
    groups = sections(job)
    section, position = _locate_step(job, index)
    head = head if head is not None and -1 <= head < job.model.config.n_heads else -1
    info, image, stats = step_view(job, index, head)
    indices = dict((number, ix) for number, _, ix in groups)[section]
    step_choices = [(f"{i + 1}. {job.run.steps[j].kind}", i) for i, j in enumerate(indices)]
    return (
        index,
        gr.update(choices=[(title, number) for number, title, _ in groups], value=section),
        gr.update(choices=step_choices, value=position),
        step_markdown(info),
        step_code(info),
        image,
        stats,
    )


def page_step_move(text_a: str, text_b: str, model: ModelKey, index: int, head: int, delta: int):
    return page_step(text_a, text_b, model, (index or 0) + delta, head)


@page_handler(STEP_OUTPUTS, warn=False)
def page_step_section(text_a: str, text_b: str, model: ModelKey, section: int, head: int):
    job = prepare(text_a, text_b, model)
    indices = dict((number, ix) for number, _, ix in sections(job)).get(section)
    return page_step(text_a, text_b, model, indices[0] if indices else 0, head)


@page_handler(STEP_OUTPUTS, warn=False)
def page_step_pick(text_a: str, text_b: str, model: ModelKey, section: int, position: int, head: int):
    job = prepare(text_a, text_b, model)
    indices = dict((number, ix) for number, _, ix in sections(job)).get(section, [0])
    return page_step(text_a, text_b, model, indices[min(max(position or 0, 0), len(indices) - 1)], head)


@page_handler(5, warn=False)
def page_attention(text_a: str, text_b: str, model: ModelKey, layer: float, head: float):
    job = prepare(text_a, text_b, model)
    layer, head = _check_layer(job, int(layer)), _check_head(job, int(head))
    return (attention_head_figure(job, layer, head), attention_layer_figure(job, layer),
            attention_flow_figure(job, layer, head), attention_overview_figure(job), head_table(head_summary(job, None)))


@page_handler(3, warn=False)
def page_attention_pick(text_a: str, text_b: str, model: ModelKey, layer: float, head: float):
    job = prepare(text_a, text_b, model)
    layer, head = _check_layer(job, int(layer)), _check_head(job, int(head))
    return attention_head_figure(job, layer, head), attention_layer_figure(job, layer), attention_flow_figure(job, layer, head)


@page_handler(3, warn=False)
def page_output(text_a: str, text_b: str, model: ModelKey):
    info, strips, similarity = output_view(prepare(text_a, text_b, model))
    return output_markdown(info), strips, similarity


def page_load_model(model_id: str, revision: str, current: ModelKey, fill_text: str = "",
                    progress=gr.Progress(track_tqdm=True)):
    """Load the typed model for this browser session; on failure say why and keep the current one."""
    try:
        key = model_key(model_id, revision)
        progress(0.05, desc=f"Loading {key[0] or 'the bundled model'} …")
        model = get_model(key)
    except (InputProblem, transformer.TransformerError) as error:
        reason = one_line(error)
        gr.Warning(f"Model not loaded: {reason}")
        info = describe_model(get_model(current))
        return (current, model_markdown(info) + f"\n\n⚠️ **Not loaded:** {html.escape(reason)} (still using the model above)",
                *_skips(5))
    config = model.config
    return (
        key,
        model_markdown(describe_model(model)),
        gr.update(maximum=config.n_layers - 1, value=min(config.n_layers - 1, 0)),
        gr.update(maximum=config.n_heads - 1, value=0),
        gr.update(choices=_step_head_choices(config.n_heads), value=-1),
        gr.update(choices=head_choices(config.n_layers, config.n_heads), value=[DEFAULT_ABLATION]),
        _with_mask_token(fill_text, model.mask_token),
    )


def _with_mask_token(text: Any, mask: str | None) -> Any:
    """The fill-mask text written with this model's mask token ([MASK] and <mask> are swapped)."""
    if not isinstance(text, str) or not mask:
        return gr.skip()
    return re.sub(r"\[MASK\]|<mask>", lambda _: mask, text)


def _step_head_choices(n_heads: int) -> list[tuple[str, int]]:
    return [("All heads", -1)] + [(f"Head {h}", h) for h in range(n_heads)]


def page_start(model: ModelKey) -> str:
    return model_markdown(describe_model(get_model(model)))


MASKED_OUTPUTS = 8
DEFAULT_ABLATION = "0.*"


@page_handler(MASKED_OUTPUTS)
def page_masked(text: str, model: ModelKey, top_k: float):
    """The fill-mask tab: the clickable tokens, the predictions at each mask and the logit lens at the first."""
    chosen = get_model(model)
    if not chosen.has_mlm_head or chosen.mask_token is None:
        return (f"⚠️ {html.escape(no_head_sentence(chosen))}", gr.update(visible=False), *_skips(MASKED_OUTPUTS - 2))
    job = prepare(text, None, model)
    top_k = _top_k(top_k)
    masks = _mask_positions(job)
    tokens, choices = highlighted_tokens(job), mask_token_choices(job)
    if not masks:
        note = (f"Write **{html.escape(chosen.mask_token)}** where a word should be predicted, or click a token "
                "below to mask it. You can still pick any position for the logit lens.")
        return note, gr.update(visible=True), tokens, None, [], gr.update(choices=choices, value=None), None, []
    data = fill_mask_data(job, top_k)
    lens = logit_lens_data(job, masks[0], top_k)
    note = (f"{len(masks)} mask{'s' if len(masks) > 1 else ''} · the top {top_k} words of "
            f"{html.escape(chosen.source.location)}'s masked-LM head" + (f" (the chart shows the first {plots.MAX_PANELS})"
                                                                       if len(masks) > plots.MAX_PANELS else ""))
    return (note, gr.update(visible=True), tokens, png(fill_mask_view(job, data, top_k)), fill_mask_table(data),
            gr.update(choices=choices, value=masks[0]), png(logit_lens_view(job, lens, top_k)), logit_lens_table(lens))


@page_handler(2)
def page_lens(text: str, model: ModelKey, top_k: float, position: Any):
    if position is None:
        return _skips(2)
    job = prepare(text, None, model)
    top_k = _top_k(top_k)
    lens = logit_lens_data(job, position, top_k)
    return png(logit_lens_view(job, lens, top_k)), logit_lens_table(lens)


@page_handler(1)
def page_mask_click(text: str, model: ModelKey, evt: gr.SelectData):
    """Clicking a token of the strip masks it in the text (the Predict chain then runs)."""
    return masked_text(prepare(text, None, model), evt.index)


ABLATION_OUTPUTS = 4


@page_handler(ABLATION_OUTPUTS)
def page_ablation(text_a: str, text_b: str, model: ModelKey, heads: Any):
    ablation = ablate(text_a, text_b, model, heads or "")
    data = ablation_data(ablation, 5)
    shift = data["fill_mask"]
    predictions = png(ablation_predictions_view(ablation, shift, 5)) if shift else None
    return (ablation_markdown(data, ablation.original.model), png(ablation_change_view(ablation)),
            gr.update(value=predictions, visible=predictions is not None),
            gr.update(value=ablation_table(data), visible=predictions is not None))


@page_handler(3)
def page_word(text_a: str, text_b: str, model: ModelKey, word: str):
    comparison = compare_word(text_a, text_b, model, word)
    return word_markdown(word_data(comparison)), png(word_cosine_view(comparison)), png(word_heads_view(comparison))


@page_handler(3, warn=False)
def page_weights(model: ModelKey):
    data = weight_map_data(model)
    return weights_markdown(data, get_model(model)), weight_totals_table(data), weight_table(data)


# Which views each tab offers for download (label, view name).
TAB_VIEWS = {
    "tokens": [],
    "positions": [("Sinusoidal table", "positional"), ("Position similarity", "position_similarity"),
                  ("Input composition", "input_composition")],
    "steps": [("This step", "step")],
    "attention": [("One head", "attention_head"), ("All heads of the layer", "attention_layer"),
                  ("Weights, moved vectors, rollout", "attention_flow"), ("All layers × heads", "attention_overview")],
    "output": [("Sentence embedding", "sentence_embedding"), ("Token-by-token cosine", "token_cosine")],
    "masked": [("Fill-mask", "fill_mask"), ("Logit lens", "logit_lens")],
    "ablation": [("Change per token", "ablation_change"), ("Predictions before and after", "ablation_predictions")],
    "word": [("Cosine by layer", "word_cosine"), ("Per-head differences", "word_heads")],
    "weights": [],
}


def page_export_choices(tab: str):
    """The open tab's views in the download box; the last download is hidden (it belonged to another tab)."""
    choices = TAB_VIEWS.get(tab, [])
    return (gr.update(choices=choices, value=choices[0][1] if choices else None,
                      label="View of this tab" if choices else "This tab has no figure; the whole run can be downloaded"),
            gr.update(value=None, visible=False))


@page_handler(1)
def page_export(kind: str, tab: str, view: str | None, text_a: str, text_b: str, model: ModelKey, width: float, length: float,
                layer: float, head: float, step_index: int, step_head: int, fill_text: str, top_k: float,
                lens_position: Any, heads: Any, context_a: str, context_b: str, word: str):
    """Download what the open tab shows: its figure (PNG, SVG), the tensors behind it, or the whole run."""
    return gr.update(value=_export_for_page(kind, tab, view, text_a, text_b, model, width, length, layer, head, step_index,
                                            step_head, fill_text, top_k, lens_position, heads, context_a, context_b, word),
                     visible=True)


def _export_for_page(kind: str, tab: str, view: str | None, text_a: str, text_b: str, model: ModelKey, width: float,
                     length: float, layer: float, head: float, step_index: int, step_head: int, fill_text: str, top_k: float,
                     lens_position: Any, heads: Any, context_a: str, context_b: str, word: str) -> str:
    """The page's controls as the options of the open tab's view; writes the download and returns its path."""
    if kind == "run":
        masked = tab == "masked"
        job = prepare(fill_text if masked else text_a, None if masked else text_b, model)
        return export_run_file(job)
    if view not in VIEWS or view not in {name for _, name in TAB_VIEWS.get(tab, [])}:
        raise InputProblem("This tab has no figure to download: the whole run can be.")
    texts, options = (text_a, text_b), {}
    if view == "positional":
        options = {"width": width, "length": length}
    elif view == "position_similarity":
        options = {"length": min(int(length), get_model(model).max_tokens)}
    elif view == "step":
        job = prepare(text_a, text_b, model)
        section, position = _locate_step(job, int(np.clip(step_index or 0, 0, len(job.run.steps) - 1)))
        options = {"layer": section, "step": position, "head": step_head if step_head is not None else -1}
    elif view.startswith("attention_"):
        options = {"layer": layer, "head": head}
        options = {name: options[name] for name in VIEWS[view][0]}
    elif view in ("fill_mask", "logit_lens"):
        texts = (fill_text, None)
        options = {"top_k": top_k} if view == "fill_mask" else {"top_k": top_k, "position": -1 if lens_position is None else lens_position}
    elif view.startswith("ablation_"):
        options = {"heads": ", ".join(heads or [])} if view == "ablation_change" else {"heads": ", ".join(heads or []), "top_k": 5}
    elif view.startswith("word_"):
        texts, options = (context_a, context_b), {"word": word}
    built = build_view(view, *texts, model, options)
    if kind in ("png", "svg"):
        return export_figure_file(built, kind)
    return export_tensors_file(built, kind, get_model(model).source.describe())


# ---------------------------------------------------------------------------------------------------- page

EXAMPLES = [
    ["The cat sat on the mat because it was tired.", ""],
    ["I sat on the river bank and watched the water flow.", "She went to the bank to ask for a loan."],
    ["東京は日本の首都です。I ❤️ Tokyo 🍣 — שלום, مرحبا!", ""],
    [
        "The Transformer is a neural network architecture that reads a whole sequence at once. Instead of "
        "processing words one after another, like a recurrent network, it lets every token look at every other "
        "token through a mechanism called self-attention. Each token is first turned into a vector by an "
        "embedding table, and a position vector is added so that the model can tell word order apart. The "
        "vectors then pass through a stack of identical layers. In each layer, attention heads compute how "
        "strongly each token should attend to each other token, mix the value vectors accordingly, and add the "
        "result back to the token's own vector. A small feed-forward network then transforms every token "
        "separately. After the last layer, each token's vector reflects its meaning in context: the word bank "
        "gets a different vector next to river than next to money. Sentence encoders such as MiniLM average "
        "these vectors into one embedding per sentence, so that sentences with similar meanings end up close "
        "together, which is what semantic search and clustering rely on.",
        "",
    ],
]
DEFAULT_TEXT = EXAMPLES[0][0]
FILL_TEXT = "The river bank was [MASK] after the storm."

INTRO = """
# Transformer Explainer
Type a sentence (or two, for a pair) and press **Run**: the encoder reads it once, records every
intermediate step, and each tab below draws a different part of that one forward pass: how text becomes
tokens, how positions are encoded, every matrix of every layer in order, what the attention heads look at,
and the sentence embedding that comes out. Further tabs predict masked words (for checkpoints with a
masked-LM head), switch attention heads off, follow one word through two contexts and list the checkpoint's
weights; every figure and the tensors behind it can be downloaded.
"""

CSS = """
.tok-view { font-size: 15px; line-height: 1.9; }
.tok-label { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; opacity: .65; margin-top: 6px; }
.tok-text { white-space: pre-wrap; word-break: break-word; unicode-bidi: plaintext; }
.tok { border-radius: 4px; padding: 1px 0; }
.tok-c0 { background: #dbeafe; } .tok-c1 { background: #fde68a; } .tok-c2 { background: #bbf7d0; } .tok-c3 { background: #fbcfe8; }
.tok-unk { background: #fecaca; outline: 1px dashed #dc2626; }
.tok-special { background: #e5e7eb; font-weight: 600; }
.tok-cut { color: #9ca3af; text-decoration: line-through; }
.tok-chips { display: flex; flex-wrap: wrap; gap: 4px; }
.chip { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; padding: 1px 6px; border-radius: 5px; color: #111827; }
.dark .tok, .dark .chip { color: #111827; }
#status { min-height: 1.6em; }
"""

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def build_demo() -> gr.Blocks:
    default_config = transformer.EncoderConfig(vocab_size=30522, d_model=384, n_layers=6, n_heads=12, d_ff=1536)
    with gr.Blocks(title="Transformer Explainer", delete_cache=(1800, 3600)) as demo:
        model_state = gr.State(DEFAULT_KEY)
        current_tab = gr.State("tokens")
        step_index = gr.State(0)

        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                text_a = gr.Textbox(label="Text", value=DEFAULT_TEXT, lines=3, max_lines=12, elem_id="text-a")
                text_b = gr.Textbox(label="Second text (optional: makes a sentence pair)", lines=1, max_lines=6,
                                    placeholder="e.g. She went to the bank to ask for a loan.", elem_id="text-b")
                run_button = gr.Button("Run", variant="primary", elem_id="run")
                examples = gr.Examples(EXAMPLES, inputs=[text_a, text_b], label="Examples (click one to run it)",
                                       cache_examples=False, examples_per_page=4)
            with gr.Column(scale=2):
                with gr.Group():
                    model_info = gr.Markdown("Loading the bundled model …", elem_id="model-info", padding=True)
                    repo_box = gr.Textbox(label="Hub model (any BERT-family repo id; empty = bundled default)",
                                          placeholder="google-bert/bert-base-uncased", elem_id="repo")
                    revision_box = gr.Textbox(label="Revision (optional: branch, tag or commit)", placeholder="main")
                    load_button = gr.Button("Load model", elem_id="load")
                model_examples = gr.Examples([[name] for name in SUGGESTED_MODELS], inputs=[repo_box], cache_examples=False,
                                             label="Checkpoints with a masked-LM head (click one to load it from the Hub)",
                                             examples_per_page=len(SUGGESTED_MODELS))
        status = gr.Markdown(elem_id="status")

        with gr.Tabs():
            with gr.Tab("1 · Tokenization", id="tokens") as tab_tokens:
                token_summary = gr.Markdown()
                token_html = gr.HTML()
                token_frame = gr.Dataframe(headers=TOKEN_COLUMNS, interactive=False, max_height=420, label="Tokens", elem_id="token-table",
                                           column_widths=["6%", "18%", "10%", "12%", "18%", "10%", "12%", "14%"])
            with gr.Tab("2 · Positional encodings", id="positions") as tab_positions:
                gr.Markdown(
                    "Attention by itself ignores order, so each position gets a vector too. The original Transformer "
                    "uses fixed sine and cosine waves of many frequencies (left); BERT-family models *learn* one "
                    "vector per position instead. Slide the width and the number of positions:")
                with gr.Row():
                    width_slider = gr.Slider(8, 1024, value=128, step=2, label="model width d (sinusoid)")
                    length_slider = gr.Slider(8, 512, value=128, step=1, label="positions")
                sinusoid_image = gr.Image(label="Sinusoidal encoding", format="png", type="filepath", interactive=False, elem_classes="plot")
                gr.Markdown("Nearby positions should look alike. The cosine similarity of every pair of position vectors: "
                            "the fixed table (at this model's width) against the table this model learned.")
                similarity_image = gr.Image(label="Position-by-position cosine similarity", format="png", type="filepath",
                                            interactive=False, elem_classes="plot")
                positions_text = gr.Markdown(elem_id="positions-note")
                gr.Markdown("For your input: each token's vector is the sum of its token, position and segment embeddings.")
                composition_image = gr.Image(label="Input composition", format="png", type="filepath", interactive=False, elem_classes="plot")
            with gr.Tab("3 · Step-through", id="steps") as tab_steps:
                gr.Markdown("Walk through the forward pass one recorded step at a time, exactly in the order it was computed.")
                with gr.Row(equal_height=False):
                    section_picker = gr.Dropdown(choices=[("Embeddings", -1)], value=-1, label="Part", scale=2)
                    step_head = gr.Dropdown(choices=_step_head_choices(default_config.n_heads), value=-1,
                                            label="Heads (for per-head steps)", scale=2)
                step_picker = gr.Radio(choices=[], label="Steps of this part", elem_id="step-picker")
                with gr.Row():
                    previous_button = gr.Button("◀ Previous step", elem_id="previous")
                    next_button = gr.Button("Next step ▶", variant="primary", elem_id="next")
                step_text = gr.Markdown(latex_delimiters=LATEX, elem_id="step-text")
                step_source_code = gr.Code(language="python", label="The code that computed this step (from transformer/)",
                                           interactive=False, lines=1, max_lines=14, elem_id="step-code")
                step_image = gr.Image(label="Values", format="png", type="filepath", interactive=False, elem_classes="plot")
                step_stats = gr.Dataframe(headers=STEP_STAT_COLUMNS, interactive=False, max_height=320, label="Per-token statistics")
                with gr.Accordion("Post-LN (BERT) vs pre-LN: where the LayerNorms go", open=False, elem_id="norm-placement"):
                    gr.HTML(norm_placement_svg(), elem_id="norm-diagram")
                    gr.Markdown(NORM_PLACEMENT_TEXT, latex_delimiters=LATEX)
            with gr.Tab("4 · Attention", id="attention") as tab_attention:
                gr.Markdown("Each head turns every token's query and every token's key into weights that say how much "
                            "each token (row) takes from each other token (column).")
                with gr.Row():
                    layer_slider = gr.Slider(0, default_config.n_layers - 1, value=0, step=1, label="layer")
                    head_slider = gr.Slider(0, default_config.n_heads - 1, value=0, step=1, label="head")
                with gr.Row():
                    head_image = gr.Image(label="One head", format="png", type="filepath", interactive=False, elem_classes="plot")
                    layer_image = gr.Image(label="All heads of the layer", format="png", type="filepath", interactive=False, elem_classes="plot")
                gr.Markdown(
                    "**What attention moves.** A weight says how much a token looks at another, not how much it takes: "
                    "the middle panel scales each weight by the size of the value vector it carries into the output "
                    "(norm-based attention), and the right panel follows the flow through every layer up to this one, "
                    "counting the residual connection (attention rollout).")
                flow_image = gr.Image(label="Weights, moved vectors, rollout", format="png", type="filepath", interactive=False,
                                      elem_classes="plot")
                overview_image = gr.Image(label="All layers × heads", format="png", type="filepath", interactive=False, elem_classes="plot")
                gr.Markdown("Per-head summary, averaged over query tokens: a share near 1 marks a known head type.")
                head_frame = gr.Dataframe(headers=HEAD_COLUMNS, interactive=False, max_height=420, label="Heads")
            with gr.Tab("5 · Output", id="output") as tab_output:
                output_text = gr.Markdown()
                embedding_image = gr.Image(label="Sentence embedding", format="png", type="filepath", interactive=False, elem_classes="plot")
                cosine_image = gr.Image(label="Token-by-token cosine similarity (final layer)", format="png", type="filepath",
                                        interactive=False, elem_classes="plot")
            with gr.Tab("6 · Masked words", id="masked") as tab_masked:
                gr.Markdown(
                    "Models pre-trained by masked-language modelling (BERT, RoBERTa, DistilBERT, ELECTRA's generator, "
                    "ALBERT) keep a small *head* that turns a final token vector into a probability for every word of the "
                    "vocabulary. Hide a word behind the mask token and the head says what it expects there.")
                masked_note = gr.Markdown(elem_id="masked-note")
                with gr.Column(visible=False) as masked_panel:
                    with gr.Row(equal_height=False):
                        fill_text = gr.Textbox(label="Sentence with a mask token", value=FILL_TEXT, lines=2, scale=4,
                                               elem_id="fill-text")
                        top_k_slider = gr.Slider(1, 20, value=5, step=1, label="words per mask (top k)", scale=1)
                    predict_button = gr.Button("Predict the masked words", variant="primary", elem_id="predict")
                    fill_tokens = gr.HighlightedText(label="Tokens (click one to mask it)", elem_id="fill-tokens",
                                                     show_inline_category=False, interactive=False,
                                                     color_map={"mask": "#f59e0b", "special": "#d1d5db", "token": "#dbeafe"})
                    fill_image = gr.Image(label="Top words at each mask", format="png", type="filepath", interactive=False,
                                          elem_classes="plot")
                    fill_frame = gr.Dataframe(headers=FILL_COLUMNS, interactive=False, max_height=320, label="Predictions",
                                              elem_id="fill-table")
                    gr.Markdown(
                        "**Logit lens.** The same head can read the vector after the embeddings and after every layer, "
                        "not only the last: it shows where in the stack the answer forms (nostalgebraist 2020).")
                    lens_position = gr.Dropdown(choices=[], label="Token to read out", elem_id="lens-position")
                    lens_image = gr.Image(label="Logit lens", format="png", type="filepath", interactive=False, elem_classes="plot")
                    lens_frame = gr.Dataframe(headers=LENS_COLUMNS, interactive=False, max_height=420, label="Layer by layer")
            with gr.Tab("7 · Head ablation", id="ablation") as tab_ablation:
                gr.Markdown(
                    "Switch attention heads off (their weighted sum of values is set to zero) and see what changes for the "
                    "text above: the sentence embedding, each token's final vector, and, for models with a masked-LM head "
                    "and a mask token in the text, the predicted words.")
                with gr.Row(equal_height=False):
                    ablation_picker = gr.Dropdown(choices=head_choices(default_config.n_layers, default_config.n_heads),
                                                  value=[DEFAULT_ABLATION], multiselect=True, label="Heads to switch off",
                                                  scale=4, elem_id="ablation-heads")
                    ablate_button = gr.Button("Switch off and compare", variant="primary", scale=1, min_width=180,
                                              elem_id="ablate")
                ablation_text = gr.Markdown(elem_id="ablation-text")
                ablation_image = gr.Image(label="Change of each token's final vector", format="png", type="filepath",
                                          interactive=False, elem_classes="plot")
                ablation_predictions = gr.Image(label="Masked-word predictions before and after", format="png", type="filepath",
                                                interactive=False, elem_classes="plot", visible=False)
                ablation_frame = gr.Dataframe(headers=ABLATION_COLUMNS, interactive=False, max_height=320,
                                              label="Top words before and after", visible=False)
            with gr.Tab("8 · Word in context", id="word") as tab_word:
                gr.Markdown(
                    "The same word gets a different vector in a different sentence. Give two texts that share a word: the "
                    "curve shows how alike its two vectors are after each layer, the maps how each head treats it differently.")
                with gr.Row():
                    context_a = gr.Textbox(label="Text A", value=WORD_TEXTS[0], elem_id="context-a")
                    context_b = gr.Textbox(label="Text B", value=WORD_TEXTS[1], elem_id="context-b")
                    word_box = gr.Textbox(label="Word in both", value="bank", elem_id="word", scale=0, min_width=140)
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                word_text = gr.Markdown(elem_id="word-text")
                word_image = gr.Image(label="Cosine of the word's vectors, layer by layer", format="png", type="filepath",
                                      interactive=False, elem_classes="plot")
                word_heads_image = gr.Image(label="Per head: text B minus text A", format="png", type="filepath",
                                            interactive=False, elem_classes="plot")
            with gr.Tab("9 · Weights", id="weights") as tab_weights:
                weights_text = gr.Markdown(elem_id="weights-text")
                weight_totals = gr.Dataframe(headers=["part", "parameters", "share"], interactive=False, label="Totals per layer",
                                             elem_id="weight-totals", max_height=320)
                weight_frame = gr.Dataframe(headers=WEIGHT_COLUMNS, interactive=False, max_height=480, elem_id="weight-table",
                                            label="Every tensor of the checkpoint")

        with gr.Accordion("⤓ Download this tab's figure, its tensors, or the whole run", open=False, elem_id="export"):
            export_view = gr.Dropdown(choices=[], label="This tab has no figure; the whole run can be downloaded",
                                      elem_id="export-view")
            with gr.Row():
                export_buttons = {kind: gr.Button(label, size="sm", elem_id=f"export-{kind}", min_width=120) for kind, label in (
                    ("png", "Figure .png"), ("svg", "Figure .svg"), ("safetensors", "Tensors .safetensors"),
                    ("csv", "Tensors .csv (zip if several)"), ("run", "Whole run .safetensors"))}
            export_file_box = gr.File(label="Download", interactive=False, visible=False, elem_id="export-file")

        texts = [text_a, text_b, model_state]
        masked_outputs = [masked_note, masked_panel, fill_tokens, fill_image, fill_frame, lens_position, lens_image, lens_frame]
        tab_views = {
            "positions": (page_positions, [*texts, width_slider, length_slider],
                          [sinusoid_image, similarity_image, composition_image, positions_text]),
            "steps": (page_step, [*texts, step_index, step_head],
                      [step_index, section_picker, step_picker, step_text, step_source_code, step_image, step_stats]),
            "attention": (page_attention, [*texts, layer_slider, head_slider],
                          [head_image, layer_image, flow_image, overview_image, head_frame]),
            "output": (page_output, texts, [output_text, embedding_image, cosine_image]),
            "masked": (page_masked, [fill_text, model_state, top_k_slider], masked_outputs),
            "ablation": (page_ablation, [*texts, ablation_picker],
                         [ablation_text, ablation_image, ablation_predictions, ablation_frame]),
            "word": (page_word, [context_a, context_b, model_state, word_box], [word_text, word_image, word_heads_image]),
            "weights": (page_weights, [model_state], [weights_text, weight_totals, weight_frame]),
        }
        run_outputs = [status, token_html, token_summary, token_frame]
        private = {"api_visibility": "private"}

        def then_refresh(event):
            """After a run: the Tokenization tab is filled; redraw whichever other tab is open."""
            for name, (handler, inputs, outputs) in tab_views.items():
                event = event.then(when_current(name, handler, len(outputs)), [current_tab, *inputs], outputs, **private)
            return event

        for tab, name in ((tab_tokens, "tokens"), (tab_positions, "positions"), (tab_steps, "steps"),
                          (tab_attention, "attention"), (tab_output, "output"), (tab_masked, "masked"),
                          (tab_ablation, "ablation"), (tab_word, "word"), (tab_weights, "weights")):
            selected = tab.select(lambda name=name: name, None, current_tab, **private)
            selected.then(page_export_choices, current_tab, [export_view, export_file_box], **private)
            if name in tab_views:
                handler, inputs, outputs = tab_views[name]
                selected.then(handler, inputs, outputs, **private)

        then_refresh(gr.on([run_button.click, text_a.submit, text_b.submit], page_run, texts, run_outputs, **private))
        then_refresh(examples.load_input_event.then(page_run, texts, run_outputs, **private))
        then_refresh(demo.load(page_start, model_state, model_info, **private).then(page_run, texts, run_outputs, **private))

        load_outputs = [model_state, model_info, layer_slider, head_slider, step_head, ablation_picker, fill_text]
        loaded = load_button.click(page_load_model, [repo_box, revision_box, model_state, fill_text], load_outputs, **private)
        then_refresh(loaded.then(page_run, texts, run_outputs, **private))
        picked = model_examples.load_input_event.then(
            page_load_model, [repo_box, revision_box, model_state, fill_text], load_outputs, **private)
        then_refresh(picked.then(page_run, texts, run_outputs, **private))

        masked_inputs = [fill_text, model_state, top_k_slider]
        gr.on([predict_button.click, fill_text.submit, top_k_slider.release], page_masked, masked_inputs, masked_outputs,
              **private)
        fill_tokens.select(page_mask_click, [fill_text, model_state], fill_text, **private).then(
            page_masked, masked_inputs, masked_outputs, **private)
        lens_position.input(page_lens, [*masked_inputs, lens_position], [lens_image, lens_frame], **private)
        ablate_button.click(page_ablation, *tab_views["ablation"][1:], **private)
        gr.on([compare_button.click, word_box.submit, context_a.submit, context_b.submit], page_word,
              *tab_views["word"][1:], **private)
        export_inputs = [current_tab, export_view, text_a, text_b, model_state, width_slider, length_slider, layer_slider,
                         head_slider, step_index, step_head, fill_text, top_k_slider, lens_position, ablation_picker,
                         context_a, context_b, word_box]
        for kind, button in export_buttons.items():
            button.click(lambda *values, kind=kind: page_export(kind, *values), export_inputs, export_file_box, **private)

        # .change (not only .release) so typing a number into the slider's box redraws too; always_last
        # drops the intermediate values of a drag.
        gr.on([width_slider.change, length_slider.change], page_positional_sliders, [model_state, width_slider, length_slider],
              [sinusoid_image, similarity_image], trigger_mode="always_last", **private)
        step_outputs = tab_views["steps"][2]
        previous_button.click(lambda *a: page_step_move(*a, -1), [*texts, step_index, step_head], step_outputs, **private)
        next_button.click(lambda *a: page_step_move(*a, +1), [*texts, step_index, step_head], step_outputs, **private)
        section_picker.input(page_step_section, [*texts, section_picker, step_head], step_outputs, **private)
        step_picker.input(page_step_pick, [*texts, section_picker, step_picker, step_head], step_outputs, **private)
        step_head.input(page_step, [*texts, step_index, step_head], step_outputs, **private)
        gr.on([layer_slider.change, head_slider.change], page_attention_pick, [*texts, layer_slider, head_slider],
              [head_image, layer_image, flow_image], trigger_mode="always_last", **private)

        _register_api()
    return demo


def _register_api() -> None:
    """The public endpoints: hidden plain-value inputs, so scripts need no session state."""
    with gr.Column(visible=False):
        text_a = gr.Textbox(label="text_a")
        text_b = gr.Textbox(label="text_b", value="")
        model_id = gr.Textbox(label="model_id", value="")
        revision = gr.Textbox(label="revision", value="")
        layer = gr.Number(label="layer", value=0)
        head = gr.Number(label="head", value=0)
        step_number = gr.Number(label="step", value=0)
        width = gr.Number(label="width", value=128)
        length = gr.Number(label="length", value=64)
        data = gr.JSON(label="data")
        image = gr.Image(label="image", format="png", type="filepath", interactive=False)
        image_2 = gr.Image(label="image_2", format="png", type="filepath", interactive=False)
        top_k = gr.Number(label="top_k", value=5)
        position = gr.Number(label="position", value=-1)
        index = gr.Number(label="index", value=1)
        heads = gr.Textbox(label="heads", value="0.*")
        word = gr.Textbox(label="word", value="bank")
        view = gr.Textbox(label="view", value="attention_head")
        options = gr.JSON(label="options", value={})
        file_format = gr.Textbox(label="format", value="png")
        text_out = gr.Textbox(label="text")
        file = gr.File(label="file")
    texts = [text_a, text_b, model_id, revision]
    endpoints = [
        ("load_model", load_model, [model_id, revision], [data]),
        ("tokenize", tokenize, texts, [data]),
        ("positional", positional, [width, length], [image]),
        ("position_similarity", position_similarity, [model_id, revision, length], [image]),
        ("input_composition", input_composition, texts, [image]),
        ("step", walk_step, [*texts, layer, step_number, head], [data, image]),
        ("attention_head", attention_head, [*texts, layer, head], [image]),
        ("attention_layer", attention_layer, [*texts, layer], [image]),
        ("attention_flow", attention_flow, [*texts, layer, head], [image]),
        ("attention_overview", attention_overview, texts, [image]),
        ("head_summary", summarize_heads, [*texts, layer], [data]),
        ("output", output, texts, [data, image, image_2]),
        ("fill_mask", fill_mask, [*texts, top_k], [data, image]),
        ("logit_lens", logit_lens, [*texts, position, top_k], [data, image]),
        ("mask_token", mask_token, [*texts, index], [text_out]),
        ("ablate_heads", ablate_heads, [*texts, heads, top_k], [data, image, image_2]),
        ("word_in_contexts", word_in_contexts, [*texts, word], [data, image, image_2]),
        ("model_weights", model_weights, [model_id, revision], [data]),
        ("export_figure", export_figure, [*texts, view, options, file_format], [file]),
        ("export_tensors", export_tensors, [*texts, view, options, file_format], [file]),
        ("export_run", export_run, texts, [file]),
        ("echo", echo, [text_a], [text_out]),
    ]
    for name, function, inputs, outputs in endpoints:
        gr.on([], function, inputs, outputs, api_name=name, api_description=(function.__doc__ or "").split("\n")[0])


def echo(text_a: str) -> str:
    """Returns its input unchanged: the round trip of the queue and the API alone, a baseline for benchmarks."""
    return text_a


def share_one_concurrency_limit(blocks: gr.Blocks, group: str = "compute") -> None:
    """Put every event in one concurrency group, so CONCURRENCY bounds the requests computed at once.

    Gradio applies ``default_concurrency_limit`` to each event separately: with ~100 events, 2 per endpoint
    would let ~200 computations (each up to ~0.4 GB of recorded steps) run at once on a 2-core Space.
    """
    for function in blocks.fns.values():
        if function.concurrency_limit == "default":
            function.concurrency_id = group


demo = build_demo()
share_one_concurrency_limit(demo)
demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    default_model()  # load the bundled model before the first visitor arrives
    demo.launch(css=CSS, theme=gr.themes.Default(primary_hue="indigo"), footer_links=["api", "settings"],
                state_session_capacity=SESSION_CAPACITY)
