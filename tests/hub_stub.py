"""A local stand-in for the few Hugging Face Hub endpoints that `huggingface_hub` 1.33 calls to publish.

Routes (read from huggingface_hub's own source, so the real client code runs unchanged):
- `POST /api/repos/create` (`HfApi.create_repo`; 409 when the repo exists, as on the Hub)
- `POST /api/validate-yaml` (`create_commit` without hf_xet validates README metadata first)
- `POST /api/{type}s/{repo}/preupload/{rev}` (every file answered "regular", so no LFS/Xet is needed)
- `POST /api/{type}s/{repo}/commit/{rev}` (NDJSON: a header line, then base64 `file` / `deletedFile` lines)
- `GET  /api/{type}s/{repo}[/revision/{rev}]` (repo info) and `/api/{type}s/{repo}/tree/{rev}[/{path}]`
- `HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}` (file download)

Everything received is kept in memory (`repos`, `requests`) for tests to assert on. `fail_next` injects
faults into the next requests matching a path or body substring: an HTTP status (500, 401, 429…) or a dropped connection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

DROP = "drop"
_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API = re.compile(
    r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
    r"(?:/(?P<op>preupload|commit|revision|tree)/(?P<rev>[^/]+)(?:/(?P<path>.*))?)?$"
)
_RESOLVE = re.compile(
    r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
)


def git_blob_sha(data: bytes) -> str:
    """The oid the Hub reports for a regular file (git's blob hash), so unchanged files are skipped."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    message: str
    description: str
    files: list[str]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool | None
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1].sha if self.commits else "0" * 40

    def text(self, path: str) -> str:
        return self.files[path].decode()


@dataclass
class Fault:
    action: str | int  # an HTTP status code, or DROP
    remaining: int
    matching: str | None  # only requests whose path or body contains this


class HubStub:
    """A threaded HTTP server on 127.0.0.1 (random port). Use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: set[str] = set()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HubStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for tests -----------------------------------------------------------------------------

    def fail_next(self, count: int, action: str | int = 500, *, matching: str | None = None) -> None:
        """The next `count` requests (whose path or body contains `matching`) answer `action` instead."""
        with self._lock:
            self._faults.append(Fault(action, count, matching))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def commits(self) -> list[Commit]:
        return [commit for repo in self.repos.values() for commit in repo.commits]

    def _take_fault(self, path: str, body: bytes) -> str | int | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (
                    fault.matching is None or fault.matching in path or fault.matching.encode() in body
                ):
                    fault.remaining -= 1
                    return fault.action
        return None

    # --- the Hub's behaviour -------------------------------------------------------------------

    def create_repo(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        repo_type = payload.get("type") or "model"
        repo_id = (
            f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        )
        url = f"{self.endpoint}/{_PREFIXES[repo_type]}{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return 409, {"error": "You already created this repo", "url": url}
            visibility = payload.get("visibility")
            private = None if visibility is None else visibility == "private"
            self.repos[(repo_type, repo_id)] = Repo(repo_id, repo_type, private)
        return 200, {"url": url, "name": repo_id}

    def commit(self, repo: Repo, body: bytes) -> dict[str, Any]:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        touched = []
        with self._lock:
            for line in lines:
                value = line["value"]
                if line["key"] == "file":
                    repo.files[value["path"]] = base64.b64decode(value["content"])
                    touched.append(value["path"])
                elif line["key"] == "deletedFile":
                    repo.files.pop(value["path"], None)
                    touched.append(value["path"])
                elif line["key"] != "header":
                    raise ValueError(f"the stub does not handle commit lines of kind {line['key']}")
            sha = hashlib.sha1(uuid.uuid4().bytes).hexdigest()
            repo.commits.append(Commit(sha, header["summary"], header.get("description", ""), touched))
        prefix = _PREFIXES[repo.repo_type]
        return {"commitUrl": f"{self.endpoint}/{prefix}{repo.repo_id}/commit/{sha}", "commitOid": sha}

    def info(self, repo: Repo) -> dict[str, Any]:
        return {
            "id": repo.repo_id,
            "private": bool(repo.private),
            "sha": repo.sha,
            "siblings": [{"rfilename": path} for path in sorted(repo.files)],
        }

    def tree(self, repo: Repo, under: str) -> list[dict[str, Any]]:
        prefix = f"{under.rstrip('/')}/" if under else ""
        return [
            {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}
            for path, data in sorted(repo.files.items())
            if path.startswith(prefix)
        ]


def _handler_for(stub: HubStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            return

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            stub.requests.append((method, path))
            if auth := self.headers.get("Authorization"):
                stub.authorizations.add(auth)
            fault = stub._take_fault(path, body)
            if fault == DROP:
                self.close_connection = True
                return
            if fault is not None:
                self._json(int(fault), {"error": f"injected {fault}"})
                return
            try:
                self._dispatch(method, path, body)
            except Exception as exc:  # a bug in the stub shows up as a 500 with the reason
                self._json(500, {"error": f"stub error: {exc!r}"})

        def _dispatch(self, method: str, path: str, body: bytes) -> None:
            if method == "POST" and path == "/api/repos/create":
                self._json(*stub.create_repo(json.loads(body)))
            elif method == "POST" and path == "/api/validate-yaml":
                self._json(200, {"errors": [], "warnings": []})
            elif match := _API.match(path):
                self._api(method, match, body)
            elif match := _RESOLVE.match(path):
                self._resolve(method, match)
            else:
                self._json(404, {"error": f"stub: no route for {method} {path}"})

        def _find(self, type_plural: str | None, repo_id: str) -> Repo | None:
            repo = stub.repos.get(((type_plural or "models")[:-1], repo_id))
            if repo is None:
                self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return repo

        def _api(self, method: str, match: re.Match[str], body: bytes) -> None:
            repo = self._find(match["type"], match["repo"])
            if repo is None:
                return
            op = match["op"]
            if method == "POST" and op == "preupload":
                files = json.loads(body)["files"]
                answer = [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_blob_sha(repo.files[f["path"]]) if f["path"] in repo.files else None,
                    }
                    for f in files
                ]
                self._json(200, {"files": answer, "commitOid": repo.sha})
            elif method == "POST" and op == "commit":
                self._json(200, stub.commit(repo, body))
            elif method == "GET" and op in (None, "revision"):
                self._json(200, stub.info(repo))
            elif method == "GET" and op == "tree":
                self._json(200, stub.tree(repo, match["path"] or ""))
            else:
                self._json(404, {"error": f"stub: no route for {method} {match.string}"})

        def _resolve(self, method: str, match: re.Match[str]) -> None:
            repo = self._find(match["type"], match["repo"])
            if repo is None:
                return
            data = repo.files.get(match["path"])
            if data is None:
                self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                return
            headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{git_blob_sha(data)}"'}
            self._send(200, data, "application/octet-stream", headers, head=method == "HEAD")

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", headers or {})

        def _send(
            self, status: int, data: bytes, content_type: str, headers: dict[str, str], head: bool = False
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(data)

    return Handler
