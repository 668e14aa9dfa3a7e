"""Tasks from lm-evaluation-harness, run offline on local data, for any model reference.

    >>> docs = next_line_docs("test", max_docs=3)          # the built-in task: pick a function's true next line
    >>> len(docs), sorted(docs[0]), len(docs[0]["choices"])
    (3, ['answer', 'choices', 'context', 'id'], 4)
    >>> # lm-eval's own start-up takes about a minute here, so this line is not run (tests/eval/test_lm_eval.py runs it)
    >>> run_lm_eval("zoo:coder-teacher", ["stdlib_next_line"], limit=200)["stdlib_next_line"]["acc"]  # doctest: +SKIP
    0.41

The harness is optional (``pip install -c constraints.txt 'downsize[lm-eval]'``); without it this
module says so and how to install it. Hub datasets are never fetched: ``HF_DATASETS_OFFLINE`` and
``HF_HUB_OFFLINE`` are set, so a task must read local files, which lm-eval's own YAML format supports
(``dataset_path: json`` with ``dataset_kwargs: {data_files: {test: FILE.jsonl}}``).

One task ships with downsize and needs no files: ``stdlib_next_line``, a 4-way multiple choice on the
``zoo:stdlib`` *test* split (never trained on): given the start of a real function, pick its true next
line among three lines of other functions at the same depth. It is written to the cache on first use
(deterministic; the JSONL records the corpus fingerprint).
"""

from __future__ import annotations

import ast
import json
import contextlib
import os
import random
from pathlib import Path

from downsize.errors import DownsizeError
from downsize.io import write_text_atomic

BUILTIN_TASKS = ("stdlib_next_line",)
N_CHOICES = 4
CONTEXT_LINES = 12  # at most this many lines of the function before the line to predict


def _require_harness():
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise DownsizeError("lm-evaluation-harness is not installed",
                            hint="pip install -c constraints.txt 'downsize[lm-eval]' (or: pip install lm_eval)") from None


def next_line_docs(split: str = "test", max_docs: int | None = None, seed: int = 0) -> list[dict]:
    """Multiple-choice documents from the stdlib corpus: {"id", "context", "choices", "answer"}."""
    from downsize.data.stdlib import StdlibCorpus

    corpus = StdlibCorpus.local()
    items = []  # (file, line number, context, true line, indent)
    for rel, text in corpus.documents(split):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines(keepends=True)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or len(node.body) < 2:
                continue
            target = node.body[1].lineno - 1  # 0-based line of the second statement
            line = lines[target] if target < len(lines) else ""
            if not line.strip() or len(line) > 120:
                continue
            start = max(node.lineno - 1, target - CONTEXT_LINES)
            indent = len(line) - len(line.lstrip())
            items.append((rel, target, "".join(lines[start:target]), line, indent))
    by_indent: dict[int, dict[str, None]] = {}  # distinct lines per indentation, in first-seen order
    for it in items:
        by_indent.setdefault(it[4], {})[it[3]] = None
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    docs = []
    for i in order:
        rel, target, context, line, indent = items[i]
        pool = [x for x in by_indent[indent] if x != line]
        if len(pool) < N_CHOICES - 1:
            continue
        choices = rng.sample(pool, N_CHOICES - 1) + [line]
        rng.shuffle(choices)
        docs.append({"id": f"{rel}:{target + 1}", "context": context, "choices": choices, "answer": choices.index(line)})
        if max_docs and len(docs) >= max_docs:
            break
    if not docs:
        raise DownsizeError(f"no next-line questions could be made from the zoo:stdlib {split} split",
                            hint="check that the interpreter's standard library sources are installed")
    return docs


def write_builtin_tasks(root: Path | None = None) -> Path:
    """Write the shipped tasks (JSONL + lm-eval YAML) into a cache folder and return it (idempotent)."""
    from downsize.data.packing import cache_dir
    from downsize.data.stdlib import StdlibCorpus

    fp = StdlibCorpus.local().fingerprint[:16]
    root = Path(root or cache_dir() / "lm_eval_tasks" / fp)
    data = root / "stdlib_next_line.jsonl"
    if not data.exists():
        root.mkdir(parents=True, exist_ok=True)
        rows = [dict(d, corpus_fingerprint=fp) for d in next_line_docs("test")]
        write_text_atomic(data, "".join(json.dumps(r) + "\n" for r in rows))
    yaml_text = f"""# downsize's built-in lm-eval task (zoo:stdlib test split, corpus {fp})
task: stdlib_next_line
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(data))}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    yaml = root / "stdlib_next_line.yaml"
    if not yaml.exists() or yaml.read_text() != yaml_text:
        write_text_atomic(yaml, yaml_text)
    return root


def run_lm_eval(model_ref: str, tasks: list[str], include: str | os.PathLike | None = None, limit: int | None = None,
                batch_size: int = 8, num_fewshot: int | None = None) -> dict[str, dict[str, float]]:
    """Run lm-eval ``tasks`` on a model reference; returns {task: {metric: value}} (stderr included).

    GGUF references are dequantised into transformers for this (lm-eval scores log-likelihoods of whole
    continuations, which llama-cpp-python's server does not return); the llama.cpp numbers of a GGUF come
    from ``downsize eval FILE.gguf --teacher ...`` instead.
    """
    _require_harness()
    with _offline():
        return _run_lm_eval(model_ref, tasks, include, limit, batch_size, num_fewshot)


@contextlib.contextmanager
def _offline():
    """lm-eval's task loading must not reach for the Hub (tasks read local files); only for this call, so the
    rest of the process (a later push_to_hub) keeps its own settings."""
    saved = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    for k, v in saved.items():
        if v is None:
            os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _run_lm_eval(model_ref, tasks, include, limit, batch_size, num_fewshot) -> dict[str, dict[str, float]]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from downsize.models.refs import load_model

    paths = [str(write_builtin_tasks())] if any(t in BUILTIN_TASKS for t in tasks) else []
    if include is not None:
        if not Path(include).is_dir():
            raise DownsizeError(f"--lm-eval-include {include} is not a folder",
                                hint="point at a folder of lm-eval task YAML files")
        paths.append(str(include))
    manager = TaskManager(include_path=paths or None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise DownsizeError(f"lm-eval knows no task {', '.join(map(repr, unknown))}",
                            hint="built-in: " + ", ".join(BUILTIN_TASKS) + "; your own YAML tasks: --lm-eval-include DIR "
                                 "(hub datasets cannot be downloaded here; use dataset_path: json with local files)")
    model, tok = load_model(model_ref)
    model.eval()
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=str(next(model.parameters()).device))
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                                  num_fewshot=num_fewshot, log_samples=False, bootstrap_iters=1000)
    results = {}
    for task, metrics in out["results"].items():
        # lm-eval keys are "metric,filter" ("acc,none", "acc_stderr,none")
        results[task] = {k.split(",")[0]: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return results
