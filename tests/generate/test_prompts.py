"""Codebase facts, template questions with computed answers, negatives, prompt files, dedup, seeds."""

from __future__ import annotations

import json
import re

import pytest

from downsize.errors import DownsizeError
from downsize.generate.codebase import scan_codebase
from downsize.generate.prompts import (KIND_NEGATIVE, TEMPLATES, codebase_tasks, dedup, load_prompt_file,
                                       make_task, negative_tasks)
from downsize.generate.sandbox import Sandbox


def test_scan_finds_classes_functions_imports(codebase):
    f = scan_codebase(codebase)
    assert f.unparsable == ["broken.py"]
    assert "pkg/alias.py" not in f.files  # symlinks are not read twice
    assert f.subclasses["Shape"] == ["Circle", "Square"]
    assert f.subclasses["ABC"] == ["Shape"] and f.subclasses["Protocol"] == ["Drawable"]
    params = {(fn.cls, fn.name): fn.params for fn in f.functions}
    assert params[(None, "make_shape")] == ("kind", "size", "options")
    assert params[("Shape", "area")] == ("scale", "rounding")
    assert params[(None, "load")] == ("path", "mode")
    assert f.imports["json"] == ["pkg/util/io.py", "scripts/run.py"]
    assert f.imports["os"] == ["pkg/util/io.py"]
    assert f.top_level_functions("pkg/shapes.py") == ["unit_circle", "unit_square"]


def test_ground_truth_agrees_with_an_independent_search(codebase):
    """Answers from ast must match what grep over the same files finds."""
    f = scan_codebase(codebase)
    box = Sandbox(codebase)
    for mod, files in f.imports.items():
        out = box.call("grep", {"pattern": rf"^\s*(import|from) {mod}\b"})
        found = sorted({line.split(":")[0] for line in out.splitlines() if ":" in line} - {"pkg/alias.py", "broken.py"})
        assert found == files, mod
    for base, subs in f.subclasses.items():
        out = box.call("grep", {"pattern": rf"^class \w+\(.*\b{base}\b"})
        assert sorted({re.search(r"class (\w+)", l).group(1) for l in out.splitlines() if "class" in l}) == subs


def test_codebase_tasks_are_seeded_distinct_and_cover_templates(codebase):
    f = scan_codebase(codebase)
    a, b, c = codebase_tasks(f, 20, seed=0), codebase_tasks(f, 20, seed=0), codebase_tasks(f, 20, seed=1)
    assert [t.id for t in a] == [t.id for t in b]
    assert [t.id for t in a] != [t.id for t in c]
    assert len({t.id for t in a}) == len(a) == 20
    assert {t.template for t in a} == set(TEMPLATES)
    assert all(t.needs_tools and t.expected for t in a)
    q = {t.prompt: t.expected for t in codebase_tasks(f, 1000)}
    assert q["Which classes in this codebase subclass Shape?"] == ("Circle", "Square")
    assert q["How many top-level functions are defined in pkg/shapes.py?"] == ("2",)
    assert q["In which file is the class Drawable defined?"] == ("pkg/base.py",)
    with pytest.raises(DownsizeError, match="available"):
        codebase_tasks(f, 5, templates=["nope"])


def test_negatives_have_correct_answers_and_need_no_tools():
    tasks = negative_tasks(60, seed=3)
    assert len(tasks) == 60 and len({t.id for t in tasks}) == 60
    assert all(t.kind == KIND_NEGATIVE and t.needs_tools is False for t in tasks)
    n_arith = 0
    for t in tasks:
        m = re.match(r"What is (\d+) (plus|minus|times) (\d+)\?", t.prompt)
        if m:
            n_arith += 1
            a, b = int(m.group(1)), int(m.group(3))
            assert t.expected == (str({"plus": a + b, "minus": a - b, "times": a * b}[m.group(2)]),)
    assert 0 < n_arith < 60
    assert [t.id for t in negative_tasks(10, seed=3)] == [t.id for t in negative_tasks(10, seed=3)]


def test_prompt_file_bad_lines_reported_with_numbers(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text("\n".join([
        json.dumps({"prompt": "What is 2 plus 2?", "expected": "4", "needs_tools": False}),
        '{"prompt": "unterminated',
        json.dumps({"messages": [{"role": "user", "content": "hi"}], "id": "custom-1"}),
        json.dumps({"nothing": 1}),
        "",
        json.dumps(["not", "an", "object"]),
        json.dumps({"prompt": "ok", "needs_tools": "yes"}),
        json.dumps({"prompt": "Find Protocol classes", "needs_tools": True}),
    ]) + "\n")
    tasks, problems = load_prompt_file(p)
    assert [t.prompt for t in tasks] == ["What is 2 plus 2?", "hi", "Find Protocol classes"]
    assert tasks[1].id == "custom-1" and tasks[0].expected == ("4",) and tasks[0].needs_tools is False
    assert [pr.split(":")[0] for pr in problems] == ["prompts.jsonl line 2", "prompts.jsonl line 4",
                                                     "prompts.jsonl line 6", "prompts.jsonl line 7"]
    assert "not valid JSON" in problems[0] and "needs_tools" in problems[3]
    txt = tmp_path / "prompts.txt"
    txt.write_text("first prompt\n\nsecond prompt\n")
    assert [t.prompt for t in load_prompt_file(txt)[0]] == ["first prompt", "second prompt"]


def test_dedup_by_id_and_normalised_text():
    ts = [make_task("What is 2 plus 2?"), make_task("what is  2 plus 2?"), make_task("What is 2 plus 2?", id="x"),
          make_task("Other"), make_task("Other")]
    assert [t.prompt for t in dedup(ts)] == ["What is 2 plus 2?", "Other"]
    assert make_task("a").id == make_task("a").id != make_task("b").id
