"""A local stand-in for the Hugging Face Hub API: the endpoints ``create_repo`` and ``create_commit`` /
``upload_folder`` call, on 127.0.0.1, storing what arrives on disk.

    with HubStandIn(tmp_path / "hub", token="hf_test") as hub:
        HfApi(endpoint=hub.url, token="hf_test").upload_folder(...)
        hub.files("me/model")            # {path_in_repo: bytes} of the last commit

Implemented (as huggingface_hub 2.x sends them; see its hf_api.py, _commit_api.py, lfs.py):
  POST /api/repos/create                               {name, organization, type} -> {url}; 409 (+url) when it exists
  POST /api/validate-yaml                              README front matter -> {errors: [], warnings: []}
  POST /api/models/NS/NAME/preupload/REV               {files: [{path, size, sample}]} -> uploadMode per file:
                                                       "lfs" for weights (LFS_SUFFIXES), "regular" otherwise,
                                                       and the oid of a file the repository already has
  POST /NS/NAME.git/info/lfs/objects/batch             git-lfs batch API, "basic" transfer: upload + verify hrefs
  PUT  /lfs/OID                                        the object's bytes (sha256 checked against OID)
  POST /lfs-verify                                     {oid, size} -> 200 when stored with that size
  POST /api/models/NS/NAME/commit/REV                  ndjson: header, file (base64), lfsFile (oid) -> {commitUrl, commitOid}
Every request must carry ``Authorization: Bearer TOKEN`` (401 otherwise); unknown routes answer 404 and are
recorded in ``unknown`` so a test can assert the client called nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")


class HubStandIn:
    def __init__(self, root: Path, token: str):
        self.root, self.token = Path(root), token
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "lfs").mkdir(exist_ok=True)
        self.repos: dict[str, dict] = {}  # repo_id -> {"commits": [...], "files": {path: sha256}}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str) -> dict[str, bytes]:
        """The repository's tree after its last commit: path -> bytes."""
        tree = self.repos[repo_id]["files"]
        return {p: (self.root / "lfs" / oid).read_bytes() for p, oid in tree.items()}

    def remote_oid(self, repo_id: str, path: str) -> str | None:
        """What the Hub reports for a file that exists: the sha256 of an LFS file, the git blob sha1 of a regular one."""
        sha256 = self.repos[repo_id]["files"].get(path)
        if sha256 is None:
            return None
        if path.endswith(LFS_SUFFIXES):
            return sha256
        data = (self.root / "lfs" / sha256).read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def _store(self, data: bytes) -> str:
        oid = hashlib.sha256(data).hexdigest()
        (self.root / "lfs" / oid).write_bytes(data)
        return oid

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # keep test output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, code: int, obj=None):
                data = json.dumps(obj if obj is not None else {}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {hub.token}":
                    return True
                self._send(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def do_PUT(self):
                body = self._body()
                hub.requests.append(("PUT", self.path))
                m = re.fullmatch(r"/lfs/([0-9a-f]{64})", self.path)
                if not m:
                    hub.unknown.append(("PUT", self.path))
                    return self._send(404, {"error": "not found"})
                if hashlib.sha256(body).hexdigest() != m.group(1):
                    return self._send(400, {"error": "sha256 mismatch"})
                hub._store(body)
                self._send(200)

            def do_POST(self):
                body = self._body()
                path = self.path.split("?")[0]
                hub.requests.append(("POST", path))
                if path == "/lfs-verify":  # LFS verify hrefs carry no Hub token in git-lfs, but HF sends it
                    req = json.loads(body)
                    f = hub.root / "lfs" / req["oid"]
                    return self._send(200 if f.exists() and f.stat().st_size == req["size"] else 404)
                if not self._authorised():
                    return
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    with hub.lock:
                        if repo_id in hub.repos:
                            return self._send(409, {"error": "You already created this model repo",
                                                    "url": f"{hub.url}/{repo_id}"})
                        hub.repos[repo_id] = {"commits": [], "files": {}, "type": req.get("type") or "model"}
                    return self._send(200, {"url": f"{hub.url}/{repo_id}"})
                if path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if m:
                    repo_id, what = m.group(1), m.group(2)
                    if repo_id not in hub.repos:
                        return self._send(404, {"error": "Repository not found"})
                    if what == "preupload":
                        files = json.loads(body)["files"]
                        return self._send(200, {"files": [
                            {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                             "shouldIgnore": False, "oid": hub.remote_oid(repo_id, f["path"])} for f in files]})
                    return self._commit(repo_id, body)
                m = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
                if m:
                    req = json.loads(body)
                    objs = []
                    for o in req["objects"]:
                        have = (hub.root / "lfs" / o["oid"]).exists()
                        objs.append({"oid": o["oid"], "size": o["size"], **({} if have else {"actions": {
                            "upload": {"href": f"{hub.url}/lfs/{o['oid']}"},
                            "verify": {"href": f"{hub.url}/lfs-verify"}}})})
                    return self._send(200, {"transfer": "basic", "objects": objs})
                hub.unknown.append(("POST", path))
                self._send(404, {"error": "not found"})

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                hub.unknown.append(("GET", self.path))
                self._send(404, {"error": "not found"})

            def _commit(self, repo_id: str, body: bytes):
                lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                if not lines or lines[0]["key"] != "header":
                    return self._send(400, {"error": "the first line must be the header"})
                tree = dict(hub.repos[repo_id]["files"])
                for item in lines[1:]:
                    v = item["value"]
                    if item["key"] == "file":
                        tree[v["path"]] = hub._store(base64.b64decode(v["content"]))
                    elif item["key"] == "lfsFile":
                        f = hub.root / "lfs" / v["oid"]
                        if not f.exists() or f.stat().st_size != v["size"]:
                            return self._send(400, {"error": f"LFS object {v['oid']} was not uploaded"})
                        tree[v["path"]] = v["oid"]
                    else:
                        return self._send(400, {"error": f"unsupported operation {item['key']}"})
                with hub.lock:
                    hub.repos[repo_id]["files"] = tree
                    oid = hashlib.sha1(json.dumps(sorted(tree.items())).encode()).hexdigest()
                    hub.repos[repo_id]["commits"].append({"oid": oid, "summary": lines[0]["value"]["summary"],
                                                          "ops": [i["key"] for i in lines[1:]]})
                self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid})

        return Handler
