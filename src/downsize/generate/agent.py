"""The agent loop in the OpenAI tool-call format: model turn -> tool results -> model turn ... -> answer.

    >>> from pathlib import Path
    >>> Path("repo/pkg").mkdir(parents=True)
    >>> _ = Path("repo/pkg/io.py").write_text("class ParseError(ValueError):\\n    pass\\n"
    ...                                       "def load(path, mode):\\n    return open(path, mode)\\n")
    >>> from downsize.generate.backends import GenParams, open_backend
    >>> from downsize.generate.prompts import make_task
    >>> from downsize.generate.sandbox import Sandbox
    >>> backend = open_backend("zoo:coder-teacher-qwen", GenParams(max_tokens=16))   # transformers, local
    >>> task = make_task("Which class in pkg/io.py derives from ValueError?", kind="codebase", needs_tools=True)
    >>> trace = run_agent(backend, Sandbox("repo"), task, AgentConfig(max_turns=2))
    >>> [m["role"] for m in trace.messages][:3], trace.turns >= 1
    (['system', 'user', 'assistant'], True)

The stored messages are exactly what SFT trains on (chat JSONL): assistant turns with ``tool_calls``
(``arguments`` a JSON string) and ``tool`` messages with ``tool_call_id``. Tool calls are read from
the endpoint's ``tool_calls`` field and from ``<tool_call>{...}</tool_call>`` text, whichever the
model uses; ids are renumbered ``call_0, call_1, ...`` per trace so they are unique and stable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from downsize.generate.backends import Backend
from downsize.generate.prompts import Task
from downsize.generate.sandbox import TOOL_SCHEMAS, Sandbox

SYSTEM_PROMPT = (
    "You are a coding assistant with read-only access to one repository through tools: "
    "list_files(path, pattern), read_file(path), grep(pattern, path). "
    "Use the tools for any question about the repository, then answer. "
    "Do not use tools for questions that are not about the repository (arithmetic, general knowledge). "
    'To call a tool, write <tool_call>{"name": "grep", "arguments": {"pattern": "class "}}</tool_call>. '
    "Give the final answer in plain text, naming the files, classes or values asked for."
)


@dataclass(frozen=True)
class AgentConfig:
    max_turns: int = 4  # model turns; the last must be an answer
    system_prompt: str = SYSTEM_PROMPT
    use_tools: bool = True  # False: one plain completion (text KD without tools)


@dataclass
class Trace:
    messages: list[dict]
    tool_calls: int = 0
    turns: int = 0
    seconds: float = 0.0
    finished: bool = False  # ended with an answer (not by max_turns or length)
    logprobs: list = field(default_factory=list)  # one entry per assistant turn (None where not returned)
    usage: dict = field(default_factory=dict)


def run_agent(backend: Backend, sandbox: Sandbox | None, task: Task, cfg: AgentConfig = AgentConfig()) -> Trace:
    tools = TOOL_SCHEMAS if (cfg.use_tools and sandbox is not None) else None
    msgs = [dict(m) for m in task.messages]
    if tools and cfg.system_prompt and not any(m.get("role") == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": cfg.system_prompt})
    trace = Trace(messages=msgs)
    t0 = time.perf_counter()
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    for turn in range(cfg.max_turns):
        r = backend.chat(msgs, tools)
        trace.turns += 1
        trace.logprobs.append(r.logprobs)
        for k in usage:
            usage[k] += int(r.usage.get(k) or 0)
        msg = r.message
        calls = msg.get("tool_calls") or []
        if not tools:
            calls = []
            msg.pop("tool_calls", None)
        for c in calls:
            c["id"] = f"call_{trace.tool_calls}"
            trace.tool_calls += 1
        msgs.append(msg)
        if not calls:
            trace.finished = r.finish_reason != "length"
            break
        for c in calls:
            fn = c["function"]
            result = sandbox.call(fn["name"], fn["arguments"]) if fn.get("name") else "error: the tool call is not valid JSON"
            msgs.append({"role": "tool", "tool_call_id": c["id"], "name": fn.get("name") or "", "content": result})
    trace.seconds = time.perf_counter() - t0
    trace.usage = usage
    return trace
