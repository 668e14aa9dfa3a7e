"""Validators for traces; each returns a reason to reject, or None. All run, all reasons are kept.

    >>> from downsize.generate.agent import Trace
    >>> from downsize.generate.prompts import KIND_NEGATIVE, make_task
    >>> task = make_task("What is the capital of France?", kind=KIND_NEGATIVE, needs_tools=False, expected=["Paris"])
    >>> good = Trace([*task.messages, {"role": "assistant", "content": "Paris."}], finished=True)
    >>> validate(task, good)
    []
    >>> call = {"id": "1", "type": "function", "function": {"name": "grep", "arguments": '{"pattern": "x"}'}}
    >>> bad = Trace([*task.messages, {"role": "assistant", "content": "", "tool_calls": [call]},
    ...              {"role": "tool", "tool_call_id": "1", "content": "none"},
    ...              {"role": "assistant", "content": "Lyon."}], tool_calls=1, finished=True)
    >>> validate(task, bad)
    ['tools_on_negative: 1 tool call(s) for a question that needs none', 'wrong_answer: missing Paris']

Registered validators (``VALIDATORS``):
- ``well_formed``: every tool call names a known tool with JSON-object arguments holding the required
  keys, each has a tool result, and the trace ends in a non-empty answer (not cut by max turns/length).
- ``tools_for_codebase``: a codebase question used at least one tool.
- ``no_tools_for_negative``: a negative example (arithmetic, general knowledge) used none.
- ``answer``: every expected string, computed from the codebase (or given in the prompt file), appears
  in the final answer as a whole word, case-insensitively.
"""

from __future__ import annotations

import json
import re
from typing import Callable

from downsize.generate.agent import Trace
from downsize.generate.prompts import Task
from downsize.generate.sandbox import TOOL_SCHEMAS
from downsize.registry import Registry

Validator = Callable[[Task, Trace], "str | None"]
VALIDATORS: Registry[Validator] = Registry("validator")
_REQUIRED = {t["function"]["name"]: tuple(t["function"]["parameters"].get("required", ())) for t in TOOL_SCHEMAS}


def register_validator(name: str):
    return VALIDATORS.register(name)


def final_answer(trace: Trace) -> str:
    for m in reversed(trace.messages):
        if m.get("role") == "assistant":
            return (m.get("content") or "") if not m.get("tool_calls") else ""
    return ""


def tool_calls(trace: Trace) -> list[dict]:
    return [c for m in trace.messages if m.get("role") == "assistant" for c in (m.get("tool_calls") or [])]


@register_validator("well_formed")
def _well_formed(task: Task, trace: Trace) -> str | None:
    answered = {m.get("tool_call_id") for m in trace.messages if m.get("role") == "tool"}
    for c in tool_calls(trace):
        fn = c.get("function") or {}
        name = fn.get("name")
        if name not in _REQUIRED:
            return f"malformed_call: unknown tool {name!r}" if name else f"malformed_call: unparsable tool call {str(fn.get('arguments'))[:60]!r}"
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            return f"malformed_call: {name} arguments are not JSON"
        if not isinstance(args, dict):
            return f"malformed_call: {name} arguments are not an object"
        missing = [k for k in _REQUIRED[name] if k not in args]
        if missing:
            return f"malformed_call: {name} is missing {', '.join(missing)}"
        if c.get("id") not in answered:
            return f"malformed_call: {c.get('id')} has no tool result"
    if not trace.finished or not final_answer(trace).strip():
        return "no_answer: the trace ends without a final answer (max turns or max tokens reached)"
    return None


@register_validator("tools_for_codebase")
def _tools_for_codebase(task: Task, trace: Trace) -> str | None:
    if task.needs_tools and trace.tool_calls == 0:
        return "no_tools: a codebase question was answered without looking at the code"
    return None


@register_validator("no_tools_for_negative")
def _no_tools_for_negative(task: Task, trace: Trace) -> str | None:
    if task.needs_tools is False and trace.tool_calls > 0:
        return f"tools_on_negative: {trace.tool_calls} tool call(s) for a question that needs none"
    return None


def answer_matches(answer: str, expected: tuple[str, ...]) -> list[str]:
    """The expected strings missing from the answer (whole-word, case-insensitive)."""
    missing = []
    for e in expected:
        rx = r"(?<![\w.-])" + re.escape(e) + r"(?![\w-])" if re.match(r"^[\w.\-/]+$", e) else re.escape(e)
        if not re.search(rx, answer, flags=re.IGNORECASE):
            missing.append(e)
    return missing


@register_validator("answer")
def _answer(task: Task, trace: Trace) -> str | None:
    if not task.expected:
        return None
    missing = answer_matches(final_answer(trace), task.expected)
    if missing:
        return f"wrong_answer: missing {', '.join(missing[:5])}" + (f" (+{len(missing) - 5})" if len(missing) > 5 else "")
    return None


def validate(task: Task, trace: Trace, names: list[str] | None = None) -> list[str]:
    return [r for n in (names or VALIDATORS) if (r := VALIDATORS[n](task, trace))]
