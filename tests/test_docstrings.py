"""Module docstrings' examples run, so a documented example cannot rot.

For every module of ``src/downsize`` whose docstring holds ``>>>`` examples, the examples run with
doctest (ELLIPSIS | NORMALIZE_WHITESPACE) in the module's own globals, in a fresh temporary folder.
``$ downsize ...`` shell lines are not run (they train or serve); each is parsed against the CLI
itself, so a command that does not exist or a misspelt option fails here.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
import os
import shlex
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "downsize"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
BUDGET_S = 120  # all modules' examples together, one thread (measured 78-95 s)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""


def shell_lines(doc: str) -> list[str]:
    """The ``$ downsize ...`` commands of a docstring, with backslash continuations joined."""
    out, cur = [], None
    for raw in doc.splitlines():
        line = raw.strip()
        if cur is not None:
            cur += " " + line
        elif line.startswith("$ "):
            cur = line[2:]
        else:
            continue
        if cur.endswith("\\"):
            cur = cur[:-1]
            continue
        out.append(cur)
        cur = None
    return [c for c in out if "downsize" in shlex.split(c)[:3]]


def _has_examples(doc: str) -> bool:
    return ">>>" in doc or bool(shell_lines(doc))


MODULES = {
    _module_name(p): p for p in sorted(SRC.rglob("*.py")) if _has_examples(_docstring(p))
}
RUN = sorted(MODULES)  # every module with examples: none is exempt


def check_cli_line(line: str) -> None:
    """Parse one ``downsize ...`` command line against the CLI, without running it; raise if it cannot parse."""
    import typer

    from downsize.cli import app

    args = shlex.split(line)
    while args and "=" in args[0] and not args[0].startswith("-"):  # ENV=value prefixes
        args.pop(0)
    assert args and args[0] == "downsize", line
    cmd = typer.main.get_command(app)
    try:  # full parsing (types, choices, unknown options), as click does before invoking; nothing is invoked
        ctx = cmd.make_context("downsize", args[1:])
        while hasattr(cmd, "resolve_command"):  # a group (typer ships its own click, so no isinstance)
            rest = [*ctx._protected_args, *ctx.args]
            if not rest:
                break
            name, cmd, rest = cmd.resolve_command(ctx, rest)
            ctx = cmd.make_context(name, rest, parent=ctx)
    except typer.Exit as e:  # --help / --version stop parsing with status 0
        assert e.exit_code == 0, line


def test_the_cli_check_catches_mistakes():
    # typer ships its own click; TyperException is the base of its UsageError / NoSuchOption
    from typer import TyperException

    check_cli_line("downsize zoo list")
    check_cli_line("HF_TOKEN=x downsize prune zoo:coder-teacher-qwen --method width --out p")
    for bad in ("downsize zoo lisst", "downsize prune m --methd width", "downsize nosuchcommand",
                "downsize export ollama m --name x"):  # the last lacks the required --out
        with pytest.raises(TyperException):
            check_cli_line(bad)


def _model_stores(tmp: Path, monkeypatch) -> None:
    """For models.refs: an offline Hub cache holding the names its examples resolve (the zoo's Qwen model as
    Qwen/Qwen2.5-0.5B-Instruct at a pinned commit, a config-only Qwen/Qwen2.5-32B-Instruct), and an Ollama store
    holding qwen2.5-coder:7b."""
    import json

    from hub_cache import add_hub_repo, add_model_dir, add_ollama_model

    from downsize.zoo import zoo_path

    hub = tmp / "hf" / "hub"
    add_model_dir(hub, "Qwen/Qwen2.5-0.5B-Instruct", zoo_path("coder-teacher-qwen"),
                  commit="7ae557604adf67be50417f59c2c2f167def9a775")
    cfg = {**json.loads((zoo_path("coder-teacher-qwen") / "config.json").read_text()), "num_hidden_layers": 64}
    add_hub_repo(hub, "Qwen/Qwen2.5-32B-Instruct", {"config.json": json.dumps(cfg).encode()})
    add_ollama_model(tmp / "ollama", "library/qwen2.5-coder", "7b")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp / "ollama"))


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _teacher_server(tmp: Path, monkeypatch, request) -> dict:
    """For the server examples: the zoo's Qwen model exported to GGUF F32 behind a real llama.cpp server
    (llama-cpp-python's) as ``teacher`` on 127.0.0.1:8080, or on a free port when 8080 is taken (the examples'
    URL is then rewritten to it)."""
    pytest.importorskip("llama_cpp")
    from generate.llamacpp import LlamaServer, free_port

    from downsize.export.gguf import export_gguf

    gguf = tmp / "teacher-f32.gguf"
    export_gguf("zoo:coder-teacher-qwen", gguf, quant="F32")
    port = 8080 if _port_free(8080) else free_port()
    srv = LlamaServer(gguf, port=port, n_ctx=512, log=tmp / "server.log").start()
    request.addfinalizer(srv.stop)
    return {"127.0.0.1:8080": f"127.0.0.1:{port}"}


def _server_and_student(tmp: Path, monkeypatch, request) -> dict:
    """For distill.onpolicy: the teacher server, and runs/pruned, a 1-layer random-init student of the same
    tokenizer (what `downsize prune` would have left there)."""
    import torch
    from transformers import AutoModelForCausalLM

    from downsize.distill.save import save_model
    from downsize.distill.student import derive_config
    from downsize.models.refs import load_model

    rewrite = _teacher_server(tmp, monkeypatch, request)
    teacher, tok = load_model("zoo:coder-teacher-qwen")
    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_config(derive_config(teacher.config, {"num_hidden_layers": 1}),
                                               dtype=torch.float32)
    save_model(student, tok, tmp / "runs" / "pruned", {"name": "pruned", "stage": "test"}, "float32")
    return rewrite


# What a module's examples need around them, made in its temporary folder:
# name -> setup(tmp_path, monkeypatch, request), which may return {text: replacement} for the examples.
SETUP = {
    "downsize.models.refs": lambda tmp, monkeypatch, request: _model_stores(tmp, monkeypatch),
    "downsize.distill.onpolicy": _server_and_student,
    "downsize.generate.backends": _teacher_server,
}

# Modules whose examples render with Go's text/template (export.gocheck builds gorender with the go on PATH).
NEEDS_GO = {"downsize.export.gocheck", "downsize.export.jinja2go", "downsize.export.template", "downsize.export.ollama"}

_elapsed: dict[str, float] = {}


@pytest.mark.parametrize("name", RUN)
def test_module_docstring_examples(name, tmp_path, monkeypatch, request):
    doc = _docstring(MODULES[name])
    for line in shell_lines(doc):
        check_cli_line(line)
    if ">>>" not in doc:
        return
    module = importlib.import_module(name)
    if name in NEEDS_GO:
        from downsize.export.gocheck import go_available

        if not go_available():
            pytest.skip("go is not on PATH")
    monkeypatch.chdir(tmp_path)
    if name in SETUP:
        for text, replacement in (SETUP[name](tmp_path, monkeypatch, request) or {}).items():
            doc = doc.replace(text, replacement)
    test = doctest.DocTestParser().get_doctest(doc, dict(vars(module)), name, str(MODULES[name]), 0)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    environ = dict(os.environ)  # some examples set process-wide variables (console.quiet_third_party)
    t0 = time.perf_counter()
    try:
        result = runner.run(test, out=report.write, clear_globs=True)
    finally:
        _elapsed[name] = time.perf_counter() - t0
        os.environ.clear()
        os.environ.update(environ)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed\n{report.getvalue()}"


def test_docstring_examples_are_fast():
    if len(_elapsed) < len([n for n in RUN if ">>>" in _docstring(MODULES[n])]):
        pytest.skip("run together with test_module_docstring_examples")
    slowest = sorted(_elapsed.items(), key=lambda kv: -kv[1])[:5]
    assert sum(_elapsed.values()) < BUDGET_S * max(1.0, os.getloadavg()[0] / 2), slowest
