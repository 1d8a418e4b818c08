"""Where a checkpoint's files come from: the bundled folder, a local folder or the Hugging Face Hub.

Every path ends in the same ``CheckpointFiles``: local paths to the config, the tokenizer, the
sentence-transformers settings and the safetensors weights, plus a ``Source`` that says where they
came from and their SHA-256. Only safetensors weights are ever accepted; pickle files are never opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TransformerError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights" / "all-MiniLM-L6-v2"
PROVENANCE_FILE = "PROVENANCE.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.ckpt", "pytorch_model.bin.index.json")
# Small files read when present: tokenizer, and sentence-transformers' pooling settings.
OPTIONAL_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
)
HUB_TIMEOUT_S = 5  # how long to wait for the Hub to answer about one file before giving up on it
# A branch, tag or commit as git allows them, minus what could walk out of the cache's refs/ folder:
# "/"-separated parts that do not start with "." and no "..".
_REVISION = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*(/[A-Za-z0-9_\-][A-Za-z0-9._\-]*)*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_PICKLE_REFUSAL = (
    "has only pickle weights ({name}). Pickle files can run arbitrary code when loaded, so they are never "
    "opened here; use a checkpoint that provides model.safetensors (most Hub repos do, or convert it with "
    "the safetensors tools)."
)


@dataclass(frozen=True)
class Source:
    """What was loaded: from where, at which revision, under which license, with each file's SHA-256."""

    kind: str  # "bundled", "folder" or "hub"
    location: str  # a folder path or a Hub repo id
    revision: str | None = None  # the commit the files come from, when known
    license: str | None = None
    sha256: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        where = {"bundled": "bundled copy of", "folder": "local folder", "hub": "Hub repo"}[self.kind]
        return f"{where} {self.location}" + (f" @ {self.revision[:12]}" if self.revision else "")


@dataclass(frozen=True)
class CheckpointFiles:
    source: Source
    config: Path
    weights: tuple[Path, ...]
    optional: dict[str, Path | None]  # OPTIONAL_FILES name -> path, plus "pooling_config"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_hash_cache: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered for as long as its size and modification time stay the same."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_cache:
        _hash_cache[key] = sha256_of(path)
    return _hash_cache[key]


def locate(
    source: str | os.PathLike | None = None,
    revision: str | None = None,
    allow_local: bool = True,
    vet_config: Callable[[Path], object] | None = None,
    max_weight_bytes: int | None = None,
) -> CheckpointFiles:
    """Find (and for the Hub, download) a checkpoint's files. ``None`` means the bundled default.

    ``vet_config`` is called with the Hub repo's config.json before any weights are downloaded, so that a
    checkpoint that cannot be used is refused (by raising ``TransformerError``) without fetching gigabytes.
    ``max_weight_bytes`` refuses Hub weights larger than that, by the size the Hub announces, before download.
    """
    if source is None:
        return _bundled()
    text = str(source).strip()
    if not text:
        raise TransformerError("No model given: pass a Hub repo id such as 'google-bert/bert-base-uncased' or a folder.")
    # A server (allow_local=False) treats every string as a Hub id, so that it never tells whether a path exists.
    looks_local = allow_local and (os.path.isabs(text) or text.startswith((".", "~")) or os.path.isdir(text))
    if looks_local:
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise TransformerError(f"No such folder: {text}")
        return _folder(folder)
    return _hub(text, revision, vet_config, max_weight_bytes)


def _bundled() -> CheckpointFiles:
    provenance_path = BUNDLED_DIR / PROVENANCE_FILE
    try:
        provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise TransformerError(f"The bundled model's provenance record {provenance_path} is missing or unreadable: {err}") from None
    hashes: dict[str, str] = {}
    for name, expected in provenance["files"].items():
        path = BUNDLED_DIR / name
        if not path.is_file():
            raise TransformerError(f"The bundled model is incomplete: {name} is missing from {BUNDLED_DIR}.")
        actual = _cached_sha256(path)
        if actual != expected:
            raise TransformerError(
                f"The bundled file {name} does not match its recorded SHA-256 (expected {expected[:16]}..., "
                f"found {actual[:16]}...): it was changed or damaged. Restore it from the repository."
            )
        hashes[name] = actual
    files = _folder(BUNDLED_DIR, verified=hashes)
    source = Source("bundled", provenance["repo_id"], provenance["revision"], provenance.get("license"), hashes)
    return CheckpointFiles(source, files.config, files.weights, files.optional)


def _folder(folder: Path, verified: dict[str, str] | None = None) -> CheckpointFiles:
    config = folder / "config.json"
    if not config.is_file():
        raise TransformerError(f"{folder} has no config.json, so it is not a model checkpoint folder.")
    if (folder / SINGLE_WEIGHTS).is_file():
        weights: tuple[Path, ...] = (folder / SINGLE_WEIGHTS,)
    elif (folder / WEIGHTS_INDEX).is_file():
        weights = tuple(folder / shard for shard in _shard_names(folder / WEIGHTS_INDEX))
        absent = [path.name for path in weights if not path.is_file()]
        if absent:
            raise TransformerError(f"The weights index names shard(s) missing from {folder}: {', '.join(absent)}.")
    else:
        pickles = [name for name in PICKLE_WEIGHTS if (folder / name).exists()]
        if pickles:
            raise TransformerError(f"{folder} " + _PICKLE_REFUSAL.format(name=", ".join(pickles)))
        raise TransformerError(f"{folder} has no {SINGLE_WEIGHTS} (nor a sharded {WEIGHTS_INDEX}).")
    optional = {name: (folder / name if (folder / name).is_file() else None) for name in OPTIONAL_FILES}
    optional["pooling_config"] = _pooling_config_path(optional["modules.json"], lambda rel: folder / rel if (folder / rel).is_file() else None)
    hashes = verified if verified is not None else {path.name: _cached_sha256(path) for path in (config, *weights)}
    source = Source("folder", str(folder.resolve()), None, None, hashes)
    return CheckpointFiles(source, config, weights, optional)


def _shard_names(index_path: Path) -> list[str]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise TransformerError(f"{WEIGHTS_INDEX} is not a valid weights index: {err}") from None
    for shard in shards:
        # A shard is a plain file name beside the index: no folders, no way out of the checkpoint.
        if not isinstance(shard, str) or not shard.endswith(".safetensors") or "/" in shard or "\\" in shard or shard.startswith("."):
            raise TransformerError(f"{WEIGHTS_INDEX} names an unacceptable shard {shard!r}: only .safetensors files beside it.")
    return shards


def _pooling_config_path(modules_json: Path | None, find):
    """sentence-transformers keeps its pooling settings in the folder that modules.json names for Pooling."""
    if modules_json is None:
        return None
    try:
        modules = json.loads(Path(modules_json).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling"):
            folder = str(module.get("path", ""))
            if re.fullmatch(r"[A-Za-z0-9_\-]+", folder):
                return find(f"{folder}/config.json")
    return None


# ---------------------------------------------------------------------------------------------- the Hub


def _hub(
    repo_id: str, revision: str | None, vet_config: Callable[[Path], object] | None, max_weight_bytes: int | None
) -> CheckpointFiles:
    # Imported here: huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when first imported.
    from huggingface_hub.utils import validate_repo_id
    from huggingface_hub.errors import HFValidationError

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise TransformerError(
            f"{repo_id!r} is not a valid Hub repo id: use 'name' or 'owner/name' with letters, digits, '-', '_' and '.'."
        ) from None
    if revision is not None and not (len(revision) <= 100 and _REVISION.fullmatch(revision) and ".." not in revision):
        raise TransformerError(f"{revision!r} is not a valid revision (a branch, tag or commit hash).")

    repo = _HubRepo(repo_id, revision, _why_hub_unusable(repo_id, revision))
    try:
        config = repo.get("config.json")
    except _Absent:
        raise TransformerError(f"{repo.where} has no config.json, so it is not a model checkpoint repo.") from None
    if vet_config is not None:
        vet_config(config)  # an unusable checkpoint is refused before its weights are downloaded
    repo.pin(_snapshot_commit(config))  # every other file from the very commit config.json came from
    try:
        repo.check_size([SINGLE_WEIGHTS], max_weight_bytes)
        weights: tuple[Path, ...] = (repo.get(SINGLE_WEIGHTS),)
    except _Absent:
        try:
            index = repo.get(WEIGHTS_INDEX)
        except _Absent:
            pickle_name = repo.pickle_weights_name()
            if pickle_name:
                raise TransformerError(f"{repo.where} " + _PICKLE_REFUSAL.format(name=pickle_name)) from None
            raise TransformerError(f"{repo.where} has no {SINGLE_WEIGHTS} (nor a sharded {WEIGHTS_INDEX}).") from None
        shards = _shard_names(index)
        repo.check_size(shards, max_weight_bytes)
        weights = tuple(repo.get(shard) for shard in shards)

    optional: dict[str, Path | None] = {name: repo.get_optional(name) for name in OPTIONAL_FILES}
    optional["pooling_config"] = _pooling_config_path(optional["modules.json"], repo.get_optional)
    hashes = {path.name: repo.sha256[path.name] for path in (config, *weights)}
    source = Source("hub", repo_id, _snapshot_commit(config), None, hashes)
    return CheckpointFiles(source, config, weights, optional)


class _Absent(Exception):
    """A file that the Hub says does not exist in the repo (not an error when the file is optional)."""


def _why_hub_unusable(repo_id: str, revision: str | None) -> str | None:
    """Ask the Hub once, quickly, about the repo's config.json: None if it answers, else why only the cache is used.

    Without this, huggingface_hub retries each unreachable file with back-off (about 23 s per file) before
    it looks in its cache. Answers that settle the matter (no such repo, gated, no such revision) are raised here.
    """
    import httpx2  # huggingface_hub's HTTP client: its connection errors are not OSErrors
    from huggingface_hub import constants, errors, get_hf_file_metadata, hf_hub_url

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    try:
        metadata = get_hf_file_metadata(hf_hub_url(repo_id, "config.json", revision=revision), timeout=HUB_TIMEOUT_S)
    except errors.EntryNotFoundError:
        return None  # the repo is there; the missing config.json is reported when it is fetched
    except errors.HfHubHTTPError as err:
        status = err.response.status_code
        if status >= 500 or status in (408, 429):
            return f"the Hub answered HTTP {status} (unavailable for now)"
        raise _hub_failure(err, repo_id, revision, "config.json") from None
    except (httpx2.HTTPError, OSError) as err:  # refused, timed out, reset: nothing answered like a Hub
        return f"the Hub could not be reached ({type(err).__name__})"
    if metadata.commit_hash is None:
        return "the server at HF_ENDPOINT does not answer like the Hugging Face Hub"
    return None


class _HubRepo:
    """One Hub repo's files, each checked against the Hub's checksum as soon as it is fetched.

    While the Hub answers, files are downloaded (or reused from huggingface_hub's cache after asking the
    Hub which version is current); when it does not (``offline_reason`` says why) they come from the cache alone.
    """

    def __init__(self, repo_id: str, revision: str | None, offline_reason: str | None) -> None:
        self.repo_id = repo_id
        self.revision = revision
        self.offline_reason = offline_reason
        self.where = _where(repo_id, revision)
        self.sha256: dict[str, str] = {}  # file name in the repo -> SHA-256 of its verified bytes

    def pin(self, commit: str | None) -> None:
        if commit:
            self.revision = commit

    def get(self, filename: str) -> Path:
        """The local path of a verified copy of ``filename``; raises ``_Absent`` if the repo has no such file."""
        path = self._download(filename) if self.offline_reason is None else self._from_cache(filename)
        self.sha256[filename] = _verify_download(path)
        return path

    def get_optional(self, filename: str) -> Path | None:
        try:
            return self.get(filename)
        except _Absent:
            return None

    def check_size(self, filenames: list[str], limit: int | None) -> None:
        """Refuse files whose announced total size exceeds ``limit`` bytes (HEAD requests only)."""
        if limit is None or self.offline_reason is not None:
            return
        from huggingface_hub import errors, get_hf_file_metadata, hf_hub_url

        total = 0
        for filename in filenames:
            try:
                url = hf_hub_url(self.repo_id, filename, revision=self.revision)
                total += get_hf_file_metadata(url, timeout=HUB_TIMEOUT_S).size or 0
            except errors.EntryNotFoundError:
                raise _Absent(filename) from None
            except Exception:  # the download itself will report what is wrong
                return
        if total > limit:
            raise TransformerError(
                f"{self.where} has {total / 1e9:.2f} GB of weights; this server loads at most {limit / 1e9:.2f} GB."
            )

    def pickle_weights_name(self) -> str | None:
        """The pickle weights file the repo has, if any, asked with HEAD only (nothing is downloaded)."""
        if self.offline_reason is not None:
            return None
        from huggingface_hub import file_exists

        try:
            return PICKLE_WEIGHTS[0] if file_exists(self.repo_id, PICKLE_WEIGHTS[0], revision=self.revision) else None
        except Exception:  # any failure just means we cannot say more than "no safetensors"
            return None

    def _download(self, filename: str) -> Path:
        import httpx2  # huggingface_hub's HTTP client: its connection errors are not OSErrors
        from huggingface_hub import errors, hf_hub_download

        try:
            return Path(hf_hub_download(self.repo_id, filename, revision=self.revision, etag_timeout=HUB_TIMEOUT_S))
        except errors.LocalEntryNotFoundError:  # the Hub stopped answering after it first did
            raise TransformerError(
                f"Could not get {filename} from {self.where}: the Hub stopped answering "
                "and it is not in the local cache."
            ) from None
        except errors.EntryNotFoundError:
            raise _Absent(filename) from None
        except errors.HfHubHTTPError as err:
            raise _hub_failure(err, self.repo_id, self.revision, filename) from None
        except (OSError, ValueError, httpx2.HTTPError) as err:  # cut-off downloads, connection failures
            raise TransformerError(
                f"The download of {filename} from {self.where} failed or was cut short ({type(err).__name__}); "
                "nothing of it was kept. Try again."
            ) from None

    def _from_cache(self, filename: str) -> Path:
        from huggingface_hub import _CACHED_NO_EXIST, try_to_load_from_cache

        cached = try_to_load_from_cache(self.repo_id, filename, revision=self.revision)
        if cached is _CACHED_NO_EXIST:  # the Hub said so when the repo was downloaded
            raise _Absent(filename)
        if not isinstance(cached, str):
            raise TransformerError(
                f"Could not get {filename} from {self.where}: {self.offline_reason} and it is not in the local cache."
            )
        return Path(cached)


def _where(repo_id: str, revision: str | None) -> str:
    return f"Hub repo {repo_id}" + (f" at revision {revision}" if revision else "")


def _hub_failure(err: Exception, repo_id: str, revision: str | None, filename: str) -> TransformerError:
    """The user-facing reason for a Hub answer that ends the load (huggingface_hub's own messages name URLs)."""
    from huggingface_hub import errors

    where = _where(repo_id, revision)
    if isinstance(err, errors.GatedRepoError):
        return TransformerError(
            f"{where} is gated: accept its conditions on the Hub, then set HF_TOKEN to a token with access."
        )
    if isinstance(err, errors.RepositoryNotFoundError):
        return TransformerError(f"{where} was not found (or it is private and HF_TOKEN gives no access).")
    if isinstance(err, errors.RevisionNotFoundError):
        return TransformerError(f"Revision {revision!r} was not found in Hub repo {repo_id}.")
    status = getattr(getattr(err, "response", None), "status_code", "?")
    return TransformerError(f"The Hub answered HTTP {status} for {filename} from {where}.")


def _snapshot_commit(path: Path) -> str | None:
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def _verify_download(path: Path) -> str:
    """Check a cached file against the Hub's ETag, the name of its blob, and return its SHA-256.

    Large (LFS) files are named by their SHA-256, small ones by their git blob SHA-1. A file that does
    not match is removed from the cache, so a later load fetches it again instead of reusing it.
    """
    blob = Path(os.path.realpath(path))
    expected = blob.name
    sha256 = sha256_of(blob)
    if _HEX64.fullmatch(expected):
        matches = sha256 == expected
    elif _HEX40.fullmatch(expected):
        data = blob.read_bytes()
        matches = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == expected
    else:
        matches = True  # no checksum known for this file
    if not matches:
        for stale in (path, blob):
            try:
                os.remove(stale)
            except OSError:
                pass
        raise TransformerError(
            f"The downloaded {path.name} does not match the checksum the Hub gave for it (truncated or corrupted "
            "download); it was removed from the cache. Try again."
        )
    return sha256
