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
import logging
import math
import os
import re
import tempfile
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
from transformer import analysis, plots
from transformer.step_source import step_source

log = logging.getLogger("transformer-explainer")

# ---------------------------------------------------------------------------------------------- settings

MAX_CHARS = 20_000  # characters read per text; longer input is cut before tokenizing, with a notice
MODEL_CACHE_SIZE = 2  # models loaded from the Hub kept at once (the bundled default is always kept)
RUN_CACHE_SIZE = 48  # encoder runs kept (each serves every tab)
RUN_CACHE_BYTES = 1536 * 2**20  # ... and at most this much tensor memory (a 512-token run of a big model is ~0.4 GB)
FIGURE_CACHE_SIZE = 256  # rendered PNGs kept, so revisiting a tab or a step draws nothing
# Requests waiting at most; more get "queue full". EXPLAINER_QUEUE_SIZE overrides it (tests flood a small queue).
QUEUE_SIZE = int(os.environ.get("EXPLAINER_QUEUE_SIZE", "64"))
CONCURRENCY = 2  # requests computed at once (a CPU Space has 2 cores)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Hub weights larger than this are refused before download (by the size the Hub announces): anyone can type a
# repo id, and a 10 GB checkpoint would fill the disk and memory of a Space. 2.5 GB admits the large BERT-family
# models (xlm-roberta-large is 2.24 GB). EXPLAINER_MAX_WEIGHT_BYTES overrides it.
MAX_WEIGHT_BYTES = int(os.environ.get("EXPLAINER_MAX_WEIGHT_BYTES", "2500000000"))
DEFAULT_KEY: tuple[str, str] = ("", "")  # (repo id, revision) of the bundled default model

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


_models = LruCache(MODEL_CACHE_SIZE)
_runs = LruCache(RUN_CACHE_SIZE, RUN_CACHE_BYTES, _run_bytes)
_embeddings = LruCache(512)
_figures = LruCache(FIGURE_CACHE_SIZE, on_evict=_delete_file)
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
def _encode(key: ModelKey, text_a: str, text_b: str | None) -> transformer.Run:
    """The one forward pass per (model, texts): every step recorded, moved to the CPU for drawing."""
    return get_model(key).run(text_a, text_b).cpu()


@_on_gpu
def _embed(key: ModelKey, text: str) -> np.ndarray:
    return get_model(key).embed([text])[0].numpy()


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

    @property
    def cache_key(self) -> tuple:
        return (self.key, self.texts.a, self.texts.b)


def prepare(text_a: Any, text_b: Any, key: ModelKey) -> Job:
    """Check the texts, get the model and the (cached) run: the single entry point of every tab."""
    texts = clean_texts(text_a, text_b)
    model = get_model(key)
    cache_key = (key, texts.a, texts.b)
    started = time.perf_counter()
    cached = _runs.get(cache_key)
    run = cached if cached is not None else _runs.get_or_build(cache_key, lambda: _encode(key, texts.a, texts.b))
    return Job(key, model, texts, run, 0.0 if cached is not None else time.perf_counter() - started)


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


def positional_figure(width: Any, length: Any) -> str:
    width = whole_number(width, "width", 2, 2048, "model width d")
    length = whole_number(length, "length", 2, 2048, "number of positions")
    return figure(("sinusoid", width, length), lambda: plots.sinusoid(transformer.sinusoidal_table(length, width)))


def position_similarity_figure(key: ModelKey, length: Any) -> str:
    model = get_model(key)
    learned = model.encoder.embeddings.position
    offset = int(getattr(model.config, "position_offset", 0) or 0)  # RoBERTa counts its rows from 2
    available = model.config.max_positions if learned is None else learned.weight.shape[0] - offset
    length = whole_number(length, "length", 2, available, f"this model has {available} positions")
    width = learned.weight.shape[1] if learned is not None else model.config.d_model

    def draw():
        table = None if learned is None else learned.weight[offset : offset + length].detach().cpu()
        return plots.position_similarity(transformer.sinusoidal_table(length, width), table,
                                         learned_title=f"learned by {model.source.location}")

    return figure(("position-similarity", key, length), draw)


def _optional_step(job: Job, name: str) -> torch.Tensor | None:
    """A step's tensor, or None when this architecture has no such step (e.g. no segments in DistilBERT)."""
    try:
        return job.run.step(name).tensor
    except KeyError:
        return None


def composition_figure(job: Job) -> str:
    token, position = _optional_step(job, "embeddings.token"), _optional_step(job, "embeddings.position")
    if token is None or position is None:
        raise InputProblem("This model's record has no separate token and position embedding steps to compare.")
    segment = _optional_step(job, "embeddings.segment")
    return figure(("composition", job.cache_key), lambda: plots.input_composition(token, position, segment, _tokens(job)))


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
        "mean": float(values.mean()),
        "std": float(values.std(unbiased=False)),
        "min": float(values.min()),
        "max": float(values.max()),
    }
    title = step.name + (f" · head {head_of_step}" if head_of_step is not None else "")
    image = figure(("step", job.cache_key, index, head_of_step),
                   lambda: plots.step_figure(step.tensor, step.axes, tokens, title=title, head=head_of_step))
    return info, image, step_statistics(step, tokens)


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
    return (
        f"### Step {info['index'] + 1} of {info['count']}: `{info['name']}`{head}\n\n"
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


# ----------------------------------------------------------------------------------------------- attention


def attention_head_figure(job: Job, layer: int, head: int) -> str:
    pattern = job.run.attentions[layer][head]
    return figure(("attention-head", job.cache_key, layer, head), lambda: plots.attention_head(
        pattern, _tokens(job), title=f"Layer {layer}, head {head}: who attends to whom",
        boundaries=_segment_boundaries(job)))


def attention_layer_figure(job: Job, layer: int) -> str:
    return figure(("attention-layer", job.cache_key, layer), lambda: plots.head_grid(
        job.run.attentions[layer], title=f"Layer {layer}: all {job.model.config.n_heads} heads (rows: query, columns: key)",
        colorbar_label="attention weight"))


def attention_overview_figure(job: Job) -> str:
    def draw():
        stack = torch.stack(job.run.attentions)  # (L, H, T, T)
        return plots.attention_overview(stack, title="Every head of every layer (each tile scaled to its own maximum)")

    return figure(("attention-overview", job.cache_key), draw)


def attention_flow_figure(job: Job, layer: int, head: int) -> str:
    """The head's weights, what they actually move (norm-based), and the rollout through all layers so far."""
    def draw():
        run = job.run
        pattern = run.attentions[layer]  # (H, T, T)
        value = run.step(f"layers.{layer}.attn.v").tensor  # (H, T, d_head)
        # The layer applied at this depth: ALBERT shares one set of weights across depths (encoder.stack).
        applied = getattr(job.model.encoder, "stack", None) or job.model.encoder.layers
        out_weight = applied[layer].attn.out.weight.detach().float().cpu()  # (d, H * d_head)
        moved = analysis.value_vector_norms(pattern.float(), value.float(), out_weight)[head]  # (T, T)
        rollout = analysis.attention_rollout([a.float() for a in run.attentions])[layer]  # (T, T)
        return plots.token_matrices(
            [pattern[head], moved, rollout], _tokens(job),
            [f"weights a (layer {layer}, head {head})", "what it moves: ‖a · v W_O‖", f"rollout through layer {layer}"],
            colorbar_labels=["attention weight", "norm of the moved vector", "share of the input token"],
            boundaries=_segment_boundaries(job), figsize=plots.SIZE_TRIPLE)

    return figure(("attention-flow", job.cache_key, layer, head), draw)


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


def output_view(job: Job) -> tuple[dict, str, str]:
    """Sentence embedding(s), the texts' cosine similarity, and the tokens' final-layer cosine similarity."""
    vectors = [sentence_embedding(job, text) for text in job.texts.all]
    cosine = None
    if len(vectors) == 2:
        a, b = vectors
        cosine = float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    pooling = job.model.pooling
    info = {
        "dimension": int(vectors[0].shape[0]),
        "pooling": pooling.mode + (" + L2 normalise" if pooling.normalize else ""),
        "embeddings": [{"norm": float(np.linalg.norm(v)), "first_values": [round(float(x), 6) for x in v[:8]]} for v in vectors],
        "cosine": cosine,
    }
    labels = ["text" if len(vectors) == 1 else f"text {s}" for s in "AB"[: len(vectors)]]
    title = "Sentence embedding" + ("s" if len(vectors) == 2 else "") + (f" · cosine similarity {cosine:.4f}" if cosine is not None else "")
    strips = figure(("embedding", job.cache_key), lambda: plots.embedding_strips(np.stack(vectors), labels, title=title))
    final = job.run.hidden_states[-1]
    similarity = figure(("token-cosine", job.cache_key), lambda: plots.cosine_matrix(
        final, _tokens(job), title="Cosine similarity of the tokens' final vectors", boundaries=_segment_boundaries(job)))
    return info, strips, similarity


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


# ----------------------------------------------------------------------------------------- page handlers
# The page keeps the model choice in a gr.State (per browser session); these adapt the API functions to it.

TABS = ("tokens", "positions", "steps", "attention", "output")


def _skips(count: int) -> tuple:
    return tuple(gr.skip() for _ in range(count))


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


@page_handler(3, warn=False)
def page_positions(text_a: str, text_b: str, model: ModelKey, width: float, length: float):
    job = prepare(text_a, text_b, model)
    return (positional_figure(width, length), position_similarity_figure(model, min(int(length), job.model.config.max_positions)),
            composition_figure(job))


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


def page_load_model(model_id: str, revision: str, current: ModelKey, progress=gr.Progress(track_tqdm=True)):
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
                *_skips(3))
    config = model.config
    return (
        key,
        model_markdown(describe_model(model)),
        gr.update(maximum=config.n_layers - 1, value=min(config.n_layers - 1, 0)),
        gr.update(maximum=config.n_heads - 1, value=0),
        gr.update(choices=_step_head_choices(config.n_heads), value=-1),
    )


def _step_head_choices(n_heads: int) -> list[tuple[str, int]]:
    return [("All heads", -1)] + [(f"Head {h}", h) for h in range(n_heads)]


def page_start(model: ModelKey) -> str:
    return model_markdown(describe_model(get_model(model)))


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

INTRO = """
# Transformer Explainer
Type a sentence (or two, for a pair) and press **Run**: the encoder reads it once, records every
intermediate step, and each tab below draws a different part of that one forward pass: how text becomes
tokens, how positions are encoded, every matrix of every layer in order, what the attention heads look at,
and the sentence embedding that comes out.
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
                with gr.Accordion("Post-LN (BERT) vs pre-LN: where the LayerNorms go", open=False):
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

        texts = [text_a, text_b, model_state]
        tab_views = {
            "positions": (page_positions, [*texts, width_slider, length_slider], [sinusoid_image, similarity_image, composition_image]),
            "steps": (page_step, [*texts, step_index, step_head],
                      [step_index, section_picker, step_picker, step_text, step_source_code, step_image, step_stats]),
            "attention": (page_attention, [*texts, layer_slider, head_slider],
                          [head_image, layer_image, flow_image, overview_image, head_frame]),
            "output": (page_output, texts, [output_text, embedding_image, cosine_image]),
        }
        run_outputs = [status, token_html, token_summary, token_frame]
        private = {"api_visibility": "private"}

        def then_refresh(event):
            """After a run: the Tokenization tab is filled; redraw whichever other tab is open."""
            for name, (handler, inputs, outputs) in tab_views.items():
                event = event.then(when_current(name, handler, len(outputs)), [current_tab, *inputs], outputs, **private)
            return event

        for tab, name in ((tab_tokens, "tokens"), (tab_positions, "positions"), (tab_steps, "steps"),
                          (tab_attention, "attention"), (tab_output, "output")):
            selected = tab.select(lambda name=name: name, None, current_tab, **private)
            if name in tab_views:
                handler, inputs, outputs = tab_views[name]
                selected.then(handler, inputs, outputs, **private)

        then_refresh(gr.on([run_button.click, text_a.submit, text_b.submit], page_run, texts, run_outputs, **private))
        then_refresh(examples.load_input_event.then(page_run, texts, run_outputs, **private))
        then_refresh(demo.load(page_start, model_state, model_info, **private).then(page_run, texts, run_outputs, **private))

        loaded = load_button.click(page_load_model, [repo_box, revision_box, model_state],
                                   [model_state, model_info, layer_slider, head_slider, step_head], **private)
        then_refresh(loaded.then(page_run, texts, run_outputs, **private))

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
    ]
    for name, function, inputs, outputs in endpoints:
        gr.on([], function, inputs, outputs, api_name=name, api_description=(function.__doc__ or "").split("\n")[0])


demo = build_demo()
demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    default_model()  # load the bundled model before the first visitor arrives
    demo.launch(css=CSS, theme=gr.themes.Default(primary_hue="indigo"), footer_links=["api", "settings"])
