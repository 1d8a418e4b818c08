"""A stand-in for the Hugging Face Hub on loopback, answering file downloads the way huggingface_hub expects.

What ``hf_hub_download`` (huggingface_hub 2.4) relies on, and what this server therefore sends:

* ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` with ``X-Repo-Commit`` (the 40-hex commit the
  revision points at) and an ``ETag``: the git blob SHA-1 for small files, the SHA-256 for large ("LFS")
  files, which also get ``X-Linked-Etag``/``X-Linked-Size`` and a 302 redirect to a second origin (the
  "CDN", another port) that serves their bytes. huggingface_hub does not follow a redirect to another
  origin on ``HEAD``; it takes the metadata from the redirect itself and downloads from ``Location``.
* Errors carry ``X-Error-Code`` with the Hub's status codes: ``RepoNotFound`` (401, what the Hub answers
  anonymous callers for missing and private repos), ``GatedRepo`` (401), ``RevisionNotFound`` (404) and
  ``EntryNotFound`` (404, with ``X-Repo-Commit``, which lets huggingface_hub remember the absence).

Tests register repos from folders; can make the Hub answer every request with one status
(``outage_status``, e.g. 503); can inject a fault into a file (``repo.faults[name]``: ``"truncate"`` sends
fewer bytes than announced, ``"corrupt"`` the announced size but other bytes; both keep the good file's
checksums in the headers); and read ``requests`` to see exactly what was asked for. Everything binds to
127.0.0.1 only; "the Hub is down" is simply ``stop()`` (or ``with hub.down():``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Files the real Hub stores through LFS (its default .gitattributes patterns that matter here).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".ckpt", ".h5", ".onnx", ".msgpack")


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a file's content: what the Hub sends as the ETag of a small file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(filename: str) -> bool:
    return filename.endswith(LFS_SUFFIXES)


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    commit: str
    revisions: set[str] = field(default_factory=lambda: {"main"})
    gated: bool = False
    faults: dict[str, str] = field(default_factory=dict)  # filename -> "truncate" | "corrupt"

    def etag(self, filename: str) -> str:
        data = self.files[filename]
        return hashlib.sha256(data).hexdigest() if is_lfs(filename) else git_blob_sha1(data)

    def served_bytes(self, filename: str) -> bytes:
        """The bytes a download gets: the file itself, unless a fault was injected into it."""
        data = self.files[filename]
        fault = self.faults.get(filename)
        if fault == "truncate":
            return data[: len(data) // 2]
        if fault == "corrupt":
            middle = len(data) // 2
            return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        return data


@dataclass(frozen=True)
class Request:
    server: str  # "hub" or "cdn"
    method: str
    repo_id: str | None  # None when the path named no repo file
    filename: str | None
    status: int


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        pass

    def _answer(self, send_body: bool) -> None:
        hub, role = self.server.hub, self.server.role
        target = hub.parse_resolve(self.path) if role == "hub" else hub.parse_cdn(self.path)
        if role == "hub":
            status, headers, body = hub.resolve_response(target, self.command)
        else:
            status, headers, body = hub.cdn_response(target, self.headers.get("Range"))
        repo_id, filename = (target[0], target[2]) if target else (None, None)
        hub.record(Request(role, self.command, repo_id, filename, status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        # One request per connection: a stopped server must not keep answering on a pooled keep-alive socket.
        self.send_header("Connection", "close")
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, hub: "FakeHub", role: str) -> None:
        self.hub = hub
        self.role = role
        super().__init__(("127.0.0.1", port), _Handler)


def _error(status: int, code: str, message: str, commit: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
    if commit:
        headers["X-Repo-Commit"] = commit
    return status, headers, b'{"error": "%s"}' % message.encode()


class FakeHub:
    """The Hub (``port``) and its file CDN (a free port), started and stopped together."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cdn_port = 0
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.outage_status: int | None = None  # e.g. 503: the Hub answers every request with it
        self._lock = threading.Lock()
        self._servers: list[tuple[_Server, threading.Thread]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeHub":
        if self._servers:
            return self
        for role, port in (("hub", self.port), ("cdn", self.cdn_port)):
            server = _Server(port, self, role)
            if role == "cdn":
                self.cdn_port = server.server_address[1]  # keep the same CDN port across restarts
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._servers.append((server, thread))
        return self

    def stop(self) -> None:
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self._servers = []

    @property
    def running(self) -> bool:
        return bool(self._servers)

    @contextmanager
    def down(self) -> Iterator[None]:
        """Nothing listening on the Hub's port (nor the CDN's) inside the block."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    # ------------------------------------------------------------------ repos
    def add_repo(
        self,
        repo_id: str,
        folder: Path | None = None,
        files: dict[str, bytes] | None = None,
        *,
        gated: bool = False,
        revisions: tuple[str, ...] = ("main",),
    ) -> Repo:
        """Serve a repo with the files of ``folder`` (top level only) and/or the given ``files``."""
        contents: dict[str, bytes] = {}
        if folder is not None:
            contents.update({p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()})
        contents.update(files or {})
        # A commit id that depends on the repo and its content, like a real one.
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(contents):
            digest.update(name.encode() + b"\0" + git_blob_sha1(contents[name]).encode())
        repo = Repo(repo_id, contents, digest.hexdigest(), set(revisions), gated)
        with self._lock:
            self.repos[repo_id] = repo
        return repo

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def requests_for(self, repo_id: str, filename: str | None = None, method: str | None = None) -> list[Request]:
        """What was asked of the Hub and the CDN about ``repo_id`` (and ``filename``, with ``method``)."""
        with self._lock:
            log = list(self.requests)
        return [
            r
            for r in log
            if r.repo_id == repo_id and filename in (None, r.filename) and method in (None, r.method)
        ]

    # ------------------------------------------------------------------ answers
    def parse_resolve(self, raw_path: str) -> tuple[str, str, str] | None:
        """``/{repo_id}/resolve/{revision}/{filename}`` -> (repo_id, revision, filename)."""
        path = urlsplit(raw_path).path
        if "/resolve/" not in path:
            return None
        repo_part, rest = path.split("/resolve/", 1)
        if "/" not in rest:
            return None
        revision, filename = rest.split("/", 1)  # the revision is quoted with safe="" so it holds no "/"
        return unquote(repo_part.lstrip("/")), unquote(revision), unquote(filename)

    def parse_cdn(self, raw_path: str) -> tuple[str, str, str] | None:
        """``/{repo_id}/{commit}/{filename}`` (the redirect target) -> (repo_id, commit, filename)."""
        parts = unquote(urlsplit(raw_path).path).lstrip("/").rsplit("/", 2)
        return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None

    def resolve_response(self, target: tuple[str, str, str] | None, method: str) -> tuple[int, dict[str, str], bytes]:
        if target is None:
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        if self.outage_status is not None:
            return self.outage_status, {"Content-Type": "text/plain"}, b"Service Unavailable"
        repo_id, revision, filename = target
        with self._lock:
            repo = self.repos.get(repo_id)
        if repo is None:
            return _error(401, "RepoNotFound", "Repository not found")
        if repo.gated:
            return _error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it.",
            )
        if revision not in repo.revisions and revision != repo.commit:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if filename not in repo.files:
            return _error(404, "EntryNotFound", "Entry not found", commit=repo.commit)
        data = repo.files[filename]
        etag = repo.etag(filename)
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if is_lfs(filename):
            # Like the Hub: a redirect to the storage origin, with the file's own checksum and size.
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(data))
            headers["Location"] = f"http://127.0.0.1:{self.cdn_port}/{repo_id}/{repo.commit}/{filename}"
            return 302, headers, b""
        headers["Content-Type"] = "application/octet-stream"
        if method == "HEAD":
            headers["Content-Length"] = str(len(data))  # HEAD announces the true size; a faulty GET sends other bytes
            return 200, headers, b""
        return 200, headers, repo.served_bytes(filename)

    def cdn_response(self, target: tuple[str, str, str] | None, range_header: str | None) -> tuple[int, dict[str, str], bytes]:
        if target is None:
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        repo_id, commit, filename = target
        with self._lock:
            repo = self.repos.get(repo_id)
        if repo is None or repo.commit != commit or filename not in repo.files:
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        body = repo.served_bytes(filename)
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{repo.etag(filename)}"'}
        if range_header and range_header.startswith("bytes=") and range_header[6:].endswith("-"):
            start = int(range_header[6:-1])
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            return 206, headers, body[start:]
        return 200, headers, body
