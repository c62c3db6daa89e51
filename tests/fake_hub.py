"""A loopback fake of the Hugging Face Hub for offline push/load tests.

Standard-library ``http.server`` on 127.0.0.1 with in-memory dataset repositories. It implements
only the routes ``huggingface_hub`` and ``datasets`` really call for ``hisyngen push`` and
``load_dataset("user/name")`` (with ``HF_HUB_DISABLE_XET=1``): each handled request is recorded
in :attr:`FakeHub.calls` as ``"METHOD route"``. Anything else is answered 404 and logged in
:attr:`FakeHub.unhandled` (and on stderr), so a client upgrade that starts calling something new
shows up as a failing test instead of being silently served.

Point clients at it with ``HF_ENDPOINT=hub.url``. Tokens map to users (:attr:`FakeHub.tokens`);
repositories belong to a user; writing needs the owner's token, reading a private repo too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Branch:
    commit: str
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)
    """Paths stored as LFS objects (the rest are regular git blobs)."""


@dataclass
class Repo:
    owner: str
    private: bool
    branches: dict[str, Branch]


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


RepoKey = tuple[str, str]  # (namespace, name)
_REPO = r"/(?P<ns>[\w.-]+)/(?P<name>[\w.-]+)"


class FakeHub:
    """In-memory Hub state and the route table; :meth:`start` serves it on a free loopback port."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = dict(tokens or {"hf_user_token": "user"})
        self.repos: dict[RepoKey, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._routes: list[tuple[str, re.Pattern, str, Callable]] = [
            ("POST", re.compile(r"/api/repos/create"), "POST /api/repos/create", self.create_repo),
            ("POST", re.compile(r"/api/validate-yaml"), "POST /api/validate-yaml", self.validate_yaml),
            ("GET", re.compile(r"/api/agent-harnesses"), "GET /api/agent-harnesses", self.agent_harnesses),
            ("GET", re.compile(rf"/api/datasets{_REPO}(?:/revision/(?P<rev>[^/]+))?"),
             "GET /api/datasets/{repo}[/revision/{rev}]", self.repo_info),
            ("POST", re.compile(rf"/api/datasets{_REPO}/branch/(?P<rev>[^/]+)"),
             "POST /api/datasets/{repo}/branch/{branch}", self.create_branch),
            ("POST", re.compile(rf"/api/datasets{_REPO}/preupload/(?P<rev>[^/]+)"),
             "POST /api/datasets/{repo}/preupload/{rev}", self.preupload),
            ("POST", re.compile(rf"/datasets{_REPO}\.git/info/lfs/objects/batch"),
             "POST /datasets/{repo}.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", re.compile(r"/_lfs/(?P<oid>[0-9a-f]{64})"), "PUT /_lfs/{oid} (upload href)", self.lfs_put),
            ("POST", re.compile(rf"/api/datasets{_REPO}/commit/(?P<rev>[^/]+)"),
             "POST /api/datasets/{repo}/commit/{rev}", self.commit),
            ("GET", re.compile(rf"/api/datasets{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"),
             "GET /api/datasets/{repo}/tree/{rev}[/{path}]", self.tree),
            ("HEAD", re.compile(rf"/datasets{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
             "HEAD /datasets/{repo}/resolve/{rev}/{path}", self.resolve),
            ("GET", re.compile(rf"/datasets{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
             "GET /datasets/{repo}/resolve/{rev}/{path}", self.resolve),
        ]

    # --- server -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                hub.handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read hub.calls instead
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        for method, pattern, name, handler in self._routes:
            match = pattern.fullmatch(parts.path)
            if method == request.command and match:
                self.calls.append(name)
                params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                try:
                    with self._lock:
                        status, headers, payload = handler(request, body, parse_qs(parts.query), **params)
                except HubError as exc:
                    status, headers, payload = exc.status, {}, {"error": str(exc)}
                self._reply(request, status, headers, payload)
                return
        line = f"{request.command} {request.path}"
        self.unhandled.append(line)
        print(f"fake hub: unhandled {line}", file=sys.stderr)
        self._reply(request, 404, {}, {"error": f"fake hub does not implement {line}"})

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: Any) -> None:
        if isinstance(payload, bytes):
            data, content_type = payload, "application/octet-stream"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        request.send_response(status)
        request.send_header("Content-Type", headers.pop("Content-Type", content_type))
        if status >= 400:
            request.send_header("X-Error-Message", str(payload.get("error", "")) if isinstance(payload, dict) else "")
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", headers.get("Content-Length", str(len(data))))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    # --- helpers ------------------------------------------------------------------------------

    def user(self, request: BaseHTTPRequestHandler) -> str | None:
        auth = request.headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ").strip()
        if token and token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens.get(token)

    def repo(self, request: BaseHTTPRequestHandler, ns: str, name: str, write: bool = False) -> Repo:
        repo = self.repos.get((ns, name))
        user = self.user(request)
        if repo is None or (repo.private and user != repo.owner):
            raise HubError(404, f"Repository Not Found for url: datasets/{ns}/{name}")
        if write and user != repo.owner:
            raise HubError(403, f"You don't have the rights to write to datasets/{ns}/{name}")
        return repo

    @staticmethod
    def branch(repo: Repo, rev: str) -> Branch:
        if rev in repo.branches:
            return repo.branches[rev]
        for branch in repo.branches.values():  # a commit sha resolves to the branch it heads
            if branch.commit == rev:
                return branch
        raise HubError(404, f"Revision Not Found: {rev}")

    def add_repo(self, repo_id: str, owner: str, private: bool = False) -> None:
        """Pre-populate a repository (e.g. someone else's, to test a taken name)."""
        ns, name = repo_id.split("/")
        self.repos[(ns, name)] = Repo(owner=owner, private=private, branches={"main": Branch(commit=self._sha("init", repo_id))})

    @staticmethod
    def _sha(*parts: str) -> str:
        return hashlib.sha1("\0".join(parts).encode()).hexdigest()

    def _entry(self, branch: Branch, path: str) -> dict[str, Any]:
        data = branch.files[path]
        entry: dict[str, Any] = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
        if path in branch.lfs:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    @staticmethod
    def _folders(branch: Branch) -> set[str]:
        return {"/".join(p.split("/")[:i]) for p in branch.files for i in range(1, p.count("/") + 1)}

    # --- routes -------------------------------------------------------------------------------

    def create_repo(self, request, body, query):
        user = self.user(request)
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        payload = json.loads(body)
        if payload.get("type") != "dataset":
            raise HubError(400, f"fake hub only hosts datasets, not {payload.get('type')!r}")
        ns, name = payload.get("organization") or user, payload["name"]
        if ns != user:
            raise HubError(403, f"You don't have the rights to create a dataset under the namespace {ns!r}")
        if (ns, name) in self.repos:  # the real Hub's 409 carries the url (create_repo(exist_ok=True) reads it)
            return 409, {}, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{ns}/{name}"}
        self.add_repo(f"{ns}/{name}", owner=user, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        return 200, {}, {"url": f"{self.url}/datasets/{ns}/{name}", "name": f"{ns}/{name}"}

    def validate_yaml(self, request, body, query):
        import yaml

        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else None
            problem = None if isinstance(metadata, dict) else "the card has no YAML metadata block"
        except yaml.YAMLError as exc:
            problem = f"invalid YAML: {exc}"
        if problem:
            return 400, {}, {"errors": [{"message": problem}], "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def agent_harnesses(self, request, body, query):
        # huggingface_hub's best-effort agent detection fetches this registry; empty = detect nothing.
        return 200, {}, {"standardEnvVars": [], "harnesses": {}}

    def repo_info(self, request, body, query, ns, name, rev="main"):
        repo = self.repo(request, ns, name)
        branch = self.branch(repo, rev)
        return 200, {}, {
            "_id": self._sha(ns, name), "id": f"{ns}/{name}", "author": repo.owner, "sha": branch.commit,
            "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
            "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in sorted(branch.files)],
        }

    def create_branch(self, request, body, query, ns, name, rev):
        repo = self.repo(request, ns, name, write=True)
        if rev in repo.branches:
            raise HubError(409, f"Reference {rev} already exists")
        start = repo.branches["main"]
        repo.branches[rev] = Branch(commit=start.commit, files=dict(start.files), lfs=set(start.lfs))
        return 200, {}, {}

    def preupload(self, request, body, query, ns, name, rev):
        repo = self.repo(request, ns, name, write=True)
        self.branch(repo, rev)
        files = json.loads(body)["files"]
        # The real Hub sends binary and large files through LFS: parquet shards take that path.
        modes = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".parquet") or f["size"] > 10_000_000
                  else "regular", "shouldIgnore": False} for f in files]
        return 200, {}, {"files": modes, "commitOid": self.branch(repo, rev).commit}

    def lfs_batch(self, request, body, query, ns, name):
        self.repo(request, ns, name, write=True)
        payload = json.loads(body)
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, f"fake hub supports basic LFS uploads only, got {payload}")
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs_objects:  # no actions = already stored
                entry["actions"] = {"upload": {"href": f"{self.url}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(entry)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, {"transfer": "basic", "objects": objects}

    def lfs_put(self, request, body, query, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        self.lfs_objects[oid] = body
        return 200, {}, {}

    def commit(self, request, body, query, ns, name, rev):
        repo = self.repo(request, ns, name, write=True)
        branch = self.branch(repo, rev)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        files, lfs = dict(branch.files), set(branch.lfs)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs.discard(value["path"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    raise HubError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = self.lfs_objects[value["oid"]]
                lfs.add(value["path"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:
                raise HubError(400, f"fake hub does not support commit operation {key!r}")
        sha = self._sha(branch.commit, *sorted(f"{p}:{git_blob_oid(d)}" for p, d in files.items()))
        branch.commit, branch.files, branch.lfs = sha, files, lfs
        return 200, {}, {"commitUrl": f"{self.url}/datasets/{ns}/{name}/commit/{sha}", "commitOid": sha,
                         "success": True}

    def tree(self, request, body, query, ns, name, rev, path=""):
        branch = self.branch(self.repo(request, ns, name), rev)
        path = path.strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = f"{path}/" if path else ""
        if path and path not in self._folders(branch):
            raise HubError(404, f"Entry Not Found: {path}")
        entries = []
        for folder in sorted(self._folders(branch)):
            rest = folder[len(prefix):]
            if folder.startswith(prefix) and rest and (recursive or "/" not in rest):
                entries.append({"type": "directory", "oid": self._sha(branch.commit, folder), "size": 0, "path": folder})
        for file in sorted(branch.files):
            rest = file[len(prefix):]
            if file.startswith(prefix) and (recursive or "/" not in rest):
                entries.append(self._entry(branch, file))
        return 200, {}, entries

    def resolve(self, request, body, query, ns, name, rev, path):
        repo = self.repo(request, ns, name)
        branch = self.branch(repo, rev)
        if path not in branch.files:
            raise HubError(404, f"Entry Not Found: {path}")
        data = branch.files[path]
        headers = {"X-Repo-Commit": branch.commit, "ETag": f'"{git_blob_oid(data)}"',
                   "Last-Modified": formatdate(usegmt=True), "Accept-Ranges": "bytes"}
        if path in branch.lfs:
            headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
            headers["X-Linked-Size"] = str(len(data))
        return 200, headers, data
