"""`downsize generate` as a user runs it: exit codes, bad-line report, resume, 4xx message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from downsize.generate.writer import read_jsonl

EXE = [sys.executable, "-m", "downsize.cli"]


def _run(*args):
    return subprocess.run([*EXE, "generate", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # over 15 s; resume and faults are tested through the API in test_run.py, errors in tests/reliability
def test_generate_cli_resume_and_errors(teacher_server, codebase, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "What is 5 plus 5?", "expected": "10", "needs_tools": false}\n[broken\n')
    out = tmp_path / "o.jsonl"
    args = ["--teacher", f"openai:{teacher_server.url}#t", "--out", str(out), "--codebase", str(codebase),
            "--prompts", str(prompts), "--n-codebase", "6", "--n-negative", "2", "--json"]
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    assert "p.jsonl line 2: not valid JSON" in r.stderr
    s = json.loads(r.stdout)
    assert s["tasks"] == 9 and s["written"] + s["rejected"] == 9
    r2 = _run(*args)
    assert json.loads(r2.stdout)["skipped_done"] == 9 and len(read_jsonl(out)) == s["written"]

    teacher_server.status = 404
    r3 = _run(*args[:3], str(tmp_path / "x.jsonl"), *args[4:])
    assert r3.returncode == 2 and "HTTP 404" in r3.stderr and "model name" in r3.stderr

    teacher_server.stop()  # nobody listens any more: stop early, exit 1, say how to resume
    r4 = _run(*args[:3], str(tmp_path / "y.jsonl"), *args[4:], "--retries", "1")
    assert r4.returncode == 2 and "stopped early" in r4.stderr and "rerun the same command" in r4.stderr
    assert not Path(tmp_path / "y.jsonl").read_text()
