"""Test-wide settings: no telemetry, no network beyond loopback, the Hub replaced by a stand-in on loopback."""

import atexit
import os
import shutil
import socket
import tempfile


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# huggingface_hub and gradio read these when first imported: set them before any test module imports them.
# The Hub is the stand-in of tests/fakehub.py on this port (the `hub` fixture starts it; "Hub down" is simply
# that server not running), and the Hub cache is a fresh folder for this session only.
HUB_PORT = _free_loopback_port()
HF_HOME = tempfile.mkdtemp(prefix="transformer-tests-hf-home-")
atexit.register(shutil.rmtree, HF_HOME, ignore_errors=True)
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HOME"] = HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(HF_HOME, "hub")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.pop("HF_HUB_OFFLINE", None)  # tests decide offline mode themselves (in subprocesses)
os.environ.pop("HF_TOKEN", None)  # no real credentials, even towards loopback
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def model():
    """The bundled default model, loaded once for the whole session."""
    import transformer

    return transformer.from_pretrained()


@pytest.fixture(scope="session")
def hub():
    """The stand-in Hugging Face Hub (tests/fakehub.py) at HF_ENDPOINT, running for the whole session.

    Register repos with ``hub.add_repo(repo_id, folder)``; use ids unique to your test, the cache is shared.
    """
    from fakehub import FakeHub

    server = FakeHub(HUB_PORT).start()
    yield server
    server.stop()


TINY_BERT_WORDS = (
    "the cat sat on mat a dog ran fast slow big small red blue green is was and or to of in it he she "
    "hello world attention query key value"
).split()


def _write_tiny_bert(folder) -> None:
    """A tiny random BERT (2 layers, d=32, 4 heads, ~120-token vocab) saved by `transformers` as a Hub repo is."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_BERT_WORDS, *letters, *("##" + c for c in letters)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary as `vocab` (a `vocab_file=` keyword is silently ignored, which left a
    # tokenizer.json of the five special tokens only, so every word was [UNK]).
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(str(folder))  # adds tokenizer.json
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    generator = torch.Generator().manual_seed(1234)
    bert = BertModel(config).eval()
    with torch.no_grad():  # every tensor random and large enough to matter, LayerNorms included
        for parameter in bert.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    bert.save_pretrained(str(folder))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A folder holding a tiny random BERT checkpoint: config.json, model.safetensors, vocab.txt, tokenizer.json."""
    folder = tmp_path_factory.mktemp("tiny-bert") / "bert"
    _write_tiny_bert(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_sharded(tiny_bert, tmp_path_factory):
    """The same weights as ``tiny_bert``, saved as several safetensors shards with model.safetensors.index.json."""
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-sharded") / "bert"
    folder.mkdir(parents=True)
    BertModel.from_pretrained(str(tiny_bert)).save_pretrained(str(folder), max_shard_size="20KB")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_bert / name, folder / name)
    return folder
