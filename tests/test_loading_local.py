"""Loading from folders and the bundled copy: hashes, the strict key table, config refusals."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import transformer
from transformer import hub
from tiny import make_bert_checkpoint

BUNDLED = Path("weights/all-MiniLM-L6-v2")

# Published by the Hub for sentence-transformers/all-MiniLM-L6-v2 at 1110a243fdf4706b3f48f1d95db1a4f5529b4d41.
PUBLISHED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}


def test_bundled_files_are_the_published_checkpoint():
    for name, expected in PUBLISHED_SHA256.items():
        assert hashlib.sha256((BUNDLED / name).read_bytes()).hexdigest() == expected
    record = json.loads((BUNDLED / "PROVENANCE.json").read_text())
    assert record["repo_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert record["revision"] == "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
    assert record["license"] == "apache-2.0"
    on_disk = {p.relative_to(BUNDLED).as_posix() for p in BUNDLED.rglob("*") if p.is_file()} - {"PROVENANCE.json"}
    assert set(record["files"]) == on_disk
    for name, digest in record["files"].items():
        assert hashlib.sha256((BUNDLED / name).read_bytes()).hexdigest() == digest


def test_bundled_source_is_described(model):
    assert model.source.kind == "bundled"
    assert model.source.revision == "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
    assert model.source.sha256["model.safetensors"] == PUBLISHED_SHA256["model.safetensors"]
    assert (model.config.n_layers, model.config.n_heads, model.config.d_model) == (6, 12, 384)
    assert model.n_parameters == sum(t.numel() for k, t in load_file(BUNDLED / "model.safetensors").items()
                                     if not k.startswith(("pooler.", "embeddings.position_ids")))


@pytest.fixture
def bundled_copy(tmp_path, monkeypatch):
    copy = tmp_path / "bundled"
    shutil.copytree(BUNDLED, copy)
    monkeypatch.setattr(hub, "BUNDLED_DIR", copy)
    return copy


def test_tampered_bundled_file_is_refused(bundled_copy):
    data = bytearray((bundled_copy / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF  # one flipped byte deep in the weights
    (bundled_copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(transformer.TransformerError, match="model.safetensors does not match its recorded SHA-256"):
        transformer.from_pretrained()


def test_missing_bundled_file_is_refused(bundled_copy):
    (bundled_copy / "tokenizer.json").unlink()
    with pytest.raises(transformer.TransformerError, match="tokenizer.json is missing"):
        transformer.from_pretrained()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_bert_checkpoint(tmp_path_factory.mktemp("tiny") / "bert")


def rewrite(folder: Path, tmp_path: Path, change) -> Path:
    """A copy of ``folder`` whose weights are ``change(dict of tensors)``."""
    target = tmp_path / "changed"
    shutil.copytree(folder, target)
    tensors = load_file(target / "model.safetensors")
    save_file(change(dict(tensors)), target / "model.safetensors")
    return target


def test_missing_tensor_is_named(tiny, tmp_path):
    folder = rewrite(tiny, tmp_path, lambda t: {k: v for k, v in t.items() if k != "encoder.layer.1.output.dense.bias"})
    with pytest.raises(transformer.TransformerError, match=r"lacks 1 tensor.*encoder\.layer\.1\.output\.dense\.bias"):
        transformer.from_pretrained(folder)


def test_unexpected_tensor_is_named(tiny, tmp_path):
    folder = rewrite(tiny, tmp_path, lambda t: {**t, "encoder.layer.9.extra.weight": torch.zeros(3)})
    with pytest.raises(transformer.TransformerError, match=r"does not use: encoder\.layer\.9\.extra\.weight"):
        transformer.from_pretrained(folder)


def test_misshaped_tensor_names_both_shapes(tiny, tmp_path):
    key = "encoder.layer.0.attention.self.key.weight"
    folder = rewrite(tiny, tmp_path, lambda t: {**t, key: torch.zeros(32, 31)})
    with pytest.raises(transformer.TransformerError, match=r"key\.weight' has shape \(32, 31\) but this config needs \(32, 32\)"):
        transformer.from_pretrained(folder)


def test_duplicate_spellings_are_refused(tiny, tmp_path):
    key = "embeddings.word_embeddings.weight"
    folder = rewrite(tiny, tmp_path, lambda t: {**t, f"bert.{key}": t[key].clone()})
    with pytest.raises(transformer.TransformerError, match="twice"):
        transformer.from_pretrained(folder)


def test_prefixed_and_legacy_layernorm_names_load_identically(tiny, tmp_path):
    """Pre-training checkpoints say bert.* and LayerNorm.gamma/beta; heads there are deliberately ignored."""
    def legacy(tensors):
        renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                   for k, v in tensors.items()}
        renamed["cls.predictions.bias"] = torch.zeros(5)  # an MLM head tensor: not used, not an error
        return renamed

    folder = rewrite(tiny, tmp_path, legacy)
    text = "the cat sat on the mat"
    plain, prefixed = transformer.from_pretrained(tiny).run(text), transformer.from_pretrained(folder).run(text)
    assert all(torch.equal(a, b) for a, b in zip(plain.hidden_states, prefixed.hidden_states))


def write_config(tiny: Path, tmp_path: Path, **changes) -> Path:
    target = tmp_path / "config-changed"
    shutil.copytree(tiny, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize("changes,words", [
    (dict(model_type="gpt2"), r"model_type 'gpt2'; supported: bert"),
    (dict(position_embedding_type="relative_key"), r"position_embedding_type 'relative_key'.*only 'absolute'"),
    (dict(is_decoder=True), "decoder"),
    (dict(hidden_act="swish"), r"hidden_act 'swish'.*supported are"),
    (dict(auto_map={"AutoModel": "modeling_evil.EvilModel"}), "remote code is never run"),
    (dict(num_attention_heads=5), "not divisible"),
    (dict(hidden_size="big"), "wrong type"),
])
def test_config_refusals_name_what_was_found(tiny, tmp_path, changes, words):
    with pytest.raises(transformer.TransformerError, match=words):
        transformer.from_pretrained(write_config(tiny, tmp_path, **changes))


def test_tokenizer_larger_than_the_embedding_table_is_refused(tiny, tmp_path):
    folder = write_config(tiny, tmp_path)
    with open(folder / "vocab.txt", "a", encoding="utf-8") as handle:
        handle.write("\n".join(f"extra{i}" for i in range(10)) + "\n")
    with pytest.raises(transformer.TransformerError, match="embeddings"):
        transformer.from_pretrained(folder)


def test_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the refusal only applies without one")
    with pytest.raises(transformer.TransformerError, match="no CUDA GPU"):
        transformer.from_pretrained(device="cuda")


def test_server_mode_treats_every_source_as_a_hub_id(tiny):
    """With allow_local=False nothing is read from disk, and the message never tells whether a path exists."""
    for source in (str(tiny), "/etc", "../weights", "weights"):
        with pytest.raises(transformer.TransformerError) as caught:
            transformer.from_pretrained(source, allow_local=False)
        message = str(caught.value)
        assert "folder" not in message.lower() and "Hub" in message, message
