"""The generation stage: tasks -> teacher (N in flight) -> validators -> resumable chat JSONL.

    >>> from pathlib import Path
    >>> Path("repo/pkg").mkdir(parents=True)
    >>> _ = Path("repo/pkg/io.py").write_text("class ParseError(ValueError):\\n    pass\\n"
    ...                                       "def load(path, mode):\\n    return open(path, mode)\\n")
    >>> cfg = GenerateConfig(teacher="zoo:coder-teacher-qwen", out="traces.jsonl", codebase="repo",
    ...                      n_codebase=2, n_negative=1, params=GenParams(max_tokens=16), agent=AgentConfig(max_turns=1))
    >>> summary = generate(cfg)        # {"written": ..., "rejected": ..., "skipped_done": ..., "reasons": {...}}
    >>> sorted(summary)
    ['backend', 'bad_lines', 'completion_tok_per_s', 'completion_tokens', 'failed', 'out', 'prompts_per_s',
     'reasons', 'rejected', 'rejected_out', 'remaining', 'repaired_bytes', 'seconds', 'skipped_done', 'stopped',
     'tasks', 'written']
    >>> summary["written"] + summary["rejected"]
    3
    >>> again = generate(cfg)                                           # resumable: a rerun skips what is done
    >>> again["tasks"], again["skipped_done"], again["written"], summary["written"], summary["rejected"]
    (3, 3, 0, 0, 3)

Accepted traces go to ``out``; rejected ones, with their reasons, to ``out`` with ``.rejected.jsonl``.
Both count as done: a rerun of the same command skips every id already in either file, so a run
killed at any point is finished by running it again, with no line lost or doubled. A prompt whose
request failed (server gone after all retries) is written nowhere and is retried by the rerun.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from downsize.errors import DownsizeError
from downsize.generate.agent import AgentConfig, run_agent
from downsize.generate.backends import Backend, FatalBackendError, GenParams, UnavailableError, open_backend
from downsize.generate.codebase import scan_codebase
from downsize.generate.prompts import Task, codebase_tasks, dedup, load_prompt_file, negative_tasks
from downsize.generate.sandbox import TOOL_SCHEMAS, Sandbox, SandboxLimits
from downsize.generate.validate import validate
from downsize.generate.writer import JsonlAppender

log = logging.getLogger(__name__)

REJECTED_SUFFIX = ".rejected.jsonl"


@dataclass(frozen=True)
class GenerateConfig:
    teacher: str
    out: str
    prompts: str | None = None  # prompt file (JSONL or text)
    codebase: str | None = None  # repository: template questions + tool sandbox root
    n_codebase: int = 100
    n_negative: int = 20
    templates: tuple[str, ...] | None = None
    seed: int = 0
    in_flight: int = 4
    limit: int | None = None  # at most this many tasks (after dedup), for a quick look
    tools: bool = True  # agent loop with the sandbox when a codebase is given
    params: GenParams = field(default_factory=GenParams)
    agent: AgentConfig = field(default_factory=AgentConfig)
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)


def rejected_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + REJECTED_SUFFIX)


def _is_records(path: Path) -> bool:
    from downsize.io import KIND_JSONL, check_output

    try:
        check_output(path, KIND_JSONL, overwrite=False)
    except DownsizeError:
        return False
    return True


def build_tasks(cfg: GenerateConfig) -> tuple[list[Task], list[str]]:
    """All tasks of the run in a fixed order (same seed, same list), and the prompt file's bad lines."""
    tasks: list[Task] = []
    problems: list[str] = []
    if cfg.prompts:
        file_tasks, problems = load_prompt_file(cfg.prompts)
        tasks += file_tasks
    if cfg.codebase and cfg.n_codebase > 0:
        tasks += codebase_tasks(scan_codebase(cfg.codebase), cfg.n_codebase, cfg.seed, list(cfg.templates) if cfg.templates else None)
    if cfg.n_negative > 0 and (cfg.codebase or not cfg.prompts):
        tasks += negative_tasks(cfg.n_negative, cfg.seed)
    tasks = dedup(tasks)
    if cfg.limit is not None:
        tasks = tasks[:cfg.limit]
    if not tasks:
        raise DownsizeError("no prompts to generate from", hint="pass --prompts FILE and/or --codebase DIR")
    return tasks, problems


def _record(task: Task, trace, teacher: str, with_tools: bool, keep_logprobs: bool) -> dict:
    rec = {"id": task.id, "messages": trace.messages}
    if with_tools:
        rec["tools"] = TOOL_SCHEMAS
    rec["task"] = task.to_json()
    rec["teacher"] = teacher
    rec["stats"] = {"turns": trace.turns, "tool_calls": trace.tool_calls, "seconds": round(trace.seconds, 4), **trace.usage}
    if keep_logprobs and any(lp is not None for lp in trace.logprobs):
        rec["logprobs"] = trace.logprobs  # one list per assistant turn, aligned with the assistant messages
    return rec


def generate(cfg: GenerateConfig, backend: Backend | None = None,
             progress: Callable[[dict], None] | None = None, overwrite: bool = False) -> dict:
    """Run the stage; returns a summary. Raises FatalBackendError on a 4xx (nothing more is sent).

    An existing ``cfg.out`` is resumed when it holds generate's records (one JSON object with an id a line);
    any other existing file is refused unless ``overwrite``, which replaces it when the first request is sent.
    Both files are created then, not before: a run that fails earlier (bad prompts, teacher not loadable)
    leaves nothing behind.
    """
    if cfg.in_flight < 1:
        raise DownsizeError("--in-flight must be at least 1")
    from downsize.io import KIND_JSONL, check_output, check_writable

    for path in (cfg.out, rejected_path(cfg.out)):
        check_output(path, KIND_JSONL, overwrite)
    check_writable(cfg.out)  # fail now, not after the first answer
    fresh = overwrite and any(not _is_records(p) for p in (Path(cfg.out), rejected_path(cfg.out)))
    tasks, problems = build_tasks(cfg)
    sandbox = Sandbox(cfg.codebase, cfg.sandbox) if (cfg.codebase and cfg.tools) else None
    agent_cfg = AgentConfig(cfg.agent.max_turns, cfg.agent.system_prompt, use_tools=sandbox is not None)
    validators = None if sandbox is not None else ["answer"]
    good = JsonlAppender(cfg.out, fresh=fresh)
    bad = JsonlAppender(rejected_path(cfg.out), fresh=fresh)
    done = good.ids | bad.ids
    todo = [t for t in tasks if t.id not in done]
    own_backend = backend is None
    backend = backend or open_backend(cfg.teacher, cfg.params)
    good.create()  # only now: a run that fails before its first request leaves no empty file behind
    bad.create()
    summary = {"tasks": len(tasks), "skipped_done": len(tasks) - len(todo), "written": 0, "rejected": 0, "failed": 0,
               "bad_lines": problems, "reasons": Counter(), "completion_tokens": 0, "stopped": None,
               "repaired_bytes": good.repaired_bytes + bad.repaired_bytes}
    log.info("%d tasks, %d already done, %d to generate with %s (%d in flight)",
             len(tasks), summary["skipped_done"], len(todo), cfg.teacher, cfg.in_flight)
    t0 = time.perf_counter()
    pending: dict[Future, Task] = {}
    queue = iter(todo)
    stop = False
    fatal: Exception | None = None
    from downsize.console import progress as progress_bar
    from downsize.console import progress_logging

    bar = progress_bar(total=len(todo), desc="generating", unit="prompt")
    try:
        with progress_logging(), ThreadPoolExecutor(max_workers=cfg.in_flight, thread_name_prefix="teacher") as pool:
            while True:
                while not stop and len(pending) < cfg.in_flight:  # keep exactly N requests in flight
                    task = next(queue, None)
                    if task is None:
                        break
                    pending[pool.submit(run_agent, backend, sandbox, task, agent_cfg)] = task
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = pending.pop(fut)
                    try:
                        trace = fut.result()
                    except FatalBackendError as e:
                        fatal, stop = e, True
                        continue
                    except UnavailableError as e:
                        summary["failed"] += 1
                        if not stop:
                            summary["stopped"] = f"{e.message} — {e.hint}"
                            log.error("stopping: %s", e.message)
                        stop = True
                        continue
                    reasons = validate(task, trace, validators)
                    rec = _record(task, trace, cfg.teacher, sandbox is not None, cfg.params.top_logprobs > 0)
                    summary["completion_tokens"] += trace.usage.get("completion_tokens", 0)
                    if reasons:
                        rec["rejections"] = reasons
                        bad.append(rec)
                        summary["rejected"] += 1
                        for r in reasons:
                            summary["reasons"][r.split(":")[0]] += 1
                            log.info("rejected %s (%s): %s", task.id, task.template or task.kind, r)
                    else:
                        good.append(rec)
                        summary["written"] += 1
                    bar.update(1)
                    bar.set_postfix(written=summary["written"], rejected=summary["rejected"],
                                    tok_s=f"{summary['completion_tokens'] / max(time.perf_counter() - t0, 1e-9):,.0f}")
                    if progress:
                        progress(summary)
    finally:
        bar.close()
        good.close()
        bad.close()
        if own_backend:
            backend.close()
    if fatal is not None:
        raise fatal
    wall = time.perf_counter() - t0
    done_now = summary["written"] + summary["rejected"]
    summary.update(reasons=dict(summary["reasons"]), seconds=round(wall, 3),
                   prompts_per_s=round(done_now / wall, 4) if wall > 0 else None,
                   completion_tok_per_s=round(summary["completion_tokens"] / wall, 2) if wall > 0 else None,
                   backend=backend.stats, out=str(cfg.out), rejected_out=str(rejected_path(cfg.out)))
    summary["remaining"] = len(todo) - done_now  # > 0 only when the run stopped early; a rerun finishes them
    return summary
