"""The step record: complete, in order, consistent, and each step recomputable from the ones before it.

Recomputations use the checkpoint's own tensors (read with safetensors, not through our modules) and the
formulas written out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

import transformer
from transformer.steps import Recorder

CHECKPOINT = load_file("weights/all-MiniLM-L6-v2/model.safetensors")
ATOL = 1e-5

POST_LN_LAYER = ["attn.q", "attn.k", "attn.v", "attn.scores", "attn.pattern", "attn.context", "attn.out",
                 "resid_mid", "ln1", "ffn.pre_act", "ffn.act", "ffn.out", "resid_post", "ln2"]
EMBEDDING_STEPS = ["embeddings.token", "embeddings.position", "embeddings.segment", "embeddings.sum", "embeddings.norm"]


@pytest.fixture(scope="module")
def run(model):
    return model.run("The river bank was muddy.", "She went to the bank.")


def layer_norm_by_hand(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as BERT
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def gelu_by_hand(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def test_steps_are_all_there_in_order(run, model):
    expected = EMBEDDING_STEPS + [f"layers.{i}.{kind}" for i in range(model.config.n_layers) for kind in POST_LN_LAYER]
    assert [step.name for step in run.steps] == expected
    for step in run.steps:
        assert len(step.axes) == step.tensor.dim(), step.name
        assert step.doc.endswith(".") and step.formula
    T, H = len(run.tokens), model.config.n_heads
    assert run.step("layers.3.attn.q").shape == (H, T, model.config.d_head)
    assert run.step("layers.3.attn.pattern").shape == (H, T, T)
    assert run.step("layers.3.ffn.act").shape == (T, model.config.d_ff)


def test_attention_rows_are_probabilities(run):
    for pattern in run.attentions:
        assert (pattern >= 0).all()
        assert torch.allclose(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-6)


def test_padding_keys_get_zero_weight(model):
    input_ids, mask = model.tokenizer.encode_batch(["a short text", "a rather longer text than the first one is"])
    recorder = Recorder()
    with torch.inference_mode():
        model.encoder(input_ids, torch.zeros_like(input_ids), mask, record=recorder)  # records the first row
    n_real = int(mask[0].sum())
    assert n_real < mask.shape[1]
    for step in recorder.steps:
        if step.kind == "attn.pattern":
            assert step.tensor[:, :, n_real:].abs().max().item() == 0.0
            assert torch.allclose(step.tensor[:, :, :n_real].sum(-1), torch.ones(step.tensor.shape[:2]), atol=1e-6)


def test_hidden_states_are_the_steps_themselves(run, model):
    """No copies: hidden states and attentions are the very tensors of the steps that made them."""
    assert run.hidden_states[0] is run.step("embeddings.norm").tensor
    for i in range(model.config.n_layers):
        assert run.hidden_states[i + 1] is run.step(f"layers.{i}.ln2").tensor
        assert run.attentions[i] is run.step(f"layers.{i}.attn.pattern").tensor
        assert run.layer_steps(i)[-1].tensor is run.hidden_states[i + 1]


def test_embedding_steps_recomputed_from_the_checkpoint(run):
    ids, types = run.input_ids, run.token_type_ids
    token = CHECKPOINT["embeddings.word_embeddings.weight"][ids]
    position = CHECKPOINT["embeddings.position_embeddings.weight"][: len(ids)]
    segment = CHECKPOINT["embeddings.token_type_embeddings.weight"][types]
    assert torch.equal(run.step("embeddings.token").tensor, token)
    assert torch.equal(run.step("embeddings.position").tensor, position)
    assert torch.equal(run.step("embeddings.segment").tensor, segment)
    assert torch.allclose(run.step("embeddings.sum").tensor, token + position + segment, atol=ATOL)
    expected = layer_norm_by_hand(token + position + segment, CHECKPOINT["embeddings.LayerNorm.weight"],
                                  CHECKPOINT["embeddings.LayerNorm.bias"])
    assert torch.allclose(run.step("embeddings.norm").tensor, expected, atol=ATOL)


@pytest.mark.parametrize("layer", [0, 5])
def test_layer_steps_recomputed_by_hand(run, model, layer):
    step = lambda kind: run.step(f"layers.{layer}.{kind}").tensor  # noqa: E731
    w = lambda name: CHECKPOINT[f"encoder.layer.{layer}.{name}"]  # noqa: E731
    H, d_head = model.config.n_heads, model.config.d_head
    x = run.hidden_states[layer]  # (T, d)
    T = x.shape[0]

    def heads(t):  # (T, d) -> (H, T, d_head)
        return t.view(T, H, d_head).transpose(0, 1)

    q = heads(x @ w("attention.self.query.weight").T + w("attention.self.query.bias"))
    k = heads(x @ w("attention.self.key.weight").T + w("attention.self.key.bias"))
    v = heads(x @ w("attention.self.value.weight").T + w("attention.self.value.bias"))
    assert torch.allclose(step("attn.q"), q, atol=ATOL)
    assert torch.allclose(step("attn.k"), k, atol=ATOL)
    assert torch.allclose(step("attn.v"), v, atol=ATOL)

    scores = step("attn.q") @ step("attn.k").transpose(-1, -2) / math.sqrt(d_head)
    assert torch.allclose(step("attn.scores"), scores, atol=ATOL)
    assert torch.allclose(step("attn.pattern"), torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True), atol=ATOL)
    assert torch.allclose(step("attn.context"), step("attn.pattern") @ step("attn.v"), atol=ATOL)
    merged = step("attn.context").transpose(0, 1).reshape(T, H * d_head)
    attn_out = merged @ w("attention.output.dense.weight").T + w("attention.output.dense.bias")
    assert torch.allclose(step("attn.out"), attn_out, atol=ATOL)

    # Each residual step is exactly its input plus its sublayer's output.
    assert torch.allclose(step("resid_mid"), x + step("attn.out"), atol=ATOL)
    ln1 = layer_norm_by_hand(step("resid_mid"), w("attention.output.LayerNorm.weight"), w("attention.output.LayerNorm.bias"))
    assert torch.allclose(step("ln1"), ln1, atol=ATOL)
    pre_act = step("ln1") @ w("intermediate.dense.weight").T + w("intermediate.dense.bias")
    assert torch.allclose(step("ffn.pre_act"), pre_act, atol=ATOL)
    assert torch.allclose(step("ffn.act"), gelu_by_hand(step("ffn.pre_act")), atol=ATOL)
    ffn_out = step("ffn.act") @ w("output.dense.weight").T + w("output.dense.bias")
    assert torch.allclose(step("ffn.out"), ffn_out, atol=ATOL)
    assert torch.allclose(step("resid_post"), step("ln1") + step("ffn.out"), atol=ATOL)
    ln2 = layer_norm_by_hand(step("resid_post"), w("output.LayerNorm.weight"), w("output.LayerNorm.bias"))
    assert torch.allclose(step("ln2"), ln2, atol=ATOL)


def test_recording_leaves_no_hooks_and_same_result_without_it(model, run):
    modules = list(model.encoder.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in modules)
    with torch.inference_mode():
        unrecorded = model.encoder(run.input_ids[None], run.token_type_ids[None])[0]
    assert torch.allclose(unrecorded, run.hidden_states[-1], atol=ATOL)


def test_pre_ln_variant_follows_its_equations():
    torch.manual_seed(0)
    config = transformer.EncoderConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=2, d_ff=24, max_positions=32,
                                       norm_placement="pre", layer_norm_eps=1e-6)
    encoder = transformer.Encoder(config).eval()
    ids = torch.randint(0, 50, (1, 9))
    recorder = Recorder()
    with torch.inference_mode():
        final = encoder(ids, record=recorder)
    steps = {s.name: s.tensor for s in recorder.steps}
    names = [s.name for s in recorder.steps]
    assert names.index("layers.0.ln1") < names.index("layers.0.attn.q") < names.index("layers.0.ln2") < names.index("layers.0.ffn.pre_act")
    assert names[-1] == "final_norm"
    x = steps["embeddings.norm"]
    for i, layer in enumerate(encoder.layers):
        assert torch.allclose(steps[f"layers.{i}.ln1"], layer_norm_by_hand(x, layer.ln1.weight, layer.ln1.bias, 1e-6), atol=ATOL)
        assert torch.allclose(steps[f"layers.{i}.resid_mid"], x + steps[f"layers.{i}.attn.out"], atol=ATOL)
        mid = steps[f"layers.{i}.resid_mid"]
        assert torch.allclose(steps[f"layers.{i}.ln2"], layer_norm_by_hand(mid, layer.ln2.weight, layer.ln2.bias, 1e-6), atol=ATOL)
        assert torch.allclose(steps[f"layers.{i}.resid_post"], mid + steps[f"layers.{i}.ffn.out"], atol=ATOL)
        x = steps[f"layers.{i}.resid_post"]
    assert torch.allclose(final[0], layer_norm_by_hand(x, encoder.final_norm.weight, encoder.final_norm.bias, 1e-6), atol=ATOL)


def test_sinusoidal_table_follows_the_paper():
    table = transformer.sinusoidal_table(50, 12)
    for position in (0, 1, 7, 49):
        for i in range(6):
            angle = position / 10000 ** (2 * i / 12)
            assert math.isclose(table[position, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(table[position, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    assert transformer.sinusoidal_table(5, 7).shape == (5, 7)


def test_sinusoidal_encoder_adds_the_table():
    config = transformer.EncoderConfig(vocab_size=30, d_model=16, n_layers=1, n_heads=4, d_ff=32, max_positions=20,
                                       positional="sinusoidal")
    encoder = transformer.Encoder(config).eval()
    assert encoder.embeddings.position is None
    recorder = Recorder()
    with torch.inference_mode():
        encoder(torch.arange(10)[None], record=recorder)
    position = next(s.tensor for s in recorder.steps if s.name == "embeddings.position")
    assert torch.equal(position, transformer.sinusoidal_table(10, 16))


@pytest.mark.parametrize("kwargs,words", [
    (dict(d_model=30, n_heads=4), "not divisible"),
    (dict(activation="swish"), "activation 'swish'"),
    (dict(norm_placement="sandwich"), "norm_placement"),
    (dict(n_layers=0), "n_layers"),
])
def test_config_refuses_what_it_cannot_build(kwargs, words):
    with pytest.raises(transformer.TransformerError, match=words):
        transformer.EncoderConfig(**kwargs)
