"""Tiny randomly initialised BERT checkpoints, made by the reference implementation for the tests."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "##s", "bank", "river", "loan", "a", "."]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_bert_checkpoint(folder: Path, seed: int = 0, **overrides) -> Path:
    """Save a random ``transformers.BertModel`` (safetensors) with a WordPiece vocab.txt into ``folder``.

    LayerNorm scales and shifts are randomised too, so a mapping mistake cannot hide behind ones and zeros.
    """
    from transformers import BertConfig, BertModel

    settings = dict(
        vocab_size=len(SPECIALS) + len(WORDS) + 20,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
    )
    settings.update(overrides)
    torch.manual_seed(seed)
    reference = BertModel(BertConfig(**settings)).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reference.save_pretrained(folder, safe_serialization=True)
    filler = [f"w{i}" for i in range(settings["vocab_size"] - len(SPECIALS) - len(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + filler) + "\n", encoding="utf-8")
    return folder


def reference_model(folder: Path):
    from transformers import BertModel

    return BertModel.from_pretrained(folder, attn_implementation="eager").eval()


# ------------------------------------------------------------------------------------------ other families

# transformers classes per family: config, base model, masked-LM model, pre-training model (None: no such class).
FAMILY_CLASSES = {
    "bert": ("BertConfig", "BertModel", "BertForMaskedLM", "BertForPreTraining"),
    "roberta": ("RobertaConfig", "RobertaModel", "RobertaForMaskedLM", None),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRobertaModel", "XLMRobertaForMaskedLM", None),
    "distilbert": ("DistilBertConfig", "DistilBertModel", "DistilBertForMaskedLM", None),
    "electra": ("ElectraConfig", "ElectraModel", "ElectraForMaskedLM", "ElectraForPreTraining"),
    "albert": ("AlbertConfig", "AlbertModel", "AlbertForMaskedLM", "AlbertForPreTraining"),
}
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3 as in RoBERTa; <mask> comes last, as there
UNIGRAM_SPECIALS = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]  # ALBERT's order
PLAIN_WORDS = ["the", "cat", "sat", "on", "mat", "dog", "bank", "river", "loan", "a", "was", "muddy"]


def _transformers_class(name: str):
    import transformers

    return getattr(transformers, name)


def _settings(family: str, vocab_size: int, overrides: dict) -> dict:
    """A tiny config for ``family``: 2 layers of width 32 (4 heads), every family's own names."""
    if family == "distilbert":
        settings = dict(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64)
    else:
        settings = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu")
    if family in ("roberta", "xlm-roberta"):
        # fairseq positions start at pad + 1 = 2: 64 tokens need 66 rows. One segment, as released.
        settings.update(max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        layer_norm_eps=1e-5)
    if family == "electra":
        settings.update(embedding_size=16)  # narrower than the model: the projection is a step
    if family == "albert":
        settings.update(embedding_size=16, num_hidden_layers=3, hidden_act="gelu_new", pad_token_id=0)
    settings.update(overrides)
    return settings


def randomise(model, seed: int, keep: tuple[str, ...] = ()) -> None:
    """Every parameter random and large enough to matter (LayerNorm scales around 1), so that a mapping
    mistake cannot hide behind initial ones, zeros or small values. Parameters named in ``keep`` stay."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # tied parameters appear once
            if any(part in name for part in keep):
                continue
            noise = torch.randn(parameter.shape, generator=generator)
            norm_scale = name.endswith("weight") and ("LayerNorm" in name or "layer_norm" in name)
            parameter.copy_(1.0 + 0.3 * noise if norm_scale else 0.2 * noise)


def write_wordpiece_vocab(folder: Path, vocab_size: int) -> None:
    filler = [f"w{i}" for i in range(vocab_size - len(SPECIALS) - len(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + filler) + "\n", encoding="utf-8")


def bpe_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary (RoBERTa's specials, every byte, merges that make PLAIN_WORDS whole)."""
    from tokenizers import pre_tokenizers

    vocab = {token: i for i, token in enumerate(BPE_SPECIALS)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    merges = []
    for word in PLAIN_WORDS:
        for spelled in (word, "Ġ" + word):  # sentence-initial, and after a space
            pieces = ["Ġ", *word] if spelled.startswith("Ġ") else list(word)
            merged = pieces[0]
            for piece in pieces[1:]:
                if (merged, piece) not in merges:
                    merges.append((merged, piece))
                merged += piece
                vocab.setdefault(merged, len(vocab))
    vocab["<mask>"] = len(vocab)
    return vocab, merges


def write_bpe_tokenizer(folder: Path) -> int:
    """RoBERTa's tokenizer as transformers saves it (tokenizer.json, tokenizer_config.json); returns its size."""
    from tokenizers import AddedToken
    from transformers import RobertaTokenizer

    vocab, merges = bpe_vocab_and_merges()
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, mask_token=AddedToken("<mask>", lstrip=True, special=True))
    tokenizer.save_pretrained(str(folder))
    return len(vocab)


def write_unigram_tokenizer(folder: Path) -> int:
    """An ALBERT-style SentencePiece (Unigram) tokenizer.json, with no file naming its special tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    letters = "abcdefghijklmnopqrstuvwxyz.,!?'"
    pieces = [(token, 0.0) for token in UNIGRAM_SPECIALS]
    pieces += [("▁" + word, -2.0) for word in PLAIN_WORDS] + [("▁", -4.0)] + [(c, -5.0) for c in letters]
    backend = Tokenizer(models.Unigram(pieces, unk_id=1, byte_fallback=False))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    backend.add_special_tokens(UNIGRAM_SPECIALS)
    backend.save(str(folder / "tokenizer.json"))
    return len(pieces)


def make_checkpoint(family: str, folder: Path, seed: int = 0, head: str = "mlm", **overrides) -> Path:
    """Save a tiny random ``family`` checkpoint (safetensors) with a tokenizer our loader accepts.

    ``head``: "mlm" saves the *ForMaskedLM model, "pretraining" the *ForPreTraining one (ELECTRA's
    discriminator), "none" the bare base model.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if family in ("roberta", "xlm-roberta"):
        vocab_size = write_bpe_tokenizer(folder)
    elif family == "albert":
        vocab_size = write_unigram_tokenizer(folder)
    else:
        vocab_size = len(SPECIALS) + len(WORDS) + 20
        write_wordpiece_vocab(folder, vocab_size)
    config_name, base_name, mlm_name, pretraining_name = FAMILY_CLASSES[family]
    settings = _settings(family, vocab_size, overrides)
    model_name = {"mlm": mlm_name, "pretraining": pretraining_name, "none": base_name}[head]
    torch.manual_seed(seed)
    model = _transformers_class(model_name)(_transformers_class(config_name)(**settings)).eval()
    # A sinusoidal table must stay the one transformers made, for the tests to compare with ours.
    randomise(model, seed, keep=("position_embeddings",) if settings.get("sinusoidal_pos_embds") else ())
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def reference_base(family: str, folder: Path):
    """transformers' base model for ``family`` from ``folder``, with eager attention (it returns attentions)."""
    return _transformers_class(FAMILY_CLASSES[family][1]).from_pretrained(folder, attn_implementation="eager").eval()


def reference_masked_lm(family: str, folder: Path):
    return _transformers_class(FAMILY_CLASSES[family][2]).from_pretrained(folder, attn_implementation="eager").eval()
