"""A Hub-protocol HTTP server on 127.0.0.1 for download tests: the endpoints huggingface_hub's
snapshot_download calls (repo info, recursive tree, resolve HEAD/GET with X-Repo-Commit/ETag), serving files
from memory; it records every request path and Authorization header so tests see what was fetched and sent.

    with HubServer({"Org/Name": {"config.json": b"{}"}}, gated={"Org/Gated"}) as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class HubServer:
    def __init__(self, repos: dict[str, dict[str, bytes]], gated: set[str] = frozenset()):
        self.repos = repos
        self.gated = set(gated)
        self.sha = {r: hashlib.sha1(json.dumps(sorted(f)).encode() + r.encode()).hexdigest() for r, f in repos.items()}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _send(self, code, payload: bytes, headers: dict | None = None, body=True):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def _serve(self, body: bool):
                path = unquote(urlparse(self.path).path)
                server.requests.append((self.command, path, self.headers.get("Authorization")))
                parts = path.strip("/").split("/")
                api = parts[0] == "api" and parts[1] == "models"
                repo = "/".join(parts[2:4] if api else parts[0:2])
                if repo in server.gated:
                    return self._send(403, b'{"error": "gated"}', {"X-Error-Code": "GatedRepo"}, body)
                if repo not in server.repos:
                    return self._send(401, b'{"error": "not found"}', {"X-Error-Code": "RepoNotFound"}, body)
                files, sha = server.repos[repo], server.sha[repo]
                if api and parts[4] == "revision":
                    info = {"id": repo, "sha": sha, "siblings": [{"rfilename": f} for f in files]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
                if api and parts[4] == "tree":
                    tree = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                            for f, d in files.items()]
                    return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
                if not api and parts[2] == "resolve":
                    name = "/".join(parts[4:])
                    if name not in files:
                        return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"}, body)
                    data = files[name]
                    return self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'},
                                      body)
                return self._send(404, b"{}", None, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def fetched(self, repo: str) -> set[str]:
        """Files of ``repo`` whose content was downloaded (GET on resolve)."""
        pre = f"/{repo}/resolve/"
        return {p[len(pre):].split("/", 1)[1] for m, p, _ in self.requests if m == "GET" and p.startswith(pre)}
