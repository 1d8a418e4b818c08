"""RoBERTa, XLM-R, DistilBERT, ELECTRA and ALBERT against transformers' own models (eager attention), in float32.

Each checkpoint is tiny, random (every parameter, LayerNorms included) and saved by transformers itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import transformer
from transformer.steps import Recorder
from tiny import make_checkpoint, reference_base

TOLERANCE = 1e-5
N_TOKENS = 40

# case -> (family, config overrides, which transformers model is saved)
CASES = {
    "roberta": ("roberta", {}, "mlm"),
    "xlm-roberta": ("xlm-roberta", {}, "mlm"),
    "distilbert-sinusoidal": ("distilbert", {"sinusoidal_pos_embds": True}, "mlm"),
    "distilbert-learned-relu": ("distilbert", {"activation": "relu"}, "mlm"),
    "electra-generator": ("electra", {}, "mlm"),  # embedding_size 16 < hidden_size 32
    "electra-discriminator": ("electra", {"hidden_act": "gelu_new"}, "pretraining"),
    "albert": ("albert", {}, "mlm"),  # 3 layers sharing one layer's weights, embedding_size 16
    "albert-pretraining-equal-widths": ("albert", {"embedding_size": 32}, "pretraining"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: make_checkpoint(family, root / name, seed=i + 1, head=head, **overrides)
            for i, (name, (family, overrides, head)) in enumerate(CASES.items())}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, folders):
    name = request.param
    family = CASES[name][0]
    return name, family, folders[name], transformer.from_pretrained(folders[name]), reference_base(family, folders[name])


def token_types_for(ours, n_tokens=N_TOKENS):
    if not ours.config.use_segments:
        return torch.zeros(1, n_tokens, dtype=torch.long)
    return (torch.arange(n_tokens) >= 25).long()[None]


def reference_outputs(family, reference, input_ids, token_type_ids, attention_mask=None):
    extra = {} if family == "distilbert" else {"token_type_ids": token_type_ids}
    with torch.no_grad():
        return reference(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                         output_attentions=True, **extra)


def random_ids(ours, n_tokens=N_TOKENS, seed=1):
    generator = torch.Generator().manual_seed(seed)
    # Ids from 5 up: no special token (padding least of all) lands in the text by chance.
    return torch.randint(5, ours.config.vocab_size, (1, n_tokens), generator=generator)


def max_difference(ours, theirs) -> float:
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))


def test_recorded_run_matches_reference(case):
    name, family, _, ours, reference = case
    input_ids = random_ids(ours)
    if ours.config.position_offset:
        input_ids[0, 17] = ours.config.pad_token_id  # a literal padding token mid-text: fairseq positions skip it
    token_type_ids = token_types_for(ours)
    recorder = Recorder(ours.encoder.step_docs)
    with torch.inference_mode():
        final = ours.encoder(input_ids, token_type_ids, record=recorder)
    out = reference_outputs(family, reference, input_ids, token_type_ids)
    from transformer.model import _assemble

    run = _assemble(ours.tokenize("x"), input_ids[0], token_type_ids[0], tuple(recorder.steps))
    n = ours.config.n_layers
    assert len(run.hidden_states) == n + 1 == len(out.hidden_states) and len(run.attentions) == n
    assert max_difference(run.hidden_states, [h[0] for h in out.hidden_states]) <= TOLERANCE
    assert max_difference(run.attentions, [a[0] for a in out.attentions]) <= TOLERANCE
    assert (final[0] - out.last_hidden_state[0]).abs().max().item() <= TOLERANCE


def test_padded_batch_through_the_fast_path(case):
    name, family, _, ours, reference = case
    input_ids = torch.cat([random_ids(ours, seed=2), random_ids(ours, seed=3)])  # (2, T)
    mask = torch.ones_like(input_ids)
    mask[1, 30:] = 0
    input_ids[1, 30:] = ours.tokenizer.pad_id  # padded as the tokenizer pads
    token_type_ids = token_types_for(ours).expand(2, -1)
    with torch.inference_mode():
        fast = ours.encoder(input_ids, token_type_ids, mask)
    theirs = reference_outputs(family, reference, input_ids, token_type_ids, mask).last_hidden_state
    real = mask.bool()
    assert (fast[real] - theirs[real]).abs().max().item() <= TOLERANCE
    with torch.inference_mode():  # the padded row's real tokens come out as they do alone
        alone = ours.encoder(input_ids[1:, :30], token_type_ids[1:, :30])
    assert (fast[1, :30] - alone[0]).abs().max().item() <= TOLERANCE


def test_text_runs_and_embeds(case):
    name, _, _, ours, _ = case
    run = ours.run("the cat sat on the mat", "a dog was muddy")
    assert run.tokens[0] == ours.tokenizer.special_tokens["cls"]
    assert len(run.hidden_states) == ours.config.n_layers + 1
    assert all(h.shape == (len(run.tokens), ours.config.d_model) for h in run.hidden_states)
    if not ours.config.use_segments:
        assert not run.token_type_ids.any()  # what the encoder used
    embedded = ours.embed(["the cat sat", "a river bank was muddy"])
    assert embedded.shape == (2, ours.config.d_model) and torch.isfinite(embedded).all()


def test_step_names_follow_the_family(case):
    name, _, _, ours, _ = case
    names = [step.name for step in ours.run("the cat sat").steps]
    embedding_steps = [n for n in names if n.startswith("embeddings.")]
    expected = ["embeddings.token", "embeddings.position", "embeddings.segment", "embeddings.sum", "embeddings.norm"]
    if ours.config.type_vocab_size == 0:
        expected.remove("embeddings.segment")  # DistilBERT: no segment table at all
    if ours.config.embedding_size is not None:
        expected.append("embeddings.project")
    assert embedding_steps == expected
    layers = sorted({int(n.split(".")[1]) for n in names if n.startswith("layers.")})
    assert layers == list(range(ours.config.n_layers))


# ------------------------------------------------------------------------------------- family specifics


def test_roberta_positions_start_past_the_padding_row(folders):
    ours = transformer.from_pretrained(folders["roberta"])
    reference = reference_base("roberta", folders["roberta"])
    assert (ours.config.position_offset, ours.config.pad_token_id, ours.config.max_positions) == (2, 1, 66)
    run = ours.run("the cat sat on the mat")
    table = reference.embeddings.position_embeddings.weight
    T = len(run.tokens)
    assert torch.equal(run.step("embeddings.position").tensor, table[2 : 2 + T])
    assert torch.equal(run.step("embeddings.segment").tensor, reference.embeddings.token_type_embeddings.weight[[0] * T])
    assert "t + 2" in run.step("embeddings.position").formula
    # 66 rows hold 64 tokens: a long text is cut to 64, and the last one uses the last row.
    long = ours.run(" ".join(["the cat sat on the mat"] * 30))
    assert ours.max_tokens == 64 and len(long.tokens) == 64 and long.truncated
    assert torch.equal(long.step("embeddings.position").tensor[-1], table[65])


def test_roberta_tokenizer_and_its_specials(folders, tmp_path):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(folders["roberta"]))
    bare = tmp_path / "no-tokenizer-config"  # like FacebookAI/roberta-base: nothing names the special tokens
    shutil.copytree(folders["roberta"], bare)
    (bare / "tokenizer_config.json").unlink()
    for folder in (folders["roberta"], bare):
        ours = transformer.from_pretrained(folder)
        assert ours.tokenizer.special_tokens == {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}
        assert ours.tokenizer.pad_id == 1 and ours.mask_token == "<mask>"
        for text_a, text_b in [("the cat sat on the <mask>.", None), ("the river bank", "was muddy")]:
            expected = reference(text_a, text_b)["input_ids"]
            assert list(ours.tokenize(text_a, text_b).input_ids) == expected


def test_distilbert_sinusoidal_table_is_the_models_own(folders):
    ours = transformer.from_pretrained(folders["distilbert-sinusoidal"])
    reference = reference_base("distilbert", folders["distilbert-sinusoidal"])
    assert ours.config.positional == "sinusoidal" and ours.config.sinusoidal_in_weights
    table = ours.encoder.embeddings.position.weight  # kept from the checkpoint, as transformers uses it
    assert torch.equal(table, reference.embeddings.position_embeddings.weight)
    assert torch.allclose(table, transformer.sinusoidal_table(64, 32), atol=1e-6)
    assert torch.equal(ours.encoder.embeddings.position_vectors(10, torch.device("cpu")), table[:10])
    run = ours.run("the cat sat")
    assert "sinusoidal" in run.step("embeddings.position").doc
    learned = transformer.from_pretrained(folders["distilbert-learned-relu"])
    assert learned.config.positional == "learned" and learned.config.activation == "relu"


def test_electra_projection_is_a_visible_step(folders):
    ours = transformer.from_pretrained(folders["electra-generator"])
    reference = reference_base("electra", folders["electra-generator"])
    run = ours.run("the cat sat on the mat")
    T = len(run.tokens)
    norm, project = run.step("embeddings.norm"), run.step("embeddings.project")
    assert norm.shape == (T, 16) and norm.axes == ("token", "d_embed")
    assert project.shape == (T, 32) and run.hidden_states[0] is project.tensor
    with torch.no_grad():  # the reference's embedding output before its projection
        narrow = reference.embeddings(run.input_ids[None], run.token_type_ids[None])[0]
    assert (norm.tensor - narrow).abs().max().item() <= TOLERANCE


def test_electra_discriminator_loads_without_a_word_head(folders):
    ours = transformer.from_pretrained(folders["electra-discriminator"])
    assert not ours.has_mlm_head
    assert any(k.startswith("discriminator_predictions.") for k in load_file(folders["electra-discriminator"] / "model.safetensors"))


def test_albert_applies_one_shared_layer_at_every_depth(folders):
    ours = transformer.from_pretrained(folders["albert"])
    reference = reference_base("albert", folders["albert"])
    encoder = ours.encoder
    assert ours.config.shared_layers and ours.config.n_layers == 3
    assert len(encoder.layers) == 1 and len(encoder.stack) == 3
    assert all(layer.attn.qkv.weight is encoder.layers[0].attn.qkv.weight for layer in encoder.stack)
    assert all(layer.ln2.bias is encoder.layers[0].ln2.bias for layer in encoder.stack)
    assert not any(name.startswith("layers.1.") for name in encoder.state_dict())
    expected = sum(p.numel() for name, p in reference.named_parameters() if not name.startswith("pooler"))
    assert ours.n_parameters == expected
    run = ours.run("the cat sat")
    assert run.step("layers.2.attn.q").doc.endswith("shared weights here (ALBERT).")
    assert "shared" not in run.step("layers.2.attn.pattern").doc  # no weights in a softmax
    # The special tokens come from the family where the tokenizer.json alone does not name them.
    assert ours.tokenizer.special_tokens["pad"] == "<pad>" and ours.tokenizer.pad_id == 0
    assert ours.mask_token == "[MASK]"


def test_albert_projection_exists_even_at_equal_widths(folders):
    ours = transformer.from_pretrained(folders["albert-pretraining-equal-widths"])
    assert ours.config.embedding_size == ours.config.d_model == 32
    assert ours.encoder.embeddings.project is not None and ours.has_mlm_head  # AlbertForPreTraining has predictions


# ---------------------------------------------------------------------------------------------- refusals


def changed_copy(folder: Path, tmp_path: Path, config_changes=None, tensor_change=None) -> Path:
    target = tmp_path / "changed"
    shutil.copytree(folder, target)
    if config_changes:
        config = json.loads((target / "config.json").read_text())
        config.update(config_changes)
        (target / "config.json").write_text(json.dumps(config))
    if tensor_change:
        save_file(tensor_change(load_file(target / "model.safetensors")), target / "model.safetensors")
    return target


def test_unsupported_model_type_lists_the_supported(folders, tmp_path):
    folder = changed_copy(folders["roberta"], tmp_path, {"model_type": "deberta-v2"})
    with pytest.raises(transformer.TransformerError,
                       match=r"model_type 'deberta-v2'; supported: bert, roberta, xlm-roberta, distilbert, electra, albert\."):
        transformer.from_pretrained(folder)


def test_albert_with_several_layer_groups_is_refused(folders, tmp_path):
    folder = changed_copy(folders["albert"], tmp_path, {"num_hidden_groups": 3})
    with pytest.raises(transformer.TransformerError, match=r"num_hidden_groups=3.*only one shared layer"):
        transformer.from_pretrained(folder)


@pytest.mark.parametrize("case_name,drop,words", [
    ("albert", "albert.encoder.embedding_hidden_mapping_in.bias", r"lacks 1 tensor.*embedding_hidden_mapping_in\.bias"),
    ("distilbert-sinusoidal", "distilbert.embeddings.position_embeddings.weight", r"lacks 1 tensor.*position_embeddings"),
    ("electra-generator", "electra.embeddings_project.weight", r"lacks 1 tensor.*embeddings_project\.weight"),
])
def test_key_tables_are_strict(folders, tmp_path, case_name, drop, words):
    folder = changed_copy(folders[case_name], tmp_path, tensor_change=lambda t: {k: v for k, v in t.items() if k != drop})
    with pytest.raises(transformer.TransformerError, match=words):
        transformer.from_pretrained(folder)


def test_unknown_tensors_are_named(folders, tmp_path):
    folder = changed_copy(folders["roberta"], tmp_path,
                          tensor_change=lambda t: {**t, "classifier.out_proj.weight": torch.zeros(2, 32)})
    with pytest.raises(transformer.TransformerError, match=r"does not use: classifier\.out_proj\.weight"):
        transformer.from_pretrained(folder)
