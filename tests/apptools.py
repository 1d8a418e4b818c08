"""Launching ``python app.py`` for tests: a free loopback port, no telemetry, an offline Hub cache.

The server runs as a real subprocess, exactly as on a Space or a laptop; tests talk to it over HTTP
(gradio_client or a browser) and it is stopped (its whole process group) when they are done.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 150  # importing torch and gradio on a busy 2-core machine can take a while
TINY_REPO_ID = "explainer-test/tiny-bert"  # served from the offline Hub cache made by make_offline_hub_cache
TINY_COMMIT = "0123456789abcdef0123456789abcdef01234567"
# More tiny repos in the same cache, saved by transformers' *ForMaskedLM classes (tests/tiny.py): family -> repo id.
TINY_MLM_REPOS = {
    "bert": "explainer-test/tiny-bert-mlm",
    "distilbert": "explainer-test/tiny-distilbert-sinusoidal",  # sinusoidal positions, no segments
    "electra": "explainer-test/tiny-electra-generator",  # 16-wide embeddings projected to 32
    "albert": "explainer-test/tiny-albert",  # 3 layers sharing one layer's weights
}
TINY_MLM_OVERRIDES = {"distilbert": {"sinusoidal_pos_embds": True}}
_MAYBE_ABSENT = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
                 "sentence_bert_config.json", "model.safetensors.index.json", "pytorch_model.bin",
                 "config_sentence_transformers.json", "1_Pooling/config.json")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_offline_hub_cache(root: Path) -> Path:
    """A Hugging Face cache holding one tiny BERT as if downloaded from ``TINY_REPO_ID`` (for HF_HUB_OFFLINE=1).

    Files the repo lacks are recorded in ``.no_exist`` the way huggingface_hub does after asking the Hub,
    so an offline load finds every answer locally and nothing reaches the network.
    """
    from tiny import make_bert_checkpoint, make_checkpoint

    add_offline_repo(root / "hub", TINY_REPO_ID, make_bert_checkpoint(root / "checkpoint", seed=3))
    for seed, (family, repo_id) in enumerate(TINY_MLM_REPOS.items(), start=20):
        folder = make_checkpoint(family, root / f"checkpoint-{family}", seed=seed, head="mlm",
                                 **TINY_MLM_OVERRIDES.get(family, {}))
        add_offline_repo(root / "hub", repo_id, folder)
    return root / "hub"


def add_offline_repo(hub_cache: Path, repo_id: str, checkpoint: Path) -> Path:
    """Put the files of ``checkpoint`` into ``hub_cache`` as the snapshot TINY_COMMIT of ``repo_id``; returns it."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / TINY_COMMIT
    snapshot.mkdir(parents=True)
    for file in checkpoint.iterdir():
        shutil.copy(file, snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(TINY_COMMIT)
    absent = repo / ".no_exist" / TINY_COMMIT
    absent.mkdir(parents=True)
    for name in _MAYBE_ABSENT:
        if not (snapshot / name).exists():
            (absent / name).parent.mkdir(parents=True, exist_ok=True)
            (absent / name).touch()
    return snapshot


def snapshot_of(hub_cache: Path, repo_id: str) -> Path:
    return hub_cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / TINY_COMMIT


def app_environment(port: int, hub_cache: Path, temp_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(temp_dir),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HUB_DISABLE_XET": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    env.pop("GRADIO_SHARE", None)
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running_app(workdir: Path) -> Iterator[str]:
    """Start ``python app.py`` on a free loopback port; yield its URL once it answers; stop it afterwards."""
    port = free_port()
    hub_cache = make_offline_hub_cache(workdir / "hf")
    temp_dir = workdir / "gradio-tmp"
    temp_dir.mkdir()
    log_path = workdir / "app.log"
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO, env=app_environment(port, hub_cache, temp_dir),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not start (exit code {process.poll()}); its log ends:\n"
                                       + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            yield url
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    """Stop the server and anything it started (its own process group), politely first."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


def read_log(workdir: Path) -> str:
    return (workdir / "app.log").read_text(errors="replace")
