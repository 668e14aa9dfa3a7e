"""Fixtures for tests/generate: a small real codebase, and a real HTTP teacher server on 127.0.0.1.

The server speaks the OpenAI chat-completions protocol over a socket. Its "model" is a small
rule-based agent (grep for codebase questions, arithmetic for the rest), so traces have real tool
calls; its fault switches (500s, 429s, malformed JSON, 4xx, dropped connections, going down) drive
the client's retry and resume paths through the network stack, not through a mock of the client.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CODEBASE = {
    "pkg/__init__.py": "from pkg.base import Shape\n",
    "pkg/base.py": (
        "import abc\nfrom typing import Protocol\n\n\n"
        "class Shape(abc.ABC):\n    def area(self, scale, *, rounding=2):\n        raise NotImplementedError\n\n\n"
        "class Drawable(Protocol):\n    def draw(self, canvas):\n        ...\n\n\n"
        "def make_shape(kind, size=1, **options):\n    return None\n"
    ),
    "pkg/shapes.py": (
        "import math\nfrom pkg.base import Shape, Drawable\n\n\n"
        "class Circle(Shape):\n    def __init__(self, r):\n        self.r = r\n\n"
        "    def area(self, scale, *, rounding=2):\n        return round(math.pi * self.r ** 2 * scale, rounding)\n\n\n"
        "class Square(Shape, Drawable):\n    def draw(self, canvas):\n        canvas.append(self)\n\n\n"
        "def unit_circle():\n    return Circle(1)\n\n\ndef unit_square():\n    return Square()\n"
    ),
    "pkg/util/io.py": "import json\nimport os.path\n\n\ndef load(path, mode='r'):\n    with open(path, mode) as f:\n        return json.load(f)\n",
    "scripts/run.py": "import json\nimport sys\nfrom pkg.shapes import unit_circle\n\n\ndef main(argv):\n    print(json.dumps(unit_circle().area(1)))\n",
    "broken.py": "def oops(:\n",
}


@pytest.fixture()
def codebase(tmp_path) -> Path:
    root = tmp_path / "repo"
    for rel, text in CODEBASE.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    (root / "leak.txt").symlink_to(secret)  # a symlink pointing out of the repository
    (root / "outdir").symlink_to(tmp_path, target_is_directory=True)
    (root / "pkg" / "alias.py").symlink_to(root / "pkg" / "base.py")  # a symlink that stays inside
    return root


# -- the rule-based agent the server runs --------------------------------------------------------
def _policy(messages: list[dict]) -> dict:
    last = messages[-1]
    if last["role"] == "tool":
        out = last["content"]
        q = next(m["content"] for m in messages if m["role"] == "user")
        if q.startswith("How many top-level functions"):
            return {"content": f"There are {len(re.findall(r'^def ', out, flags=re.M))} top-level functions."}
        return {"content": "Here is what I found:\n" + out}
    q = last["content"]
    m = re.match(r"What is (-?\d+) (plus|minus|times) (-?\d+)\?", q)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return {"content": str({"plus": a + b, "minus": a - b, "times": a * b}[op])}
    for rx, tool, args in (
        (r"subclass (\w+)", "grep", lambda g: {"pattern": rf"^class \w+\(.*\b{g}\b"}),
        (r"import the module '(\w+)'", "grep", lambda g: {"pattern": rf"^\s*(import|from) {g}\b"}),
        (r"parameters of .* in (\S+)\?", "read_file", lambda g: {"path": g}),
        (r"class (\w+) defined", "grep", lambda g: {"pattern": rf"^class {g}\b"}),
        (r"functions are defined in (\S+)\?", "read_file", lambda g: {"path": g}),
        (r"directory '([^']+)'", "list_files", lambda g: {"path": g, "pattern": "*.py"}),
    ):
        m = re.search(rx, q)
        if m:
            call = {"name": tool, "arguments": args(m.group(1))}
            return {"content": f"<tool_call>{json.dumps(call)}</tool_call>"}
    return {"content": "I am not sure."}


class TeacherServer:
    """A threaded HTTP server on 127.0.0.1 with fault switches; start()/stop() can be repeated on one port."""

    def __init__(self):
        self.port = _free_port()
        self.lock = threading.Lock()
        self.requests = 0
        self.bodies: list[dict] = []
        self.fail_500 = 0  # answer the next N requests with 500
        self.fail_429 = 0
        self.malformed = 0  # answer the next N with broken JSON
        self.drop = 0  # close the next N connections without an answer
        self.status = None  # answer everything with this status (e.g. 400)
        self.delay_s = 0.0
        self.native_tool_calls = False  # answer with the tool_calls field instead of <tool_call> text
        self.die_after = None  # stop serving after this many good answers
        self.good = 0
        self.live = 0  # requests being answered right now
        self.max_live = 0
        self.httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, payload: bytes, headers=()):
                self._done()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                with server.lock:
                    server.live += 1
                    server.max_live = max(server.max_live, server.live)
                self._counted = True
                try:
                    self._post()
                finally:
                    self._done()

            def _done(self):
                # before the answer leaves: once the client has it, it may send the next request at once
                if getattr(self, "_counted", False):
                    self._counted = False
                    with server.lock:
                        server.live -= 1

            def _post(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    server.bodies.append(body)
                    fault = None
                    for name in ("drop", "fail_500", "fail_429", "malformed"):
                        if getattr(server, name) > 0:
                            setattr(server, name, getattr(server, name) - 1)
                            fault = name
                            break
                if server.delay_s:
                    time.sleep(server.delay_s)
                if fault == "drop":
                    self._done()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault == "fail_500":
                    return self._send(500, b'{"error": "overloaded"}')
                if fault == "fail_429":
                    return self._send(429, b'{"error": "slow down"}', [("Retry-After", "0.05")])
                if fault == "malformed":
                    return self._send(200, b'{"choices": [{"message": {"content": "trunc')
                if server.status:
                    return self._send(server.status, json.dumps({"error": {"message": "model 'nope' not found"}}).encode())
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "no such route"}')
                msg = _policy(body["messages"])
                if server.native_tool_calls and "<tool_call>" in msg["content"]:
                    call = json.loads(msg["content"][len("<tool_call>"):-len("</tool_call>")])
                    msg = {"content": None, "tool_calls": [{"id": "x", "type": "function", "function": {
                        "name": call["name"], "arguments": json.dumps(call["arguments"])}}]}
                choice = {"index": 0, "message": {"role": "assistant", **msg}, "finish_reason": "stop"}
                if body.get("logprobs"):
                    k = body.get("top_logprobs", 1)
                    choice["logprobs"] = {"content": [{"token": "x", "logprob": -0.1,
                                                       "top_logprobs": [{"token": "x", "logprob": -0.1}] * k}]}
                payload = {"id": "c", "object": "chat.completion", "choices": [choice],
                           "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
                self._send(200, json.dumps(payload).encode())
                with server.lock:
                    server.good += 1
                    if server.die_after is not None and server.good >= server.die_after:
                        threading.Thread(target=server.stop, daemon=True).start()

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that timed out and hung up is part of the tests, not an error

        self.httpd = Quiet(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self):
        if self.httpd is not None:
            h, self.httpd = self.httpd, None
            h.shutdown()
            h.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def teacher_server():
    srv = TeacherServer().start()
    yield srv
    srv.stop()
