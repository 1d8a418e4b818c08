"""The app as a public Space meets it: anyone sends anything, many at once, and the Hub may be slow, down or wrong.

``python app.py`` runs as a subprocess that downloads from the stand-in Hub (tests/fakehub.py) on loopback
into an empty cache of its own; tests call it the way scripts do, with gradio_client or with plain HTTP (which
can carry what gradio_client cannot: lone surrogates, invalid UTF-8, NaN). Correct answers are checked against
references we did not write: the tokenizer of ``transformers``, ``sentence-transformers``, the checkpoint's
config, hashlib over the bytes the Hub sent, and for concurrency the same request computed alone.

Sections: 1. the model box (``load_model``) against the Hub; 2. one table of bad inputs tried at every endpoint;
3. concurrent sessions, memory over many requests and many sessions, and the bounded queue.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from gradio_client import Client
from PIL import Image

from apptools import REPO, Answer, AppServer, call_api, fetch, running_app_online

BUNDLED = REPO / "weights" / "all-MiniLM-L6-v2"
WEIGHTS = "model.safetensors"
SENTENCE = "The river bank was flooded after the storm."
TINY_MLM = "reliability/tiny-bert-mlm"  # served by the stand-in Hub (fixture tiny_mlm_repo)
MASKED = "the cat sat on the [MASK] ."
TINY_TEXT = ("the cat sat on the mat", "a dog ran fast")  # words in the tiny BERT's vocabulary
MAX_CHARS = 20_000  # app.MAX_CHARS: characters read per text
MAX_TOKENS = 512  # the bundled model's maximum
ST_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (it truncates there, the app at 512)
WEIGHT_CAP = 1_000_000  # EXPLAINER_MAX_WEIGHT_BYTES of the test server: the tiny BERT (~80 kB) is under it
SMALL_QUEUE = 4  # EXPLAINER_QUEUE_SIZE of the second server, the one that is flooded
SMALL_SESSIONS = 50  # its EXPLAINER_SESSION_CAPACITY
GENERIC_FAILURE = "Something went wrong"  # the app's message for an unexpected exception: a bug, never an answer


# ---------------------------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app-reliability")


@pytest.fixture(scope="module")
def tiny_repo(hub, tiny_bert):
    return hub.add_repo("reliability/tiny-bert", tiny_bert)


@pytest.fixture(scope="module")
def tiny_mlm_repo(hub, tmp_path_factory):
    """A tiny random BertForMaskedLM (tests/tiny.py): the feature endpoints need a masked-LM head."""
    from tiny import make_checkpoint

    folder = make_checkpoint("bert", tmp_path_factory.mktemp("reliability-mlm") / "bert", seed=5, head="mlm")
    return hub.add_repo(TINY_MLM, folder)


# glibc keeps freed memory in per-thread arenas and returns large blocks late, so the RSS of a server that frees
# what it should still wanders by +-50 MB. Two arenas and mmap for every block over 64 kB (returned to the system
# when freed) make RSS follow live memory, which is what a leak changes.
MEASURABLE_MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "65536"}


@pytest.fixture(scope="module")
def server(hub, workdir) -> AppServer:
    """The app with the production queue (64) and a 1 MB cap on Hub weights, downloading from the stand-in Hub."""
    folder = workdir / "main"
    folder.mkdir()
    limits = {"EXPLAINER_MAX_WEIGHT_BYTES": str(WEIGHT_CAP), **MEASURABLE_MALLOC}
    with running_app_online(folder, hub.endpoint, limits) as running:
        yield running


@pytest.fixture(scope="module")
def small_server(hub, workdir) -> AppServer:
    """A second app with a queue of 4 and room for 50 sessions: flooded below, and where results are computed alone."""
    folder = workdir / "small"
    folder.mkdir()
    limits = {"EXPLAINER_QUEUE_SIZE": str(SMALL_QUEUE), "EXPLAINER_SESSION_CAPACITY": str(SMALL_SESSIONS),
              **MEASURABLE_MALLOC}
    with running_app_online(folder, hub.endpoint, limits) as running:
        yield running


def client_for(server: AppServer, downloads: Path) -> Client:
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=str(downloads))


def api(server: AppServer, endpoint: str, *inputs, timeout: float = 120) -> Answer:
    return call_api(server.url, endpoint, list(inputs), timeout=timeout)


def outputs(answer: Answer) -> list:
    assert answer.event == "complete", f"expected a result, got {answer}"
    return answer.data


def hf_cache(server: AppServer) -> Path:
    return server.log_path.parent / "hf-home" / "hub"


def assert_clear_message(message: Any, server: AppServer | None = None) -> str:
    """One line a user can act on: no stack trace, no generic failure, nothing of the server's addresses or paths."""
    assert isinstance(message, str) and message.strip(), f"no message: {message!r}"
    assert "\n" not in message and "Traceback" not in message and 'File "' not in message, message
    assert GENERIC_FAILURE not in message, f"an unexpected server error instead of a reason: {message}"
    assert len(message) <= 401, f"{len(message)} characters"
    assert "127.0.0.1" not in message and str(REPO) not in message, message
    if server is not None:
        assert str(server.log_path.parent) not in message, message
    return message


def refusal(answer: Answer, server: AppServer) -> str:
    assert answer.event == "error", f"expected a refusal, got {answer}"
    return assert_clear_message(answer.message, server)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ============================================================================ 1. the model box and the Hub


def load(server: AppServer, repo_id: str, revision: str = "") -> Answer:
    return api(server, "load_model", repo_id, revision, timeout=60)


def test_a_hub_bert_downloads_loads_and_is_cached(server, hub, tiny_repo, tiny_bert):
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertModel

    info = outputs(load(server, tiny_repo.repo_id))[0]
    config = AutoConfig.from_pretrained(str(tiny_bert))
    assert info["kind"] == "hub" and info["repo_id"] == tiny_repo.repo_id
    assert info["revision"] == tiny_repo.commit  # the commit the Hub named, not "main"
    assert (info["layers"], info["heads"], info["hidden_size"], info["ffn_size"], info["vocabulary"]) == (
        config.num_hidden_layers, config.num_attention_heads, config.hidden_size, config.intermediate_size,
        config.vocab_size)
    # The weights came as the Hub sends LFS files (a redirect, then the CDN) and are in the cache under their SHA-256.
    assert any(r.server == "cdn" and r.method == "GET" for r in hub.requests_for(tiny_repo.repo_id, WEIGHTS))
    blob = hf_cache(server) / "models--reliability--tiny-bert" / "blobs" / sha256(tiny_repo.files[WEIGHTS])
    assert blob.is_file() and blob.read_bytes() == tiny_repo.files[WEIGHTS]
    # It computes what transformers computes from the same files.
    rows = outputs(api(server, "tokenize", *TINY_TEXT, tiny_repo.repo_id, ""))[0]["tokens"]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    assert [row["id"] for row in rows] == tokenizer(*TINY_TEXT)["input_ids"]
    last_step, _ = outputs(api(server, "step", *TINY_TEXT, tiny_repo.repo_id, "", 1, 13, -1))  # layer 1's output
    reference = BertModel.from_pretrained(str(tiny_bert), attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = reference(**tokenizer(*TINY_TEXT, return_tensors="pt"), output_hidden_states=True).hidden_states
    assert last_step["name"] == "layers.1.ln2"
    norms = [row["L2 norm"] for row in last_step["statistics"]]
    assert np.allclose(norms, hidden[2][0].norm(dim=-1).numpy(), atol=1e-3)
    # Loading it again is served from the app's memory: not a single request to the Hub.
    asked = len(hub.requests_for(tiny_repo.repo_id))
    assert outputs(load(server, tiny_repo.repo_id))[0] == info
    assert len(hub.requests_for(tiny_repo.repo_id)) == asked


def test_an_evicted_model_loads_again_from_the_disk_cache_with_the_hub_down(server, hub, tiny_repo, tiny_bert):
    fillers = [hub.add_repo(f"reliability/filler-{i}", tiny_bert).repo_id for i in range(3)]
    before = outputs(load(server, tiny_repo.repo_id))[0]

    def evict():
        for repo_id in fillers:  # more models than the app keeps in memory (MODEL_CACHE_SIZE = 2)
            outputs(load(server, repo_id))

    evict()
    asked = len(hub.requests_for(tiny_repo.repo_id))
    assert outputs(load(server, tiny_repo.repo_id))[0] == before
    assert len(hub.requests_for(tiny_repo.repo_id)) > asked, "the model was still in memory: nothing was evicted"
    evict()
    with hub.down():
        started = time.monotonic()
        again = load(server, tiny_repo.repo_id)
        elapsed = time.monotonic() - started
        tokens = outputs(api(server, "tokenize", *TINY_TEXT, tiny_repo.repo_id, ""))[0]["tokens"]
    assert outputs(again)[0] == before  # same commit, same shape, from the files cached on disk
    assert elapsed < 10, f"{elapsed:.1f} s to load from the cache with the Hub down"
    assert [row["token"] for row in tokens][:4] == ["[CLS]", "the", "cat", "sat"]


HUB_REFUSALS = [
    # (case, repo id, revision, words the one-line reason must contain)
    ("missing repo", "reliability/no-such-repo", "", ["reliability/no-such-repo", "was not found"]),
    ("missing file", "reliability/no-config", "", ["reliability/no-config", "no config.json"]),
    ("bad revision", "reliability/tiny-bert", "no-such-branch", ["'no-such-branch'", "was not found"]),
    ("gated repo", "reliability/gated", "", ["reliability/gated", "gated"]),
    ("malformed repo id", "not a/valid/repo id", "", ["not a valid Hub repo id"]),
    ("revision out of the cache", "reliability/tiny-bert", "../../../etc", ["not a valid revision"]),
    ("weights over the size cap", "reliability/too-big", "", ["GB of weights", "this server loads at most"]),
]


@pytest.mark.parametrize(("case", "repo_id", "revision", "words"), HUB_REFUSALS, ids=[c[0] for c in HUB_REFUSALS])
def test_hub_problems_give_a_one_line_reason(server, hub, tiny_repo, tiny_bert, case, repo_id, revision, words):
    hub.add_repo("reliability/no-config", files={WEIGHTS: tiny_repo.files[WEIGHTS]})
    hub.add_repo("reliability/gated", tiny_bert, gated=True)
    big = hub.add_repo("reliability/too-big", tiny_bert, files={WEIGHTS: b"\0" * (2 * WEIGHT_CAP)})
    message = refusal(load(server, repo_id, revision), server)
    for word in words:
        assert word.lower() in message.lower(), f"{case}: {message}"
    assert hub.requests_for(big.repo_id, WEIGHTS, "GET") == []  # the cap is checked with HEAD, before any download
    assert outputs(api(server, "tokenize", SENTENCE, "", "", ""))[0]["tokens"][1]["token"] == "the"


def test_hub_down_is_reported_in_seconds_and_loaded_models_keep_working(server, hub, tiny_repo):
    outputs(load(server, tiny_repo.repo_id))  # the model a session had before the Hub went down
    with hub.down():
        started = time.monotonic()
        message = refusal(load(server, "reliability/never-downloaded"), server)
        elapsed = time.monotonic() - started
        still = outputs(api(server, "tokenize", *TINY_TEXT, tiny_repo.repo_id, ""))[0]["tokens"]
        default = outputs(api(server, "tokenize", SENTENCE, "", "", ""))[0]["tokens"]
    print(f"\nHub down: refused in {elapsed:.2f} s: {message}")
    assert "could not be reached" in message and "not in the local cache" in message
    assert elapsed < 8, f"{elapsed:.1f} s to say the Hub is down"
    assert [row["token"] for row in still][1:4] == ["the", "cat", "sat"]
    assert default[1]["token"] == "the"


def test_a_silent_hub_is_given_up_on_within_seconds(server, hub):
    """A Hub that accepts connections and never answers: the app waits one short timeout, not minutes."""
    with hub.down(), socket.socket() as silent:
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", hub.port))
        silent.listen(64)  # connections complete in the backlog; nothing ever reads or answers them
        started = time.monotonic()
        message = refusal(load(server, "reliability/never-downloaded-either"), server)
        elapsed = time.monotonic() - started
    print(f"\nsilent Hub: refused in {elapsed:.2f} s: {message}")
    assert "could not be reached" in message or "timed out" in message.lower(), message
    assert elapsed < 12, f"{elapsed:.1f} s waiting on a Hub that never answers (one 5 s timeout expected)"


def test_the_page_keeps_its_model_when_a_load_fails(hub, tiny_repo):
    """The page's model box (a private event, so called in-process): a failed load leaves the session's model."""
    import app

    current = (tiny_repo.repo_id, "")
    app.get_model(current)  # this process's own cache now holds it, as the server's would
    with hub.down(), pytest.warns(UserWarning, match="Model not loaded: .*could not be reached"):  # the toast
        state, markdown, *rest = app.page_load_model("reliability/never-downloaded", "", current)
    assert state == current
    assert f"Hub repo {tiny_repo.repo_id}" in markdown and "Not loaded" in markdown and "could not be reached" in markdown
    assert rest and all(update == {"__type__": "update"} for update in rest)  # sliders and pickers left as they were


@pytest.mark.parametrize(("fault", "words"), [("truncate", ["cut short"]), ("corrupt", ["does not match the checksum"])])
def test_a_damaged_download_is_refused_and_the_app_keeps_working(server, hub, tiny_bert, fault, words):
    repo = hub.add_repo(f"reliability/damaged-{fault}", tiny_bert)
    repo.faults[WEIGHTS] = fault
    message = refusal(load(server, repo.repo_id), server)
    for word in [WEIGHTS, *words]:
        assert word in message, message
    blobs = hf_cache(server) / f"models--reliability--damaged-{fault}" / "blobs"
    assert not any(sha256(p.read_bytes()) == sha256(repo.served_bytes(WEIGHTS)) for p in blobs.glob("*"))
    assert outputs(api(server, "tokenize", SENTENCE, "", "", ""))[0]["tokens"][1]["token"] == "the"
    repo.faults.clear()  # the Hub is fixed: the file is fetched again (nothing bad was kept) and loads
    gets = len(hub.requests_for(repo.repo_id, WEIGHTS, "GET"))
    assert outputs(load(server, repo.repo_id))[0]["revision"] == repo.commit
    assert len(hub.requests_for(repo.repo_id, WEIGHTS, "GET")) > gets


# ================================================================================ 2. bad input, every endpoint

OK = None  # expectation: a correct result
TEXT_PARAMS = ("text_a", "text_b", "model_id", "revision")
PARAMS = {  # every named endpoint and its parameters, in order
    "load_model": ("model_id", "revision"),
    "tokenize": TEXT_PARAMS,
    "positional": ("width", "length"),
    "position_similarity": ("model_id", "revision", "length"),
    "input_composition": TEXT_PARAMS,
    "step": (*TEXT_PARAMS, "layer", "step", "head"),
    "attention_head": (*TEXT_PARAMS, "layer", "head"),
    "attention_layer": (*TEXT_PARAMS, "layer"),
    "attention_flow": (*TEXT_PARAMS, "layer", "head"),
    "attention_overview": TEXT_PARAMS,
    "head_summary": (*TEXT_PARAMS, "layer"),
    "output": TEXT_PARAMS,
    "fill_mask": (*TEXT_PARAMS, "top_k"),
    "logit_lens": (*TEXT_PARAMS, "position", "top_k"),
    "mask_token": (*TEXT_PARAMS, "index"),
    "ablate_heads": (*TEXT_PARAMS, "heads", "top_k"),
    "word_in_contexts": (*TEXT_PARAMS, "word"),
    "model_weights": ("model_id", "revision"),
    "export_figure": (*TEXT_PARAMS, "view", "options", "file_format"),
    "export_tensors": (*TEXT_PARAMS, "view", "options", "file_format"),
    "export_run": TEXT_PARAMS,
    "echo": ("text_a",),  # the benchmarks' baseline: no checks, it answers anything with its input
}
GOOD = {"text_a": SENTENCE, "text_b": "", "model_id": "", "revision": "", "layer": 1, "head": 2, "step": 4,
        "width": 64, "length": 32, "top_k": 5, "position": -1, "index": 1, "heads": "0.1, 1.*", "word": "bank",
        "view": "attention_head", "options": {"layer": 1, "head": 2}, "file_format": "png"}
GOOD_AT = {  # the good inputs that differ by endpoint: masked-LM features run on the tiny model with a head
    "fill_mask": {"model_id": TINY_MLM, "text_a": MASKED},
    "logit_lens": {"model_id": TINY_MLM, "text_a": MASKED},
    "mask_token": {"model_id": TINY_MLM},
    "ablate_heads": {"model_id": TINY_MLM, "text_a": MASKED},
    "word_in_contexts": {"model_id": TINY_MLM, "text_a": "the river bank", "text_b": "a bank loan"},
    "export_tensors": {"file_format": "safetensors"},
    "export_run": {"model_id": TINY_MLM},  # a whole run of a 512-token MiniLM text is ~240 MB
}


def as_read(value: Any) -> str:
    """The text the app should read from an input: Gradio's Textbox gives str(value); lone surrogates become U+FFFD;
    only the first MAX_CHARS characters count."""
    text = "" if value is None else str(value)
    return re.sub("[\ud800-\udfff]", "\ufffd", text)[:MAX_CHARS]


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{word}\b", text.lower()) is not None


# Endpoints that refuse a text that is fine in itself, and the reason they must give (None: they must answer).
CONTENT_RULES: dict[str, Callable[[dict], str | None]] = {
    "fill_mask": lambda v: None if "[MASK]" in as_read(v["text_a"]) + as_read(v["text_b"]) else r"has no \[MASK\] token",
    "logit_lens": lambda v: None if "[MASK]" in as_read(v["text_a"]) + as_read(v["text_b"]) else r"has no \[MASK\] token",
    "word_in_contexts": lambda v: (None if all(_has_word(as_read(v[t]), "bank") for t in ("text_a", "text_b"))
                                   else r"must appear in both texts|the second text is empty"),
    "mask_token": lambda v: None if re.sub(r"[\x00-\x1f\x7f\s]", "", as_read(v["text_a"])) else r"a special token",
}


@dataclass(frozen=True)
class Case:
    name: str
    endpoint: str
    inputs: tuple  # sent as JSON (ASCII escapes) unless ``body`` is given
    expect: str | None  # OK, or a regex the one-line message must match
    body: bytes | None = None  # raw request bytes: anything JSON cannot say
    refused_with: int | None = None  # the HTTP status expected when the request is refused before the queue

    @property
    def id(self) -> str:
        return f"{self.name} @ {self.endpoint}"

    def value(self, param: str) -> Any:
        return self.inputs[PARAMS[self.endpoint].index(param)]


def tried(param: str, name: str, value: Any, expect: str | None | dict[str, str | None]) -> list[Case]:
    """``value`` as ``param`` at every endpoint that has it, the other inputs good. ``expect`` may map endpoint ->
    expectation, "*" for the rest."""
    cases = []
    for endpoint, params in PARAMS.items():
        if param in params:
            wanted = expect.get(endpoint, expect.get("*")) if isinstance(expect, dict) else expect
            good = GOOD | GOOD_AT.get(endpoint, {})
            inputs = tuple(value if p == param else good[p] for p in params)
            if wanted is OK and endpoint in CONTENT_RULES:
                wanted = CONTENT_RULES[endpoint](dict(zip(params, inputs)))
            if endpoint == "echo":
                wanted = OK
            cases.append(Case(name, endpoint, inputs, wanted))
    return cases


def raw(endpoint: str, name: str, body: bytes, status: int) -> list[Case]:
    """Bytes no JSON encoder would send. ``status``: the HTTP refusal expected (200: queued, then an error event)."""
    return [Case(name, endpoint, (), None, body=body, refused_with=status)]


EMPTY = r"The text is empty"
BAD_ID = r"not a valid Hub repo id"
MEGABYTE = "word " * 200_000  # 1,000,000 characters
OVER_MAX_TOKENS = " ".join(f"word{i % 50}" for i in range(1500))  # ~4,000 tokens in ~11,000 characters

# One line per case. Each is tried at every endpoint with that parameter (see ``tried``).
BAD_INPUT = [
    *tried("text_a", "empty text", "", EMPTY),
    *tried("text_a", "whitespace only", " \t\n\r\u3000\u00a0\u2028 ", EMPTY),
    *tried("text_a", "null text", None, EMPTY),
    *tried("text_a", "a megabyte of text", MEGABYTE, OK),
    *tried("text_a", "more tokens than the model reads", OVER_MAX_TOKENS, OK),
    *tried("text_a", "NUL and control characters", "a\x00b\x07c \x1b[31mred\x1b[0m\x7f \x85end\x00", OK),
    *tried("text_a", "only control characters", "\x00\x01\x08\x1f\x7f", OK),
    *tried("text_a", "lone surrogates", "bank \ud800 river \udfff and \udbff\ud800 end", OK),
    *tried("text_a", "combining marks", "e\u0301 Z\u0351\u0352\u0353\u0354a\u0300\u0301\u0302\u0303\u0304\u0305 na\u0308ive", OK),
    *tried("text_a", "emoji with modifiers", "👍🏽 👨‍👩‍👧‍👦 🇯🇵 🏳️‍🌈 ❤️ 🧑🏿‍💻", OK),
    *tried("text_a", "CJK", "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.", OK),
    *tried("text_a", "right-to-left scripts", "مرحبا بالعالم — שלום עולם \u202eevil\u202c \u200f!", OK),
    *tried("text_a", "literal special tokens", "[CLS] the [MASK] sat on [PAD] [SEP] [UNK] mat", OK),
    *tried("text_a", "a 5,000-letter word", "a" * 5000, OK),
    *tried("text_a", "a number instead of text", 12345, OK),
    *tried("text_b", "whitespace-only second text", " \n\t ", OK),
    *tried("text_b", "a megabyte second text", MEGABYTE, OK),
    *tried("text_b", "lone surrogate second text", "\ud83d", OK),
    *tried("model_id", "special tokens as a repo id", "[CLS]", BAD_ID),
    *tried("model_id", "a megabyte repo id", "x/" + "y" * 1_000_000, BAD_ID),
    *tried("model_id", "a path as repo id", "../../etc/passwd", BAD_ID),
    *tried("model_id", "NUL in a repo id", "owner/na\x00me", BAD_ID),
    *tried("model_id", "a lone surrogate repo id", "owner/\ud800", BAD_ID),
    *tried("revision", "a lone surrogate revision", "\ud800", r"revision was given without a Hub repo id|is not a valid revision"),
    *tried("layer", "layer too high", 6, r"layer 6 is out of range"),
    *tried("layer", "layer too low", -2, r"layer -2 is out of range"),
    *tried("layer", "layer -1", -1, {"step": OK, "head_summary": OK, "*": r"layer -1 is out of range"}),
    *tried("layer", "layer 10**30", 10**30, r"layer 1e\+30 is out of range"),
    *tried("layer", "layer 1.5", 1.5, r"layer must be a whole number"),
    *tried("layer", "layer NaN", float("nan"), r"layer must be a whole number"),
    *tried("layer", "layer as a word", "two", r"layer must be a whole number"),
    *tried("layer", "layer as digits", "1", OK),
    *tried("layer", "layer true", True, r"layer must be a whole number"),
    *tried("layer", "layer null", None, r"layer must be a whole number"),
    *tried("layer", "layer as a list", [1], r"layer must be a whole number"),
    *tried("head", "head too high", 12, r"head 12 is out of range"),
    *tried("head", "head -1", -1, {"step": OK, "*": r"head -1 is out of range"}),
    *tried("head", "head as an object", {"x": 1}, r"head must be a whole number"),
    *tried("step", "step too high", 14, r"step 14 is out of range"),
    *tried("step", "step -1", -1, r"step -1 is out of range"),
    *tried("width", "width 0", 0, r"width 0 is out of range"),
    *tried("width", "width 10**9", 10**9, r"width 1000000000 is out of range"),
    *tried("length", "length 1", 1, r"length 1 is out of range"),
    *tried("length", "length beyond the positions", 600, {"positional": OK, "*": r"length 600 is out of range"}),
    *tried("length", "length as a word", "many", r"length must be a whole number"),
    *tried("top_k", "top_k 0", 0, r"top_k 0 is out of range"),
    *tried("top_k", "top_k 51", 51, r"top_k 51 is out of range"),
    *tried("top_k", "top_k as a word", "five", r"top_k must be a whole number"),
    *tried("position", "position beyond the text", 999, r"position 999 is out of range"),
    *tried("index", "index -5", -5, r"index -5 is out of range"),
    *tried("index", "index of a special token", 0, r"Token #0 is \[CLS\], a special token"),
    *tried("heads", "no heads", " , ", r"Choose at least one head"),
    *tried("heads", "a head that does not exist", "9.9", r"layer 9 is out of range"),
    *tried("heads", "a shell command as heads", "0.1; rm -rf /", r"'rm' is not a head"),
    *tried("heads", "heads as a list of numbers", [1, 2], r"is not a head"),
    *tried("heads", "100,000 characters of heads", "0.1," * 25_000, r"too long"),
    *tried("word", "no word", "", r"Type the word"),
    *tried("word", "a 101-letter word", "b" * 101, r"too long"),
    *tried("view", "a path as view", "../../etc/passwd", r"Unknown view"),
    *tried("view", "a view as a number", 7, r"Unknown view"),
    *tried("options", "options that are not JSON", "{not json", r"options must be a JSON object"),
    *tried("options", "an unknown option", {"bogus": 1}, r"has no option bogus"),
    *tried("options", "options as a list", [1, 2], r"options must be a JSON object"),
    *tried("options", "an out-of-range layer option", {"layer": 99, "head": 0}, r"layer 99 is out of range"),
    *tried("file_format", "an unknown format", "exe", r"format must be"),
    *tried("file_format", "a path as format", "../../x.png", r"format must be"),
    *raw("tokenize", "invalid UTF-8", b'{"data": ["bank \xff\xfe river", "", "", ""]}', 400),
    *raw("tokenize", "not JSON", b"\xff\xfe{{{", 400),
    *raw("tokenize", "data not a list", b'{"data": "the cat"}', 422),
    *raw("output", "a megabyte of nesting", b'{"data": ' + b"[" * 500_000 + b"]" * 500_000 + b"}", 400),
    # Gradio checks the number of inputs itself and answers an error event without a message (status 200: queued).
    *raw("attention_head", "too few inputs", b'{"data": ["the cat", ""]}', 200),
]


# ------------------------------------------------------------------------------ what a correct result is


@pytest.fixture(scope="module")
def references():
    """The reference tokenizer (transformers) and sentence encoder (sentence-transformers) of the bundled model."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BUNDLED)), SentenceTransformer(str(BUNDLED), device="cpu")


def png_pixels(item: Any) -> np.ndarray:
    """The decoded pixels of an image output (a dict with the file's URL, from plain HTTP; a path, from gradio_client)."""
    data = fetch(item["url"]) if isinstance(item, dict) else Path(item).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


def check_image(item: Any) -> None:
    pixels = png_pixels(item)
    assert pixels.shape[0] >= 200 and pixels.shape[1] >= 200, pixels.shape
    colours = np.ascontiguousarray(pixels[::5, ::5]).view(np.uint32)  # one RGBA colour per uint32
    assert len(np.unique(colours)) > 10, "a blank image"


def check_result(case: Case, result: list, references) -> None:
    """A completed call must be right, not merely present: tokens as transformers gives them, embeddings as
    sentence-transformers gives them, shapes that match the tokens, valid PNGs."""
    tokenizer, encoder = references
    endpoint = case.endpoint
    if endpoint == "load_model":
        assert result[0]["layers"] == 6 and result[0]["kind"] == "bundled"
        return
    if endpoint in ("positional", "position_similarity"):
        check_image(result[0])
        return
    if endpoint in FEATURE_CHECKS:  # the masked-LM features, ablation, weights and downloads
        FEATURE_CHECKS[endpoint](case, result)
        return
    text_a, text_b = as_read(case.value("text_a")), as_read(case.value("text_b"))
    pair = (text_a, text_b) if text_b.strip() else (text_a,)
    ids = tokenizer(*pair, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    n_tokens = len(ids)
    if endpoint == "tokenize":
        data = result[0]
        assert [row["id"] for row in data["tokens"]] == ids
        assert [row["token"] for row in data["tokens"]] == tokenizer.convert_ids_to_tokens(ids)
        untruncated = len(tokenizer(*pair)["input_ids"])
        assert data["truncated"] == (untruncated > MAX_TOKENS)
        notices = " ".join(data["notices"])
        long_input = any(v is not None and len(str(v)) > MAX_CHARS for v in (case.value("text_a"), case.value("text_b")))
        assert ("only the first 20,000 were read" in notices) == long_input, notices
        surrogates = any(isinstance(v, str) and re.search("[\ud800-\udfff]", v)
                         for v in (case.value("text_a"), case.value("text_b")))
        assert ("unpaired surrogates" in notices) == bool(surrogates), notices
    elif endpoint == "step":
        info, image = result
        assert n_tokens in info["shape"] and len(info["shape"]) == len(info["axes"]), info
        assert all(math.isfinite(info[k]) for k in ("mean", "std", "min", "max"))
        check_image(image)
    elif endpoint == "head_summary":
        rows = result[0]["heads"]
        assert len(rows) == (72 if case.value("layer") == -1 else 12)
        for row in rows:
            assert math.isfinite(row["entropy (bits)"]) and 0 <= row["entropy (bits)"] <= math.log2(n_tokens) + 1e-6
            assert all(-1e-6 <= row[k] <= 1 + 1e-6 for k in ("to [CLS]", "to [SEP]", "to itself", "to previous", "to next"))
    elif endpoint == "output":
        info, strips, similarity = result
        assert info["dimension"] == 384 and len(info["embeddings"]) == len(pair)
        for text, item in zip(pair, info["embeddings"]):
            assert item["norm"] == pytest.approx(1.0, abs=1e-4)  # mean pooling then L2 normalisation
            if len(tokenizer(text)["input_ids"]) <= ST_MAX_TOKENS:
                expected = encoder.encode([text], convert_to_numpy=True)[0]
                assert np.allclose(item["first_values"], expected[:8], atol=1e-4), text[:40]
        assert (info["cosine"] is None) == (len(pair) == 1)
        if info["cosine"] is not None:
            assert -1 - 1e-6 <= info["cosine"] <= 1 + 1e-6
        check_image(strips)
        check_image(similarity)
    else:  # input_composition and the attention figures
        check_image(result[0])


def _check_fill_mask(case: Case, result: list) -> None:
    data, image = result
    positions = [i for i, token in enumerate(data["tokens"]) if token == data["mask_token"] == "[MASK]"]
    assert positions and [mask["position"] for mask in data["masks"]] == positions
    for mask in data["masks"]:
        probabilities = [p["probability"] for p in mask["predictions"]]
        assert len(probabilities) == int(case.value("top_k")) and probabilities == sorted(probabilities, reverse=True)
        assert probabilities[-1] >= 0 and sum(probabilities) <= 1 + 1e-5
    check_image(image)


def _check_logit_lens(case: Case, result: list) -> None:
    data, image = result
    assert data["token"] == "[MASK]"  # position -1: the first mask
    assert len(data["rows"]) == len(data["labels"]) == len(data["answer_ranks"]) == 3  # embeddings + 2 layers
    assert all(len(row) == int(case.value("top_k")) for row in data["rows"])
    assert all(0 <= p <= 1 for p in data["answer_probabilities"])
    check_image(image)


def _check_mask_token(case: Case, result: list) -> None:
    masked, read = result[0], as_read(case.value("text_a"))
    assert "[MASK]" in masked and len(masked) <= len(read) + len("[MASK]"), masked[:80]


def _check_ablation(case: Case, result: list) -> None:
    data, change, predictions = result
    check_image(change)
    has_mask = "[MASK]" in as_read(case.value("text_a")) + as_read(case.value("text_b"))
    assert (data["fill_mask"] is not None) == has_mask and (predictions is not None) == has_mask
    if predictions is not None:
        check_image(predictions)


def _check_word(case: Case, result: list) -> None:
    data, cosine, heads = result
    assert data["word"] == "bank" and len(data["cosine_by_layer"]) == len(data["labels"]) == 3
    assert all(-1 - 1e-5 <= c <= 1 + 1e-5 for c in data["cosine_by_layer"])
    check_image(cosine)
    check_image(heads)


def _check_weights(case: Case, result: list) -> None:
    data = result[0]
    assert data["n_tensors"] == len(data["rows"]) > 0
    assert data["n_parameters"] == sum(row["n_parameters"] for row in data["rows"])


def _check_echo(case: Case, result: list) -> None:
    value = case.value("text_a")
    assert result[0] == (None if value is None else str(value))  # Gradio's Textbox gives str(value)


def _check_download(case: Case, result: list) -> None:
    from safetensors.torch import load as load_safetensors

    data = fetch(result[0]["url"])
    kind = "safetensors" if case.endpoint == "export_run" else case.value("file_format")
    if kind == "png":
        check_image(result[0])
    else:
        tensors = load_safetensors(data)  # a safetensors file: a JSON header and raw numbers, nothing to run
        assert tensors and all(t.numel() > 0 for t in tensors.values())
        if case.endpoint == "export_run":
            assert "layers.0.attn.pattern" in tensors and "layers.1.ln2" in tensors


FEATURE_CHECKS: dict[str, Callable[[Case, list], None]] = {
    "fill_mask": _check_fill_mask, "logit_lens": _check_logit_lens, "mask_token": _check_mask_token,
    "ablate_heads": _check_ablation, "word_in_contexts": _check_word, "model_weights": _check_weights,
    "export_figure": _check_download, "export_tensors": _check_download, "export_run": _check_download,
    "echo": _check_echo,
}


# ------------------------------------------------------------------------------------- the table's test

CANARY = ("The canary sings before and after every bad input.", "", "", "")


def canary_results(server: AppServer) -> list:
    """What an ordinary user gets: compared before and after the bad inputs, nothing of theirs may change."""
    tokens = outputs(api(server, "tokenize", *CANARY))[0]
    head = png_pixels(outputs(api(server, "attention_head", *CANARY, 2, 3))[0])
    info = outputs(api(server, "output", *CANARY))[0]
    model = outputs(api(server, "load_model", "", ""))[0]
    return [tokens, head, info, model]


@pytest.fixture(scope="module")
def canary(server):
    return canary_results(server)


@pytest.mark.parametrize("case", BAD_INPUT, ids=[case.id for case in BAD_INPUT])
def test_bad_input_gets_a_correct_result_or_a_clear_message(server, canary, references, tiny_mlm_repo, case):
    started = time.monotonic()
    if case.body is not None:
        answer = call_api(server.url, case.endpoint, body=case.body, timeout=60)
    else:
        answer = call_api(server.url, case.endpoint, list(case.inputs), timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"{elapsed:.1f} s"
    if case.refused_with is not None:
        assert answer.status == case.refused_with and answer.event == ("error" if case.refused_with == 200 else None), answer
        assert "Traceback" not in json.dumps(answer.data)
    elif case.expect is OK:
        assert answer.event == "complete", f"expected a result, got: {answer.message}"
        check_result(case, answer.data, references)
    else:
        message = refusal(answer, server)
        assert re.search(case.expect, message), message


def test_bad_input_changed_nothing_for_anyone_else(server, canary):
    assert server.process.poll() is None, "the server died"
    after = canary_results(server)
    assert after[0] == canary[0] and after[2] == canary[2] and after[3] == canary[3]
    assert np.array_equal(after[1], canary[1])
    assert "unexpected failure" not in server.log(), "some input reached the generic error path: see the server log"


def test_the_table_covers_every_named_endpoint(server):
    named = Client(server.url, verbose=False, analytics_enabled=False).view_api(return_format="dict", print_info=False)
    endpoints = {name.lstrip("/"): [p["parameter_name"] for p in spec["parameters"]]
                 for name, spec in named["named_endpoints"].items()}
    missing = sorted(set(endpoints) - set(PARAMS))
    assert not missing, f"endpoints not yet tried with bad input: {missing}; add them to PARAMS (and GOOD) in this file"
    for endpoint, params in PARAMS.items():
        assert endpoints[endpoint] == list(params), endpoint


# ====================================================================== 3. load, leaks and the bounded queue

CLIENTS = 16
REQUESTS_PER_CLIENT = 10


def concurrency_pool(tiny_repo_id: str) -> dict[str, list[tuple[str, tuple]]]:
    """Requests for sessions on the bundled model and for sessions on the tiny Hub model, with texts no other
    test uses, so nothing is cached when the crowd arrives."""
    bundled = [f"Session {i} asks whether the river bank near the old mill will flood again." for i in range(6)]
    tiny = [f"the {w} sat on the mat and a dog ran {v}" for w, v in
            (("cat", "fast"), ("dog", "slow"), ("cat", "slow"), ("dog", "fast"), ("red", "big"), ("blue", "small"))]
    pool: dict[str, list[tuple[str, tuple]]] = {"bundled": [], "tiny": []}
    for i, text in enumerate(bundled):
        texts = (text, "It rained for days." if i % 2 else "", "", "")
        pool["bundled"] += [("tokenize", texts), ("attention_head", (*texts, i % 6, (5 * i) % 12)),
                            ("step", (*texts, (i + 2) % 6, i % 14, -1 if i % 3 else 4)), ("output", texts)]
    for i, text in enumerate(tiny):
        texts = (text, "the dog" if i % 2 else "", tiny_repo_id, "")
        pool["tiny"] += [("tokenize", texts), ("attention_head", (*texts, i % 2, i % 4)),
                         ("head_summary", (*texts, -1)), ("output", texts)]
    return pool


def comparable(endpoint: str, result: Any) -> list:
    """JSON as plain data and images as decoded pixels, so results from two servers and two clients compare."""
    items = list(result) if isinstance(result, (tuple, list)) and endpoint in ("step", "output") else [result]
    return [png_pixels(item) if (isinstance(item, str) and item.endswith(".png")) else json.loads(json.dumps(item))
            for item in items]


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(a, b))


def test_sixteen_concurrent_sessions_get_what_each_would_get_alone(server, small_server, tiny_repo, workdir):
    pool = concurrency_pool(tiny_repo.repo_id)
    # Alone: every request once, one after the other, on the other server (its own process and caches).
    alone_client = client_for(small_server, workdir / "alone")
    alone = {(endpoint, inputs): comparable(endpoint, alone_client.predict(*inputs, api_name=f"/{endpoint}"))
             for requests in pool.values() for endpoint, inputs in requests}

    # Together: 16 sessions at once, even ones on the bundled model, odd ones on the tiny Hub model, each its own order.
    plans = []
    for c in range(CLIENTS):
        requests = pool["bundled" if c % 2 == 0 else "tiny"]
        plans.append([requests[(c * 7 + j * 5) % len(requests)] for j in range(REQUESTS_PER_CLIENT)])
    clients = [client_for(server, workdir / f"crowd-{c}") for c in range(CLIENTS)]
    start_together = threading.Barrier(CLIENTS)

    def session(c: int) -> list[tuple[str, tuple, list, float]]:
        start_together.wait(timeout=60)
        answers = []
        for endpoint, inputs in plans[c]:
            began = time.monotonic()
            result = clients[c].submit(*inputs, api_name=f"/{endpoint}").result(timeout=180)
            answers.append((endpoint, inputs, comparable(endpoint, result), time.monotonic() - began))
        return answers

    began = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as crowd:
        sessions = list(crowd.map(session, range(CLIENTS)))
    wall = time.monotonic() - began
    latencies = sorted(seconds for answers in sessions for *_, seconds in answers)
    print(f"\n{CLIENTS} clients x {REQUESTS_PER_CLIENT} requests ({len(alone)} distinct): {wall:.1f} s in all; "
          f"latency median {statistics.median(latencies):.2f} s, max {latencies[-1]:.2f} s")
    assert sum(len(answers) for answers in sessions) == CLIENTS * REQUESTS_PER_CLIENT
    for c, answers in enumerate(sessions):
        for endpoint, inputs, result, _ in answers:
            assert same(result, alone[(endpoint, inputs)]), f"client {c}: /{endpoint} {inputs[:3]} differs from alone"
    assert wall < 180


MEMORY_REQUESTS = 300
MEMORY_WARM_UP = 100
MEMORY_GROWTH_LIMIT = 50 * 2**20
# Single-token words: every text of the test differs, and all have the same number of tokens, so runs and figures
# keep one size (texts that grow, "Request 9" then "Request 299", grow the cached runs and look like a leak).
MEMORY_WORDS = ("red blue green black white small big old new long short fast slow hot cold dark light good bad "
                "happy sad rich poor young early late high low deep wide").split()


def rss_trend(samples: list[tuple[int, int]], span: int) -> float:
    """Bytes of growth over ``span`` requests: the least-squares slope of RSS against the request number (one
    reading wanders with what the allocator holds at that moment; a leak is a slope)."""
    x, y = np.array(samples, dtype=float).T
    return float(np.polyfit(x, y, 1)[0] * span)


def test_three_hundred_requests_grow_the_server_by_less_than_50_mb(server):
    """A user's 300 requests in a row (one session), each with a new text: a new run, new figures, evictions.

    Growth is measured over the last 200: the first 100 fill what the app keeps on purpose (48 runs, 256 figure
    paths, embeddings), so what still grows after that is a leak (figures left open, a cache without a bound).
    """
    process = psutil.Process(server.process.pid)
    endpoints = [("tokenize", ()), ("attention_head", (1, 2)), ("output", ()), ("step", (2, 5, -1)),
                 ("attention_layer", (3,))]
    samples = []
    for i in range(MEMORY_REQUESTS):
        endpoint, extra = endpoints[i % len(endpoints)]
        first, second = divmod(i, len(MEMORY_WORDS))
        text = f"The {MEMORY_WORDS[first]} cat sat on the {MEMORY_WORDS[second]} mat near the river bank."
        outputs(call_api(server.url, endpoint, [text, "", "", "", *extra], session="one-user", timeout=60))
        if i + 1 >= MEMORY_WARM_UP and (i + 1) % 10 == 0:
            samples.append((i + 1, process.memory_info().rss))
    growth = rss_trend(samples, MEMORY_REQUESTS - MEMORY_WARM_UP)
    readings = [round(rss / 2**20) for _, rss in samples]
    print(f"\nRSS over requests {MEMORY_WARM_UP}-{MEMORY_REQUESTS} (MB, every 10): {readings}; "
          f"trend {growth / 2**20:+.1f} MB over the last {MEMORY_REQUESTS - MEMORY_WARM_UP}")
    assert growth < MEMORY_GROWTH_LIMIT


def test_one_shot_api_calls_cannot_pile_up_sessions(small_server):
    """Every API call without a session is a new Gradio session (~0.3 MB each); the app keeps a bounded number."""
    process = psutil.Process(small_server.process.pid)
    samples = []
    for i in range(5 * SMALL_SESSIONS):
        outputs(call_api(small_server.url, "load_model", ["", ""], timeout=30))
        if i + 1 >= 2 * SMALL_SESSIONS and (i + 1) % 10 == 0:
            samples.append((i + 1, process.memory_info().rss))
    growth = rss_trend(samples, 3 * SMALL_SESSIONS)
    print(f"\n{5 * SMALL_SESSIONS} one-shot calls, room for {SMALL_SESSIONS} sessions: "
          f"trend {growth / 2**20:+.1f} MB over the last {3 * SMALL_SESSIONS}")
    assert growth < 15 * 2**20  # without the bound: ~0.3 MB a call, ~45 MB here


FLOOD = 24
CONCURRENCY = 2  # app.CONCURRENCY: requests computed at once
FLOOD_ENDPOINTS = [("attention_overview", ()), ("attention_flow", (5, 3)), ("output", ()), ("attention_layer", (4,)),
                   ("input_composition", ()), ("step", (5, 3, -1)), ("head_summary", (-1,)), ("attention_head", (5, 7))]


def slow_text(tag: str) -> str:
    """A text no other request uses (nothing cached) that fills 512 tokens: a second or more of work per request."""
    return " ".join(f"{tag}x{i % 40}" for i in range(700))


def test_at_most_two_requests_compute_at_once_whatever_the_endpoint(server, workdir):
    """Gradio's concurrency limit applies per event unless events share a group: 8 slow requests to 8 endpoints
    must still compute 2 at a time (else ~200 could run at once on a 2-core Space and exhaust its memory)."""
    from gradio_client.utils import Status

    client = client_for(server, workdir / "concurrency")
    jobs = [client.submit(slow_text(f"conc{n}"), "", "", "", *extra, api_name=f"/{endpoint}")
            for n, (endpoint, extra) in enumerate(FLOOD_ENDPOINTS)]
    seen: list[list[float]] = [[] for _ in jobs]  # the times each job read as processing
    deadline = time.monotonic() + 180
    while not all(job.done() for job in jobs) and time.monotonic() < deadline:
        now = time.monotonic()
        for times, job in zip(seen, jobs):
            if job.status().code == Status.PROCESSING:
                times.append(now)
        time.sleep(0.02)
    for job in jobs:
        job.result(timeout=10)  # each one succeeded
    # A job's status reaches the client a few ms after the server moved on, so a job that just finished can read
    # as processing next to the one that replaced it: the last 0.2 s of each job's processing is not counted.
    spans = [(times[0], times[-1] - 0.2) for times in seen if times]
    most = max(sum(start <= t < end for start, end in spans) for times in seen for t in times)
    print(f"\n{len(jobs)} slow requests to {len(jobs)} endpoints: at most {most} computed at once")
    assert len(spans) == len(jobs) and most == CONCURRENCY


def test_a_flood_beyond_the_queue_is_told_queue_full_and_the_server_carries_on(small_server):
    """24 slow requests at once, spread over 8 endpoints: 2 are computed and 4 wait; the rest hear "queue full"."""
    texts = [slow_text(f"flood{n}") for n in range(FLOOD)]
    go = threading.Barrier(FLOOD)

    def flood(n: int) -> Answer:
        endpoint, extra = FLOOD_ENDPOINTS[n % len(FLOOD_ENDPOINTS)]
        go.wait(timeout=60)
        return api(small_server, endpoint, texts[n], "", "", "", *extra, timeout=300)

    with ThreadPoolExecutor(FLOOD) as crowd:
        answers = list(crowd.map(flood, range(FLOOD)))
    full = [a for a in answers if a.status == 503]
    done = [a for a in answers if a.event == "complete"]
    print(f"\nflood of {FLOOD} over {len(FLOOD_ENDPOINTS)} endpoints at queue {SMALL_QUEUE} + {CONCURRENCY} computing: "
          f"{len(done)} answered, {len(full)} told queue full")
    assert len(full) + len(done) == FLOOD, [a for a in answers if a.status != 503 and a.event != "complete"]
    # Room for 2 + 4 at the moment the flood arrives (and a little for any that finished while it arrived).
    assert SMALL_QUEUE <= len(done) <= SMALL_QUEUE + CONCURRENCY + 2
    for answer in full:
        assert answer.message.startswith("Queue is full") and f"Max size is {SMALL_QUEUE}" in answer.message
    for n, answer in enumerate(answers):
        if answer.event == "complete" and FLOOD_ENDPOINTS[n % len(FLOOD_ENDPOINTS)][0] == "head_summary":
            assert len(answer.data[0]["heads"]) == 6 * 12
        elif answer.event == "complete":
            check_image(answer.data[-1])
    assert small_server.process.poll() is None
    assert outputs(api(small_server, "tokenize", SENTENCE, "", "", ""))[0]["tokens"][1]["token"] == "the"
