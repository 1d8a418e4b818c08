"""The app's masked-word, ablation, word-in-context, weight-map and download endpoints, called as users script them.

``python app.py`` runs in a subprocess with an offline Hub cache of tiny checkpoints saved by ``transformers``
(tests/apptools.py); gradio_client calls it over loopback. Every number is checked against something we did
not write: ``transformers``' *ForMaskedLM models and their hidden states and attentions, a head switched off
inside ``transformers``' own forward pass, and the safetensors files read with ``safetensors`` itself.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import transformer
from apptools import REPO, TINY_MLM_REPOS, running_app, snapshot_of
from tiny import reference_masked_lm
from transformer import plots

BUNDLED = REPO / "weights" / "all-MiniLM-L6-v2"
SENTENCE = "The river bank was flooded after the storm."
MLM_TEXT = "the cat sat on the {mask} and the dog was {mask} ."
WORD_TEXTS = ("We sat on the river bank.", "The bank approved my loan.")
MLM_REPO = TINY_MLM_REPOS["bert"]
NEW_ENDPOINTS = {
    "fill_mask": ["text_a", "text_b", "model_id", "revision", "top_k"],
    "logit_lens": ["text_a", "text_b", "model_id", "revision", "position", "top_k"],
    "mask_token": ["text_a", "text_b", "model_id", "revision", "index"],
    "ablate_heads": ["text_a", "text_b", "model_id", "revision", "heads", "top_k"],
    "word_in_contexts": ["text_a", "text_b", "model_id", "revision", "word"],
    "model_weights": ["model_id", "revision"],
    "export_figure": ["text_a", "text_b", "model_id", "revision", "view", "options", "file_format"],
    "export_tensors": ["text_a", "text_b", "model_id", "revision", "view", "options", "file_format"],
    "export_run": ["text_a", "text_b", "model_id", "revision"],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app-features")


@pytest.fixture(scope="module")
def client(workdir):
    with running_app(workdir) as url:
        yield Client(url, verbose=False, analytics_enabled=False, download_files=str(workdir / "downloads"))


@pytest.fixture(scope="module")
def hub_cache(client, workdir) -> Path:
    return workdir / "hf" / "hub"  # made by running_app before the server started


@pytest.fixture(scope="module")
def reference_bundled():
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BUNDLED)), AutoModel.from_pretrained(str(BUNDLED), attn_implementation="eager").eval()


def call(client: Client, endpoint: str, *args):
    return client.predict(*args, api_name=f"/{endpoint}")


def image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def pixels(figsize: tuple[float, float]) -> tuple[int, int]:
    return round(figsize[0] * plots.DPI), round(figsize[1] * plots.DPI)


def mask_of(family: str) -> str:
    return "<mask>" if family in ("roberta", "xlm-roberta") else "[MASK]"


def reference_logits(family: str, reference, input_ids: list[int]):
    """The reference *ForMaskedLM's logits (T, vocab) and hidden states for one text (segment 0 everywhere)."""
    ids = torch.tensor([input_ids])
    extra = {} if family == "distilbert" else {"token_type_ids": torch.zeros_like(ids)}
    with torch.no_grad():
        out = reference(input_ids=ids, output_hidden_states=True, **extra)
    return out.logits[0], out.hidden_states


def token_ids(client: Client, text: str, repo: str) -> list[int]:
    return [row["id"] for row in call(client, "tokenize", text, "", repo, "")["tokens"]]


def test_every_new_computation_is_a_named_endpoint(client):
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for endpoint, parameters in NEW_ENDPOINTS.items():
        assert f"/{endpoint}" in named, endpoint
        assert [p["parameter_name"] for p in named[f"/{endpoint}"]["parameters"]] == parameters, endpoint


# -------------------------------------------------------------------------------------------- masked words


@pytest.mark.parametrize("family", list(TINY_MLM_REPOS))
def test_fill_mask_equals_the_reference_masked_lm(client, hub_cache, family):
    repo = TINY_MLM_REPOS[family]
    text = MLM_TEXT.format(mask=mask_of(family))
    data, image = call(client, "fill_mask", text, "", repo, "", 4)
    ids = token_ids(client, text, repo)
    logits, _ = reference_logits(family, reference_masked_lm(family, snapshot_of(hub_cache, repo)), ids)
    mask_id = data["masks"][0]["predictions"] and ids[data["masks"][0]["position"]]
    positions = [i for i, token_id in enumerate(ids) if token_id == mask_id]
    assert [mask["position"] for mask in data["masks"]] == positions and len(positions) == 2
    for mask in data["masks"]:
        expected, expected_ids = torch.softmax(logits[mask["position"]], -1).topk(4)
        assert [p["id"] for p in mask["predictions"]] == expected_ids.tolist()
        assert np.allclose([p["probability"] for p in mask["predictions"]], expected.numpy(), atol=1e-5)
    assert image_size(image) == pixels(plots.SIZE_WIDE)


def test_logit_lens_equals_the_reference_head_on_every_layer(client, hub_cache):
    text = MLM_TEXT.format(mask="[MASK]")
    reference = reference_masked_lm("bert", snapshot_of(hub_cache, MLM_REPO))
    ids = token_ids(client, text, MLM_REPO)
    logits, hidden = reference_logits("bert", reference, ids)
    for position in (-1, 2):
        data, image = call(client, "logit_lens", text, "", MLM_REPO, "", position, 3)
        at = ids.index(4) if position == -1 else position  # [MASK] is id 4 in tests/tiny.py's vocabulary
        assert data["position"] == at and data["labels"] == ["embeddings", "layer 1", "layer 2"]
        with torch.no_grad():
            rows = torch.stack([reference.cls(state[0, at]) for state in hidden])  # (L + 1, vocab)
        assert torch.allclose(rows[-1], logits[at], atol=1e-5), "the last lens row is the model's own output"
        probabilities = torch.softmax(rows, -1)
        for row, expected in zip(data["rows"], probabilities):
            values, top_ids = expected.topk(3)
            assert [p["id"] for p in row] == top_ids.tolist()
            assert np.allclose([p["probability"] for p in row], values.numpy(), atol=1e-5)
        answer = int(probabilities[-1].argmax())
        assert data["answer"]["id"] == answer
        assert data["answer_ranks"] == (1 + (rows > rows[:, answer, None]).sum(-1)).tolist()
        assert np.allclose(data["answer_probabilities"], probabilities[:, answer].numpy(), atol=1e-5)
        assert image_size(image) == pixels(plots.SIZE_WIDE)


def test_clicking_a_token_masks_exactly_its_characters(client):
    assert call(client, "mask_token", "the cat sat on the mat", "", MLM_REPO, "", 2) == "the [MASK] sat on the mat"
    assert call(client, "mask_token", "the cat sat", "", TINY_MLM_REPOS["albert"], "", 2) == "the [MASK] sat"


def test_the_bundled_model_has_no_head_and_says_so_in_one_line(client):
    for endpoint, args in (("fill_mask", (5,)), ("logit_lens", (-1, 5))):
        with pytest.raises(AppError, match=r"all-MiniLM-L6-v2 has no masked-language-model head.*load a checkpoint with one") as raised:
            call(client, endpoint, "The [MASK] sat.", "", "", "", *args)
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("endpoint", "args", "message"),
    [
        ("fill_mask", ("the cat sat", "", MLM_REPO, "", 5), r"The text has no \[MASK\] token"),
        ("fill_mask", (MLM_TEXT, "", MLM_REPO, "", 0), r"top_k 0 is out of range: use 1 to 50"),
        ("fill_mask", ("the [MASK] sat", "", MLM_REPO, "", "many"), r"top_k must be a whole number"),
        ("logit_lens", ("the [MASK] sat", "", MLM_REPO, "", 99, 5), r"position 99 is out of range: use -1 to 4"),
        ("logit_lens", ("the cat sat", "", MLM_REPO, "", -1, 5), r"no \[MASK\] token: choose a position from 0 to 4"),
        ("mask_token", ("the cat sat", "", MLM_REPO, "", 0), r"Token #0 is \[CLS\], a special token"),
        ("ablate_heads", (SENTENCE, "", "", "", "6.0", 5), r"layer 6 is out of range: use 0 to 5"),
        ("ablate_heads", (SENTENCE, "", "", "", "0.12", 5), r"head 12 is out of range: use 0 to 11"),
        ("ablate_heads", (SENTENCE, "", "", "", "first", 5), r"'first' is not a head: write layer.head"),
        ("ablate_heads", (SENTENCE, "", "", "", " , ", 5), r"Choose at least one head"),
        ("word_in_contexts", (*WORD_TEXTS, "", "", "money"), r"The word must appear in both texts: 'money' does not occur"),
        ("word_in_contexts", (WORD_TEXTS[0], "", "", "", "bank"), r"the second text is empty"),
        ("word_in_contexts", (*WORD_TEXTS, "", "", "  "), r"Type the word to compare"),
        ("export_figure", (SENTENCE, "", "", "", "nope", {}, "png"), r"Unknown view 'nope'"),
        ("export_figure", (SENTENCE, "", "", "", "attention_head", {"layr": 1}, "png"), r"has no option layr; its options: layer, head"),
        ("export_figure", (SENTENCE, "", "", "", "attention_head", {"layer": 9}, "png"), r"layer 9 is out of range"),
        ("export_figure", (SENTENCE, "", "", "", "attention_head", {}, "gif"), r"format must be png or svg"),
        ("export_figure", (SENTENCE, "", "", "", "attention_head", "not json", "png"), r"options must be a JSON object"),
        ("export_tensors", (SENTENCE, "", "", "", "attention_head", {}, "npy"), r"format must be safetensors or csv"),
        ("model_weights", ("bad id!!", ""), r"not a valid Hub repo id"),
    ],
)
def test_bad_inputs_give_one_clear_line(client, endpoint, args, message):
    with pytest.raises(AppError, match=message) as raised:
        call(client, endpoint, *args)
    assert "\n" not in str(raised.value) and "Traceback" not in str(raised.value)


# ------------------------------------------------------------------------------------------- head ablation


def switched_off(reference, heads: list[tuple[int, int]]):
    """Hooks that zero the chosen heads' slices of the attention output's input inside transformers' BERT
    (what a head mask does: the head's weighted sum of values becomes 0); returns the handles."""
    d_head = reference.config.hidden_size // reference.config.num_attention_heads
    handles = []
    for layer in sorted({layer for layer, _ in heads}):
        chosen = [head for l, head in heads if l == layer]

        def zero(module, inputs, chosen=chosen):
            context = inputs[0].clone()  # (B, T, H * d_head)
            for head in chosen:
                context[..., head * d_head:(head + 1) * d_head] = 0.0
            return (context, *inputs[1:])

        handles.append(reference.encoder.layer[layer].attention.output.dense.register_forward_pre_hook(zero))
    return handles


def last_hidden(reference, encoded, heads=()):
    handles = switched_off(reference, list(heads))
    try:
        with torch.no_grad():
            return reference(**encoded).last_hidden_state[0]  # (T, d)
    finally:
        for handle in handles:
            handle.remove()


def test_ablation_equals_transformers_with_the_heads_switched_off(client, reference_bundled):
    tokenizer, reference = reference_bundled
    data, change_image, predictions = call(client, "ablate_heads", SENTENCE, "", "", "", "1.3, 4.*", 5)
    heads = [(1, 3)] + [(4, h) for h in range(12)]
    assert data["heads"] == [list(pair) for pair in heads]
    encoded = tokenizer(SENTENCE, return_tensors="pt")
    original, ablated = last_hidden(reference, encoded), last_hidden(reference, encoded, heads)
    # all-MiniLM-L6-v2's sentence embedding: the mean of the token vectors, L2-normalised (its modules.json).
    embed = [torch.nn.functional.normalize(h.mean(0), dim=0) for h in (original, ablated)]
    assert data["sentence_embedding_cosine"] == pytest.approx(float(embed[0] @ embed[1]), abs=1e-5)
    assert data["sentence_embedding_cosine"] < 0.999, "switching off a whole layer must change something"
    assert [row["token"] for row in data["token_change"]] == tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert np.allclose([row["change"] for row in data["token_change"]], (ablated - original).norm(dim=-1).numpy(), atol=2e-4)
    assert image_size(change_image) == pixels(plots.SIZE_WIDE) and predictions is None  # no head: no predictions


def test_ablation_changes_the_predictions_as_transformers_does(client, hub_cache):
    text = MLM_TEXT.format(mask="[MASK]")
    reference = reference_masked_lm("bert", snapshot_of(hub_cache, MLM_REPO))
    ids = token_ids(client, text, MLM_REPO)
    data, _, predictions = call(client, "ablate_heads", text, "", MLM_REPO, "", "0.1, 1.2", 3)
    encoded = {"input_ids": torch.tensor([ids]), "token_type_ids": torch.zeros(1, len(ids), dtype=torch.long)}
    with torch.no_grad():
        before = reference(**encoded).logits[0]
    handles = switched_off(reference.bert, [(0, 1), (1, 2)])
    try:
        with torch.no_grad():
            after = reference(**encoded).logits[0]
    finally:
        for handle in handles:
            handle.remove()
    assert len(data["fill_mask"]) == 2
    for mask in data["fill_mask"]:
        at = mask["position"]
        p, q = torch.softmax(before[at], -1), torch.softmax(after[at], -1)
        assert mask["kl_divergence"] == pytest.approx(float((p * (p.log() - q.log())).sum()), abs=1e-5)
        assert [x["id"] for x in mask["before"]] == p.topk(3).indices.tolist()
        assert [x["id"] for x in mask["after"]] == q.topk(3).indices.tolist()
        assert np.allclose(mask["before_words_after"], q[p.topk(3).indices].numpy(), atol=1e-6)
    assert image_size(predictions) == pixels(plots.SIZE_WIDE)


# ------------------------------------------------------------------------------------ one word, two contexts


def test_word_in_two_contexts_equals_transformers_hidden_states(client, reference_bundled):
    tokenizer, reference = reference_bundled
    data, curve, heads = call(client, "word_in_contexts", *WORD_TEXTS, "", "", "Bank")
    vectors, entropies, selves = [], [], []
    for text in WORD_TEXTS:
        encoded = tokenizer(text, return_tensors="pt")
        at = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]).index("bank")
        with torch.no_grad():
            out = reference(**encoded, output_hidden_states=True, output_attentions=True)
        vectors.append(torch.stack([h[0, at] for h in out.hidden_states]))  # (L + 1, d)
        rows = torch.stack([a[0, :, at] for a in out.attentions])  # (L, H, T): the word's attention rows
        entropies.append(-(rows * rows.clamp_min(1e-12).log()).sum(-1))
        selves.append(rows[..., at])
    expected = torch.nn.functional.cosine_similarity(vectors[0], vectors[1], dim=-1)
    assert data["positions"] == [[6], [2]] and data["tokens"] == [["bank"], ["bank"]]
    assert np.allclose(data["cosine_by_layer"], expected.numpy(), atol=1e-4)
    assert np.allclose(data["entropy_difference"], (entropies[1] - entropies[0]).numpy(), atol=1e-4)
    assert np.allclose(data["self_attention_difference"], (selves[1] - selves[0]).numpy(), atol=1e-5)
    assert image_size(curve) == pixels(plots.SIZE_WIDE) and image_size(heads) == pixels(plots.SIZE_WIDE)


# ---------------------------------------------------------------------------------------------- weight map


@pytest.mark.parametrize("repo", ["", MLM_REPO, TINY_MLM_REPOS["albert"]])
def test_weight_map_lists_every_tensor_of_the_file(client, hub_cache, repo):
    data = call(client, "model_weights", repo, "")
    path = (BUNDLED if not repo else snapshot_of(hub_cache, repo)) / "model.safetensors"
    with safe_open(str(path), "pt") as handle:
        shapes = {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}
    assert data["n_tensors"] == len(data["rows"]) == len(shapes)
    assert {row["checkpoint_name"]: row["shape"] for row in data["rows"]} == shapes
    assert sum(data["totals"].values()) == data["n_parameters"] == sum(int(np.prod(s)) for s in shapes.values())
    if repo:
        assert data["totals"]["masked-LM head"] > 0
        assert any(row["step"] == "mlm_logits" for row in data["rows"])
    else:
        assert [f"layer {i}" for i in range(6)] == [k for k in data["totals"] if k.startswith("layer")]


# ------------------------------------------------------------------------------------------------- exports


def test_the_whole_run_reloads_to_the_same_tensors(client, reference_bundled):
    path = call(client, "export_run", SENTENCE, "", "", "")
    assert Path(path).name == "run.safetensors"
    loaded = load_file(path)
    direct = transformer.from_pretrained().run(SENTENCE)
    assert list(loaded) and set(loaded) == {step.name for step in direct.steps}
    for step in direct.steps:
        assert torch.equal(loaded[step.name], step.tensor), step.name
    tokenizer, reference = reference_bundled
    encoded = tokenizer(SENTENCE, return_tensors="pt")
    assert torch.allclose(loaded["layers.5.ln2"], last_hidden(reference, encoded), atol=1e-4)
    with safe_open(path, "pt") as handle:
        assert json.loads(handle.metadata()["tokens"]) == tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])


def test_a_views_tensors_reload_as_safetensors_and_csv(client, reference_bundled):
    tokenizer, reference = reference_bundled
    encoded = tokenizer(SENTENCE, return_tensors="pt")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    with torch.no_grad():
        expected = reference(**encoded, output_attentions=True).attentions[2][0, 3]  # (T, T)
    options = {"layer": 2, "head": 3}
    path = call(client, "export_tensors", SENTENCE, "", "", "", "attention_head", options, "safetensors")
    assert Path(path).name == "attention-layer2-head3.safetensors"
    (name, tensor), = load_file(path).items()
    assert name == "layers.2.attn.pattern.head3" and torch.allclose(tensor, expected, atol=1e-5)
    with safe_open(path, "pt") as handle:
        assert json.loads(handle.metadata()["axes"]) == {name: ["query", "key"]}
        assert json.loads(handle.metadata()["tokens"]) == tokens
    path = call(client, "export_tensors", SENTENCE, "", "", "", "attention_head", options, "csv")
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert len(rows) == len(tokens) ** 2
    for row in rows:
        query, key = int(row["query"]), int(row["key"])
        assert (row["query_text"], row["key_text"]) == (tokens[query], tokens[key])
        assert float(row["value"]) == pytest.approx(float(expected[query, key]), abs=1e-5)


def test_several_tensors_come_as_a_zip_of_csvs_and_big_ones_are_refused(client):
    path = call(client, "export_tensors", SENTENCE, "", "", "", "attention_flow", {"layer": 1, "head": 0}, "csv")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["moved_norms.csv", "rollout.csv", "weights.csv"]
        rollout = list(csv.DictReader(io.StringIO(archive.read("rollout.csv").decode("utf-8"))))
    n_tokens = round(len(rollout) ** 0.5)
    sums = np.zeros(n_tokens)
    for row in rollout:
        sums[int(row["query"])] += float(row["value"])
    assert np.allclose(sums, 1.0, atol=1e-5), "each rollout row sums to 1"
    long_text = " ".join(["word"] * 150)  # 152 tokens: 6 x 12 x 152 x 152 numbers in the overview
    with pytest.raises(AppError, match=r"more than the 1,000,000 written as CSV: download the tensors as .safetensors"):
        call(client, "export_tensors", long_text, "", "", "", "attention_overview", {}, "csv")


def test_a_step_exports_the_very_tensor_of_the_step(client):
    direct = transformer.from_pretrained().run(SENTENCE, "A second text.")
    path = call(client, "export_tensors", SENTENCE, "A second text.", "", "", "step", {"layer": 3, "step": 5, "head": 7},
                "safetensors")
    (name, tensor), = load_file(path).items()
    assert name == "layers.3.attn.context.head7"
    assert torch.equal(tensor, direct.step("layers.3.attn.context").tensor[7])


@pytest.mark.parametrize(("view", "options", "figsize"), [
    ("attention_head", {"layer": 1, "head": 2}, plots.SIZE_SQUARE),
    ("input_composition", {}, plots.SIZE_WIDE),
    ("word_cosine", {"word": "bank"}, plots.SIZE_WIDE),
])
def test_figures_download_as_png_and_svg(client, view, options, figsize):
    texts = WORD_TEXTS if view.startswith("word") else (SENTENCE, "")
    png = call(client, "export_figure", *texts, "", "", view, options, "png")
    assert Path(png).suffix == ".png" and image_size(png) == pixels(figsize)
    svg = call(client, "export_figure", *texts, "", "", view, options, "svg")
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width").removesuffix("pt")) == pytest.approx(figsize[0] * 72)
    assert re.fullmatch(r"[a-z0-9-]+\.svg", Path(svg).name), "download names come from the view, never from user text"


def test_fill_mask_tensors_export_the_reference_probabilities(client, hub_cache):
    text = MLM_TEXT.format(mask="[MASK]")
    path = call(client, "export_tensors", text, "", MLM_REPO, "", "fill_mask", {"top_k": 3}, "safetensors")
    tensors = load_file(path)
    ids = token_ids(client, text, MLM_REPO)
    logits, _ = reference_logits("bert", reference_masked_lm("bert", snapshot_of(hub_cache, MLM_REPO)), ids)
    masks = [i for i, token_id in enumerate(ids) if token_id == 4]
    expected = torch.softmax(logits[masks], -1).topk(3)
    assert torch.allclose(tensors["probabilities"], expected.values, atol=1e-5)
    assert torch.equal(tensors["token_ids"], expected.indices)


# -------------------------------------------------------------------------------- families in the old tabs


def test_families_walk_every_step_and_draw_their_inputs(client):
    layouts = {
        "distilbert": ["embeddings.token", "embeddings.position", "embeddings.sum", "embeddings.norm"],
        "electra": ["embeddings.token", "embeddings.position", "embeddings.segment", "embeddings.sum", "embeddings.norm",
                    "embeddings.project"],
        "albert": ["embeddings.token", "embeddings.position", "embeddings.segment", "embeddings.sum", "embeddings.norm",
                   "embeddings.project"],
    }
    for family, embedding_steps in layouts.items():
        texts = ("the cat sat on the mat", "a dog", TINY_MLM_REPOS[family], "")
        info, _ = call(client, "step", *texts, -1, 0, -1)
        assert info["layer_steps"] == embedding_steps, family
        n_layers = call(client, "load_model", TINY_MLM_REPOS[family], "")["layers"]
        for layer in range(-1, n_layers):
            count = len(call(client, "step", *texts, layer, 0, -1)[0]["layer_steps"])
            for position in range(count) if layer < 1 else (0, count - 1):  # every step of the embeddings and layer 0
                info, image = call(client, "step", *texts, layer, position, -1)
                assert Path(image).suffix == ".png"
                assert info["shared_weights"] == (family == "albert" and layer >= 0), (family, info["name"])
        assert image_size(call(client, "input_composition", *texts)) == pixels(plots.SIZE_WIDE)
        assert image_size(call(client, "position_similarity", TINY_MLM_REPOS[family], "", 20)) == pixels(plots.SIZE_WIDE)


def test_the_positions_note_names_the_models_own_table(hub_cache):
    import app

    sinusoidal = transformer.from_pretrained(snapshot_of(hub_cache, TINY_MLM_REPOS["distilbert"]))
    assert sinusoidal.config.positional == "sinusoidal"
    assert "its own table is the sinusoidal one" in app.positions_note(sinusoidal)
    learned = transformer.from_pretrained(snapshot_of(hub_cache, MLM_REPO))
    assert "learned its own table" in app.positions_note(learned)


# ------------------------------------------------------------------------------------ in-process: caching


def test_ablated_and_compared_runs_are_cached_like_any_other(monkeypatch):
    import app

    calls = []
    original = app._encode

    def counting_encode(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(app, "_encode", counting_encode)
    text = ("A sentence only the ablation cache test uses.", "", "", "")
    first = app.ablate_heads(*text, "2.1", 5)
    again = app.ablate_heads(*text, "2.1", 5)
    assert len(calls) == 2, "the original run and the ablated run, each encoded once"
    assert first[0] == again[0] and calls[1][3] == ((2, 1),)
    app.ablate_heads(*text, "2.1, 2.1", 5)  # the same set, written twice
    assert len(calls) == 2
    app.ablate_heads(*text, "2.*", 5)
    assert len(calls) == 3
    app.export_figure(*text, "ablation_change", {"heads": "2.1"}, "svg")
    app.word_in_contexts("The bank of the river.", "The bank of England.", "", "", "bank")
    app.word_in_contexts("The bank of the river.", "The bank of England.", "", "", "BANK")
    assert len(calls) == 5


def test_a_refused_page_download_warns_and_changes_nothing(monkeypatch):
    import app

    long_text = " ".join(["word"] * 150)
    controls = dict(text_a=long_text, text_b="", model=app.DEFAULT_KEY, width=128, length=64, layer=0, head=0,
                    step_index=0, step_head=-1, fill_text="", top_k=5, lens_position=None, heads=["0.*"],
                    context_a=WORD_TEXTS[0], context_b=WORD_TEXTS[1], word="bank")
    with pytest.warns(UserWarning, match=r"more than the 1,000,000 written as CSV"):
        answer = app.page_export("csv", "attention", "attention_overview", **controls)
    assert answer == {"__type__": "update"}, "a single output is left as it was"
    shown = app.page_export("svg", "attention", "attention_head", **controls)
    assert shown["visible"] is True and Path(shown["value"]).name == "attention-layer0-head0.svg"
    with pytest.warns(UserWarning, match=r"no figure to download"):
        assert app.page_export("png", "weights", "attention_head", **controls) == {"__type__": "update"}


def test_loading_a_model_rewrites_the_mask_token_of_the_fill_text():
    import app

    assert app._with_mask_token("The [MASK] sat on the <mask>.", "<mask>") == "The <mask> sat on the <mask>."
    assert app._with_mask_token("The <mask> sat.", "[MASK]") == "The [MASK] sat."
    assert app._with_mask_token("The [MASK] sat.", None) == {"__type__": "update"}, "no mask token: left as it is"
