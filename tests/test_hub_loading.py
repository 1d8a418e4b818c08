"""Every way ``transformer.from_pretrained`` gets a checkpoint from the Hub (the stand-in of tests/fakehub.py on
loopback) or a local folder, and every way that must be refused.

Numbers are checked against ``transformers.BertModel`` (eager attention) holding the same weights, and file
hashes against ``hashlib`` over the bytes the server sent: never against our own output.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import transformer
from transformer import TransformerError

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXT_A, TEXT_B = "the cat sat on the mat", "a dog ran fast"
WEIGHTS = "model.safetensors"


# ---------------------------------------------------------------------------------------------- helpers


def cache_folder(repo_id: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hidden_states(model: transformer.Model) -> tuple[transformer.Run, list[torch.Tensor]]:
    run = model.run(TEXT_A, TEXT_B)
    return run, [h.detach().cpu() for h in run.hidden_states]


def refusal(source, **kwargs) -> str:
    """The message of the TransformerError that loading ``source`` raises; it must be one line."""
    with pytest.raises(TransformerError) as caught:
        transformer.from_pretrained(source, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, message
    assert caught.value.__cause__ is None  # nothing chained for a traceback to show
    return message


def no_secrets(message: str) -> None:
    """User-facing messages name neither the server's address nor where the cache lives."""
    from huggingface_hub import constants

    assert "127.0.0.1" not in message and constants.HF_HUB_CACHE not in message, message


class _WritesMarker:
    """Unpickling this runs code: it writes ``path``. Served as pytorch_model.bin, it must never be unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return exec, (f"open({str(self.path)!r}, 'w').write('unpickled')",)


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps({"encoder.layer.0.attention.self.query.weight": _WritesMarker(marker)})


def copy_folder(source: Path, target: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*drop))
    return target


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reference(tiny_bert):
    """transformers' own BERT and tokenizer from the same folder: the reference the numbers must match."""
    from transformers import BertModel, BertTokenizerFast

    bert = BertModel.from_pretrained(str(tiny_bert), attn_implementation="eager").eval()
    return bert, BertTokenizerFast.from_pretrained(str(tiny_bert))


def reference_hidden_states(reference, run: transformer.Run) -> list[torch.Tensor]:
    bert, _ = reference
    with torch.no_grad():
        out = bert(
            input_ids=run.input_ids[None].cpu(),  # (1, T)
            token_type_ids=run.token_type_ids[None].cpu(),  # (1, T)
            attention_mask=torch.ones_like(run.input_ids)[None].cpu(),  # (1, T)
            output_hidden_states=True,
        )
    return [h[0] for h in out.hidden_states]  # L + 1 of (T, d)


@pytest.fixture(scope="module")
def bert_repo(hub, tiny_bert):
    return hub.add_repo("tests/tiny-bert", tiny_bert, revisions=("main", "v1.0"))


@pytest.fixture(scope="module")
def hub_model(bert_repo):
    """The tiny BERT downloaded once from the stand-in Hub (the first load of this module)."""
    return transformer.from_pretrained(bert_repo.repo_id)


# ---------------------------------------------------------------------------------------------- a Hub repo that loads


def test_hub_bert_matches_transformers(hub_model, reference):
    run, ours = hidden_states(hub_model)
    _, tokenizer = reference
    assert list(run.input_ids) == tokenizer(TEXT_A, TEXT_B)["input_ids"]
    assert list(run.token_type_ids) == tokenizer(TEXT_A, TEXT_B)["token_type_ids"]
    theirs = reference_hidden_states(reference, run)
    assert len(ours) == len(theirs) == 3
    for layer, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=lambda m: f"hidden state {layer}: {m}")


def test_hub_source_records_repo_commit_and_served_hashes(hub_model, bert_repo, hub):
    source = hub_model.source
    assert source.kind == "hub"
    assert source.location == "tests/tiny-bert"
    assert source.revision == bert_repo.commit  # the X-Repo-Commit the server sent
    assert source.sha256 == {name: sha256(bert_repo.files[name]) for name in ("config.json", WEIGHTS)}
    assert bert_repo.commit[:12] in source.describe()
    # The weights came the way the Hub sends LFS files: a redirect from the Hub, the bytes from the other origin.
    assert any(r.server == "cdn" and r.method == "GET" for r in hub.requests_for("tests/tiny-bert", WEIGHTS))


def test_hub_files_are_cached_and_load_with_the_hub_down(hub_model, bert_repo, hub, reference):
    blobs = cache_folder(bert_repo.repo_id) / "blobs"
    assert (blobs / sha256(bert_repo.files[WEIGHTS])).is_file()  # the LFS blob is named by its SHA-256
    _, before = hidden_states(hub_model)
    with hub.down():
        started = time.monotonic()
        again = transformer.from_pretrained(bert_repo.repo_id)
        elapsed = time.monotonic() - started
    assert elapsed < 10, f"loading from the cache with the Hub down took {elapsed:.1f} s"
    assert again.source.revision == bert_repo.commit
    assert again.source.sha256 == hub_model.source.sha256
    run, after = hidden_states(again)
    for a, b, c in zip(before, after, reference_hidden_states(reference, run)):
        assert torch.equal(a, b)
        torch.testing.assert_close(b, c, atol=1e-5, rtol=0)


def test_revision_by_tag_and_by_commit(hub_model, bert_repo):
    by_tag = transformer.from_pretrained(bert_repo.repo_id, revision="v1.0")
    by_commit = transformer.from_pretrained(bert_repo.repo_id, revision=bert_repo.commit)
    assert by_tag.source.revision == by_commit.source.revision == bert_repo.commit
    assert (cache_folder(bert_repo.repo_id) / "refs" / "v1.0").read_text() == bert_repo.commit
    assert by_commit.source.sha256 == hub_model.source.sha256


def test_offline_mode_loads_from_cache_and_asks_nothing(hub_model, bert_repo, hub):
    """HF_HUB_OFFLINE is read when huggingface_hub is imported, so offline mode runs in a fresh interpreter."""
    script = f"""
import json, transformer
model = transformer.from_pretrained({bert_repo.repo_id!r})
run = model.run({TEXT_A!r}, {TEXT_B!r})
result = {{"revision": model.source.revision, "sha256": model.source.sha256, "last": run.hidden_states[-1].tolist()}}
try:
    transformer.from_pretrained("tests/never-downloaded")
except transformer.TransformerError as err:
    result["uncached"] = str(err)
print(json.dumps(result))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    requests_before = len(hub.requests)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(hub.requests) == requests_before  # offline means not a single request, even with the Hub up
    assert result["revision"] == bert_repo.commit
    assert result["sha256"] == hub_model.source.sha256
    _, ours = hidden_states(hub_model)
    torch.testing.assert_close(torch.tensor(result["last"]), ours[-1], atol=1e-6, rtol=0)
    assert "HF_HUB_OFFLINE" in result["uncached"] and "not in the local cache" in result["uncached"]


def test_sharded_safetensors_load_the_same_numbers(hub, tiny_bert_sharded, hub_model):
    repo = hub.add_repo("tests/tiny-bert-sharded", tiny_bert_sharded)
    shards = sorted(name for name in repo.files if name.endswith(".safetensors"))
    assert len(shards) > 1 and WEIGHTS not in repo.files and "model.safetensors.index.json" in repo.files
    model = transformer.from_pretrained(repo.repo_id)
    assert model.source.sha256 == {name: sha256(repo.files[name]) for name in ("config.json", *shards)}
    (_, sharded), (_, single) = hidden_states(model), hidden_states(hub_model)
    for a, b in zip(sharded, single):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- refused Hub repos


HUB_FAILURES = [
    ("missing repo", "tests/no-such-repo", None, ["tests/no-such-repo", "was not found"]),
    ("missing config", "tests/no-config", None, ["tests/no-config", "no config.json"]),
    ("bad revision", "tests/tiny-bert", "no-such-branch", ["revision", "'no-such-branch'", "was not found"]),
    ("gated repo", "tests/gated", None, ["tests/gated", "gated", "HF_TOKEN"]),
    ("malformed repo id", "not a/valid/repo id", None, ["not a valid Hub repo id"]),
    ("malformed revision", "tests/tiny-bert", "main; rm -rf", ["not a valid revision"]),
    ("revision out of the cache", "tests/tiny-bert", "../../../etc", ["not a valid revision"]),
]


@pytest.mark.parametrize(("case", "source", "revision", "words"), HUB_FAILURES, ids=[c[0] for c in HUB_FAILURES])
def test_hub_failures_have_specific_one_line_reasons(hub, bert_repo, tiny_bert, case, source, revision, words):
    hub.add_repo("tests/no-config", files={WEIGHTS: (tiny_bert / WEIGHTS).read_bytes()})
    hub.add_repo("tests/gated", tiny_bert, gated=True)
    message = refusal(source, revision=revision)
    for word in words:
        assert word.lower() in message.lower(), f"{case}: {message}"
    no_secrets(message)


def test_hub_down_fails_fast_with_a_clear_message(hub):
    with hub.down():
        started = time.monotonic()
        message = refusal("tests/never-downloaded")
        elapsed = time.monotonic() - started
    assert elapsed < 10, f"took {elapsed:.1f} s to report the Hub down"
    assert "could not be reached" in message and "not in the local cache" in message
    no_secrets(message)


def test_hub_outage_uses_the_cache_or_fails_fast(hub, hub_model, bert_repo):
    """A Hub that answers 503 is not retried with back-off: cached repos load, others fail at once."""
    hub.outage_status = 503
    try:
        started = time.monotonic()
        cached = transformer.from_pretrained(bert_repo.repo_id)
        message = refusal("tests/never-downloaded")
        elapsed = time.monotonic() - started
    finally:
        hub.outage_status = None
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert cached.source.sha256 == hub_model.source.sha256 and cached.source.revision == bert_repo.commit
    assert "HTTP 503" in message and "not in the local cache" in message


@pytest.mark.parametrize(
    ("filename", "fault", "words"),
    [
        (WEIGHTS, "truncate", ["model.safetensors", "cut short"]),
        (WEIGHTS, "corrupt", ["model.safetensors", "does not match the checksum"]),
        ("config.json", "corrupt", ["config.json", "does not match the checksum"]),
    ],
    ids=["truncated weights", "corrupted weights", "corrupted config"],
)
def test_bad_download_is_refused_and_not_kept(hub, tiny_bert, reference, filename, fault, words):
    repo = hub.add_repo(f"tests/faulty-{fault}-{filename.replace('.', '-')}", tiny_bert)
    repo.faults[filename] = fault
    message = refusal(repo.repo_id)
    for word in words:
        assert word in message, message
    no_secrets(message)
    # Nothing of the bad file stays where huggingface_hub would find and reuse it.
    folder = cache_folder(repo.repo_id)
    assert not (folder / "blobs" / repo.etag(filename)).exists()
    assert not (folder / "snapshots" / repo.commit / filename).exists()
    assert not list(folder.rglob("*.incomplete"))
    bad_bytes = repo.served_bytes(filename)
    assert all(sha256(p.read_bytes()) != sha256(bad_bytes) for p in (folder / "blobs").glob("*"))

    # The server is fixed: the next load fetches the file again and succeeds.
    repo.faults.clear()
    gets_before = len(hub.requests_for(repo.repo_id, filename, "GET"))
    model = transformer.from_pretrained(repo.repo_id)
    assert len(hub.requests_for(repo.repo_id, filename, "GET")) == gets_before + 1
    assert model.source.sha256[filename] == sha256(repo.files[filename])
    run, ours = hidden_states(model)
    torch.testing.assert_close(ours[-1], reference_hidden_states(reference, run)[-1], atol=1e-5, rtol=0)


def test_pickle_only_repo_is_refused_without_fetching_the_pickle(hub, tiny_bert, tmp_path):
    # The payload is live: unpickling it does run code (shown here on a marker of its own).
    probe = tmp_path / "probe-marker"
    pickle.loads(malicious_pickle(probe))
    assert probe.read_text() == "unpickled"

    marker = tmp_path / "hub-marker"
    repo = hub.add_repo(
        "tests/pickle-only",
        files={
            "config.json": (tiny_bert / "config.json").read_bytes(),
            "vocab.txt": (tiny_bert / "vocab.txt").read_bytes(),
            "pytorch_model.bin": malicious_pickle(marker),
        },
    )
    message = refusal(repo.repo_id)
    assert "pytorch_model.bin" in message and "pickle" in message.lower() and "never opened" in message
    assert not marker.exists()
    assert hub.requests_for(repo.repo_id, "pytorch_model.bin", "GET") == []  # not even downloaded
    assert not list(cache_folder(repo.repo_id).rglob("pytorch_model.bin"))


@pytest.mark.parametrize(
    ("case", "change", "words"),
    [
        ("remote code", {"auto_map": {"AutoModel": "modeling_evil.EvilModel"}}, ["custom code", "auto_map", "never run"]),
        ("unsupported model_type", {"model_type": "gpt2"}, ["Unsupported checkpoint", "'gpt2'", "supported: bert"]),
    ],
    ids=["remote code", "unsupported model_type"],
)
def test_unacceptable_config_is_refused_before_the_weights_download(hub, tiny_bert, case, change, words):
    config = json.loads((tiny_bert / "config.json").read_text()) | change
    repo = hub.add_repo(
        f"tests/config-{case.replace(' ', '-')}", tiny_bert, files={"config.json": json.dumps(config).encode()}
    )
    message = refusal(repo.repo_id)
    for word in words:
        assert word in message, f"{case}: {message}"
    assert hub.requests_for(repo.repo_id, WEIGHTS, "GET") == []  # refused before the weights were fetched


# ---------------------------------------------------------------------------------------------- local folders


def test_local_folder_matches_transformers(tiny_bert, reference):
    model = transformer.from_pretrained(str(tiny_bert))
    assert model.source.kind == "folder"
    assert model.source.sha256[WEIGHTS] == sha256((tiny_bert / WEIGHTS).read_bytes())
    run, ours = hidden_states(model)
    for a, b in zip(ours, reference_hidden_states(reference, run)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_local_pickle_only_folder_is_refused_without_unpickling(tiny_bert, tmp_path):
    folder = copy_folder(tiny_bert, tmp_path / "pickle-only", drop=(WEIGHTS,))
    marker = tmp_path / "folder-marker"
    (folder / "pytorch_model.bin").write_bytes(malicious_pickle(marker))
    message = refusal(str(folder))
    assert "pytorch_model.bin" in message and "never opened" in message
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_local_corrupted_safetensors_is_refused(tiny_bert, tmp_path, damage):
    folder = copy_folder(tiny_bert, tmp_path / "corrupted")
    data = (tiny_bert / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07" * 200)
    message = refusal(str(folder))
    assert "model.safetensors is not a valid safetensors file" in message


def test_local_folder_without_config_is_refused(tiny_bert, tmp_path):
    folder = copy_folder(tiny_bert, tmp_path / "no-config", drop=("config.json",))
    assert "has no config.json" in refusal(str(folder))


@pytest.mark.parametrize("shard", ["../outside.safetensors", "sub/model.safetensors", "model.bin"])
def test_weights_index_naming_anything_but_a_shard_beside_it_is_refused(tiny_bert_sharded, tmp_path, shard):
    folder = copy_folder(tiny_bert_sharded, tmp_path / "index")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "names an unacceptable shard" in refusal(str(folder))


def test_weights_over_the_size_cap_are_refused_before_download(hub, tiny_bert):
    from transformer.hub import locate

    repo = hub.add_repo("tests/too-big", tiny_bert)
    size = (tiny_bert / WEIGHTS).stat().st_size
    with pytest.raises(TransformerError, match="GB of weights; this server loads at most") as caught:
        locate(repo.repo_id, max_weight_bytes=size - 1)
    no_secrets(str(caught.value))
    assert hub.requests_for(repo.repo_id, WEIGHTS, "GET") == []  # asked with HEAD only
    assert locate(repo.repo_id, max_weight_bytes=size).weights[0].stat().st_size == size
