"""Launching ``python app.py`` for tests: a free loopback port, no telemetry, an offline Hub cache.

The server runs as a real subprocess, exactly as on a Space or a laptop; tests talk to it over HTTP
(gradio_client or a browser) and it is stopped (its whole process group) when they are done.
"""

from __future__ import annotations

import json
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    with _serving(workdir, port, app_environment(port, hub_cache, temp_dir)) as server:
        yield server.url


@dataclass(frozen=True)
class AppServer:
    """A running ``python app.py``: its URL, its process (for its memory) and its log."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_app_online(workdir: Path, hub_endpoint: str, extra_env: dict[str, str] | None = None) -> Iterator[AppServer]:
    """``python app.py`` that downloads from ``hub_endpoint`` (the stand-in Hub) into an empty cache of its own.

    Unlike ``running_app`` the Hub is not offline: HF_HUB_OFFLINE is removed, so stopping the stand-in
    Hub is "the Hub is down". ``extra_env`` sets anything else (e.g. the app's EXPLAINER_* limits).
    """
    port = free_port()
    hf_home = workdir / "hf-home"
    temp_dir = workdir / "gradio-tmp"
    hf_home.mkdir()
    temp_dir.mkdir()
    env = app_environment(port, hf_home / "hub", temp_dir)
    env.pop("HF_HUB_OFFLINE")
    env.update({"HF_ENDPOINT": hub_endpoint, "HF_HOME": str(hf_home), **(extra_env or {})})
    with _serving(workdir, port, env) as server:
        yield server


@contextmanager
def _serving(workdir: Path, port: int, env: dict[str, str]) -> Iterator[AppServer]:
    log_path = workdir / "app.log"
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not start (exit code {process.poll()}); its log ends:\n"
                                       + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            yield AppServer(url, process, log_path)
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


# ------------------------------------------------------------------------------ plain-HTTP calls of the API


@dataclass(frozen=True)
class Answer:
    """What the server answered to one call of a named endpoint over plain HTTP.

    ``status`` is the HTTP status of the request that queued the call; ``event`` is "complete" or "error"
    (None when the call was refused before it was queued, e.g. 503 queue full); ``data`` holds the outputs,
    the error event's payload, or the refusal's detail.
    """

    status: int
    event: str | None
    data: Any

    @property
    def message(self) -> str | None:
        """The error message shown to the caller (None for a completed call)."""
        if self.event == "complete":
            return None
        if isinstance(self.data, dict):
            return self.data.get("error", self.data.get("detail"))
        return self.data if isinstance(self.data, str) or self.data is None else json.dumps(self.data)


def call_api(url: str, api_name: str, inputs: list | None = None, *, body: bytes | None = None,
             session: str | None = None, timeout: float = 120) -> Answer:
    """Call ``/gradio_api/call/<api_name>`` with the standard library, as any script (or attacker) can.

    ``inputs`` are sent as JSON with ASCII escapes, so lone surrogates ("\\ud800") and NaN reach the server
    as they would from any JSON encoder; ``body`` sends raw bytes instead (invalid UTF-8, broken JSON).
    Each call is a new Gradio session unless ``session`` names one (as a browser tab or a gradio_client does).
    """
    request_body = {"data": inputs} if session is None else {"data": inputs, "session_hash": session}
    payload = body if body is not None else json.dumps(request_body).encode("ascii")
    request = urllib.request.Request(f"{url}gradio_api/call/{api_name}", data=payload, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            event_id = json.loads(response.read())["event_id"]
    except urllib.error.HTTPError as refused:
        detail: Any = refused.read().decode("utf-8", errors="replace")
        try:
            detail = json.loads(detail).get("detail", detail)
        except (ValueError, AttributeError):
            pass
        return Answer(refused.code, None, detail)
    deadline = time.monotonic() + timeout
    event = None
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=timeout) as stream:
        for raw_line in stream:  # server-sent events: "event: <kind>" then "data: <json>"
            line = raw_line.decode("utf-8").rstrip("\r\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event in ("complete", "error"):
                return Answer(200, event, json.loads(line[len("data: "):]))
            if time.monotonic() > deadline:
                break
    raise TimeoutError(f"/{api_name} gave no result within {timeout} s")


def fetch(url: str, timeout: float = 30) -> bytes:
    """The bytes at ``url`` (an output file the server offers)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()
