"""The ``eval`` stage (``downsize eval``): perplexity, KL and top-1 agreement against the teacher, size, speed
and RAM (GGUF in llama.cpp), sample completions, tool use, lm-evaluation-harness tasks.

    $ downsize eval student-q4_k_m.gguf --teacher zoo:coder-teacher --speed
    >>> EvalStage(models=["teacher", "distilled"]).effective_max_tokens()
    32768
"""

from __future__ import annotations

from typing import Optional

from downsize.stages.base import Artifact, Field, StageConfig, StageContext, stage

COMPARE_TOKENS = 32768  # token budget when models are compared window by window
SAMPLE_PROMPTS = ("def read_config(path):\n    \"\"\"Read a configuration file and return a dict.\"\"\"\n",
                  "class Stack:\n    def __init__(self):\n")


class EvalStage(StageConfig):
    models: Optional[list[str]] = Field(None, description="models to evaluate: references or stage names "
                                                          "('teacher' too); default: every model the run produced")
    teacher: Optional[str] = Field(None, description="compare with this model: KL(teacher || model) and top-1 "
                                                     "agreement; default: the recipe's teacher")
    data: Optional[str] = Field(None, description="data reference; default: the recipe's data (zoo:stdlib on the "
                                                  "command line)")
    data_column: Optional[str] = Field(None, description="the Hub dataset column to read (text or chat); same as "
                                                         "DATA#COLUMN")
    split: Optional[str] = Field(None, description="train, validation, test or all (default: validation for "
                                                   "zoo:stdlib, all otherwise)")
    seq_len: int = Field(256, ge=8, description="window length for perplexity")
    batch_size: int = Field(8, ge=1, description="windows per forward")
    max_tokens: Optional[int] = Field(None, ge=2, description=f"evaluate the first N tokens (default: all; "
                                                                f"{COMPARE_TOKENS} when comparing models or for a GGUF)")
    speed: bool = Field(False, description="also measure prompt/generation tokens/s and peak RAM (fresh process; "
                                           "llama.cpp for GGUF)")
    samples: bool = Field(True, description="greedy sample completions of fixed prompts")
    lm_eval: Optional[list[str]] = Field(None, description="lm-evaluation-harness tasks (built in: stdlib_next_line)")
    lm_eval_include: Optional[str] = Field(None, description="folder of lm-eval task YAMLs (local data files)")
    lm_eval_limit: Optional[int] = Field(None, ge=1, description="at most N documents per lm-eval task")
    # Tool use (eval-tools) of the same models: a JSONL suite, or "auto" for questions made from `codebase`
    # with answers computed from it, leaving out the ids a generate stage of this run trained on.
    tool_tasks: Optional[str] = Field(None, description="tool-use suite: JSONL ({prompt, expected, needs_tools}) "
                                                        "or 'auto' (questions made from the codebase)")
    codebase: Optional[str] = Field(None, description="repository the tool questions are about; default: the "
                                                      "codebase of the run's generate stage")
    tool_suite: int = Field(20, ge=1, description="codebase questions in an 'auto' suite (plus a quarter as many "
                                                  "negatives)")
    tool_max_turns: int = Field(4, ge=1, description="model turns per tool-use task")
    tool_max_tokens: int = Field(256, ge=8, description="tokens per model turn in tool-use tasks")

    def effective_max_tokens(self) -> int:
        return self.max_tokens or COMPARE_TOKENS


def _estimate(cfg: EvalStage, params: int) -> str:
    return (f"{cfg.effective_max_tokens()} tokens per model" + (", speed in a child process" if cfg.speed else "")
            + (f", tool use on {cfg.tool_tasks if cfg.tool_tasks != 'auto' else f'{cfg.tool_suite} codebase questions'}"
               if cfg.tool_tasks else ""))


def _run_models(ctx: StageContext, cfg: EvalStage) -> dict[str, str]:
    names, seen = cfg.models, set()
    if not names:  # every model of the run once (an export re-uses the quantize stage's GGUF, a merge may pass through)
        names = []
        for n, a in ctx.artifacts.items():
            key = (a.path.stat().st_dev, a.path.stat().st_ino) if a.path and a.path.is_file() else (a.path or n)
            if a.kind in ("model", "gguf") and key not in seen:
                seen.add(key)
                names.append(n)
    models = {n: ctx.resolve(n) for n in names}
    if "teacher" not in models:
        models = {"teacher": ctx.resolve(cfg.teacher) or ctx.teacher, **models}
    return models


@stage("eval", EvalStage, produces="metrics", estimate=_estimate)
def run_eval(ctx: StageContext, cfg: EvalStage) -> Artifact:
    """Waterfall metrics of every model so far (or the listed ones) against the teacher."""
    from downsize.console import progress
    from downsize.eval.compare import compare_models
    from downsize.eval.speed import measure_speed

    models = _run_models(ctx, cfg)
    from downsize.data.refs import with_column

    rows = compare_models(models, teacher="teacher", data=with_column(ctx.data_ref(cfg.data), cfg.data_column),
                          split=cfg.split,
                          seq_len=cfg.seq_len, max_tokens=cfg.effective_max_tokens())
    if cfg.speed:
        for n, ref in (bar := progress(models.items(), total=len(models), desc="speed and RAM", unit="model")):
            bar.set_postfix_str(n)
            try:
                rows[n].update({k: v for k, v in measure_speed(ref).items() if k != "backend"})
            except RuntimeError as e:
                ctx.log(f"speed of {n}: {e}")
    metrics = {"models": rows}
    if cfg.samples:
        metrics["samples"] = sample_completions(models)
    if cfg.lm_eval:
        from downsize.eval.harness import run_lm_eval

        metrics["lm_eval"] = {n: run_lm_eval(ref, cfg.lm_eval, include=cfg.lm_eval_include, limit=cfg.lm_eval_limit)
                              for n, ref in progress(models.items(), total=len(models), desc="lm-eval", unit="model")}
    if cfg.tool_tasks:
        metrics["tools"] = tool_eval(ctx, cfg, models)
    return Artifact("metrics", None, "", metrics)


def tool_eval(ctx: StageContext, cfg: EvalStage, models: dict[str, str]) -> dict[str, dict]:
    """eval-tools over the same models; "teacher" is the generate stage's teacher (the model that wrote the
    traces, e.g. an Ollama/vLLM endpoint) when the run has one."""
    from downsize.errors import DownsizeError
    from downsize.eval.tools import compare, make_task_suite

    gens = [st for st in (ctx.recipe.stages if ctx.recipe is not None else []) if st.kind == "generate"]
    codebase = cfg.codebase or next((g.settings.codebase for g in gens if g.settings.codebase), None)
    if codebase is None:
        raise DownsizeError(f"stage {ctx.stage_name or 'eval'}: tool_tasks needs the repository the questions are about",
                            hint="set eval.codebase (--codebase), or give the run a generate stage with a codebase")
    tasks = cfg.tool_tasks
    if tasks == "auto":
        traces = [ctx.artifacts[g.name].path for g in gens if g.name in ctx.artifacts]
        tasks = ctx.out.with_name("tool_tasks.jsonl")
        n = make_task_suite(codebase, tasks, n=cfg.tool_suite, n_negative=max(1, cfg.tool_suite // 4),
                            exclude=traces[0] if traces else None)
        ctx.log(f"{ctx.stage_name or 'eval'}: {n} tool-use tasks from {codebase} (disjoint from the traces)")
    refs = dict(models)
    if gens and "teacher" in refs:
        refs["teacher"] = gens[0].settings.teacher or ctx.teacher
    rows = compare(list(refs.values()), tasks, codebase, cfg.tool_max_turns, cfg.tool_max_tokens)
    return {n: {k: v for k, v in r.items() if k != "rows"} for n, r in zip(refs, rows)}


def sample_completions(models: dict[str, str], max_new_tokens: int = 40) -> dict:
    """Greedy completions of fixed prompts by every model (GGUF through llama.cpp)."""
    from downsize.console import progress
    from downsize.eval.run import sample_completion
    from downsize.models.refs import load_model, resolve_model

    out: dict[str, dict[str, str]] = {p: {} for p in SAMPLE_PROMPTS}
    for n, ref in progress(models.items(), total=len(models), desc="sample completions", unit="model"):
        if resolve_model(ref).is_gguf:
            from downsize.models.llamacpp import open_gguf

            llm = open_gguf(resolve_model(ref).path, 256, logits_all=False)
            for p in SAMPLE_PROMPTS:
                r = llm.create_completion(p, max_tokens=max_new_tokens, temperature=0.0)
                out[p][n] = r["choices"][0]["text"]
            llm.close() if hasattr(llm, "close") else None
        else:
            model, tok = load_model(ref)
            for p in SAMPLE_PROMPTS:
                out[p][n] = sample_completion(model, tok, p, max_new_tokens)
    return out
