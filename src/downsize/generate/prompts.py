"""Prompt sources: codebase question templates with computed answers, negatives that need no tools,
and prompt files. Every task has a stable id (a hash of its content), so reruns skip what is done.

    >>> from pathlib import Path
    >>> Path("repo/pkg").mkdir(parents=True)
    >>> _ = Path("repo/pkg/io.py").write_text("class ParseError(ValueError):\\n    pass\\n"
    ...                                       "def load(path, mode):\\n    return open(path, mode)\\n")
    >>> from downsize.generate.codebase import scan_codebase
    >>> tasks = codebase_tasks(scan_codebase("repo"), n=3, seed=0) + negative_tasks(n=2, seed=0)
    >>> [(t.kind, t.needs_tools) for t in tasks]
    [('codebase', True), ('codebase', True), ('codebase', True), ('negative', False), ('negative', False)]
    >>> tasks[0].prompt, tasks[0].expected
    ('Which classes in this codebase subclass ValueError?', ('ParseError',))
    >>> _ = Path("prompts.jsonl").write_text('{"prompt": "What is 2 + 2?"}\\nnot json\\n')
    >>> tasks, problems = load_prompt_file("prompts.jsonl")
    >>> [t.prompt for t in tasks], problems
    (['What is 2 + 2?'], ['prompts.jsonl line 2: not valid JSON (Expecting value at column 1)'])
    >>> len(dedup(tasks + tasks))
    1

A prompt file is JSONL, one object per line: ``{"prompt": "..."}`` or ``{"messages": [...]}``, with
optional ``id``, ``expected`` (strings that must all appear in the answer), ``needs_tools`` (bool);
or, for any other extension, plain text with one prompt per non-empty line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from downsize.errors import DownsizeError
from downsize.generate.codebase import CodebaseFacts
from downsize.registry import Registry

log = logging.getLogger(__name__)

KIND_CODEBASE = "codebase"
KIND_NEGATIVE = "negative"
KIND_FILE = "file"


@dataclass(frozen=True)
class Task:
    id: str
    messages: tuple[dict, ...]  # the conversation before the model's turn (user; maybe system)
    kind: str = KIND_FILE
    needs_tools: bool | None = None  # None: not known (plain prompt file)
    expected: tuple[str, ...] = ()  # each must appear in the final answer
    template: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "needs_tools": self.needs_tools, "expected": list(self.expected),
                "template": self.template, **({"meta": self.meta} if self.meta else {})}


def stable_id(messages, kind: str = "", salt: str = "") -> str:
    """Content hash of the conversation: the same prompt gets the same id in every run."""
    blob = json.dumps([list(messages), kind, salt], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_task(prompt: str | list[dict], *, kind: str = KIND_FILE, needs_tools: bool | None = None,
              expected=(), template: str | None = None, id: str | None = None, meta: dict | None = None) -> Task:
    messages = ({"role": "user", "content": prompt},) if isinstance(prompt, str) else tuple(prompt)
    return Task(id=id or stable_id(messages, kind), messages=messages, kind=kind, needs_tools=needs_tools,
                expected=tuple(str(e) for e in expected), template=template, meta=meta or {})


# -- codebase templates ------------------------------------------------------------------------
Fill = tuple[str, tuple[str, ...]]  # (question, expected strings)
TEMPLATES: Registry[Callable[[CodebaseFacts], list[Fill]]] = Registry("question template")


def register_template(name: str):
    return TEMPLATES.register(name)


@register_template("subclasses")
def _subclasses(f: CodebaseFacts) -> list[Fill]:
    return [(f"Which classes in this codebase subclass {base}?", tuple(names)) for base, names in f.subclasses.items()
            if len(names) <= 8]


@register_template("importers")
def _importers(f: CodebaseFacts) -> list[Fill]:
    return [(f"Which files in this codebase import the module '{mod}'?", tuple(files))
            for mod, files in f.imports.items() if len(files) <= 6]


@register_template("parameters")
def _parameters(f: CodebaseFacts) -> list[Fill]:
    out = []
    for fn in f.functions:
        if not fn.params or fn.name.startswith("__"):
            continue
        where = f"the method {fn.name} of class {fn.cls}" if fn.cls else f"the function {fn.name}"
        out.append((f"What are the parameters of {where} in {fn.file}?", fn.params))
    return out


@register_template("class_location")
def _class_location(f: CodebaseFacts) -> list[Fill]:
    where: dict[str, set[str]] = {}
    for c in f.classes:
        where.setdefault(c.name, set()).add(c.file)
    return [(f"In which file is the class {name} defined?", (next(iter(files)),))
            for name, files in sorted(where.items()) if len(files) == 1]


@register_template("count_functions")
def _count_functions(f: CodebaseFacts) -> list[Fill]:
    return [(f"How many top-level functions are defined in {file}?", (str(len(f.top_level_functions(file))),))
            for file in f.files]


@register_template("list_dir")
def _list_dir(f: CodebaseFacts) -> list[Fill]:
    return [(f"Which Python files are directly in the directory '{d}'?", tuple(os.path.basename(x) for x in files))
            for d, files in sorted(f.dirs().items()) if len(files) <= 8]


def codebase_tasks(facts: CodebaseFacts, n: int, seed: int = 0, templates: list[str] | None = None) -> list[Task]:
    """Up to n distinct questions, drawn round-robin over templates, fills shuffled with the seed."""
    names = templates or list(TEMPLATES)
    missing = [t for t in names if t not in TEMPLATES]
    if missing:
        raise DownsizeError(f"unknown template(s) {', '.join(missing)}", hint=f"available: {', '.join(TEMPLATES)}")
    rng = random.Random(seed)
    pools = {}
    for name in names:
        fills = TEMPLATES[name](facts)
        rng.shuffle(fills)
        if fills:
            pools[name] = fills
    tasks: list[Task] = []
    while len(tasks) < n and any(pools.values()):
        for name in list(pools):
            if pools[name] and len(tasks) < n:
                q, expected = pools[name].pop()
                tasks.append(make_task(q, kind=KIND_CODEBASE, needs_tools=True, expected=expected, template=name))
    return tasks


# -- negatives: questions that need no tools ----------------------------------------------------
GENERAL_KNOWLEDGE: tuple[Fill, ...] = (
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("How many days are in a leap year?", ("366",)),
    ("What planet is closest to the Sun?", ("Mercury",)),
    ("Who wrote the play Romeo and Juliet?", ("Shakespeare",)),
    ("What is the boiling point of water at sea level in degrees Celsius?", ("100",)),
    ("How many sides does a hexagon have?", ("6",)),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("In Python, what keyword defines a function?", ("def",)),
)


def negative_tasks(n: int, seed: int = 0) -> list[Task]:
    """Arithmetic with computed answers and general-knowledge questions; none needs a tool."""
    rng = random.Random(seed + 7919)
    tasks: list[Task] = []
    gk = list(GENERAL_KNOWLEDGE)
    rng.shuffle(gk)
    seen: set[str] = set()
    attempts = 0
    while len(tasks) < n and attempts < 50 * n + 100:
        attempts += 1
        if gk and rng.random() < 0.3:
            q, exp = gk.pop()
            tmpl = "general_knowledge"
        else:
            a, b = rng.randint(2, 999), rng.randint(2, 99)
            op = rng.choice(["plus", "minus", "times"])
            q = f"What is {a} {op} {b}?"
            exp = (str({"plus": a + b, "minus": a - b, "times": a * b}[op]),)
            tmpl = "arithmetic"
        if q in seen:
            continue
        seen.add(q)
        tasks.append(make_task(q, kind=KIND_NEGATIVE, needs_tools=False, expected=exp, template=tmpl))
    return tasks


# -- prompt files ------------------------------------------------------------------------------
def _task_from_obj(obj) -> Task:
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
            raise ValueError("'messages' must be a non-empty list of {role, content} objects")
        prompt: str | list[dict] = msgs
    elif isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
        prompt = obj["prompt"]
    else:
        raise ValueError("needs a non-empty 'prompt' string or a 'messages' list")
    expected = obj.get("expected", ())
    if isinstance(expected, str):
        expected = (expected,)
    if not isinstance(expected, (list, tuple)):
        raise ValueError("'expected' must be a string or a list of strings")
    needs = obj.get("needs_tools")
    if needs is not None and not isinstance(needs, bool):
        raise ValueError("'needs_tools' must be true or false")
    kind = KIND_NEGATIVE if needs is False else KIND_CODEBASE if needs else KIND_FILE
    return make_task(prompt, kind=obj.get("kind", kind), needs_tools=needs, expected=expected,
                     template=obj.get("template"), id=str(obj["id"]) if obj.get("id") is not None else None)


def load_prompt_file(path: str | os.PathLike) -> tuple[list[Task], list[str]]:
    """Read a prompt file; bad lines are reported (``'line N: why'``) and skipped, the rest returned."""
    path = Path(path)
    if not path.is_file():
        raise DownsizeError(f"no prompt file at {path}", hint="pass a .jsonl file ({\"prompt\": ...} per line) or a text file")
    tasks: list[Task] = []
    problems: list[str] = []
    jsonl = path.suffix in (".jsonl", ".json")
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not jsonl:
                tasks.append(make_task(line.rstrip("\n")))
                continue
            try:
                tasks.append(_task_from_obj(json.loads(line)))
            except json.JSONDecodeError as e:
                problems.append(f"{path.name} line {lineno}: not valid JSON ({e.msg} at column {e.colno})")
            except ValueError as e:
                problems.append(f"{path.name} line {lineno}: {e}")
    for p in problems:
        log.warning("%s", p)
    return tasks, problems


def dedup(tasks: list[Task]) -> list[Task]:
    """Keep the first task of each id and of each conversation (whitespace and case normalised)."""
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    out = []
    for t in tasks:
        text = json.dumps([[m.get("role"), " ".join(str(m.get("content", "")).lower().split())] for m in t.messages])
        if t.id in seen_ids or text in seen_text:
            continue
        seen_ids.add(t.id)
        seen_text.add(text)
        out.append(t)
    return out
