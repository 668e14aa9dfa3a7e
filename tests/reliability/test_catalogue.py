"""Every case of the reliability catalogue (tests/reliability/catalogue.py): exit code 2, a message that names
the problem, no traceback, nothing that existed changed.

    python -m pytest -q tests/reliability/test_catalogue.py
"""

from __future__ import annotations

import re

import pytest

from catalogue import BAD_MODELS, CASES, build_env, run_case, verdict

_RESULTS: dict[str, tuple[str, object]] = {}  # case id -> (its folder, result): reused by the message comparison


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("reliability_env"))


def test_catalogue_covers_every_command():
    import typer.main

    from downsize.cli import app

    def names(group, prefix=""):
        out = []
        for name, cmd in group.commands.items():
            out += names(cmd, f"{prefix}{name} ") if hasattr(cmd, "commands") else [f"{prefix}{name}"]
        return out

    commands = set(names(typer.main.get_command(app)))
    covered = {c.command for c in CASES}
    assert commands <= covered, f"commands without a case: {sorted(commands - covered)}"
    assert len(CASES) >= 120


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, env, tmp_path):
    r = run_case(case, env, tmp_path / "w")
    _RESULTS[case.id] = (str(tmp_path / "w"), r)
    ok, why = verdict(case, r)
    assert ok, f"{case.id}: {why}\n--- output ---\n{r.output[-3000:]}"


def _error_line(case_id: str, env, tmp_path) -> str:
    if case_id not in _RESULTS:
        case = next(c for c in CASES if c.id == case_id)
        _RESULTS[case_id] = (str(tmp_path / case_id), run_case(case, env, tmp_path / case_id))
    folder, r = _RESULTS[case_id]
    line = next((x for x in r.output.splitlines() if x.startswith("error:")), "")
    return re.sub(r"\S*" + re.escape(folder) + r"\S*", "<model>", line)


@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_the_same_bad_file_gets_the_same_message_from_every_command(kind, env, tmp_path):
    """One checked loader: eval, prune, distill and export say the same about the same damaged folder (export
    never unpickles, so for a pickle it says that it reads safetensors only)."""
    commands = ["eval", "prune", "distill"] + ([] if kind == "pickle" else ["export-gguf"])
    lines = {c: _error_line(f"{c}-{kind}", env, tmp_path) for c in commands}
    assert len(set(lines.values())) == 1 and lines["eval"], lines
