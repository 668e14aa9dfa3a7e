"""The generation stage end to end against a real HTTP teacher: traces, validators, resume, faults."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from downsize.generate import GenerateConfig, GenParams, generate
from downsize.generate.backends import FatalBackendError
from downsize.generate.run import rejected_path
from downsize.generate.writer import read_jsonl

FAST = GenParams(max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5)


def _cfg(srv, tmp_path, codebase, **kw):
    base = dict(teacher=f"openai:{srv.url}#t", out=str(tmp_path / "out" / "traces.jsonl"),
                codebase=str(codebase) if codebase else None,
                n_codebase=24, n_negative=8, in_flight=4, params=FAST)
    return GenerateConfig(**{**base, **kw})


def _all(cfg):
    good = read_jsonl(cfg.out)
    bad = read_jsonl(rejected_path(cfg.out))
    return good, bad


def test_traces_are_chat_jsonl_with_tool_calls_and_validated(teacher_server, tmp_path, codebase):
    cfg = _cfg(teacher_server, tmp_path, codebase)
    s = generate(cfg)
    good, bad = _all(cfg)
    assert s["tasks"] == 32 and s["written"] == len(good) and s["rejected"] == len(bad) and len(good) + len(bad) == 32
    # the rule-based teacher answers every template and every arithmetic question right, and never the
    # general-knowledge ones ("I am not sure."), so the validators must sort exactly along that line
    kinds = Counter(r["task"]["template"] for r in bad)
    assert set(kinds) <= {"general_knowledge"} and all(r["rejections"] == ["wrong_answer: " + r["rejections"][0].split(": ", 1)[1]] for r in bad)
    tool_traces = [r for r in good if r["task"]["needs_tools"]]
    assert len(tool_traces) == 24
    for r in tool_traces:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
        call = r["messages"][2]["tool_calls"][0]
        assert call["id"] == "call_0" and r["messages"][3]["tool_call_id"] == "call_0"
        assert isinstance(call["function"]["arguments"], str) and json.loads(call["function"]["arguments"])
        assert r["tools"][0]["type"] == "function" and r["stats"]["tool_calls"] == 1
    for r in good:
        if r["task"]["needs_tools"] is False:
            assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
            assert "tool_calls" not in r["messages"][-1]
    # a rerun does nothing and writes nothing
    again = generate(cfg)
    assert again["skipped_done"] == 32 and again["written"] == again["rejected"] == 0 and _all(cfg) == (good, bad)


def test_wrong_tools_and_missing_tools_are_rejected_with_reasons(teacher_server, tmp_path, codebase):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(o) for o in [
        {"prompt": "In which file is the class Shape defined?", "needs_tools": False, "expected": "pkg/base.py"},
        {"prompt": "What is 3 plus 4?", "needs_tools": True, "expected": ["7"]},
        {"prompt": "Which classes in this codebase subclass Shape?", "needs_tools": True, "expected": ["Circle", "Triangle"]},
        {"prompt": "In which file is the class Circle defined?", "expected": "pkg/shapes.py"},
    ]) + "\n")
    cfg = _cfg(teacher_server, tmp_path, codebase, prompts=str(prompts), n_codebase=0, n_negative=0)
    s = generate(cfg)
    good, bad = _all(cfg)
    why = {r["messages"][1]["content"]: r["rejections"] for r in bad}
    assert why["In which file is the class Shape defined?"] == ["tools_on_negative: 1 tool call(s) for a question that needs none"]
    assert why["What is 3 plus 4?"] == ["no_tools: a codebase question was answered without looking at the code"]
    assert why["Which classes in this codebase subclass Shape?"] == ["wrong_answer: missing Triangle"]
    assert [r["messages"][1]["content"] for r in good] == ["In which file is the class Circle defined?"]
    assert s["reasons"] == {"tools_on_negative": 1, "no_tools": 1, "wrong_answer": 1}


def test_server_dies_mid_run_and_rerun_completes_without_duplicates(teacher_server, tmp_path, codebase):
    cfg = _cfg(teacher_server, tmp_path, codebase, n_codebase=30, n_negative=10)
    teacher_server.die_after = 20  # 20 good answers, then the server is gone
    s = generate(cfg)
    assert s["stopped"] and "rerun" in s["stopped"] and s["remaining"] > 0
    good, bad = _all(cfg)
    first = len(good) + len(bad)
    assert 0 < first < 40
    teacher_server.die_after = None
    teacher_server.start()  # same port: the server is back
    s2 = generate(cfg)
    assert s2["skipped_done"] == first and s2["stopped"] is None and s2["remaining"] == 0
    good, bad = _all(cfg)
    ids = [r["id"] for r in good + bad]
    assert len(ids) == len(set(ids)) == 40


def test_flaky_server_still_gives_every_trace(teacher_server, tmp_path, codebase):
    teacher_server.fail_500, teacher_server.malformed, teacher_server.drop = 3, 2, 2
    cfg = _cfg(teacher_server, tmp_path, codebase, n_codebase=10, n_negative=4, params=FAST)
    s = generate(cfg)
    assert s["written"] + s["rejected"] == 14 and s["stopped"] is None
    assert s["backend"]["retries"] == 7


def test_4xx_stops_the_run_and_writes_nothing(teacher_server, tmp_path, codebase):
    teacher_server.status = 400
    cfg = _cfg(teacher_server, tmp_path, codebase)
    with pytest.raises(FatalBackendError, match="HTTP 400"):
        generate(cfg)
    assert teacher_server.requests <= cfg.in_flight  # no new work after the first 4xx
    assert _all(cfg) == ([], [])


@pytest.mark.parametrize("n", [1, 3])
def test_in_flight_limit_is_respected(teacher_server, tmp_path, codebase, n):
    teacher_server.delay_s = 0.15  # long enough for N requests to overlap even on a loaded machine
    generate(_cfg(teacher_server, tmp_path, codebase, n_codebase=6, n_negative=3, in_flight=n))
    assert teacher_server.max_live == n


def test_bad_prompt_lines_reported_and_others_generated(teacher_server, tmp_path, codebase):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "What is 1 plus 1?", "expected": "2"}\n{oops\n{"prompt": "What is 2 plus 2?"}\n')
    cfg = _cfg(teacher_server, tmp_path, None, prompts=str(prompts), n_codebase=0, n_negative=0)
    s = generate(cfg)
    assert s["bad_lines"] == ["p.jsonl line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2)"]
    good, _ = _all(cfg)
    assert sorted(r["messages"][-1]["content"] for r in good) == ["2", "4"]
    assert all("tools" not in r for r in good)  # no codebase: plain completions (text KD)
