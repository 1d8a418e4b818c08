"""Masked-word prediction against transformers' *ForMaskedLM models: the logits, fill-mask and the logit lens."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import transformer
from tiny import make_checkpoint, reference_masked_lm

TOLERANCE = 1e-5

# case -> (family, config overrides, which transformers model is saved)
CASES = {
    "bert": ("bert", {}, "mlm"),
    "bert-untied": ("bert", {"tie_word_embeddings": False}, "mlm"),  # its own output matrix and bias
    "bert-pretraining": ("bert", {}, "pretraining"),  # MLM + next-sentence heads
    # RoBERTa's and ELECTRA's heads use exact GELU whatever hidden_act says: a different hidden_act shows it.
    "roberta": ("roberta", {"hidden_act": "gelu_new"}, "mlm"),
    "xlm-roberta": ("xlm-roberta", {}, "mlm"),
    "distilbert": ("distilbert", {"sinusoidal_pos_embds": True}, "mlm"),
    "electra-generator": ("electra", {"hidden_act": "relu"}, "mlm"),
    "albert": ("albert", {}, "mlm"),
}
TEXT = "the cat sat on the {mask} and the dog was {mask} ."


def head_of(family: str, reference):
    """The reference model's own MLM head, as a function of hidden states (to check the lens on every layer)."""
    if family == "bert":
        return reference.cls
    if family in ("roberta", "xlm-roberta"):
        return reference.lm_head
    if family == "distilbert":
        return lambda h: reference.vocab_projector(reference.vocab_layer_norm(reference.activation(reference.vocab_transform(h))))
    if family == "electra":
        return lambda h: reference.generator_lm_head(reference.generator_predictions(h))
    return reference.predictions  # albert


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm")
    return {name: make_checkpoint(family, root / name, seed=10 + i, head=head, **overrides)
            for i, (name, (family, overrides, head)) in enumerate(CASES.items())}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, folders):
    name = request.param
    family = CASES[name][0]
    ours = transformer.from_pretrained(folders[name])
    reference = reference_masked_lm(family, folders[name])
    fill = ours.fill_mask(TEXT.format(mask=ours.mask_token), top_k=5)
    return name, family, ours, reference, fill


def reference_forward(family, reference, run):
    extra = {} if family == "distilbert" else {"token_type_ids": run.token_type_ids[None]}
    with torch.no_grad():
        return reference(input_ids=run.input_ids[None], output_hidden_states=True, **extra)


def test_mlm_logits_match_reference(case):
    name, family, ours, reference, fill = case
    assert ours.has_mlm_head
    out = reference_forward(family, reference, fill.run)
    assert fill.run.mlm_logits.shape == (len(fill.run.tokens), ours.config.vocab_size)
    assert (fill.run.mlm_logits - out.logits[0]).abs().max().item() <= TOLERANCE
    pair = ours.run("the river bank", f"was {ours.mask_token}")  # a text pair: segments where the family has them
    assert (pair.mlm_logits - reference_forward(family, reference, pair).logits[0]).abs().max().item() <= TOLERANCE


def test_fill_mask_matches_reference_probabilities(case):
    name, family, ours, reference, fill = case
    mask_id = ours.tokenizer.backend.token_to_id(ours.mask_token)
    positions = [i for i, token_id in enumerate(fill.run.input_ids.tolist()) if token_id == mask_id]
    assert [m.position for m in fill.masks] == positions and len(positions) == 2
    probabilities = torch.softmax(reference_forward(family, reference, fill.run).logits[0], dim=-1)  # (T, vocab)
    for mask in fill.masks:
        expected_probabilities, expected_ids = probabilities[mask.position].topk(5)
        assert mask.token_ids.tolist() == expected_ids.tolist()
        assert (mask.probabilities - expected_probabilities).abs().max().item() <= TOLERANCE
        assert [p.token_id for p in mask.predictions] == expected_ids.tolist()
        assert all(p.token == ours.tokenizer.backend.id_to_token(p.token_id) for p in mask.predictions)
        assert [p.probability for p in mask.predictions] == mask.probabilities.tolist()


def test_logit_lens_last_layer_is_fill_mask_exactly(case):
    name, family, ours, reference, fill = case
    for mask in fill.masks:
        lens = ours.logit_lens(fill.run, mask.position, top_k=5)
        assert torch.equal(lens.token_ids[-1], mask.token_ids)
        assert torch.equal(lens.probabilities[-1], mask.probabilities)
        assert lens.predictions[-1] == mask.predictions and lens.answer == mask.predictions[0]
        assert lens.answer_ranks[-1].item() == 1
        assert lens.labels == ("embeddings", *(f"layer {i}" for i in range(1, ours.config.n_layers + 1)))
    assert ours.logit_lens(fill.run, top_k=5).position == fill.masks[0].position  # default: the first mask


def test_logit_lens_rows_are_the_reference_head_on_each_layer(case):
    name, family, ours, reference, fill = case
    position = fill.masks[1].position
    lens = ours.logit_lens(fill.run, position, top_k=3)
    out = reference_forward(family, reference, fill.run)
    with torch.no_grad():
        logits = torch.stack([head_of(family, reference)(h[0, position]) for h in out.hidden_states])  # (L + 1, vocab)
    probabilities = torch.softmax(logits, dim=-1)
    expected_probabilities, expected_ids = probabilities.topk(3)
    assert lens.token_ids.tolist() == expected_ids.tolist()
    assert (lens.probabilities - expected_probabilities).abs().max().item() <= TOLERANCE
    answer = lens.answer.token_id
    assert lens.answer_ranks.tolist() == (1 + (logits > logits[:, answer, None]).sum(-1)).tolist()
    assert (lens.answer_probabilities - probabilities[:, answer]).abs().max().item() <= TOLERANCE


def test_head_tying_follows_the_checkpoint(folders):
    tied = transformer.from_pretrained(folders["roberta"])
    assert tied.mlm_head.decoder.weight is tied.encoder.embeddings.token.weight
    untied = transformer.from_pretrained(folders["bert-untied"])
    assert "cls.predictions.decoder.weight" in load_file(folders["bert-untied"] / "model.safetensors")
    assert not torch.equal(untied.mlm_head.decoder.weight, untied.encoder.embeddings.token.weight)


def test_run_on_cpu_keeps_its_head(folders):
    ours = transformer.from_pretrained(folders["electra-generator"])
    run = ours.run(f"the {ours.mask_token} sat")
    assert torch.equal(run.cpu().mlm_logits, run.mlm_logits)


def test_models_without_a_head_say_so(model):
    assert not model.has_mlm_head and model.run("hello").mlm_logits is None
    with pytest.raises(transformer.TransformerError, match="no masked-language-model head"):
        model.fill_mask("the [MASK] sat")
    with pytest.raises(transformer.TransformerError, match="no masked-language-model head"):
        model.logit_lens("the [MASK] sat", 1)


def test_bad_requests_get_one_line_messages(folders):
    ours = transformer.from_pretrained(folders["bert"])
    with pytest.raises(transformer.TransformerError, match=r"no \[MASK\] token: write \[MASK\] where"):
        ours.fill_mask("the cat sat")
    with pytest.raises(transformer.TransformerError, match="top_k must be"):
        ours.fill_mask("the [MASK] sat", top_k=0)
    run = ours.run("the cat sat")
    with pytest.raises(transformer.TransformerError, match=r"Position 99 is not a token of this text: choose 0 to 4"):
        ours.logit_lens(run, 99)
    with pytest.raises(transformer.TransformerError, match="Choose a position"):
        ours.logit_lens(run)
    assert len(ours.fill_mask("the [MASK] sat", top_k=10_000).masks[0].predictions) == ours.config.vocab_size


def test_incomplete_head_is_refused(folders, tmp_path):
    target = tmp_path / "broken-head"
    shutil.copytree(folders["distilbert"], target)
    tensors = load_file(target / "model.safetensors")
    del tensors["vocab_layer_norm.bias"]
    save_file(tensors, target / "model.safetensors")
    with pytest.raises(transformer.TransformerError, match=r"lacks 1 tensor.*vocab_layer_norm\.bias"):
        transformer.from_pretrained(target)
