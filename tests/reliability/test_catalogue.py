"""Every case of the reliability catalogue (tests/reliability/catalogue.py): exit code 2, a message that names
the problem, no traceback, nothing that existed changed.

    python -m pytest -q tests/reliability/test_catalogue.py
"""

from __future__ import annotations

import pytest

from catalogue import CASES, build_env, run_case, verdict


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
    ok, why = verdict(case, r)
    assert ok, f"{case.id}: {why}\n--- output ---\n{r.output[-3000:]}"
