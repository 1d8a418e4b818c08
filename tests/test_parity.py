"""Our encoder against the reference implementation (transformers' BERT, eager attention), in float32."""

from __future__ import annotations

import unicodedata

import pytest
import torch

import transformer
from transformer.steps import Recorder
from tiny import make_bert_checkpoint, reference_model

BUNDLED = "weights/all-MiniLM-L6-v2"
TOLERANCE = 1e-5

LONG_TEXT = " ".join(
    f"Sentence {i} talks about transformers, attention heads, embeddings and the café on rue de l'Église."
    for i in range(60)
)
INPUTS = [
    ("The cat sat on the mat.", None),
    ("Hi", None),
    ("", None),
    ("Crème brûlée, naïve façade, Ångström and São Paulo.", None),
    ("東京は日本の首都です。北京欢迎你!", None),
    ("I love pizza 🍕🔥 and 👩🏽‍💻 coding ❤️", None),
    ("Unknown glyphs: ⟁ ⨌ 𓀀 ꙮ and tabs\tand\nnewlines", None),
    ("The river bank was muddy.", "She went to the bank for a loan."),
    ("[CLS] literal [MASK] tokens [SEP] typed as text", "second [PAD] part"),
    (LONG_TEXT, None),  # far past 512 tokens: truncated to the maximum
    (LONG_TEXT, LONG_TEXT[:900]),  # a long pair: longest-first truncation
]


@pytest.fixture(scope="module")
def reference():
    return reference_model(BUNDLED)


@pytest.fixture(scope="module")
def reference_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(BUNDLED)


def run_reference(reference, input_ids, token_type_ids, attention_mask=None):
    with torch.no_grad():
        return reference(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            output_attentions=True,
            output_hidden_states=True,
        )


def max_difference(ours, theirs) -> float:
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("text_a,text_b", INPUTS, ids=range(len(INPUTS)))
def test_bundled_model_matches_reference(model, reference, reference_tokenizer, text_a, text_b):
    run = model.run(text_a, text_b)
    expected = reference_tokenizer(text_a, text_b, truncation=True, max_length=512)
    assert list(run.input_ids) == expected["input_ids"]
    assert list(run.token_type_ids) == expected["token_type_ids"]
    assert list(run.tokenized.sequence_ids) == expected.sequence_ids()
    assert run.tokens == tuple(reference_tokenizer.convert_ids_to_tokens(expected["input_ids"]))

    out = run_reference(reference, run.input_ids[None], run.token_type_ids[None])
    assert len(run.hidden_states) == 7 and len(run.attentions) == 6
    assert max_difference(run.hidden_states, [h[0] for h in out.hidden_states]) <= TOLERANCE
    assert max_difference(run.attentions, [a[0] for a in out.attentions]) <= TOLERANCE


def test_long_input_is_cut_to_512_tokens(model):
    run = model.run(LONG_TEXT)
    assert len(run.tokens) == 512 and run.truncated and run.tokenized.n_dropped > 0
    assert run.tokens[-1] == "[SEP]"


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def test_offsets_point_at_the_original_characters(model):
    text = "Crème brûlée at the Café"
    run = model.run(text)
    for token, (start, end), special in zip(run.tokens, run.offsets, run.tokenized.special):
        if not special:
            # BERT's uncased normaliser lower-cases and strips accents; the span is the original characters.
            assert strip_accents(text[start:end].lower()) == token.removeprefix("##")


def test_sublayers_match_reference_modules(model, reference):
    """TransformerLens-style: each sublayer's output against the reference module's own output."""
    run = model.run("The quick brown fox jumps over the lazy dog.", "It was not amused.")
    captured = {}

    def keep(name):
        def hook(module, inputs, output):
            captured[name] = (output[0] if isinstance(output, tuple) else output)[0]

        return hook

    handles = []
    for i, block in enumerate(reference.encoder.layer):
        handles.append(block.attention.self.register_forward_hook(keep(f"layers.{i}.context_merged")))
        handles.append(block.attention.output.dense.register_forward_hook(keep(f"layers.{i}.attn.out")))
        handles.append(block.attention.output.register_forward_hook(keep(f"layers.{i}.ln1")))
        handles.append(block.intermediate.dense.register_forward_hook(keep(f"layers.{i}.ffn.pre_act")))
        handles.append(block.intermediate.register_forward_hook(keep(f"layers.{i}.ffn.act")))
        handles.append(block.output.dense.register_forward_hook(keep(f"layers.{i}.ffn.out")))
    handles.append(reference.embeddings.register_forward_hook(keep("embeddings.norm")))
    try:
        run_reference(reference, run.input_ids[None], run.token_type_ids[None])
    finally:
        for handle in handles:
            handle.remove()
    for name, theirs in captured.items():
        if name.endswith("context_merged"):
            context = run.step(name.replace("context_merged", "attn.context")).tensor  # (H, T, d_head)
            ours = context.transpose(0, 1).reshape(context.shape[1], -1)  # (T, H * d_head)
        else:
            ours = run.step(name).tensor
        assert (ours - theirs).abs().max().item() <= TOLERANCE, name


def test_fast_path_matches_recorded_path_with_padding(model, reference):
    """The unrecorded path (fused attention kernel) on a padded batch equals the reference with its mask."""
    texts = ["short one", "a considerably longer sentence with many more tokens in it", "mid length text here"]
    input_ids, mask = model.tokenizer.encode_batch(texts)
    token_type_ids = torch.zeros_like(input_ids)
    with torch.inference_mode():
        fast = model.encoder(input_ids, token_type_ids, mask)
    out = run_reference(reference, input_ids, token_type_ids, mask)
    real = mask.bool()
    assert (fast[real] - out.last_hidden_state[real]).abs().max().item() <= TOLERANCE
    for row, text in enumerate(texts):
        alone = model.run(text).hidden_states[-1]
        assert (fast[row, : alone.shape[0]] - alone).abs().max().item() <= TOLERANCE


def test_embed_matches_sentence_transformers(model):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(BUNDLED, device="cpu")
    texts = [text for text, _ in INPUTS] + ["A man is playing a guitar.", "Someone plays an instrument."]
    ours = model.embed(texts)
    theirs = torch.as_tensor(reference.encode(texts, convert_to_numpy=True))
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=-1)
    assert cosine.min().item() >= 0.99999
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)  # MiniLM normalises


TINY_CONFIGS = {
    "gelu-4-heads": dict(num_attention_heads=4),
    "relu-2-heads-eps1e-5": dict(num_attention_heads=2, hidden_act="relu", layer_norm_eps=1e-5),
    "gelu_new-8-heads-3-layers": dict(num_attention_heads=8, hidden_act="gelu_new", num_hidden_layers=3),
    "1-head-eps1e-6": dict(num_attention_heads=1, layer_norm_eps=1e-6, hidden_size=24, intermediate_size=50),
}


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_tiny_random_configs_match_reference(tmp_path, name):
    folder = make_bert_checkpoint(tmp_path / name, seed=len(name), **TINY_CONFIGS[name])
    ours = transformer.from_pretrained(folder)
    reference = reference_model(folder)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, ours.config.vocab_size, (1, 40), generator=generator)
    token_type_ids = (torch.arange(40) >= 25).long()[None]
    recorder = Recorder()
    with torch.inference_mode():
        ours.encoder(input_ids, token_type_ids, record=recorder)
    out = run_reference(reference, input_ids, token_type_ids)
    steps = {step.name: step.tensor for step in recorder.steps}
    n = ours.config.n_layers
    assert max_difference([steps["embeddings.norm"], *(steps[f"layers.{i}.ln2"] for i in range(n))],
                          [h[0] for h in out.hidden_states]) <= TOLERANCE
    assert max_difference([steps[f"layers.{i}.attn.pattern"] for i in range(n)], [a[0] for a in out.attentions]) <= TOLERANCE

    # Padded batch through the fast path, against the reference with the same mask.
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 30:] = 0
    batch_ids = torch.cat([input_ids, input_ids.flip(1)])
    with torch.inference_mode():
        fast = ours.encoder(batch_ids, torch.zeros_like(batch_ids), mask)
    ref_fast = run_reference(reference, batch_ids, torch.zeros_like(batch_ids), mask).last_hidden_state
    assert (fast[mask.bool()] - ref_fast[mask.bool()]).abs().max().item() <= TOLERANCE


def test_wordpiece_fallback_tokenizes_like_the_reference(tmp_path):
    """Without tokenizer.json, the WordPiece tokenizer built from vocab.txt agrees with BertTokenizer."""
    from transformers import BertTokenizer

    import shutil

    folder = tmp_path / "vocab-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(f"{BUNDLED}/{name}", folder / name)
    ours = transformer.from_pretrained(folder)
    reference = BertTokenizer(f"{BUNDLED}/vocab.txt", do_lower_case=True)
    for text_a, text_b in INPUTS[:-2]:
        expected = reference(text_a, text_b, truncation=True, max_length=512)
        tokenized = ours.tokenize(text_a, text_b)
        assert list(tokenized.input_ids) == expected["input_ids"], text_a
        assert list(tokenized.token_type_ids) == expected["token_type_ids"]
