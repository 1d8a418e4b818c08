"""The app's API, called the way users script it: ``python app.py`` in a subprocess, gradio_client over loopback.

Answers are checked against references we did not write: the tokenizer and attentions of ``transformers``,
the sentence embeddings of ``sentence-transformers``, and the tiny checkpoint's own config.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from apptools import REPO, TINY_COMMIT, TINY_REPO_ID, running_app
from transformer import plots

BUNDLED = REPO / "weights" / "all-MiniLM-L6-v2"
SENTENCE = "The river bank was flooded after the storm."
PAIR = ("I sat on the river bank and watched the water.", "She went to the bank to ask for a loan.")
POST_LN_LAYER = ["attn.q", "attn.k", "attn.v", "attn.scores", "attn.pattern", "attn.context", "attn.out",
                 "resid_mid", "ln1", "ffn.pre_act", "ffn.act", "ffn.out", "resid_post", "ln2"]
ENDPOINTS = ["load_model", "tokenize", "positional", "position_similarity", "input_composition", "step",
             "attention_head", "attention_layer", "attention_flow", "attention_overview", "head_summary", "output"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app-api")


@pytest.fixture(scope="module")
def client(workdir):
    with running_app(workdir) as url:
        yield Client(url, verbose=False, analytics_enabled=False, download_files=str(workdir / "downloads"))


@pytest.fixture(scope="module")
def reference_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BUNDLED))


def call(client: Client, endpoint: str, *args):
    return client.predict(*args, api_name=f"/{endpoint}")


def image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def expected_pixels(figsize: tuple[float, float]) -> tuple[int, int]:
    return round(figsize[0] * plots.DPI), round(figsize[1] * plots.DPI)


def test_every_computation_is_a_named_endpoint(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(f"/{name}" for name in ENDPOINTS) <= set(named)
    parameters = [p["parameter_name"] for p in named["/attention_head"]["parameters"]]
    assert parameters == ["text_a", "text_b", "model_id", "revision", "layer", "head"]


@pytest.mark.parametrize(
    ("text_a", "text_b"),
    [
        (SENTENCE, ""),
        PAIR,
        ("東京は日本の首都です。I ❤️ Tokyo 🍣 — שלום, مرحبا!", ""),
        ("tab\there, bell\x07 and\u200b zero-width; naïve café", "second\x00text"),
    ],
)
def test_tokenize_returns_the_reference_tokenizers_tokens(client, reference_tokenizer, text_a, text_b):
    answer = call(client, "tokenize", text_a, text_b, "", "")
    reference = reference_tokenizer(text_a, text_b or None, return_offsets_mapping=True)
    rows = answer["tokens"]
    assert [row["token"] for row in rows] == reference_tokenizer.convert_ids_to_tokens(reference["input_ids"])
    assert [row["id"] for row in rows] == reference["input_ids"]
    assert [row["segment"] for row in rows] == ["AB"[t] for t in reference["token_type_ids"]]
    for row, (start, end) in zip(rows, reference["offset_mapping"]):
        if not row["special"]:
            assert (row["start"], row["end"]) == (start, end), row
            source = text_a if row["segment"] == "A" else text_b
            assert row["text"] == source[start:end]
    unknown = reference_tokenizer.unk_token_id
    assert [row["unknown"] for row in rows] == [i == unknown for i in reference["input_ids"]]
    assert answer["counts"]["tokens"] == len(rows) and not answer["truncated"]


def test_long_text_is_truncated_with_a_plain_notice(client, reference_tokenizer):
    words = " ".join(f"word{i % 50}" for i in range(3000))  # far more than 512 tokens, about 20k characters
    answer = call(client, "tokenize", words, "", "", "")
    reference = reference_tokenizer(words[:20_000], truncation=True, max_length=512)
    assert len(answer["tokens"]) == 512
    assert [row["id"] for row in answer["tokens"]] == reference["input_ids"]
    assert answer["truncated"] and answer["dropped_tokens"] > 0
    assert any("at most 512 tokens" in notice and "stops after character" in notice for notice in answer["notices"])
    huge = "a " * 15_000  # 30,000 characters: cut to 20,000 before tokenizing
    notices = call(client, "tokenize", huge, "", "", "")["notices"]
    assert any("only the first 20,000 were read" in notice for notice in notices)


def test_plots_decode_to_png_images_of_the_expected_size(client):
    text = (SENTENCE, "", "", "")
    checks = {
        "positional": (call(client, "positional", 64, 50), plots.SIZE_WIDE),
        "position_similarity": (call(client, "position_similarity", "", "", 40), plots.SIZE_WIDE),
        "input_composition": (call(client, "input_composition", *text), plots.SIZE_WIDE),
        "attention_head": (call(client, "attention_head", *text, 2, 3), plots.SIZE_SQUARE),
        "attention_layer": (call(client, "attention_layer", *text, 5), plots.SIZE_MOSAIC),
        "attention_overview": (call(client, "attention_overview", *text), plots.SIZE_MOSAIC),
        "attention_flow": (call(client, "attention_flow", *text, 4, 11), plots.SIZE_TRIPLE),
        "step": (call(client, "step", *text, 1, 4, -1)[1], plots.SIZE_MOSAIC),
        "step_one_head": (call(client, "step", *text, 1, 4, 7)[1], plots.SIZE_SQUARE),
        "step_2d": (call(client, "step", *text, 0, 13, -1)[1], plots.SIZE_STEP),
    }
    for name, (path, figsize) in checks.items():
        assert Path(path).suffix == ".png", name
        assert image_size(path) == expected_pixels(figsize), name
    _, strips, similarity = call(client, "output", *PAIR, "", "")
    assert image_size(similarity) == expected_pixels(plots.SIZE_SQUARE)
    width, height = image_size(strips)
    assert width == 1100 and height > 300


def test_the_step_walk_covers_every_step_in_order(client):
    text = (SENTENCE, "", "", "")
    info, _ = call(client, "step", *text, -1, 0, -1)
    assert info["layer_steps"] == ["embeddings.token", "embeddings.position", "embeddings.segment",
                                   "embeddings.sum", "embeddings.norm"]
    info, _ = call(client, "step", *text, 3, 0, -1)
    assert info["layer_steps"] == [f"layers.3.{kind}" for kind in POST_LN_LAYER]
    assert info["count"] == 5 + 6 * len(POST_LN_LAYER)
    previous_index = None
    for position, name in enumerate(info["layer_steps"]):
        step, _ = call(client, "step", *text, 3, position, -1)
        assert step["name"] == name and step["step"] == position
        assert step["doc"] and step["formula"] and len(step["shape"]) == len(step["axes"])
        if previous_index is not None:
            assert step["index"] == previous_index + 1, "steps come in the order they were computed"
        previous_index = step["index"]


def test_step_statistics_match_the_reference_hidden_states(client, reference_tokenizer):
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(str(BUNDLED), attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = reference(**reference_tokenizer(SENTENCE, return_tensors="pt"), output_hidden_states=True).hidden_states
    info, _ = call(client, "step", SENTENCE, "", "", "", 2, len(POST_LN_LAYER) - 1, -1)
    assert info["name"] == "layers.2.ln2"  # the output of layer 2 is hidden_states[3]
    norms = [row["L2 norm"] for row in info["statistics"]]
    assert np.allclose(norms, hidden[3][0].norm(dim=-1).numpy(), atol=2e-3)
    means = [row["mean"] for row in info["statistics"]]
    assert np.allclose(means, hidden[3][0].mean(dim=-1).numpy(), atol=2e-3)


def test_head_summary_matches_the_reference_attentions(client, reference_tokenizer):
    from transformers import AutoModel

    reference = AutoModel.from_pretrained(str(BUNDLED), attn_implementation="eager").eval()
    encoded = reference_tokenizer(*PAIR, return_tensors="pt")
    with torch.no_grad():
        attentions = reference(**encoded, output_attentions=True).attentions  # L x (1, H, T, T)
    tokens = reference_tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    cls = [i for i, t in enumerate(tokens) if t == "[CLS]"]
    sep = [i for i, t in enumerate(tokens) if t == "[SEP]"]
    rows = call(client, "head_summary", *PAIR, "", "", -1)["heads"]
    assert len(rows) == 6 * 12
    for row in rows:
        pattern = attentions[row["layer"]][0, row["head"]].double()  # (T, T)
        assert row["to [CLS]"] == pytest.approx(float(pattern[:, cls].sum(-1).mean()), abs=1e-4)
        assert row["to [SEP]"] == pytest.approx(float(pattern[:, sep].sum(-1).mean()), abs=1e-4)
        assert row["to previous"] == pytest.approx(float(pattern.diagonal(-1).mean()), abs=1e-4)
        assert row["to itself"] == pytest.approx(float(pattern.diagonal().mean()), abs=1e-4)
        entropy = float(-(pattern * pattern.clamp_min(1e-30).log2()).sum(-1).mean())
        assert row["entropy (bits)"] == pytest.approx(entropy, abs=1e-3)
    layer_two = call(client, "head_summary", *PAIR, "", "", 2)["heads"]
    assert [(r["layer"], r["head"]) for r in layer_two] == [(2, h) for h in range(12)]


def test_a_text_is_perfectly_similar_to_itself(client):
    info, _, _ = call(client, "output", SENTENCE, SENTENCE, "", "")
    assert info["cosine"] == pytest.approx(1.0, abs=1e-5)
    single, _, _ = call(client, "output", SENTENCE, "", "", "")
    assert single["cosine"] is None and len(single["embeddings"]) == 1


def test_pair_cosine_equals_sentence_transformers(client):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(BUNDLED), device="cpu")
    vectors = reference.encode(list(PAIR), convert_to_numpy=True)
    expected = float(np.dot(vectors[0], vectors[1]) / (np.linalg.norm(vectors[0]) * np.linalg.norm(vectors[1])))
    info, _, _ = call(client, "output", *PAIR, "", "")
    assert info["cosine"] == pytest.approx(expected, abs=1e-4)
    assert np.allclose(info["embeddings"][0]["first_values"], vectors[0][:8], atol=1e-4)
    assert info["dimension"] == 384


@pytest.mark.parametrize(
    ("endpoint", "args", "message"),
    [
        ("tokenize", ("", "", "", ""), "The text is empty"),
        ("tokenize", ("   \n\t ", "second", "", ""), "The text is empty"),
        ("attention_head", (SENTENCE, "", "", "", 6, 0), r"layer 6 is out of range: use 0 to 5"),
        ("attention_head", (SENTENCE, "", "", "", 0, 12), r"head 12 is out of range: use 0 to 11"),
        ("attention_head", (SENTENCE, "", "", "", "two", 0), r"layer must be a whole number"),
        ("attention_layer", (SENTENCE, "", "", "", 1.5), r"layer must be a whole number"),
        ("step", (SENTENCE, "", "", "", 0, 14, -1), r"step 14 is out of range"),
        ("step", (SENTENCE, "", "", "", -2, 0, -1), r"layer -2 is out of range"),
        ("head_summary", (SENTENCE, "", "", "", None), r"layer must be a whole number"),
        ("positional", (0, 10), r"width 0 is out of range"),
        ("position_similarity", ("", "", 100_000), r"length 100000 is out of range"),
        ("tokenize", (SENTENCE, "", "", "main"), r"revision was given without a Hub repo id"),
    ],
)
def test_bad_inputs_give_one_clear_line(client, endpoint, args, message):
    with pytest.raises(AppError, match=message) as raised:
        call(client, endpoint, *args)
    assert "\n" not in str(raised.value) and "Traceback" not in str(raised.value)


def test_the_server_keeps_answering_after_bad_input(client):
    for _ in range(2):
        with pytest.raises(AppError):
            call(client, "attention_head", SENTENCE, "", "", "", 99, 99)
    assert call(client, "tokenize", "still here", "", "", "")["tokens"][1]["token"] == "still"


@pytest.mark.parametrize(
    ("model_id", "message"),
    [
        ("no-such-org/no-such-model", r"Hub repo no-such-org/no-such-model.*HF_HUB_OFFLINE is set"),
        ("bad id!!", r"not a valid Hub repo id"),
        # Paths are only ever Hub ids to the app: nothing says whether they exist on the server.
        ("/etc", r"'/etc' is not a valid Hub repo id"),
        ("weights/all-MiniLM-L6-v2", r"Hub repo weights/all-MiniLM-L6-v2.*HF_HUB_OFFLINE is set"),
        ("../../etc/passwd", r"not a valid Hub repo id"),
    ],
)
def test_a_bad_model_id_gives_a_one_line_reason_and_the_default_keeps_working(client, model_id, message):
    with pytest.raises(AppError, match=message) as raised:
        call(client, "load_model", model_id, "")
    assert "\n" not in str(raised.value)
    assert call(client, "load_model", "", "")["layers"] == 6
    assert call(client, "tokenize", SENTENCE, "", "", "")["tokens"][1]["token"] == "the"


def test_a_hub_model_loads_and_serves_every_endpoint(client, workdir):
    from transformers import AutoConfig, AutoTokenizer

    snapshot = workdir / "hf" / "hub" / ("models--" + TINY_REPO_ID.replace("/", "--")) / "snapshots" / TINY_COMMIT
    config = AutoConfig.from_pretrained(str(snapshot))
    info = call(client, "load_model", TINY_REPO_ID, "")
    assert info["kind"] == "hub" and info["repo_id"] == TINY_REPO_ID and info["revision"] == TINY_COMMIT
    assert (info["layers"], info["heads"], info["hidden_size"]) == (
        config.num_hidden_layers, config.num_attention_heads, config.hidden_size)
    assert info["vocabulary"] == config.vocab_size
    text = ("the cat sat on the mat", "a dog", TINY_REPO_ID, "")
    tokens = [row["token"] for row in call(client, "tokenize", *text)["tokens"]]
    reference = AutoTokenizer.from_pretrained(str(snapshot))
    assert tokens == reference.convert_ids_to_tokens(reference("the cat sat on the mat", "a dog")["input_ids"])
    assert image_size(call(client, "attention_head", *text, 1, 3)) == expected_pixels(plots.SIZE_SQUARE)
    with pytest.raises(AppError, match=r"head 4 is out of range: use 0 to 3 \(this model has 4 heads\)"):
        call(client, "attention_head", *text, 1, 4)
    step_info, _ = call(client, "step", *text, 1, 0, -1)
    assert step_info["count"] == 5 + 2 * len(POST_LN_LAYER)
    assert math.isfinite(call(client, "output", *text)[0]["cosine"])
    # The default model is untouched by someone else's choice.
    assert call(client, "load_model", "", "")["hidden_size"] == 384


# ------------------------------------------------------------------ in-process: caching and thread safety


@pytest.fixture(scope="module")
def app_module():
    import app

    return app


def test_importing_the_app_loads_no_model_and_starts_nothing():
    import subprocess
    import sys

    probe = ("import app; assert app._default_model is None, 'a model was loaded at import'; "
             "assert len(app._runs) == 0 and not app.demo.is_running; print('ok')")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_concurrent_requests_build_a_cached_value_once(app_module):
    import threading
    import time

    cache = app_module.LruCache(max_entries=2)
    builds = []

    def build():
        builds.append(1)
        time.sleep(0.2)  # long enough that all ten threads ask while it is being built
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_build("default", build))) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(results) == 10 and len({id(r) for r in results}) == 1


def test_caches_are_bounded_by_entries_and_by_size(app_module):
    evicted = []
    cache = app_module.LruCache(max_entries=3, max_size=10, size_of=len, on_evict=evicted.append)
    for key in "abc":
        cache.get_or_build(key, lambda key=key: key * 3)  # 3 entries of size 3
    cache.get("a")  # a is now the most recently used
    cache.get_or_build("d", lambda: "ddd")
    assert evicted == ["bbb"] and len(cache) == 3
    cache.get_or_build("e", lambda: "e" * 9)  # too big to keep the others within 10
    assert len(cache) == 1 and cache.get("e") == "e" * 9


def test_switching_tabs_and_steps_never_reruns_the_encoder(app_module, monkeypatch):
    calls = []
    original = app_module._encode

    def counting_encode(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(app_module, "_encode", counting_encode)
    text = ("A sentence that only this test uses, once.", "", "", "")
    app_module.tokenize(*text)
    app_module.input_composition(*text)
    for position in range(3):
        app_module.walk_step(*text, 0, position, -1)
    app_module.attention_head(*text, 1, 2)
    app_module.attention_layer(*text, 1)
    app_module.attention_overview(*text)
    app_module.summarize_heads(*text, -1)
    app_module.output(*text)
    assert len(calls) == 1
