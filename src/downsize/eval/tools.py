"""``downsize eval-tools``: autonomous tool use and answer accuracy on codebase questions, per model.

    $ downsize eval-tools --model openai:http://127.0.0.1:8080/v1#teacher --model runs/student \\
          --tasks tasks.jsonl --codebase ./repo

    >>> from pathlib import Path
    >>> Path("repo/pkg").mkdir(parents=True)
    >>> _ = Path("repo/pkg/io.py").write_text("class ParseError(ValueError):\\n    pass\\n"
    ...                                       "def load(path, mode):\\n    return open(path, mode)\\n")
    >>> make_task_suite("repo", "tasks.jsonl", n=2, n_negative=1)      # questions with answers from the code
    3
    >>> r = eval_tools("zoo:coder-teacher-qwen", "tasks.jsonl", "repo", max_turns=1, max_tokens=16)
    >>> sorted(r)[:6]
    ['accuracy_pct', 'bad_lines', 'median_s', 'model', 'no_tool_on_negative_pct', 'peak_rss_mb']
    >>> r["no_tool_on_negative_pct"]          # the 4M zoo model never calls a tool
    100.0

Metrics (the table a user planning a 30B -> 7B tool-use distillation tracks):
- tool use %: codebase questions where the model made at least one well-formed call to a known tool;
- no tools on negatives %: negative questions answered without tools;
- accuracy %: every expected string in the final answer (ground truth from the codebase);
- median s/query: wall time of the whole agent loop (all turns and tool runs);
- peak RSS: the high-water mark of a fresh process that ran only this model (so models do not share
  it); for an ``openai:`` endpoint the model lives in the server, so it is reported as missing.

Each model runs in its own child process (``python -m downsize.eval.tools``), as eval.speed does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from downsize.errors import DownsizeError
from downsize.eval.speed import peak_rss_mb
from downsize.generate.agent import AgentConfig, run_agent
from downsize.generate.backends import OPENAI_SCHEME, GenParams, open_backend
from downsize.generate.codebase import scan_codebase
from downsize.generate.prompts import codebase_tasks, load_prompt_file, negative_tasks
from downsize.generate.sandbox import Sandbox, SandboxLimits
from downsize.generate.validate import answer_matches, final_answer, tool_calls

SUITE_SEED = 1_000_003  # a seed away from generation's default, so the suite is not the training draw


def make_task_suite(codebase: str | os.PathLike, out: str | os.PathLike, n: int = 20, n_negative: int = 5,
                    seed: int = SUITE_SEED, exclude: str | os.PathLike | None = None, overwrite: bool = False) -> int:
    """Write a JSONL task suite (questions + expected answers from the code); ids in ``exclude`` (a
    traces file) are left out so training data and the suite do not overlap. Returns the count."""
    from downsize.io import KIND_JSONL, check_output, write_text_atomic

    check_output(out, KIND_JSONL, overwrite)  # a suite has an id per line, so a previous suite is replaced
    skip: set[str] = set()
    if exclude and Path(exclude).exists():
        with open(exclude, encoding="utf-8") as f:
            skip = {json.loads(line)["id"] for line in f if line.strip()}
    tasks = codebase_tasks(scan_codebase(codebase), n + len(skip), seed) + negative_tasks(n_negative + len(skip), seed)
    pos = [t for t in tasks if t.needs_tools and t.id not in skip][:n]
    neg = [t for t in tasks if t.needs_tools is False and t.id not in skip][:n_negative]
    write_text_atomic(out, "".join(json.dumps({"id": t.id, "prompt": t.prompt, "expected": list(t.expected),
                                               "needs_tools": t.needs_tools, "template": t.template}) + "\n"
                                   for t in pos + neg), KIND_JSONL, overwrite)
    return len(pos) + len(neg)


def _well_formed_calls(trace) -> int:
    names = {"list_files", "read_file", "grep"}
    n = 0
    for c in tool_calls(trace):
        fn = c.get("function") or {}
        try:
            ok = fn.get("name") in names and isinstance(json.loads(fn.get("arguments") or "{}"), dict)
        except json.JSONDecodeError:
            ok = False
        n += ok
    return n


def eval_tools(model: str, tasks_file: str | os.PathLike, codebase: str | os.PathLike, max_turns: int = 4,
               max_tokens: int = 256, in_flight: int = 1, max_output: int = SandboxLimits.max_output) -> dict:
    """Run the agent loop of one model over the suite, in this process; returns the metrics."""
    tasks, problems = load_prompt_file(tasks_file)
    if not tasks:
        raise DownsizeError(f"no tasks in {tasks_file}", hint="make one with `downsize eval-tools --make-tasks` or write JSONL")
    backend = open_backend(model, GenParams(max_tokens=max_tokens, batch_size=in_flight))
    box = Sandbox(codebase, SandboxLimits(max_output=max_output))
    cfg = AgentConfig(max_turns=max_turns)
    rows = []
    from downsize.console import progress

    try:
        for t in progress(tasks, desc=f"tool use of {Path(model).name}", unit="task"):
            trace = run_agent(backend, box, t, cfg)
            calls = _well_formed_calls(trace)
            answer = final_answer(trace)
            rows.append({"id": t.id, "needs_tools": t.needs_tools, "tool_calls": trace.tool_calls, "good_calls": calls,
                         "correct": bool(t.expected) and not answer_matches(answer, t.expected),
                         "seconds": trace.seconds, "answer": answer[:200]})
    finally:
        backend.close()
    pos = [r for r in rows if r["needs_tools"]]
    neg = [r for r in rows if r["needs_tools"] is False]
    pct = lambda xs: round(100.0 * sum(xs) / len(xs), 1) if xs else None  # noqa: E731
    rss = peak_rss_mb()
    return {"model": model, "tasks": len(rows), "bad_lines": problems,
            "tool_use_pct": pct([r["good_calls"] > 0 for r in pos]),
            "no_tool_on_negative_pct": pct([r["tool_calls"] == 0 for r in neg]),
            "accuracy_pct": pct([r["correct"] for r in rows]),
            "median_s": round(statistics.median(r["seconds"] for r in rows), 3),
            "peak_rss_mb": None if model.startswith(OPENAI_SCHEME) else round(rss, 1),
            "rows": rows}


def eval_tools_isolated(model: str, tasks_file, codebase, max_turns: int = 4, max_tokens: int = 256,
                        timeout_s: float | None = None, max_output: int = SandboxLimits.max_output) -> dict:
    """``eval_tools`` in a fresh child process, so its peak RSS belongs to this model alone."""
    cmd = [sys.executable, "-m", "downsize.eval.tools", model, str(tasks_file), str(codebase),
           "--max-turns", str(max_turns), "--max-tokens", str(max_tokens), "--max-output", str(max_output)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise DownsizeError(f"evaluating {model} failed: {' / '.join(tail)}", hint="run `downsize eval-tools` on that model alone to see the full error")
    return json.loads(p.stdout.strip().splitlines()[-1])


def compare(models: list[str], tasks_file, codebase, max_turns: int = 4, max_tokens: int = 256,
            max_output: int = SandboxLimits.max_output) -> list[dict]:
    """One row per model (teacher first, then students), each from its own process."""
    tasks, _ = load_prompt_file(tasks_file)  # bad input is reported here once, not by each child
    if not tasks:
        raise DownsizeError(f"no tasks in {tasks_file}", hint="make one with `downsize eval-tools --make-tasks` or write JSONL")
    Sandbox(codebase)
    from downsize.console import progress

    return [eval_tools_isolated(m, tasks_file, codebase, max_turns, max_tokens, max_output=max_output)
            for m in progress(models, desc=f"tool use ({len(tasks)} tasks per model)", unit="model")]


def _main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("tasks")
    ap.add_argument("codebase")
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-output", type=int, default=SandboxLimits.max_output)
    a = ap.parse_args(argv)

    def run() -> None:
        res = eval_tools(a.model, a.tasks, a.codebase, a.max_turns, a.max_tokens, max_output=a.max_output)
        sys.stdout.write(json.dumps(res) + "\n")

    from downsize.errors import run_guarded

    sys.exit(run_guarded(run))  # the child's errors reach the parent as messages, not tracebacks


if __name__ == "__main__":
    _main()
