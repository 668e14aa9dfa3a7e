"""The command line: the only place that parses arguments, prints and exits.

    $ downsize --help
    $ downsize zoo list
    $ downsize eval zoo:coder-teacher --data zoo:stdlib

Why this module is long: it is the one place that turns results into what a person reads (tables, summaries,
errors) for every command. The options themselves are not written here: the stage commands' options are
generated from the stage configs (downsize.cli_options).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from downsize.errors import DEBUG_ENV, DownsizeError, NotBuiltYet

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn a large language model into a smaller one that keeps its skill and runs in llama.cpp or Ollama.")
zoo_app = typer.Typer(no_args_is_help=True, help="The reference zoo: small models trained on the Python standard library.")
app.add_typer(zoo_app, name="zoo")
# Tables are never cut to fit: a narrow or absent terminal (a pipe, CI logs) gets at least 120 columns.
# markup=False: paths, values and model text are printed as written ("[/x]" in a path is not rich markup).
console = Console(width=max(120, shutil.get_terminal_size((120, 24)).columns), markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)


def _tag(style: str, word: str, rest: str) -> Text:
    """``word`` in ``style``, then ``rest`` printed literally."""
    return Text.assemble((word, style), " " if rest and not rest.startswith(":") else "", rest)


_OVERWRITE_HELP = "replace an existing --out that downsize did not write (or of another kind); without it such an --out is refused"
PRECISION_HELP = "auto (bf16 where the GPU/CPU computes in bf16 natively, else fp32), bf16 or fp32 (also: no)"
THREADS_HELP = "torch CPU threads (default: the usable cores not busy with other work, at most the physical cores)"


def _version(value: bool) -> None:
    if value:
        from downsize import __version__

        console.print(f"downsize {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, help="print the version and exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="show third-party progress bars, warnings and INFO logs "
                                 "(transformers, gguf, huggingface_hub), hidden by default"),
    debug: bool = typer.Option(False, "--debug", help=f"show the traceback of an error too (or set {DEBUG_ENV}=1)"),
) -> None:
    from downsize.console import quiet_third_party

    if debug:
        os.environ[DEBUG_ENV] = "1"
    quiet_third_party(verbose)


_REPORT_TO_HELP = ("log training metrics to tensorboard (OUT.work/runs/downsize), wandb (pip install wandb; "
                   "WANDB_MODE=offline works) or both: tensorboard,wandb")


def _not_built(command: str, issue: str) -> None:
    raise NotBuiltYet(f"'downsize {command}' is not built yet in this version", hint=f"it is planned ({issue})")


@zoo_app.command("list")
def zoo_list(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """Show the zoo models with their size and validation perplexity."""
    from downsize.zoo.registry import list_zoo

    rows = list_zoo()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    t = Table()
    for col in ("name", "arch", "params", "vocab", "val ppl", "test ppl", "trained", "status"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(r["name"], r.get("architecture", "-").replace("ForCausalLM", ""),
                  f"{r['parameters'] / 1e6:.1f}M" if r.get("parameters") else "-", str(r.get("vocab_size", "-")),
                  f"{r['val_ppl']:.2f}" if r.get("val_ppl") else "-", f"{r['test_ppl']:.2f}" if r.get("test_ppl") else "-",
                  f"{r['wall_min']:.0f} min" if r.get("wall_min") else "-", r["status"])
    console.print(t)


@zoo_app.command("path")
def zoo_path_cmd(name: str):
    """Print the directory of a shipped zoo model."""
    from downsize.models.refs import resolve_model

    print(resolve_model(f"zoo:{name}").path)


@zoo_app.command("train")
def zoo_train(
    name: str = typer.Argument(..., help="zoo model to train, e.g. coder-teacher"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    minutes: Optional[float] = typer.Option(None, help="wall-time budget instead of --steps (steps resolved from measured speed)"),
    batch_size: Optional[int] = typer.Option(None, help="override the zoo spec's batch size"),
    out: Path = typer.Option(None, help="output directory (default: the zoo's own folder)"),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads"),
    resume: bool = typer.Option(False, help="continue from the last checkpoint in OUT.work"),
    overwrite: bool = typer.Option(False, help=_OVERWRITE_HELP),
    init_from: Optional[str] = typer.Option(None, help="start from these weights (same architecture and tokenizer) "
                                            "under a fresh warmup + cosine schedule, e.g. zoo:coder-teacher"),
    passes: Optional[float] = typer.Option(None, help="passes over the train split instead of --steps"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the zoo spec's)"),
    warmup_steps: Optional[int] = typer.Option(None, help="warmup steps (default: the zoo spec's)"),
    mixed_precision: Optional[str] = typer.Option(None, help="auto, bf16, fp32 or no (default: auto, bf16 only where the hardware computes in it)"),
    eval_every: int = typer.Option(0, help="measure validation perplexity every N steps (0 = off); the curve goes into "
                                   "the card and training_curve.json"),
    eval_tokens: int = typer.Option(65536, help="validation tokens per point of the --eval-every curve"),
):
    """Train a zoo model on zoo:stdlib: from scratch (reproducible from the seed) or continuing --init-from."""
    from downsize.zoo import ZOO, zoo_path
    from downsize.zoo.train import train_zoo_model

    if name not in ZOO:
        raise DownsizeError(f"no zoo model called {name!r}", hint=f"choose one of {', '.join(ZOO)}")
    dest = out or zoo_path(name)
    if sum(x is not None for x in (steps, minutes, passes)) != 1:
        raise DownsizeError("give exactly one of --steps, --passes and --minutes", hint="e.g. --steps 2000, --passes 3 or --minutes 60")
    train_zoo_model(name, steps=steps, out=Path(dest), seed=seed, threads=threads, resume=resume, minutes=minutes,
                    batch_size=batch_size, overwrite=overwrite, init_from=init_from, passes=passes, lr=lr,
                    warmup_steps=warmup_steps, mixed_precision=mixed_precision, eval_every=eval_every,
                    eval_tokens=eval_tokens)
    console.print(_tag("green", "wrote", f"{dest}"))


@app.command("eval-tools")
def eval_tools_cmd(
    model: list[str] = typer.Option(..., help="model reference (repeatable: teacher first, then students); openai:URL#MODEL too"),
    tasks: Path = typer.Option(..., help="JSONL task suite: {prompt, expected, needs_tools} per line"),
    codebase: Path = typer.Option(..., help="the repository the questions are about (tool sandbox root)"),
    make_tasks: int = typer.Option(0, help="first write N codebase questions (+ N/4 negatives) with computed answers to --tasks"),
    max_turns: int = typer.Option(4),
    max_tokens: int = typer.Option(256),
    as_json: bool = typer.Option(False, "--json"),
    overwrite: bool = typer.Option(False, help=_OVERWRITE_HELP),
):
    """Tool use %, accuracy %, median seconds per query and peak RAM, side by side per model."""
    from downsize.eval.tools import compare, make_task_suite

    if make_tasks:
        n = make_task_suite(codebase, tasks, n=make_tasks, n_negative=max(1, make_tasks // 4), overwrite=overwrite)
        err.print(f"wrote {n} tasks to {tasks}")
    rows = compare(model, tasks, codebase, max_turns, max_tokens)
    if as_json:
        console.print_json(json.dumps([{k: v for k, v in r.items() if k != "rows"} for r in rows]))
        return
    fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
    t = Table("model", "tasks", "tool use %", "no tools on negatives %", "accuracy %", "s / query", "peak RAM MiB")
    for r in rows:
        t.add_row(r["model"], str(r["tasks"]), fmt(r["tool_use_pct"]), fmt(r["no_tool_on_negative_pct"]),
                  fmt(r["accuracy_pct"]), fmt(r["median_s"], "{:.2f}"), fmt(r["peak_rss_mb"], "{:.0f}"))
    console.print(t)


# --- export (issue 5) ---
export_app = typer.Typer(no_args_is_help=True, help="Export to GGUF and Ollama (Modelfile with a converted chat template).")
app.add_typer(export_app, name="export")


def _print_export(result: dict, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(result, default=str))
        return
    t = Table("field", "value")
    for k, v in result.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items())
        t.add_row(k, f"{v:,.4f}" if isinstance(v, float) else str(v))
    console.print(t)


_PUSH_HELP = ("also upload the result to this Hugging Face Hub repository (NAMESPACE/NAME) with a generated model "
              "card; needs HF_TOKEN (or `hf auth login`), HF_ENDPOINT for another Hub")
_RESCALE_HELP = ("undo the shrinkage of llama.cpp's block fits (row scales against the float model); "
                 "--no-rescale keeps llama.cpp's bytes")


@app.command("quantize")
def quantize_cmd(
    src: Path = typer.Argument(..., help="input GGUF (F32, F16 or BF16)"),
    out: Path = typer.Option(..., help="output .gguf file"),
    quant: str = typer.Option("Q4_K_M", help="target type, e.g. Q4_K_M, Q3_K_M, Q8_0, IQ4_XS"),
    imatrix: Optional[Path] = typer.Option(None, help="llama.cpp importance matrix (GGUF)"),
    rescale: bool = typer.Option(True, help=_RESCALE_HELP),
    as_json: bool = typer.Option(False, "--json"),
    overwrite: bool = typer.Option(False, help=_OVERWRITE_HELP),
):
    """Quantize a GGUF (K-quants with an importance matrix)."""
    from downsize.export.quantize import quantize_gguf

    _print_export(quantize_gguf(src, out, quant, imatrix=imatrix, rescale=rescale, overwrite=overwrite), as_json)


@export_app.command("lora")
def export_lora_cmd(
    adapter: Path = typer.Argument(..., help="PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)"),
    base: str = typer.Option(..., help="the base model it was trained on: HF directory or zoo:NAME"),
    out: Path = typer.Option(..., help="output GGUF adapter (use with `downsize convert --adapter` or llama.cpp --lora)"),
    as_json: bool = typer.Option(False, "--json"),
    overwrite: bool = typer.Option(False, help=_OVERWRITE_HELP),
):
    """Export a LoRA adapter as a GGUF adapter (Ollama ADAPTER, llama.cpp --lora)."""
    from downsize.export.lora import export_lora_gguf

    _print_export(export_lora_gguf(adapter, base, out, overwrite=overwrite), as_json)


_TEMPLATE_FILE_HELP = "a Go TEMPLATE file to write into the Modelfile as is (instead of the translated one)"


@app.command("convert")
def convert_cmd(
    gguf: Path = typer.Option(..., "--gguf", help="an existing GGUF file"),
    name: str = typer.Option(..., help="Ollama model name"),
    out: Optional[Path] = typer.Option(None, help="folder for the Modelfile (default: beside the GGUF)"),
    template_style: Optional[str] = typer.Option(None, help="force a hand-written chat format instead of the translated TEMPLATE (no tool calling): chatml, llama3, mistral, gemma, phi3"),
    adapter: Optional[Path] = typer.Option(None, help="a GGUF LoRA adapter (Modelfile ADAPTER)"),
    num_ctx: Optional[int] = typer.Option(None, help="PARAMETER num_ctx (default: the GGUF's context length)"),
    create: bool = typer.Option(True, help="run `ollama create` when ollama is on PATH"),
    template_file: Optional[Path] = typer.Option(None, help=_TEMPLATE_FILE_HELP),
    as_json: bool = typer.Option(False, "--json"),
    overwrite: bool = typer.Option(False, help=_OVERWRITE_HELP),
):
    """Make an Ollama model (Modelfile with a translated, checked TEMPLATE) from a GGUF you already have."""
    from downsize.export.ollama import convert_gguf

    r = convert_gguf(gguf, name, out, template_style=template_style, adapter=adapter, num_ctx=num_ctx, create=create,
                     template_file_path=template_file, overwrite=overwrite)
    _print_export(r, as_json)
    if not r["created"] and not as_json:
        console.print(f"ollama is not on PATH; register the model with:\n  {r['command']}", markup=False, highlight=False)
# --- end export (issue 5) ---


@app.command("plan")
def plan_cmd(
    recipe: Optional[Path] = typer.Argument(None, help="recipe YAML; without one, the general pipeline is printed"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. distilled.steps=50"),
    device: Optional[str] = typer.Option(None, help="memory plan for this device: cpu, cpu:24, cuda:80 or cuda:80x8 "
                                                    "(GiB per device; default: this machine)"),
):
    """Print the steps of a recipe with what each reads, writes, costs and needs in memory (configs only)."""
    from downsize.pipeline import GENERAL_PIPELINE, plan_recipe
    from downsize.recipe import load_recipe

    if recipe is None:
        t = Table("stage", "what it does", title="the downsize pipeline")
        for name, what in GENERAL_PIPELINE:
            t.add_row(name, what)
        console.print(t)
        return
    r = load_recipe(recipe, overrides or [], check_refs=False)  # a plan is for recipes whose weights are not here yet
    t = Table("stage", "kind", "reads", "writes", "rough cost", "peak memory",
              title=f"{r.name}: teacher {r.teacher}, data {r.data}")
    rows = plan_recipe(r, device)
    for row in rows:
        t.add_row(*(str(row[k]) for k in ("stage", "kind", "reads", "writes", "cost", "memory")))
    console.print(t)
    if rows and rows[0]["memory_error"]:
        err.print(_tag("yellow", "memory plan unavailable:", f"{rows[0]['memory_error']}"))


@app.command("validate")
def validate_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),
    check_refs: bool = typer.Option(True, help="check that model and data references exist here (--no-check-refs for recipes meant for another machine)"),
):
    """Check a recipe without loading weights; report every error at once."""
    from downsize.recipe import load_recipe

    r = load_recipe(recipe, overrides or [], check_refs=check_refs)
    console.print(_tag("green", "ok", f"{recipe}: {len(r.stages)} stages ({', '.join(s.name for s in r.stages)})"))


@app.command("run")
def run_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides"),
    out: Optional[Path] = typer.Option(None, help="run directory (default: runs/RECIPE_NAME)"),
    from_stage: Optional[str] = typer.Option(None, "--from", help="rerun this stage and every later one"),
    overwrite: bool = typer.Option(False, help="run in an --out folder that is not a run folder (its files are kept; "
                                   "without it such a folder is refused)"),
):
    """Run a recipe (prune → distill → quantize → export → eval) with a manifest and resume."""
    import logging

    from downsize.pipeline import run_recipe
    from downsize.recipe import load_recipe

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = load_recipe(recipe, overrides or [])
    run_dir = out or Path("runs") / r.name
    run_recipe(r, run_dir, from_stage=from_stage, overwrite=overwrite,  # a stage's summary stays one line
               log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    console.print(_tag("green", "done", f": {run_dir}/report.html, {run_dir}/report.md"))


# --- the stage commands: options generated from the stage configs (downsize.stages), so the CLI, the recipe
# schema and the Python API take the same fields with the same defaults ------------------------------------------
from downsize.cli_options import command, config_from_options, config_parameters  # noqa: E402

_OUT_DIR = "output directory (a Hugging Face model; checkpoints go to OUT.work)"


def _common(out_help: str | None, *, resume: bool = False, out_required: bool = True) -> list:
    """The options of a command that are not settings of the work: where it writes, seed, threads, --json."""
    import inspect

    P = inspect.Parameter
    params = []
    if out_help:
        params.append(P("out", P.KEYWORD_ONLY, annotation=Path if out_required else Optional[Path],
                        default=typer.Option(... if out_required else None, help=out_help, rich_help_panel="Output")))
    params.append(P("seed", P.KEYWORD_ONLY, annotation=int, default=typer.Option(0, help="random seed",
                                                                                 rich_help_panel="Output")))
    if resume:
        params.append(P("resume", P.KEYWORD_ONLY, annotation=bool, default=typer.Option(
            False, help="continue from OUT.work/checkpoints", rich_help_panel="Output")))
    if out_help:
        params.append(P("overwrite", P.KEYWORD_ONLY, annotation=bool, default=typer.Option(
            False, help=_OVERWRITE_HELP, rich_help_panel="Output")))
    params.append(P("threads", P.KEYWORD_ONLY, annotation=Optional[int], default=typer.Option(
        None, help="torch CPU threads (default: the usable cores not busy with other work, at most the physical cores)",
        rich_help_panel="Output")))
    params.append(P("as_json", P.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--json", help="print the result as JSON", rich_help_panel="Output")))
    return params


def _context(values: dict, out: Path | None, model: str | None = None, teacher: str | None = None,
             data: str | None = None):
    import logging

    from downsize.stages import Artifact, StageContext

    from downsize.hardware import set_threads

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    set_threads(values.get("threads"))
    return StageContext(out=Path(out) if out else Path("."), teacher=teacher, data=data or "zoo:stdlib",
                        seed=values.get("seed", 0), artifacts={"teacher": Artifact("model", None)},
                        input_model=model, resume=values.get("resume", False), overwrite=values.get("overwrite", False),
                        log=lambda m: err.print(m, markup=False, highlight=False))


# Earlier spellings of options, still accepted (the first spelling is the field's own name).
_ALIASES = {"warmup_steps": ["--warmup-steps", "--warmup"],
            "mixed_precision": ["--mixed-precision", "--precision"]}


def _stage_command(app_, name: str, kind: str, run: Callable, *, arguments: dict[str, str] | None = None,
                   exclude: tuple[str, ...] = (), aliases: dict[str, list[str]] | None = None, extra: list | None = None,
                   doc: str | None = None, examples: tuple[str, ...] = ()):
    from downsize.stages import STAGES

    spec = STAGES[kind]
    aliases = {**_ALIASES, **(aliases or {})}
    params = config_parameters(spec.config, exclude=exclude, arguments=arguments, aliases=aliases) + (extra or [])
    params.sort(key=lambda p: p.default.default is not ... if isinstance(p.default, typer.models.ArgumentInfo) else 2)
    text = (doc or spec.summary) + ("\n\nExamples:\n\n" + "\n\n".join(f"  $ {e}" for e in examples) if examples else "")
    app_.command(name)(command(lambda **v: run(spec, v), params, text))


def _model_arg(help_="model reference: Hub id Org/Name[@rev], HF directory, zoo:NAME, FILE.gguf or ollama:NAME"):
    import inspect

    return inspect.Parameter("model", inspect.Parameter.KEYWORD_ONLY, annotation=str,
                             default=typer.Argument(..., help=help_, show_default=False))


def _print_model_result(art, cfg_kind: str) -> None:
    from downsize.distill.save import read_card

    card = read_card(art.path)
    fm = card.get("final_metrics", {})
    bits = [f"{card['steps']} steps" if "steps" in card else None,
            f"{card['tokens']:,} tokens" if "tokens" in card else None,
            *(f"{k} {v:.4g}" for k, v in fm.items() if isinstance(v, float))]
    console.print(_tag("green", "wrote", f"{art.path}: " + ", ".join(b for b in bits if b)))


def _run_training(spec, v: dict) -> None:
    from downsize.stages import run_stage

    cfg = config_from_options(spec.config, v)
    if spec.kind in ("sft", "lora") and not cfg.student:
        raise DownsizeError("give --student: the model to fine-tune", hint="e.g. --student runs/student")
    ctx = _context(v, v["out"], model=v.get("model"), teacher=getattr(cfg, "teacher", None), data=cfg.data)
    art = run_stage(spec.kind, ctx, cfg)
    if v["as_json"]:
        from downsize.distill.save import read_card

        console.print_json(json.dumps(read_card(art.path), default=str))
    else:
        _print_model_result(art, spec.kind)


def _run_distill(spec, v: dict) -> None:
    if v.get("write_cache"):
        from downsize.distill import cache_teacher

        cfg = config_from_options(spec.config, v)
        if not cfg.teacher:
            raise DownsizeError("--write-cache needs --teacher",
                                hint="e.g. downsize distill --teacher zoo:coder-teacher --write-cache runs/cache")
        meta = cache_teacher(cfg.teacher, cfg.data or "zoo:stdlib", v["write_cache"], k=cfg.top_k, seq_len=cfg.seq_len,
                             windows=cfg.windows, batch_size=cfg.batch_size, temperature=cfg.temperature,
                             dtype=cfg.teacher_dtype, overwrite=v["overwrite"])
        console.print(_tag("green", "wrote", f"{v['write_cache']}: {meta['windows']} windows × "
                      f"{meta['seq_len']} tokens, {meta['bytes_per_token']} bytes/token "
                      f"(dense bf16: {meta['dense_bf16_bytes_per_token']})"))
        return
    if not v.get("out") or not v.get("student"):
        raise DownsizeError("give --student and --out",
                            hint="e.g. --student teacher:num_hidden_layers=4,hidden_size=192 --out runs/student")
    _run_training(spec, v)


def _extra_write_cache() -> list:
    import inspect

    return [inspect.Parameter("write_cache", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                              default=typer.Option(None, help="only run the teacher over the data and write a top-k "
                                                              "cache here (then train with --cache)",
                                                   rich_help_panel="Output"))]


def _run_prune(spec, v: dict) -> None:
    from downsize.stages import run_stage

    cfg = config_from_options(spec.config, v)
    art = run_stage("prune", _context(v, v["out"], model=v["model"], data=cfg.calib), cfg)
    report = json.loads((art.path / "prune_report.json").read_text())
    if v["as_json"]:
        console.print_json(json.dumps(report))
        return
    p = report["params"]
    console.print(_tag("green", "wrote", f"{art.path}  ({cfg.method}: {p['before']:,} → {p['after']:,} "
                  f"parameters, {p['ratio']:.1%}; {report['wall_s']:.1f} s, peak RSS {report['peak_rss_mib']:.0f} MiB)"))
    if "per_layer" in report:
        t = Table("layer", *[k for k in report["per_layer"][0] if k != "layer"])
        for row in report["per_layer"]:
            t.add_row(str(row["layer"]), *[f"{v:.1%}" for k, v in row.items() if k != "layer"])
        console.print(t)
    if report.get("note"):
        err.print(_tag("yellow", "note:", f"{report['note']}"))


def _run_generate(spec, v: dict) -> None:
    from downsize.stages import run_stage

    cfg = config_from_options(spec.config, v)
    if not cfg.teacher:
        raise DownsizeError("give --teacher", hint="e.g. --teacher openai:http://127.0.0.1:11434/v1#qwen3-coder:30b")
    art = run_stage("generate", _context(v, v["out"], teacher=cfg.teacher), cfg)
    summary = art.metrics
    for line in summary.get("bad_lines", []):
        err.print(_tag("yellow", "skipped", f"{str(line)}"))
    if v["as_json"]:
        console.print_json(json.dumps(summary))
    else:
        t = Table("metric", "value")
        for k in ("tasks", "skipped_done", "written", "rejected", "failed", "remaining", "seconds", "prompts_per_s",
                  "completion_tok_per_s", "reasons", "out", "rejected_out"):
            t.add_row(k, str(summary.get(k)))
        console.print(t)
    if summary.get("stopped"):
        err.print(_tag("red", "stopped early:", f"{str(summary['stopped'])}"))
        raise typer.Exit(2)


def _run_quantize(spec, v: dict) -> None:
    from downsize.stages.quantize import quantize_model

    cfg = config_from_options(spec.config, v)
    ctx = _context(v, v["out"], model=v["model"], data=cfg.calib)
    result = quantize_model(ctx, cfg, v["model"], v["out"])
    if cfg.push_to_hub:
        from downsize.stages.quantize import push

        result["hub"] = push(ctx, cfg, [v["out"]])
    _print_export(result, v["as_json"])


def _run_export(spec, v: dict) -> None:
    from downsize.stages import run_stage

    cfg = config_from_options(spec.config, v)
    art = run_stage("export", _context(v, v["out"], model=v["model"], data=cfg.calib), cfg)
    _print_export(art.metrics, v["as_json"])
    if not art.metrics["ollama_created"] and not v["as_json"]:
        console.print(f"ollama is not on PATH; register the model with:\n  {art.metrics['ollama_command']}",
                      markup=False, highlight=False)


def _run_eval(spec, v: dict) -> None:
    from downsize.eval.run import evaluate

    cfg = config_from_options(spec.config, v)
    if len(cfg.models or []) != 1:
        raise DownsizeError("give one model to evaluate (and --teacher to compare)",
                            hint="several models side by side: a recipe with an eval stage (`downsize run`)")
    model = cfg.models[0]
    from downsize.data.refs import with_column

    result = evaluate(model, with_column(cfg.data or "zoo:stdlib", cfg.data_column), split=cfg.split, seq_len=cfg.seq_len, batch_size=cfg.batch_size,
                      max_tokens=cfg.max_tokens, sample=cfg.samples, teacher=cfg.teacher, speed=cfg.speed,
                      threads=v.get("threads"), warn=lambda m: err.print(_tag("yellow", "warning:", f"{m}")))
    if cfg.lm_eval:
        from downsize.eval.harness import run_lm_eval

        result["lm_eval"] = run_lm_eval(model, cfg.lm_eval, include=cfg.lm_eval_include, limit=cfg.lm_eval_limit)
        if cfg.teacher:
            result["teacher_lm_eval"] = run_lm_eval(cfg.teacher, cfg.lm_eval, include=cfg.lm_eval_include,
                                                    limit=cfg.lm_eval_limit)
    if cfg.tool_tasks:
        from downsize.stages.eval import tool_eval

        ctx = _context(v, None, teacher=cfg.teacher)
        ctx.out = Path(cfg.tool_tasks).with_name("metrics.json") if cfg.tool_tasks != "auto" else Path("metrics.json")
        result["tools"] = tool_eval(ctx, cfg, {"model": model, **({"teacher": cfg.teacher} if cfg.teacher else {})})
    if v["as_json"]:
        console.print_json(json.dumps(result))
        return
    _print_eval(result, model, cfg.teacher)


def _print_eval(result: dict, model: str, teacher: str | None) -> None:
    from downsize.console import fmt_mib, fmt_params, fmt_sig

    cols = ["metric", model] + ([teacher] if teacher else [])
    t = Table(*[c for c in cols])
    plain = lambda v: "–" if v is None else f"{v:,}" if isinstance(v, int) else fmt_sig(v, 5) if isinstance(v, float) else str(v)  # noqa: E731
    pct = lambda v: "–" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    rows = [("backend", "backend", "teacher_backend", str), ("parameters", "parameters", "teacher_parameters", fmt_params),
            ("size on disk", "size_mb", "teacher_size_mb", fmt_mib), ("tokens", "tokens", None, plain),
            ("perplexity", "perplexity", "teacher_perplexity", plain), ("KL(teacher || model)", "kl_to_teacher", None, plain),
            ("top-1 agreement", "top1_agreement", None, pct)]
    for label, key, tkey, f in rows:
        if key in result:
            t.add_row(label, f(result[key]), *([f(result.get(tkey)) if tkey else ""] if teacher else []))
    # speed is measured per model in its own backend (a GGUF in llama.cpp, an HF directory in transformers): say which
    for label, key, f in (("speed measured in", "backend", str), ("prompt tokens/s", "prompt_tok_s", fmt_sig),
                          ("generation tokens/s", "gen_tok_s", fmt_sig), ("peak RSS", "peak_rss_mb", fmt_mib)):
        if "speed" in result:
            t.add_row(label, f(result["speed"][key]),
                      *([f(result["teacher_speed"][key]) if "teacher_speed" in result else "–"] if teacher else []))
    for task, metrics in result.get("lm_eval", {}).items():
        for k in ("acc", "acc_norm", "exact_match"):
            if k in metrics:
                tm = result.get("teacher_lm_eval", {}).get(task, {})
                cell = lambda m: f"{m[k]:.4f} ± {m.get(k + '_stderr', 0):.4f}" if k in m else "–"  # noqa: E731
                t.add_row(f"lm-eval {task} {k}", cell(metrics), *([cell(tm)] if teacher else []))
    for name, r in result.get("tools", {}).items():
        t.add_row(f"tool use % ({name})", plain(r.get("tool_use_pct")), *([""] if teacher else []))
        t.add_row(f"tool accuracy % ({name})", plain(r.get("accuracy_pct")), *([""] if teacher else []))
    console.print(f"data: {str(result['data'])}, windows of {result['seq_len']}")
    if result.get("vocab"):
        console.print(f"vocabulary: {str(result['vocab'])}")
    console.print(t)
    if result.get("sample"):
        console.print(Text("sample completion", style="bold"))
        console.print(result["sample"]["prompt"], end="", style="dim", markup=False, highlight=False)
        console.print(result["sample"]["completion"], markup=False, highlight=False)


_stage_command(app, "distill", "distill", _run_distill, extra=_common(_OUT_DIR, resume=True, out_required=False)
               + _extra_write_cache(),
               examples=("downsize distill --teacher zoo:coder-teacher --student teacher:num_hidden_layers=4,"
                         "hidden_size=192 --steps 200 --out runs/student",
                         "downsize distill --teacher zoo:coder-teacher --student runs/pruned --loss jsd --beta 0.5 "
                         "--lmbda 0.5 --out runs/gkd"))
_stage_command(app, "train", "train", _run_training, extra=[_model_arg()] + _common(_OUT_DIR, resume=True),
               doc="Train a model with plain next-token cross entropy (the no-teacher baseline).",
               examples=("downsize train runs/pruned --data zoo:stdlib --steps 150 --out runs/ce-baseline",))
_stage_command(app, "sft", "sft", _run_training, aliases={"student": ["--student", "--model"], "seq_len": ["--seq-len", "--max-seq-len"]}, extra=_common(_OUT_DIR + "; LoRA merged", resume=True),
               examples=("downsize sft --student runs/student --data traces.jsonl --lora-r 16 --out runs/tuned",
                         "downsize sft --student runs/student --data traces.jsonl --logprob-kd 0.5 --out runs/tuned"))
_stage_command(app, "generate", "generate", _run_generate,
               aliases={"concurrency": ["--concurrency", "--in-flight"], "templates": ["--templates", "--template"],
                        "max_new_tokens": ["--max-new-tokens", "--max-tokens"]},
               extra=_common("output chat JSONL (rejected traces go beside it, *.rejected.jsonl); rerun to resume"),
               examples=("downsize generate --teacher openai:http://127.0.0.1:11434/v1#qwen3-coder:30b --codebase "
                         "./repo --out traces.jsonl",
                         "downsize generate --teacher zoo:coder-teacher --prompts prompts.txt --out data.jsonl"))
_stage_command(app, "prune", "prune", _run_prune, extra=[_model_arg()] + _common(
    "output directory (a normal Hugging Face model + prune_report.json)"),
               examples=("downsize prune zoo:coder-teacher --method width --targets 'ffn=512 heads=4 hidden=256' "
                         "--out pruned/",
                         "downsize prune zoo:coder-teacher --method sparsegpt --nm 2:4 --out sparse/"))
_stage_command(export_app, "gguf", "quantize", _run_quantize,
               extra=[_model_arg("model reference: HF directory or zoo:NAME")] + _common("output .gguf file (atomic)"),
               doc="Export a model to GGUF (our converter; K-quants through llama.cpp's quantizer).",
               examples=("downsize export gguf runs/student --quant Q4_K_M --out student-q4_k_m.gguf",
                         "downsize export gguf zoo:coder-teacher --quant F16 --out teacher-f16.gguf"))
_stage_command(export_app, "ollama", "export", _run_export, aliases={"model_name": ["--model-name", "--name"]},
               extra=[_model_arg("model reference: HF directory or zoo:NAME")]
               + _common("folder for the GGUF and the Modelfile"),
               doc="Export to GGUF plus an Ollama Modelfile (template converted from the Jinja chat template).",
               examples=("downsize export ollama runs/student --name coder-mini --out ollama/",
                         "downsize export ollama runs/student --name coder-mini --quant Q5_K_M --out ollama/"))
_stage_command(app, "eval", "eval", _run_eval, aliases={"samples": ["--samples", "--sample"]}, arguments={"models": "the model to evaluate: HF directory, zoo:NAME, "
                                                                    "FILE.gguf or ollama:NAME"},
               extra=_common(None),
               doc="Perplexity (token-weighted, exact), KL and top-1 agreement with a teacher, size, speed and RAM "
                   "of a model; tool use; lm-evaluation-harness tasks on local data.",
               examples=("downsize eval zoo:coder-teacher --data zoo:stdlib",
                         "downsize eval student-q4_k_m.gguf --teacher zoo:coder-teacher --speed"))


def main(argv: list[str] | None = None) -> None:
    """The `downsize` entry point: every error goes through the one boundary (downsize.errors.run_guarded)."""
    from downsize.errors import run_guarded

    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere before "--" (the root option also documents it in --help)
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut] or None
    args = [a for i, a in enumerate(args) if not (a == "--debug" and i < cut)]
    sys.exit(run_guarded(lambda: app(args=args, prog_name="downsize"), debug=debug))


if __name__ == "__main__":
    main()
