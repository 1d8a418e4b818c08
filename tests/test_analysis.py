"""Rollout, norm-based attention, head ablation, one word in two contexts, code beside steps, exports."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

import transformer
from transformer.analysis import (attention_rollout, compare_word_in_contexts, layer_value_norms,
                                  value_vector_norms)
from transformer.export import figure_bytes, run_to_bytes, tensor_to_csv
from transformer.step_source import step_source


@pytest.fixture(scope="module")
def run(model):
    return model.run("The river bank was muddy after the rain.")


def test_rollout_rows_sum_to_one_and_chain_by_hand(run):
    rollout = attention_rollout(run.attentions)
    T = len(run.tokens)
    assert rollout.shape == (6, T, T)
    assert torch.allclose(rollout.sum(-1), torch.ones(6, T), atol=1e-5)
    # Written out for two layers: R_2 = (I/2 + mean A_2 / 2) (I/2 + mean A_1 / 2).
    first = 0.5 * torch.eye(T) + 0.5 * run.attentions[0].mean(0)
    second = 0.5 * torch.eye(T) + 0.5 * run.attentions[1].mean(0)
    assert torch.allclose(rollout[1], second @ first, atol=1e-6)
    assert torch.allclose(attention_rollout(run.attentions, residual_weight=1.0)[-1], torch.eye(T))
    with pytest.raises(ValueError):
        attention_rollout(run.attentions, residual_weight=1.5)


def test_value_norms_by_hand_and_they_rebuild_the_attention_output(model, run):
    layer = 2
    pattern, value = run.attentions[layer], run.step(f"layers.{layer}.attn.v").tensor
    out = model.encoder.layers[layer].attn.out
    norms = value_vector_norms(pattern, value, out.weight)
    H, T, d_head = value.shape
    for h, i, j in [(0, 0, 0), (3, 2, 5), (11, T - 1, 1)]:
        transformed = value[h, j] @ out.weight[:, h * d_head:(h + 1) * d_head].T  # f_h(x_j), (d,)
        assert math.isclose(norms[h, i, j].item(), (pattern[h, i, j] * transformed).norm().item(), rel_tol=1e-4)
    # Summing the weighted, transformed value vectors over heads and tokens gives back attn.out minus its bias.
    per_head = out.weight.T.reshape(H, d_head, -1)
    moved = torch.einsum("hij,hjd->id", pattern, torch.bmm(value, per_head))
    assert torch.allclose(moved + out.bias, run.step(f"layers.{layer}.attn.out").tensor, atol=1e-4)
    whole = layer_value_norms(pattern, value, out.weight)
    assert whole.shape == (T, T)
    assert torch.allclose(whole[0, 1], torch.einsum("hd->d", torch.stack(
        [pattern[h, 0, 1] * (value[h, 1] @ per_head[h]) for h in range(H)])).norm(), atol=1e-5)


def test_ablating_nothing_changes_nothing(model):
    plain, ablated = model.run("Heads can be switched off."), model.run("Heads can be switched off.", ablate=[])
    assert all(torch.equal(a, b) for a, b in zip(plain.hidden_states, ablated.hidden_states))


def test_ablating_one_head_equals_the_hand_computed_layer(model):
    text = "Heads can be switched off."
    plain, ablated = model.run(text), model.run(text, ablate=[(1, 4)])
    # Layers before the ablated one are untouched.
    assert torch.equal(plain.hidden_states[1], ablated.hidden_states[1])
    # Layer 1 by hand: the attention output without head 4's slice of the output projection.
    attn = model.encoder.layers[1].attn
    context = plain.step("layers.1.attn.context").tensor.clone()  # (H, T, d_head)
    context[4] = 0
    T = context.shape[1]
    merged = context.transpose(0, 1).reshape(T, -1)
    expected_out = merged @ attn.out.weight.T + attn.out.bias
    assert torch.allclose(ablated.step("layers.1.attn.out").tensor, expected_out, atol=1e-5)
    assert not torch.allclose(plain.step("layers.1.attn.out").tensor, expected_out, atol=1e-3)
    with pytest.raises(transformer.TransformerError, match="no head 12 in layer 0"):
        model.run(text, ablate=[(0, 12)])


def test_one_word_in_two_contexts(model):
    river, money = model.run("We sat on the river bank."), model.run("The bank approved my loan.")
    comparison = compare_word_in_contexts(river, money, "bank")
    (i,), (j,) = comparison.positions
    assert river.tokens[i] == "bank" and money.tokens[j] == "bank"
    expected = [torch.nn.functional.cosine_similarity(a[i], b[j], dim=0) for a, b in zip(river.hidden_states, money.hidden_states)]
    assert torch.allclose(comparison.cosine_by_layer, torch.stack(expected), atol=1e-6)
    assert comparison.cosine_by_layer[-1] < comparison.cosine_by_layer[0]  # context pulls the two apart
    assert comparison.attention_entropy[0].shape == (6, 12)
    with pytest.raises(ValueError, match="does not occur"):
        compare_word_in_contexts(river, money, "banks")


def test_code_beside_each_step_is_the_source_that_records_it(run):
    for step in run.steps:
        source = step_source(step.name)
        lines = Path(source.file).read_text().splitlines()
        shown = [line.strip() for line in source.code.splitlines() if line.strip() != "..."]
        assert shown == [lines[n - 1].strip() for n in source.lines]
        suffix = step.kind.split(".")[-1]
        assert f'.{suffix}"' in source.code or f'"{step.name}"' in source.code, step.name
    assert "softmax" in step_source("layers.0.attn.pattern").code
    assert "sqrt" in step_source("layers.0.attn.scores").code
    # Pre-LN code is a different function of the layer: the residual adds to the un-normalised input.
    assert "self.ln1(x)" in step_source("layers.0.ln1", norm_placement="pre").code


def test_exports_reload_to_the_same_tensors(run):
    reloaded = load(run_to_bytes(run))
    assert set(reloaded) == {step.name for step in run.steps}
    for step in run.steps:
        assert torch.equal(reloaded[step.name], step.tensor)
    step = run.step("layers.0.attn.pattern")
    rows = list(csv.DictReader(io.StringIO(tensor_to_csv(step.tensor[:2], step.axes, run.tokens))))
    assert len(rows) == 2 * len(run.tokens) ** 2
    sample = rows[len(run.tokens) + 3]  # head 0, query 1, key 3
    assert (int(sample["head"]), int(sample["query"]), int(sample["key"])) == (0, 1, 3)
    assert sample["key_text"] == run.tokens[3]
    assert float(sample["value"]) == step.tensor[0, 1, 3].item()


def test_figures_export_as_png_and_svg():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1))
    figure.add_subplot().plot([0, 1], [1, 0])
    assert figure_bytes(figure, "png").startswith(b"\x89PNG")
    assert b"<svg" in figure_bytes(figure, "svg")[:500]
    with pytest.raises(ValueError):
        figure_bytes(figure, "gif")


def test_weight_map_covers_every_tensor_of_the_file(model):
    import json

    from safetensors.torch import load_file

    from transformer.weight_map import model_weight_map, totals_by_layer, weight_map

    folder = Path("weights/all-MiniLM-L6-v2")
    rows = weight_map([folder / "model.safetensors"], json.loads((folder / "config.json").read_text()), model.config)
    tensors = load_file(folder / "model.safetensors")
    assert {row.checkpoint_name for row in rows} == set(tensors)
    for row in rows:
        assert row.shape == tuple(tensors[row.checkpoint_name].shape)
    by_name = {row.checkpoint_name: row for row in rows}
    assert by_name["encoder.layer.3.attention.self.key.weight"].step == "layers.3.attn.k"
    assert by_name["encoder.layer.3.intermediate.dense.bias"].step == "layers.3.ffn.pre_act"
    assert by_name["pooler.dense.weight"].parameter == ""
    totals = totals_by_layer(rows)
    assert sum(v for k, v in totals.items() if k != "not used") == model.n_parameters
    assert model_weight_map(model) == rows
    assert totals["layer 0"] == sum(p.numel() for p in model.encoder.layers[0].parameters())


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert", "electra", "albert"])
def test_weight_map_labels_the_masked_lm_head(tmp_path, family):
    from safetensors import safe_open

    from tiny import make_checkpoint
    from transformer.weight_map import model_weight_map, totals_by_layer

    folder = make_checkpoint(family, tmp_path / family)
    loaded = transformer.from_pretrained(folder)
    rows = model_weight_map(loaded)
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        assert {row.checkpoint_name for row in rows} == set(handle.keys())
    head_rows = [row for row in rows if row.parameter == "mlm_head"]
    assert head_rows and all(row.step == "mlm_logits" for row in head_rows)
    assert totals_by_layer(rows)["masked-LM head"] == sum(row.n_parameters for row in head_rows)
    used = sum(v for k, v in totals_by_layer(rows).items() if k not in ("not used", "masked-LM head"))
    assert used == loaded.n_parameters


def test_sentence_embedding_of_a_run_and_of_an_ablated_run(model):
    from sentence_transformers import SentenceTransformer

    text = "A sentence whose heads we switch off."
    reference = torch.as_tensor(SentenceTransformer("weights/all-MiniLM-L6-v2", device="cpu").encode([text]))[0]
    pooled = model.sentence_embedding(model.run(text))
    assert torch.nn.functional.cosine_similarity(pooled, reference, dim=0) >= 0.99999
    ablated = model.sentence_embedding(model.run(text, ablate=[(layer, head) for layer in range(6) for head in range(12)]))
    assert torch.nn.functional.cosine_similarity(ablated, reference, dim=0) < 0.99
