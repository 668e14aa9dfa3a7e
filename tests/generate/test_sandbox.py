"""The tool sandbox: confinement (.., absolute, symlinks out), limits, and model-facing errors."""

from __future__ import annotations

import json

import pytest

from downsize.errors import DownsizeError
from downsize.generate.sandbox import Sandbox, SandboxLimits

from .conftest import CODEBASE


def test_read_and_list_inside_root(codebase):
    box = Sandbox(codebase)
    assert box.call("read_file", {"path": "pkg/base.py"}).startswith("import abc")
    assert box.call("read_file", json.dumps({"path": "pkg/alias.py"})).startswith("import abc")  # symlink inside: fine
    listing = box.call("list_files", {"path": "pkg", "pattern": "*.py"}).splitlines()
    assert listing == ["pkg/__init__.py", "pkg/alias.py", "pkg/base.py", "pkg/shapes.py", "pkg/util/io.py"]
    everything = box.call("list_files", {})
    assert "leak.txt" not in everything and "secret" not in everything and "outdir" not in everything


@pytest.mark.parametrize("path, why", [
    ("../secret.txt", "'..' is not allowed"),
    ("pkg/../../secret.txt", "'..' is not allowed"),
    ("/etc/passwd", "absolute paths are not allowed"),
    ("leak.txt", "leads outside the repository"),
    ("outdir/secret.txt", "leads outside the repository"),
    ("nope.py", "no such file"),
])
def test_escape_attempts_are_refused(codebase, path, why):
    box = Sandbox(codebase)
    for tool, args in (("read_file", {"path": path}), ("grep", {"pattern": "SECRET", "path": path}),
                       ("list_files", {"path": path})):
        out = box.call(tool, args)
        assert out.startswith("error:") and why in out, (tool, out)
        assert "TOP SECRET" not in out


def test_grep_reports_path_and_line_and_never_follows_links_out(codebase):
    box = Sandbox(codebase)
    out = box.call("grep", {"pattern": r"^class \w+\(.*\bShape\b"})
    lines = CODEBASE["pkg/shapes.py"].splitlines()  # independent reference: where the text really is
    want = [f"pkg/shapes.py:{lines.index(s) + 1}: {s}" for s in ("class Circle(Shape):", "class Square(Shape, Drawable):")]
    assert out.splitlines() == want
    assert box.call("grep", {"pattern": "TOP SECRET"}) == "(no matches)"


def test_model_errors_come_back_as_text(codebase):
    box = Sandbox(codebase)
    assert box.call("shell", {"cmd": "ls"}).startswith("error: unknown tool 'shell'")
    assert "not valid JSON" in box.call("read_file", '{"path": ')
    assert "bad arguments" in box.call("read_file", {"file": "x"})
    assert "bad regular expression" in box.call("grep", {"pattern": "("})
    assert "is a directory" in box.call("read_file", {"path": "pkg"})
    (codebase / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    assert "binary" in box.call("read_file", {"path": "blob.bin"})


def test_output_and_time_limits(codebase):
    (codebase / "big.py").write_text("x = 1\n" * 5000)
    box = Sandbox(codebase, SandboxLimits(max_output=300))
    out = box.call("read_file", {"path": "big.py"})
    assert len(out) < 400 and "[truncated:" in out
    out = box.call("grep", {"pattern": "x = 1"})
    assert "[truncated:" in out and len(out) < 400
    for i in range(50):
        (codebase / f"n{i:02d}.py").write_text("needle = 1\n")
    assert Sandbox(codebase).call("grep", {"pattern": "needle"}).count("needle") == 50
    out = Sandbox(codebase, SandboxLimits(max_seconds=0.0)).call("grep", {"pattern": "needle"})
    assert out.endswith("[stopped after 0 s]") and out.count("needle") < 50
    assert "longer than" in box.call("grep", {"pattern": "a" * 500})


def test_root_must_exist(tmp_path):
    with pytest.raises(DownsizeError, match="not a directory"):
        Sandbox(tmp_path / "missing")
