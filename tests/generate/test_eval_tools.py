"""eval-tools: metrics from the agent loop, a task suite from the code, the side-by-side CLI table."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from downsize.cli import app
from downsize.eval.tools import eval_tools, make_task_suite
from downsize.generate.writer import read_jsonl


def test_metrics_against_a_rule_based_teacher(teacher_server, codebase, tmp_path):
    suite = tmp_path / "tasks.jsonl"
    assert make_task_suite(codebase, suite, n=12, n_negative=6) == 18
    tasks = read_jsonl(suite)
    n_gk = sum(t["template"] == "general_knowledge" for t in tasks)
    res = eval_tools(f"openai:{teacher_server.url}#t", suite, codebase)
    assert res["tasks"] == 18 and res["tool_use_pct"] == 100.0 and res["no_tool_on_negative_pct"] == 100.0
    # it answers every codebase and arithmetic question right and no general-knowledge one
    assert res["accuracy_pct"] == round(100 * (18 - n_gk) / 18, 1)
    assert res["peak_rss_mb"] is None and res["median_s"] > 0


def test_suite_excludes_training_ids(codebase, tmp_path):
    a = tmp_path / "a.jsonl"
    make_task_suite(codebase, a, n=8, n_negative=2)
    b = tmp_path / "b.jsonl"
    make_task_suite(codebase, b, n=8, n_negative=2, exclude=a)
    assert not {r["id"] for r in read_jsonl(a)} & {r["id"] for r in read_jsonl(b)}


def test_cli_table_teacher_and_local_student(teacher_server, codebase, tmp_path, tiny_model_dir):
    suite = tmp_path / "tasks.jsonl"
    r = CliRunner().invoke(app, ["eval-tools", "--model", f"openai:{teacher_server.url}#t", "--model", str(tiny_model_dir),
                                 "--tasks", str(suite), "--codebase", str(codebase), "--make-tasks", "4",
                                 "--max-tokens", "8", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output[r.output.index("["):])
    assert [x["model"] for x in rows] == [f"openai:{teacher_server.url}#t", str(tiny_model_dir)]
    teacher, student = rows
    assert teacher["tool_use_pct"] == 100.0 and student["tool_use_pct"] == 0.0  # a random tiny model calls no tools
    assert student["peak_rss_mb"] > 100 and teacher["peak_rss_mb"] is None
